"""Preprocessing: equality with MLPerf's ``pre_process_coco_resnet34``, image kinds, bad inputs.

The oracle below is written from mlcommons/inference
``vision/classification_and_detection/python/dataset.py`` (``maybe_resize``,
``pre_process_coco_resnet34``) as MLPerf runs it: ``cv2.imread`` then the float32 code path.
"""

from __future__ import annotations

import pickle
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from ssd_resnet34.image import (
    MAX_IMAGE_PIXELS,
    ImageError,
    preprocess,
    read_image,
)
from ssd_resnet34.layout import INPUT_SIZE

from _paths import SHARED_DATA

DATA = SHARED_DATA
CAT = DATA / "images" / "cat.jpg"
COCO_IMAGES = DATA / "coco-val2017-subset" / "images"
GRAYSCALE_COCO = COCO_IMAGES / "000000431848.jpg"  # the subset's one grayscale photo (640x378)
COCO_SAMPLE = [COCO_IMAGES / name for name in ("000000000285.jpg", "000000000802.jpg", "000000001490.jpg")]

needs_data = pytest.mark.skipif(
    not (CAT.is_file() and GRAYSCALE_COCO.is_file()),
    reason=f"shared test photos not found under {DATA} (../shared/data next to the repository)",
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# One grey level in normalized units for the channel with the smallest std.
ONE_GREY_LEVEL = 1.0 / 255.0 / 0.224


def mlperf_formula(rgb_hwc_float32: np.ndarray) -> np.ndarray:
    """``pre_process_coco_resnet34`` after ``maybe_resize``, as written: CHW float32."""
    img = rgb_hwc_float32 / 255.0 - MEAN
    img = img / STD
    return img.transpose([2, 0, 1])


def mlperf_reference(bgr_u8: np.ndarray) -> np.ndarray:
    """``maybe_resize`` + ``pre_process_coco_resnet34`` as written (dims 1200x1200x3)."""
    img = np.array(bgr_u8, dtype=np.float32)
    if len(img.shape) < 3 or img.shape[2] != 3:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (1200, 1200), interpolation=cv2.INTER_LINEAR)
    return mlperf_formula(img)


def formula_on_uint8_resize(bgr_u8: np.ndarray) -> np.ndarray:
    """The MLPerf formula applied to the uint8-resized pixels (what the fast path promises)."""
    resized = cv2.resize(bgr_u8, (1200, 1200), interpolation=cv2.INTER_LINEAR)
    return mlperf_formula(resized[:, :, ::-1].astype(np.float32))


@pytest.fixture(scope="module")
def photos():
    """Real photographs decoded as MLPerf does (cv2.imread): cat.jpg, COCO photos, the grayscale one."""
    if not (CAT.is_file() and GRAYSCALE_COCO.is_file()):
        pytest.skip(f"shared test photos not found under {DATA}")
    files = [CAT, GRAYSCALE_COCO, *[p for p in COCO_SAMPLE if p.is_file()]]
    return [(path, cv2.imread(str(path))) for path in files]


@needs_data
def test_fast_path_is_bit_equal_to_the_formula_on_uint8_resized_pixels(photos):
    batch, contexts = preprocess([path for path, _ in photos])
    assert batch.shape == (len(photos), 3, INPUT_SIZE, INPUT_SIZE)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    for i, (path, image) in enumerate(photos):
        np.testing.assert_array_equal(batch[i], formula_on_uint8_resize(image), err_msg=str(path))
        assert contexts[i] == {
            "width": image.shape[1],
            "height": image.shape[0],
            "file_name": path.name,
            "path": str(path),
        }


@needs_data
def test_exact_path_is_mlperf_as_written(photos):
    batch, _ = preprocess([path for path, _ in photos], exact=True)
    for i, (path, image) in enumerate(photos):
        np.testing.assert_array_equal(batch[i], mlperf_reference(image), err_msg=str(path))


@needs_data
def test_fast_path_is_within_one_grey_level_of_the_reference(photos):
    fast, _ = preprocess([image for _, image in photos])
    exact, _ = preprocess([image for _, image in photos], exact=True)
    difference = np.abs(fast - exact)
    assert difference.max() < ONE_GREY_LEVEL
    assert difference.max() > 0  # two different code paths: uint8 vs float32 resize
    # Channel order: a BGR/RGB swap would be off by far more than a grey level on photos.
    assert np.abs(fast[:, ::-1] - exact).max() > 10 * ONE_GREY_LEVEL


@needs_data
def test_grayscale_photo_becomes_three_equal_channels(photos):
    path, image = photos[1]
    assert path == GRAYSCALE_COCO
    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2
    from_file, contexts = preprocess(str(path))
    assert contexts == [{"width": 378, "height": 640, "file_name": path.name, "path": str(path)}]
    replicated = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    for variant in (gray, gray[:, :, None], replicated):
        batch, ctx = preprocess(variant)
        np.testing.assert_array_equal(batch, from_file)
        assert ctx == [{"width": 378, "height": 640}]
    # Undo the per-channel normalization: the three channels hold the same grey values.
    grey_values = from_file[0] * STD[:, None, None] + MEAN[:, None, None]
    np.testing.assert_allclose(grey_values[0], grey_values[1], atol=1e-6)
    np.testing.assert_allclose(grey_values[1], grey_values[2], atol=1e-6)
    exact_gray, _ = preprocess(gray, exact=True)
    np.testing.assert_array_equal(exact_gray[0], mlperf_reference(gray))


