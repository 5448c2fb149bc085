"""Which files are images: the one suffix list, and the listing of the commands' inputs.

:func:`list_images` expands what a user names (files and folders) into image files, for
``detect``, ``bench``, ``detect --ray`` (:mod:`ssd_resnet34.distributed.inputs`) and the int8
calibration (:mod:`ssd_resnet34.model.calibration`); :func:`file_problem` says why a path is not a
readable regular file (also for ``eval``'s annotated file names). A folder entry that cannot be an
image (a symbolic link loop, a dangling link, a FIFO, socket or device) is reported, one message
naming the path and why, and the listing goes on with the others.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from .._manifest import recorded_files

__all__ = ["IMAGE_SUFFIXES", "ImageListing", "display_path", "file_problem", "has_image_suffix", "list_images"]

#: File suffixes taken from a folder (lower case; files named on the command line are taken
#: whatever their name).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def has_image_suffix(name: str) -> bool:
    """Whether the file name ``name`` ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def display_path(path: "str | os.PathLike[str]") -> str:
    """``path`` as a report line shows it: as is, unless it holds a character that could forge or
    garble a line (a newline, a control character, bytes that are not UTF-8): then quoted with
    Python's escapes (``'a\\nb.jpg'``)."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.isprintable():
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:  # surrogate escapes of bytes that are not UTF-8
            pass
    return repr(text)


def file_problem(path: "str | os.PathLike[str]") -> Optional[str]:
    """Why ``path`` is not a readable regular file, or None when it is one.

    ``"no such file"``, ``"a symbolic link loop"``, ``"a dangling symbolic link (its target
    <target> does not exist)"``, ``"a folder, not an image file"``, ``"not a regular file (a
    FIFO)"`` (socket, character or block device likewise), ``"cannot read it (<reason>)"``. Only
    metadata is read (``stat``), never the file, so a FIFO or a device cannot block.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return f"a dangling symbolic link (its target {display_path(target)} does not exist)"
        return "no such file"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"cannot read it ({error.strerror or error})"
    if stat.S_ISDIR(info.st_mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        return f"not a regular file ({kind})"
    return None


@dataclass
class ImageListing:
    """The image files of some inputs.

    ``paths``: each file once, as named (a folder's entries as ``folder/name``), in order;
    ``errors``: ``"input: reason"`` for an input that names nothing usable (a missing path, a
    folder without images, a named file that is not a regular file); ``skipped``: ``"path:
    reason"`` for each image-named folder entry that is not a readable regular file (a symbolic
    link loop, a dangling link, a FIFO ...), which the listing went past.
    """

    paths: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    @property
    def problems(self) -> List[str]:
        """``errors`` then ``skipped``."""
        return self.errors + self.skipped


def _folder_images(folder: str, listing: ImageListing) -> List[str]:
    own_outputs = set(recorded_files(folder))  # --out was this folder: not the previous run's drawings
    found = []
    with os.scandir(folder) as scanned:
        entries = sorted(scanned, key=lambda entry: entry.name)
        for entry in entries:
            if entry.name.startswith(".") or not has_image_suffix(entry.name) or entry.name in own_outputs:
                continue
            problem = file_problem(entry.path)
            if problem is None:
                found.append(entry.path)
            elif not problem.startswith("a folder"):
                listing.skipped.append(f"{display_path(entry.path)}: {problem}; skipped")
    return found  # in name order


def list_images(inputs: Iterable["str | os.PathLike[str]"]) -> ImageListing:
    """Expand ``inputs``: files as given (whatever their name), folders to their image files (by
    :data:`IMAGE_SUFFIXES`, sorted by name, hidden files skipped, not recursive; the files a run's
    ``run.json`` there lists are that run's outputs, skipped too).

    Never raises for a bad input: see :class:`ImageListing` for what is reported.
    """
    listing = ImageListing()
    seen = set()
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            try:
                found = _folder_images(item, listing)
            except OSError as error:
                listing.errors.append(f"{display_path(item)}: cannot list the folder ({error.strerror or error})")
                continue
            if not found:
                listing.errors.append(f"{display_path(item)}: folder has no image files "
                                      f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif os.path.lexists(item):
            problem = file_problem(item)
            if problem is not None:
                listing.errors.append(f"{display_path(item)}: {problem}")
                continue
            found = [item]
        else:
            listing.errors.append(f"{display_path(item)}: no such file or folder")
            continue
        for path in found:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                listing.paths.append(path)
    return listing

