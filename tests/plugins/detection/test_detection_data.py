"""Detection data: COCO JSON and Pascal VOC readers, their checks, and the demo data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ftk
from ftk.plugins.detection import annotations, coco, demo, voc

DATA = {"format": "auto", "image_dir": None, "skip_bad_files": False, "clip_tolerance": 0.05}


def data(**overrides) -> dict:
    return {**DATA, **overrides}


def write_png(path: Path, size=(64, 48), colour=(200, 40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


# A small valid COCO document: a 64x48 image with two objects (one a crowd) and
# a negative 32x32 image. Categories are deliberately not in id order.
COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
               {"id": 2, "file_name": "b.png", "width": 32, "height": 32}],
    "annotations": [
        {"id": 17, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 8.5], "iscrowd": 0},
        {"id": 18, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 48], "iscrowd": 1},
    ],
    "categories": [{"id": 3, "name": "zebra"}, {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}


def write_coco(folder: Path, document=None, images=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    document = COCO if document is None else document
    if images:
        for image in document.get("images", []):
            write_png(folder / image["file_name"], (image["width"], image["height"]))
    path = folder / "annotations.json"
    path.write_text(json.dumps(document, indent=1))
    return path


def test_coco_boxes_become_corners_and_categories_follow_their_ids(tmp_path):
    path = write_coco(tmp_path / "coco")
    records, classes = coco.read_coco(path, data())
    assert classes == ["cat", "dog", "zebra"]
    assert [record.path for record in records] == [(tmp_path / "coco" / name).absolute()
                                                   for name in ("a.png", "b.png")]
    first, negative = (record.label() for record in records)
    assert first == {"boxes": [[10.0, 20.0, 40.0, 28.5], [0.0, 0.0, 64.0, 48.0]],
                     "classes": ["zebra", "cat"], "ignore": [False, True],
                     "width": 64, "height": 48}
    assert negative == {"boxes": [], "classes": [], "ignore": [], "width": 32, "height": 32}


def test_coco_image_paths_resolve_in_order(tmp_path):
    path = write_coco(tmp_path / "coco", images=False)
    write_png(tmp_path / "coco" / "images" / "a.png")
    write_png(tmp_path / "coco" / "images" / "b.png", (32, 32))
    write_png(tmp_path / "coco" / "b.png", (32, 32))  # the JSON's folder comes first
    records, _ = coco.read_coco(path, data())
    assert [record.path for record in records] == [tmp_path / "coco" / "images" / "a.png",
                                                   tmp_path / "coco" / "b.png"]
    # data.image_dir replaces both folders.
    elsewhere = tmp_path / "pictures"
    write_png(elsewhere / "a.png")
    write_png(elsewhere / "b.png", (32, 32))
    records, _ = coco.read_coco(path, data(image_dir=str(elsewhere)))
    assert [record.path.parent for record in records] == [elsewhere, elsewhere]
    (elsewhere / "b.png").unlink()
    with pytest.raises(ftk.DataError, match="image id 2") as error:
        coco.read_coco(path, data(image_dir=str(elsewhere)))
    assert str(elsewhere / "b.png") in str(error.value)


def broken(change):
    document = copy.deepcopy(COCO)
    change(document)
    return document


COCO_ERRORS = {
    "missing categories": (lambda d: d.pop("categories"), "no 'categories'"),
    "unknown category": (lambda d: d["annotations"][0].update(category_id=9),
                         r"annotation id 17 \(image id 1\): category_id 9 is not among"),
    "unknown image": (lambda d: d["annotations"][1].update(image_id=5),
                      "annotation id 18: image_id 5 is not among the 'images'"),
    "three numbers": (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
                      r"annotation id 17 \(image id 1\): 'bbox' must be 4 numbers"),
    "text in bbox": (lambda d: d["annotations"][0].update(bbox=[1, "2", 3, 4]),
                     "annotation id 17 .* must be a finite number. Received: '2'"),
    "zero width": (lambda d: d["annotations"][1].update(bbox=[1, 2, 0, 4]),
                   "annotation id 18 .* width and height must be positive"),
    "negative height": (lambda d: d["annotations"][1].update(bbox=[1, 2, 3, -4]),
                        "annotation id 18 .* width and height must be positive"),
    "far outside": (lambda d: d["annotations"][0].update(bbox=[40, 0, 40, 10]),
                    r"annotation id 17 \(image id 1\): box .* outside the 64x48 image by 25.0%"),
    "duplicate image id": (lambda d: d["images"][1].update(id=1),
                           "image id 1: the id appears twice in 'images'"),
    "no file_name": (lambda d: d["images"][1].pop("file_name"), "image id 2: no 'file_name'"),
    "zero size": (lambda d: d["images"][1].update(width=0), "image id 2: image width must be"),
    "duplicate category": (lambda d: d["categories"][2].update(name="cat"),
                           "category id 2: the name 'cat' belongs to two categories"),
    "crowd flag": (lambda d: d["annotations"][0].update(iscrowd=2), "'iscrowd' must be 0 or 1"),
}


@pytest.mark.parametrize("case", COCO_ERRORS)
def test_coco_errors_name_the_file_and_the_record(tmp_path, case):
    change, message = COCO_ERRORS[case]
    document = broken(change)
    path = write_coco(tmp_path, document, images=False)
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png", (32, 32))
    with pytest.raises(ftk.DataError, match=message) as error:
        coco.read_coco(path, data())
    assert str(error.value).startswith(str(path))


def test_coco_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text('{\n  "images": [],\n  "annotations": [}\n')
    with pytest.raises(ftk.DataError, match=r"annotations.json: invalid JSON at line 3"):
        coco.read_coco(path, data())


def test_boxes_sticking_out_a_little_are_clipped_with_a_warning(tmp_path, caplog):
    # 2 pixels past the right edge of a 64-wide image is 3%: within the 5% default.
    path = write_coco(tmp_path, broken(lambda d: d["annotations"][0].update(bbox=[34, -1, 32, 9])))
    records, _ = coco.read_coco(path, data())
    assert records[0].boxes[0] == [34.0, 0.0, 64.0, 8.0]
    warning = caplog.text
    assert "Clipped 1 box(es)" in warning and "annotation id 17 (image id 1)" in warning
    with pytest.raises(ftk.DataError, match=r"annotation id 17 .*clip_tolerance \(0%\)"):
        coco.read_coco(path, data(clip_tolerance=0.0))
    with pytest.raises(ftk.ConfigError, match="clip_tolerance=2"):
        coco.read_coco(path, data(clip_tolerance=2))


def test_missing_images_fail_or_are_skipped_and_counted(tmp_path, caplog):
    path = write_coco(tmp_path)
    (tmp_path / "a.png").unlink()
    with pytest.raises(ftk.DataError, match="1 file") as error:
        coco.read_coco(path, data())
    assert "image id 1" in str(error.value) and "skip_bad_files" in str(error.value)
    records, classes = coco.read_coco(path, data(skip_bad_files=True))
    assert [record.path.name for record in records] == ["b.png"]
    assert classes == ["cat", "dog", "zebra"]  # declared categories stay
    assert "Skipped 1 image(s)" in caplog.text


def voc_xml(filename: str, size=(64, 48), objects=()) -> str:
    parts = [f"<annotation><folder>VOC</folder><filename>{filename}</filename>",
             f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"]
    for name, box, *difficult in objects:
        flag = f"<difficult>{difficult[0]}</difficult>" if difficult else ""
        corners = "".join(f"<{key}>{value}</{key}>" for key, value in zip(voc.CORNERS, box))
        parts.append(f"<object><name>{name}</name><pose>Left</pose>{flag}"
                     f"<bndbox>{corners}</bndbox></object>")
    return "\n".join(parts + ["</annotation>"])


def write_voc(root: Path, files: dict | None = None) -> Path:
    """A VOC folder; `files` maps an id to its (filename, size, objects)."""
    files = files if files is not None else {
        "000001": ("000001.png", (64, 48), [("dog", (1, 1, 10, 20)), ("cat", (5, 6, 64, 48), 1)]),
        "000002": ("000002.png", (32, 32), []),
        "000003": ("000003.png", (32, 32), [("bird", (3, 4, 5.5, 30), 0)]),
    }
    (root / "Annotations").mkdir(parents=True)
    for stem, (filename, size, objects) in files.items():
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(filename, size, objects))
        write_png(root / "JPEGImages" / filename, size)
    return root


def test_voc_boxes_become_zero_based_and_difficult_is_ignored(tmp_path):
    root = write_voc(tmp_path / "VOC2007")
    records, classes = voc.read_voc(root, data())
    assert classes == ["bird", "cat", "dog"]
    assert [record.path for record in records] == [
        (root / "JPEGImages" / f"00000{k}.png").absolute() for k in (1, 2, 3)]
    assert records[0].label() == {"boxes": [[0.0, 0.0, 10.0, 20.0], [4.0, 5.0, 64.0, 48.0]],
                                  "classes": ["dog", "cat"], "ignore": [False, True],
                                  "width": 64, "height": 48}
    assert records[1].label()["boxes"] == []  # a negative example
    assert records[2].label()["boxes"] == [[2.0, 3.0, 5.5, 30.0]]


def test_voc_image_dir_replaces_jpegimages(tmp_path):
    root = write_voc(tmp_path / "VOC")
    moved = tmp_path / "pictures"
    (root / "JPEGImages").rename(moved)
    records, _ = voc.read_voc(root, data(image_dir=str(moved)))
    assert {record.path.parent for record in records} == {moved}


def test_voc_id_list_selects_a_subset(tmp_path, caplog):
    root = write_voc(tmp_path / "VOC")
    listing = root / "ImageSets" / "Main" / "val.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("000003\n\n000001  1\n")
    records, classes = voc.read_voc(listing, data())
    assert [record.path.stem for record in records] == ["000003", "000001"]
    assert classes == ["bird", "cat", "dog"]
    # Without the list, every annotation file is read.
    assert len(voc.read_voc(root, data())[0]) == 3
    listing.write_text("000003\n000009\n")
    with pytest.raises(ftk.DataError, match=r"val.txt, line 2: .*000009.xml"):
        voc.read_voc(listing, data())
    records, classes = voc.read_voc(listing, data(skip_bad_files=True))
    assert [record.path.stem for record in records] == ["000003"] and classes == ["bird"]
    assert "Skipped 1 image(s)" in caplog.text
    stray = tmp_path / "ids.txt"
    stray.write_text("000001\n")
    with pytest.raises(ftk.DataError, match="ImageSets/Main/<split>.txt"):
        voc.read_voc(stray, data())


VOC_ERRORS = {
    "no size": ("<annotation><filename>x.png</filename></annotation>",
                "000001.xml: no <size/width>"),
    "bad corner": (voc_xml("x.png", objects=[("dog", (1, 1, "ten", 20))]),
                   r"000001.xml: object 1 \(dog\): <bndbox/xmax> must be a number"),
    "inverted box": (voc_xml("x.png", objects=[("dog", (1, 1, 9, 9)), ("cat", (9, 1, 5, 9))]),
                     r"000001.xml: object 2 \(cat\): box has no area"),
    "far outside": (voc_xml("x.png", objects=[("dog", (1, 1, 90, 9))]),
                    r"000001.xml: object 1 \(dog\): box .* outside the 64x48 image"),
    "difficult": (voc_xml("x.png", objects=[("dog", (1, 1, 9, 9), "yes")]),
                  r"object 1 \(dog\): <difficult> must be 0 or 1"),
    "no name": (voc_xml("x.png", objects=[("", (1, 1, 9, 9))]), "object 1: no <name>"),
    "malformed": ("<annotation>\n<filename>x.png</filename>\n<size></annotation>",
                  r"000001.xml, line 3, column \d+: malformed XML \(mismatched tag\)"),
    "other root": ("<doc></doc>", "root element is <doc>"),
}


@pytest.mark.parametrize("case", VOC_ERRORS)
def test_voc_errors_name_the_file_and_the_object(tmp_path, case):
    text, message = VOC_ERRORS[case]
    root = write_voc(tmp_path / "VOC", {"000001": ("x.png", (64, 48), [])})
    (root / "Annotations" / "000001.xml").write_text(text)
    with pytest.raises(ftk.DataError, match=message):
        voc.read_voc(root, data())


def test_voc_clips_small_overshoots_and_names_missing_images(tmp_path, caplog):
    root = write_voc(tmp_path / "VOC", {"000001": ("x.png", (64, 48), [("dog", (0, 1, 65, 48))])})
    records, _ = voc.read_voc(root, data())
    assert records[0].boxes == [[0.0, 0.0, 64.0, 48.0]]
    assert "Clipped 1 box(es)" in caplog.text
    (root / "JPEGImages" / "x.png").unlink()
    with pytest.raises(ftk.DataError, match=r"(?s)000001.xml: .*x.png.*skip_bad_files"):
        voc.read_voc(root, data())
    assert voc.read_voc(root, data(skip_bad_files=True)) == ([], [])
    with pytest.raises(ftk.DataError, match="no Annotations/ folder. It has VOC folders inside"):
        voc.read_voc(tmp_path, data())


def test_read_detection_data_picks_the_format_and_checks_the_images(tmp_path):
    coco_path = write_coco(tmp_path / "coco")
    voc_root = write_voc(tmp_path / "voc")
    config = {"data": data()}
    examples = annotations.read_detection_data(str(coco_path), config)
    assert examples.inputs == [str((tmp_path / "coco" / n).absolute()) for n in ("a.png", "b.png")]
    assert examples.targets[0]["classes"] == ["zebra", "cat"]
    assert examples.source == str(coco_path)
    if hasattr(examples, "classes"):
        assert examples.classes == ("cat", "dog", "zebra")
    examples = annotations.read_detection_data(str(voc_root), config)
    assert len(examples) == 3 and examples.targets[2]["classes"] == ["bird"]
    with pytest.raises(ftk.ConfigError, match="Received: data.format='yolo'"):
        annotations.read_detection_data(str(voc_root), {"data": data(format="yolo")})
    with pytest.raises(ftk.DataError, match="cannot tell the detection data format"):
        annotations.read_detection_data(str(tmp_path / "boxes.csv"), config)
    (tmp_path / "coco" / "b.png").write_bytes(b"not a png")
    with pytest.raises(ftk.DataError, match="b.png"):
        annotations.read_detection_data(str(coco_path), config)


def test_demo_images_are_reproducible_and_boxes_tight():
    for index in range(12):
        image, objects = demo.draw_example(demo.example_rng(0, index))
        again, _ = demo.draw_example(demo.example_rng(0, index))
        assert image.tobytes() == again.tobytes()
        assert 1 <= len(objects) <= demo.MAX_OBJECTS
        pixels = np.asarray(image)
        for drawn in objects:
            x_min, y_min, x_max, y_max = drawn.box
            assert 0 <= x_min < x_max <= demo.SIZE and 0 <= y_min < y_max <= demo.SIZE
            assert 18 <= max(x_max - x_min, y_max - y_min) <= 92
            shape = np.all(pixels == drawn.colour, axis=-1)
            assert shape.sum() == drawn.area
            # Every edge of the box touches the shape, and no shape pixel lies outside it.
            assert shape[y_min, x_min:x_max].any() and shape[y_max - 1, x_min:x_max].any()
            assert shape[y_min:y_max, x_min].any() and shape[y_min:y_max, x_max - 1].any()
            assert shape[y_min:y_max, x_min:x_max].sum() == shape.sum()
        for first in objects:
            for second in objects:
                if first is not second:
                    assert demo.iou(first.box, second.box) < demo.MAX_IOU


def test_demo_data_is_written_once_as_coco(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SPLITS", {"train": 5, "validation": 2, "test": 2})
    paths = demo.demo_detection_data(tmp_path / "demo")
    assert paths == {split: tmp_path / "demo" / split / "annotations.json"
                     for split in ("train", "validation", "test")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging folder left
    for split_index, (split, count) in enumerate(demo.SPLITS.items()):
        records, classes = coco.read_coco(paths[split], data())
        assert classes == list(demo.CLASSES) and len(records) == count
        drawn = [demo.draw_example(demo.example_rng(split_index, i)) for i in range(count)]
        assert [len(record.boxes) for record in records] == [len(objects) for _, objects in drawn]
        first_image, first_objects = drawn[0]
        assert np.array_equal(np.asarray(Image.open(records[0].path)), np.asarray(first_image))
        assert records[0].boxes == [[float(v) for v in o.box] for o in first_objects]
        assert records[0].classes == [o.name for o in first_objects]
    stamp = paths["train"].stat().st_mtime_ns
    demo.demo_detection_data(tmp_path / "demo")
    assert paths["train"].stat().st_mtime_ns == stamp


@pytest.mark.parametrize("file_name", ["../outside.png", "/etc/hostname", "link/a.png"])
def test_coco_image_paths_stay_inside_the_dataset(tmp_path, file_name):
    write_png(tmp_path / "outside.png")
    (tmp_path / "elsewhere").mkdir()
    write_png(tmp_path / "elsewhere" / "a.png")
    folder = tmp_path / "coco"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path / "elsewhere")  # a symlink leading out
    document = copy.deepcopy(COCO)
    document["images"] = [{"id": 1, "file_name": file_name, "width": 64, "height": 48}]
    document["annotations"] = []
    path = write_coco(folder, document, images=False)
    with pytest.raises(ftk.DataError, match=f"the image path '{file_name}' leads outside"):
        coco.read_coco(path, data())
    records, _ = coco.read_coco(path, data(allow_outside_paths=True))
    assert len(records) == 1


def test_voc_image_paths_stay_inside_the_dataset(tmp_path):
    root = write_voc(tmp_path / "VOC", {"1": ("../../secret.png", (32, 32), [])})
    with pytest.raises(ftk.DataError, match="leads outside"):
        voc.read_voc(root, data())


@pytest.mark.parametrize("preamble", [
    '<!DOCTYPE annotation [<!ENTITY name "dog">]>',
    '<!DOCTYPE annotation [<!ENTITY name SYSTEM "file:///etc/hostname">]>',
    '<!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
])
def test_voc_xml_with_entities_is_refused(tmp_path, preamble):
    root = write_voc(tmp_path / "VOC")
    target = root / "Annotations" / "000001.xml"
    target.write_text(preamble + voc_xml("000001.png", (64, 48), [("dog", (1, 1, 10, 20))]))
    with pytest.raises(ftk.DataError, match=f"{target}: refused XML construct"):
        voc.read_voc(root, data())