@needs_data
def test_png_bgra_and_unicode_paths(photos, tmp_path):
    _, cat = photos[0]
    expected, _ = preprocess(cat)
    png = tmp_path / "chat noir é ネコ.png"
    assert cv2.imwrite(str(tmp_path / "plain.png"), cat)
    shutil.copy(tmp_path / "plain.png", png)
    from_png, contexts = preprocess(png)
    np.testing.assert_array_equal(from_png, expected)  # PNG is lossless
    assert contexts[0]["file_name"] == "chat noir é ネコ.png"

    bgra = cv2.cvtColor(cat, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = np.arange(bgra.shape[1], dtype=np.uint8)[None, :]  # alpha varies, is ignored
    from_bgra, _ = preprocess(bgra)
    np.testing.assert_array_equal(from_bgra, expected)
    bgra_png = tmp_path / "alpha.png"
    assert cv2.imwrite(str(bgra_png), bgra)
    assert cv2.imread(str(bgra_png), cv2.IMREAD_UNCHANGED).shape[2] == 4
    np.testing.assert_array_equal(preprocess(bgra_png)[0], expected)
    np.testing.assert_array_equal(preprocess(bgra, exact=True)[0], preprocess(cat, exact=True)[0])


@needs_data
def test_batches_stacks_and_non_contiguous_arrays(photos):
    images = [image for _, image in photos]
    batch, contexts = preprocess(images)
    assert len(contexts) == len(images)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(batch[i], preprocess(image)[0][0])
    crops = np.stack([image[:300, :300] for image in images[:3]])  # (3, 300, 300, 3)
    stacked, contexts = preprocess(crops)
    assert stacked.shape[0] == 3 and contexts == [{"width": 300, "height": 300}] * 3
    np.testing.assert_array_equal(stacked[2], preprocess(np.ascontiguousarray(crops[2]))[0][0])
    flipped = images[0][:, ::-1]  # a non-contiguous view
    np.testing.assert_array_equal(
        preprocess(flipped)[0], preprocess(np.ascontiguousarray(flipped))[0]
    )
    # An image already 1200x1200 goes through unchanged in size.
    square = cv2.resize(images[0], (1200, 1200))
    np.testing.assert_array_equal(preprocess(square)[0][0], formula_on_uint8_resize(square))


@needs_data
def test_jpeg_with_data_after_the_end_marker_is_accepted(tmp_path):
    data = CAT.read_bytes()
    trailer = tmp_path / "trailer.jpg"
    trailer.write_bytes(data + b"\x00trailing camera data\xff\xda\x00")
    np.testing.assert_array_equal(read_image(trailer), read_image(CAT))


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_too_large_images_are_refused_from_the_header(tmp_path):
    # Above MAX_IMAGE_PIXELS but below Pillow's own refusal: this module's limit.
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(12000, 9000))
    with pytest.raises(ImageError, match=r"too large to decode safely: 12000x9000 = 108,000,000 pixels") as info:
        preprocess(str(big))
    assert info.value.path == str(big)
    assert f"{MAX_IMAGE_PIXELS:,}" in str(info.value)
    # A decompression bomb: a 200-byte file claiming 4e10 pixels.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(200_000, 200_000))
    assert bomb.stat().st_size < 200
    with pytest.raises(ImageError, match=r"bomb\.png: image too large to decode safely"):
        read_image(bomb)


@needs_data
def test_bad_files_raise_image_error_naming_the_file(tmp_path):
    cases = {}
    cases["missing.jpg"] = (None, "no such file")
    cases["text.jpg"] = (b"this is not a JPEG, just text\n" * 10, r"not an image \(unrecognized format")
    cases["garbage.png"] = (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, r"cannot read its PNG header")
    cases["empty.jpg"] = (b"", r"empty file \(0 bytes\)")
    data = CAT.read_bytes()
    cases["truncated.jpg"] = (data[: len(data) // 2], r"truncated JPEG")
    cases["short.jpg"] = (data[:-2], r"truncated JPEG")  # only the end marker missing
    png = cv2.imencode(".png", cv2.imread(str(CAT)))[1].tobytes()
    cases["truncated.png"] = (png[: len(png) // 2], r"not an image")
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ImageError, match=f"^{str(path)}: {reason}") as info:
            preprocess([str(CAT), str(path)])
        assert isinstance(info.value, ValueError)
        assert info.value.path == str(path)
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)
    error = ImageError("photos/broken.jpg", "not an image (OpenCV could not decode it)")
    assert str(error) == "photos/broken.jpg: not an image (OpenCV could not decode it)"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_bad_arrays_and_arguments_raise_clear_errors():
    good = np.zeros((4, 5, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match=r"images\[1\]: expected a uint8 image .* got dtype float32"):
        preprocess([good, good.astype(np.float32)])
    with pytest.raises(TypeError, match=r"image: expected a uint8 image .* got dtype int64"):
        preprocess(np.zeros((4, 5, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected an image of shape .* got shape \(4, 5, 2\)"):
        preprocess(np.zeros((4, 5, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        preprocess(np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"empty image, shape \(0, 5, 3\)"):
        preprocess(np.zeros((0, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty sequence"):
        preprocess([])
    # Bytes are one encoded image file (issue 15, item 12): these are no image.
    with pytest.raises(ImageError, match=r"^image: not an image"):
        preprocess(b"cat.jpg")
    with pytest.raises(TypeError, match=r"images\[1\]: expected a path .* got NoneType"):
        preprocess([good, None])
    with pytest.raises(TypeError, match="got int"):
        preprocess(3)
