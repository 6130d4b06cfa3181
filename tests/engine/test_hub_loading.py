"""Backbones from a hub that fails: each failure names the handle and says
what to do. The "hub" is an HTTP server on 127.0.0.1 answering with the
status under test; nothing leaves the machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from ftk.hub.resolve import hub_cache_folder
from helpers import ftk_cli, loopback_hub

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback requests must not go through a proxy the environment names."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def run_with(backbone: str, topics, tmp_path):
    result = ftk_cli("run", "--task", "text_classification", "--data", topics["train"],
                     "--backbone", backbone, "--output", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not (tmp_path / "run" / "config.yaml").exists()
    return result.stderr


@pytest.mark.parametrize("status, advice", [
    (404, "The hub has no model at that address: check the handle's spelling and version"),
    (403, "The hub refused access: the model may need a login or an accepted licence"),
])
def test_a_hub_refusing_the_handle_says_why(status, advice, topics, tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
    with loopback_hub(status) as hub:
        handle = f"{hub}/google/nnlm-en-dim50/2"
        message = run_with(handle, topics, tmp_path)
    assert f"Cannot load backbone {handle}: HTTPError: HTTP Error {status}" in message
    assert advice in message


def test_a_half_downloaded_cache_folder_is_named(topics, tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
    handle = "https://tfhub.dev/google/nnlm-en-dim50/2"
    cached = hub_cache_folder(handle)
    cached.mkdir(parents=True)
    (cached / "saved_model.pb").write_bytes(b"\x08\x01 cut short")
    message = run_with(handle, topics, tmp_path)
    assert f"Its cached copy {cached} may be incomplete" in message
    assert "delete that folder to fetch it again" in message


def test_a_download_lock_left_by_a_killed_process_is_cleared(topics, tmp_path):
    """tensorflow_hub alone waits ten minutes for a dead process's lock."""
    env = {**os.environ, "TFHUB_CACHE_DIR": str(tmp_path / "hub")}
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with loopback_hub(404) as hub:
        handle = f"{hub}/google/nnlm-en-dim50/2"
        cached = subprocess.run(
            [sys.executable, "-c", "import sys; from ftk.hub.resolve import hub_cache_folder; "
             "print(hub_cache_folder(sys.argv[1]))", handle],
            env=env, capture_output=True, text=True, check=True).stdout.strip()
        lock, partial = f"{cached}.lock", f"{cached}.d00d.tmp"
        os.makedirs(partial)
        with open(lock, "w") as stream:
            stream.write(f"{socket.gethostname()}.{gone.pid}.d00d")
        result = subprocess.run(
            [sys.executable, "-m", "ftk.cli", "run", "--task", "text_classification", "--data",
             str(topics["train"]), "--backbone", handle, "--output", str(tmp_path / "run")],
            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Removed the partial download" in result.stderr
    assert f"Cannot load backbone {handle}: HTTPError: HTTP Error 404" in result.stderr
    assert not os.path.exists(partial)
