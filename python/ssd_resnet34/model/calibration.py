"""Calibration images for int8 post-training quantization: which files, and their model inputs.

:func:`calibration_files` picks the photos (the first ``count`` image files of a folder, in name
order, or of a list, in its order); :class:`CalibrationImages` reads and preprocesses them lazily,
one ``(1, 3, 1200, 1200)`` float32 input at a time, each time it is iterated (the quantizers make
several passes; 300 preprocessed photos would take 5 GB).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..image.listing import IMAGE_SUFFIXES, list_images
from ..layout import INPUT_SHAPE

__all__ = ["CalibrationImages", "calibration_files"]


def calibration_files(images: Union[str, "os.PathLike[str]", Iterable[Any]], count: int) -> list[Path]:
    """The calibration photos: the first ``count`` image files of a folder (sorted by name;
    suffixes :data:`ssd_resnet34.image.listing.IMAGE_SUFFIXES`, as ``detect`` lists a folder), or the first ``count`` paths of an iterable.

    Raises:
        TypeError: ``count`` is not an int, or ``images`` is neither a path nor an iterable of paths.
        ValueError: ``count < 1``; no images found.
        FileNotFoundError: the folder, or a listed file, does not exist.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"count must be an int >= 1, got {type(count).__name__}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images).expanduser()
        if not folder.exists():
            raise FileNotFoundError(f"calibration folder not found: {folder}")
        if not folder.is_dir():
            raise ValueError(f"images must be a folder of photos or a list of image files; {folder} is a file "
                             "(pass [path] for one image)")
        files = [Path(p) for p in list_images([folder]).paths]
        if not files:
            raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        return files[:int(count)]
    if not isinstance(images, Iterable):
        raise TypeError(f"images must be a folder path or an iterable of image paths, got {type(images).__name__}")
    files = []
    for item in images:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"images must hold paths of image files, got a {type(item).__name__}")
        path = Path(item).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"calibration image not found: {path}")
        files.append(path)
        if len(files) == count:
            break
    if not files:
        raise ValueError("images is empty: give at least one calibration photo")
    return files


class CalibrationImages(Sequence):
    """The model inputs of calibration photos, preprocessed on access as the detector does
    (:func:`ssd_resnet34.image.load_image` + :func:`~ssd_resnet34.image.preprocess_into`):
    ``images[i]`` is a ``(1, 3, 1200, 1200)`` float32 array. A bad file raises its
    :class:`~ssd_resnet34.image.ImageError`."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return CalibrationImages(self.files[index])
        from ..image import load_image, preprocess_into

        image, _ = load_image(str(self.files[index]), str(self.files[index]))
        batch = np.empty(INPUT_SHAPE, np.float32)
        preprocess_into(image, batch[0])
        return batch

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self.files)):
            yield self[index]
