"""The input list of a distributed run: local files and folders, or object-storage URIs.

The order is the one ``ssd-resnet34 detect`` uses (files as given, each folder's image files
sorted by name, not recursive, hidden files skipped; see :func:`ssd_resnet34.image.listing.list_images`), so
image ids and the order of ``detections.json`` are the single-machine run's. Local inputs go
to Ray as absolute paths (every node must see them: one machine, or a shared file system);
URIs (``s3://bucket/prefix/``, ``gs://...``, ``file:///...``) are listed here with pyarrow's
file systems and read by Ray Data on the nodes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence

__all__ = ["Inputs", "is_uri", "list_inputs", "read_key"]

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_uri(item: str) -> bool:
    """True for ``scheme://...`` (``s3://``, ``gs://``, ``file://``, ...), False for a local path."""
    return _URI.match(item) is not None


def read_key(path: str) -> str:
    """The key matching a file Ray Data read to its input: Ray reports local files by the path it
    was given and URIs without their ``scheme://``; this drops the scheme from both sides."""
    match = _URI.match(path)
    return path[match.end():] if match else path


@dataclass
class Inputs:
    """The files of a run, in order.

    ``paths``: each file as the user named it (``detections.json`` order, ``image_ids.json``);
    ``sources``: what Ray Data reads for it (an absolute local path or a URI), same order;
    ``errors``: ``"input: reason"`` for inputs that name nothing (a missing path, an empty folder).
    """

    paths: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    def index_by_key(self) -> Dict[str, int]:
        """:func:`read_key` of each source -> its position."""
        return {read_key(source): index for index, source in enumerate(self.sources)}


def _as_list(paths_or_uri: Any) -> List[str]:
    if isinstance(paths_or_uri, (str, os.PathLike)):
        items = [paths_or_uri]
    elif isinstance(paths_or_uri, Sequence) and not isinstance(paths_or_uri, (bytes, bytearray)):
        items = list(paths_or_uri)
    else:
        raise TypeError("paths_or_uri must be a path, a URI or a sequence of them, "
                        f"got {type(paths_or_uri).__name__}")
    if not items:
        raise ValueError("paths_or_uri is empty: give image files, folders or URIs")
    out = []
    for k, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths_or_uri[{k}] must be a str or os.PathLike, got {type(item).__name__}")
        out.append(os.fspath(item))
    return out


def _list_uri(uri: str, suffixes: frozenset, inputs: Inputs) -> None:
    """Add the file ``uri`` names, or the image files of the folder it names (sorted, not
    recursive, hidden files skipped), as ``detect`` does for a local folder."""
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
    except (OSError, ValueError) as error:
        inputs.errors.append(f"{uri}: cannot list it ({error})")
        return
    if info.type == pafs.FileType.NotFound:
        inputs.errors.append(f"{uri}: no such file or folder")
        return
    if info.type != pafs.FileType.Directory:
        inputs.paths.append(uri)
        inputs.sources.append(uri)
        return
    found = sorted(
        entry.path for entry in filesystem.get_file_info(pafs.FileSelector(root, recursive=False))
        if entry.type == pafs.FileType.File and not entry.base_name.startswith(".")
        and os.path.splitext(entry.base_name)[1].lower() in suffixes
    )
    if not found:
        inputs.errors.append(f"{uri}: folder has no image files ({', '.join(sorted(suffixes))})")
    base = uri.rstrip("/")
    for path in found:
        child = f"{base}/{path[len(root.rstrip('/')):].lstrip('/')}"
        inputs.paths.append(child)
        inputs.sources.append(child)


def list_inputs(paths_or_uri: Any) -> Inputs:
    """Expand ``paths_or_uri`` (a path, folder or URI, or a sequence of them) into the run's files.

    Local files and folders are expanded as ``ssd-resnet34 detect`` does; a URI names an object
    or a "folder" (prefix) listed with ``pyarrow.fs`` (``s3://`` needs credentials in the usual
    AWS places). A file named twice is taken once. Problems with single inputs (missing, an empty
    folder) are returned in ``errors``, not raised.

    Raises ``TypeError`` for a value that is not a path/URI or a sequence of them, ``ValueError``
    for an empty sequence or for local paths mixed with remote URIs (run them separately).
    """
    from ..image.listing import IMAGE_SUFFIXES, list_images

    items = _as_list(paths_or_uri)
    schemes = {(_URI.match(item).group(1).lower() if is_uri(item) else "file") for item in items}
    if len(schemes) > 1:
        raise ValueError(f"paths_or_uri mixes file systems ({', '.join(sorted(schemes))}); "
                         "run each file system's inputs separately")
    inputs = Inputs()
    if schemes == {"file"} and not any(is_uri(item) for item in items):
        listing = list_images(items)  # a FIFO or a symbolic link loop is reported here, as detect does
        inputs.paths = listing.paths
        inputs.sources = [os.path.abspath(path) for path in listing.paths]
        inputs.errors = listing.problems
        return inputs
    for item in items:
        _list_uri(item, IMAGE_SUFFIXES, inputs)
    seen = set()
    unique = Inputs(errors=inputs.errors)
    for path, source in zip(inputs.paths, inputs.sources):
        if source not in seen:
            seen.add(source)
            unique.paths.append(path)
            unique.sources.append(source)
    return unique
