"""Reading .pth checkpoints without PyTorch, and refusing ones that hold code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftk.errors import FtkError
from ftk.plugins.efficientnet_lite.torch_pickle import read_torch_state_dict
from torch_checkpoints import (LEGACY_MAGIC, WRITERS, Call, Global, Storage, View,
                               pickle_ops, state_pickle, write_legacy)

def _shared_storage_tensors() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    shared = Storage("shared", np.arange(30, dtype=np.float64) * 0.5)
    bf16 = Storage("bf16", np.array([0x3F80, 0xC020, 0x0000], dtype=np.uint16))
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((2, 3, 4)).astype(np.float32)
    tensors = {
        "conv.weight": weight,
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "half": np.array([1.5, -0.25], dtype=np.float16),
        "mask": np.array([[True, False]]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        # A transposed view starting at element 2 of a storage it shares.
        "view.t": View(shared, 2, (4, 3), (1, 4)),
        "view.rows": View(shared, 0, (3, 4), (4, 1)),
        "bfloat16": View(bf16, 0, (3,), (1,)),
    }
    expected = {
        "conv.weight": weight,
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "half": tensors["half"],
        "mask": tensors["mask"],
        "empty": tensors["empty"],
        "view.t": np.array([[shared.data[2 + i + 4 * j] for j in range(3)]
                            for i in range(4)]),
        "view.rows": shared.data[:12].reshape(3, 4),
        "bfloat16": np.array([1.0, -2.5, 0.0], dtype=np.float32),
    }
    return tensors, expected


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_state_dict_round_trips_exact_values(tmp_path, layout):
    tensors, expected = _shared_storage_tensors()
    path = WRITERS[layout](tmp_path / "model.pth", tensors)
    loaded = read_torch_state_dict(path)
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        assert loaded[name].dtype == value.dtype, name
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)
    assert loaded["view.t"].flags.writeable


def _malicious(marker: Path, attack: str) -> dict[str, Any]:
    if attack == "exec":
        payload = Call(Global("builtins", "exec"),
                       (f"open({str(marker)!r}, 'w').close()",))
    else:
        payload = Call(Global("os", "system"), (f"touch '{marker}'",))
    # A genuine tensor first, so the attack sits mid-way in the state dict.
    return {"conv.weight": np.ones((2, 2), np.float32), "evil": payload}


@pytest.mark.parametrize("attack", ["exec", "system"])
@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_code_in_a_checkpoint_is_refused_not_run(tmp_path, layout, attack):
    marker = tmp_path / "pwned"
    path = WRITERS[layout](tmp_path / "evil.pth", _malicious(marker, attack))
    # The payload is live: plain pickle would run it.
    pickle.loads(state_pickle({"evil": _malicious(marker, attack)["evil"]}))
    assert marker.exists()
    marker.unlink()

    with pytest.raises(FtkError, match="refusing to load") as error:
        read_torch_state_dict(path)
    module = "builtins.exec" if attack == "exec" else "os.system"
    assert str(path) in str(error.value) and module in str(error.value)
    assert "only reads tensors" in str(error.value)
    assert not marker.exists()


def test_a_global_in_the_legacy_header_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.PROTO + b"\x02" + pickle_ops(Call(
        Global("builtins", "exec"), (f"open({str(marker)!r}, 'w').close()",)))
        + pickle.STOP)
    with pytest.raises(FtkError, match="builtins.exec"):
        read_torch_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "plain_zip",
                                    "not_a_state_dict"])
def test_unreadable_checkpoints_name_the_file(tmp_path, damage):
    path = tmp_path / "broken.pth"
    if damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        write_legacy(path, {"w": np.ones((64, 64), np.float32)})
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "plain_zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
    else:
        path.write_bytes(pickle.dumps(LEGACY_MAGIC, protocol=2)
                         + pickle.dumps(1001, protocol=2)
                         + pickle.dumps({"little_endian": True}, protocol=2)
                         + pickle.dumps([1, 2, 3], protocol=2)
                         + pickle.dumps([], protocol=2))
    with pytest.raises(FtkError) as error:
        read_torch_state_dict(path)
    assert str(path) in str(error.value)


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FtkError, match="nothing.pth"):
        read_torch_state_dict(tmp_path / "nothing.pth")
