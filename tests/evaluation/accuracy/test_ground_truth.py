"""The COCO ground truth (ssd_resnet34.evaluation.accuracy.ground_truth): the one reader of an
instances file, its checks (issue 15 item 13: a file_name never leads outside --images, an image
without width is a clear error), and CocoImage with boxes in the model's terms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _coco import write_tiny_ground_truth
from ssd_resnet34.cli import main
from ssd_resnet34.evaluation.accuracy.coco_eval import load_ground_truth
from ssd_resnet34.evaluation.accuracy.ground_truth import (
    list_images,
    load_coco_ground_truth,
    read_annotations,
)


@pytest.fixture()
def tiny_gt(tmp_path):
    return write_tiny_ground_truth(tmp_path)


def test_list_images_keeps_files_on_disk_sorted_and_limited(tiny_gt):
    gt = load_ground_truth(tiny_gt)
    images = list_images(gt, tiny_gt.parent)
    assert [(im.image_id, im.path.name, im.width, im.height) for im in images] == [
        (1, "a.jpg", 640, 480),
        (2, "b.jpg", 300, 200),
    ]
    assert [im.image_id for im in list_images(gt, tiny_gt.parent, limit=1)] == [1]
    with pytest.raises(ValueError):
        list_images(gt, tiny_gt.parent, limit=0)
    with pytest.raises(NotADirectoryError):
        list_images(gt, tiny_gt.parent / "nowhere")


def test_list_images_carry_their_ground_truth(tiny_gt):
    first, second = list_images(json.loads(tiny_gt.read_text()), tiny_gt.parent)
    np.testing.assert_allclose(first.boxes, [[10 / 640, 20 / 480, 110 / 640, 220 / 480],
                                             [300 / 640, 100 / 480, 450 / 640, 220 / 480]], rtol=1e-6)
    assert first.labels.tolist() == [1, 17] and second.labels.tolist() == [17]
    assert first.file_name == "a.jpg" and first.path == tiny_gt.parent / "a.jpg"


def _write(tmp_path, images, annotations=()):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": list(annotations), "categories": []}))
    return path


@pytest.mark.parametrize("name", ["../outside.jpg", "sub/../../outside.jpg", "/etc/hostname", "C:\\x.jpg",
                                  "..\\outside.jpg"])
def test_a_file_name_outside_the_images_folder_is_refused(tmp_path, name):
    (tmp_path / "outside.jpg").write_bytes(b"a file next to the images folder")
    (tmp_path / "images").mkdir()
    path = _write(tmp_path, [{"id": 1, "file_name": name, "width": 10, "height": 10}])
    with pytest.raises(ValueError, match="leads outside the images folder"):
        read_annotations(path)
    with pytest.raises(ValueError, match=r"images\[0\] \(id 1\) has file_name"):
        list_images(path, tmp_path / "images")


def test_eval_refuses_a_file_name_outside_images_in_one_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    path = _write(tmp_path, [{"id": 1, "file_name": "../secret.jpg", "width": 10, "height": 10}])
    (tmp_path / "secret.jpg").write_bytes(b"x")
    assert main(["eval", "--oracle", "--images", str(tmp_path / "images"), "--annotations", str(path),
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "leads outside the images folder" in err and "internal error" not in err


@pytest.mark.parametrize("entry, message", [
    ({"id": 1, "file_name": "a.jpg", "height": 10}, "has no 'width'"),
    ({"id": 1, "file_name": "a.jpg", "width": 0, "height": 10}, "'width' 0: expected a positive int"),
    ({"id": 1, "file_name": "a.jpg", "width": 10, "height": "10"}, "'height' '10'"),
    ({"file_name": "a.jpg", "width": 10, "height": 10}, "needs 'id'"),
    ({"id": 1, "width": 10, "height": 10}, "needs 'file_name'"),
])
def test_a_bad_image_entry_is_a_clear_error(tmp_path, capsys, entry, message):
    path = _write(tmp_path, [entry])
    with pytest.raises(ValueError, match=message):
        read_annotations(path)
    (tmp_path / "images").mkdir()
    assert main(["eval", "--oracle", "--images", str(tmp_path / "images"), "--annotations", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "internal error" not in err and "KeyError" not in err


def test_a_bad_annotation_entry_is_a_clear_error(tmp_path):
    image = {"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}
    for annotation, message in (({"image_id": 1, "bbox": [0, 0, 1, 1]}, "must be an object with"),
                                ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}, "4 finite numbers"),
                                ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, float("nan")]}, "4 finite")):
        with pytest.raises(ValueError, match=rf"annotations\[0\].*{message}"):
            load_ground_truth(_write(tmp_path, [image], [annotation]))


def test_load_coco_ground_truth_from_a_small_file(tmp_path):
    data = {
        "images": [{"id": 5, "file_name": "a.jpg", "width": 200, "height": 100},
                   {"id": 9, "file_name": "b.jpg", "width": 50, "height": 50}],
        "annotations": [
            {"image_id": 5, "category_id": 18, "bbox": [20, 10, 100, 50], "iscrowd": 0},
            {"image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1},
            {"image_id": 5, "category_id": 90, "bbox": [0, 0, 0, 10], "iscrowd": 0},
            {"image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        ],
        "categories": [],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    first, second = load_coco_ground_truth(path)
    assert (first.image_id, first.file_name, first.width, first.height) == (5, "a.jpg", 200, 100)
    np.testing.assert_allclose(first.boxes, [[0.1, 0.1, 0.6, 0.6]])
    assert first.boxes.dtype == np.float32 and first.labels.tolist() == [17]  # dog
    assert second.boxes.shape == (0, 4) and second.labels.shape == (0,)
    crowd = load_coco_ground_truth(data, [5], include_crowd=True)[0]
    assert crowd.labels.tolist() == [17, 1]
    assert [im.image_id for im in load_coco_ground_truth(data, [9, 5])] == [9, 5]
    with pytest.raises(ValueError, match="image id 7"):
        load_coco_ground_truth(data, [7])


def test_load_coco_ground_truth_from_the_shared_subset(coco_annotations):
    data = json.loads(coco_annotations.read_text())
    images = load_coco_ground_truth(coco_annotations)
    assert len(images) == len(data["images"])
    usable = [a for a in data["annotations"] if not a["iscrowd"] and min(a["bbox"][2:]) > 0]
    assert sum(len(im.labels) for im in images) == len(usable)
    crowd = load_coco_ground_truth(coco_annotations, include_crowd=True)
    assert sum(len(im.labels) for im in crowd) - len(usable) == sum(a["iscrowd"] for a in data["annotations"])
    for image in images:
        assert image.boxes.min(initial=0) >= 0 and image.boxes.max(initial=1) <= 1 + 1e-6
        assert ((image.labels >= 1) & (image.labels <= 80)).all()
