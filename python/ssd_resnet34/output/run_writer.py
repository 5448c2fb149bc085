"""The one writer of a detection run's output folder: ``detect`` on images, on videos, streams
and cameras (``cli/_video.py``), and the Ray path (:func:`ssd_resnet34.distributed.detect_dataset`).

A :class:`RunWriter` stages the run's files in a :class:`~ssd_resnet34.output.run_folder.RunFolder`
(all or nothing: :meth:`RunWriter.commit` replaces the previous set, leaving the block without it
leaves the folder as it was). The files themselves come from *output formats*, each an
:class:`OutputFormat` with these hooks:

- ``add(run, item) -> names``: called once per item as it finishes, in input order: a
  :class:`WrittenImage` in an image run (:meth:`RunWriter.add`; an image that could not be
  processed too: ``item.ok`` is False), a :class:`WrittenFrame` in a video run
  (:meth:`RunWriter.add_frame`, each stream in its frame order); writes what belongs to that item
  (a drawing, a ``detections.jsonl`` line, the frames of an annotated video) under
  ``run.path(name)`` and returns the names written. In an image run it may raise ``OSError`` (the
  image's file could not be written: reported, the run goes on).
- ``finish(run, images, image_ids) -> names``: called once at :meth:`RunWriter.commit` with every
  image added and the image ids of the processed ones (COCO names keep their id, the others get
  running numbers, :func:`~ssd_resnet34.output.coco_results.assign_image_ids`; both empty in a
  video run, which keeps no frames); writes the run-wide files (COCO results JSON, a Parquet
  table) or closes the files written along (the jsonl, the videos) and returns their names.
- ``close(run)``: releases what the format holds open; called when the run is committed or
  discarded (after ``finish``, or without it), possibly twice.
- ``describe(run, names)`` gives the parts of the closing ``wrote ...`` line for the names it wrote.

A new output format is one class here and one line in :func:`detection_formats`; ``detect`` (on
images or videos, as it fits) and the Ray path then write it.

The formats of an image run (:func:`detection_formats`): :class:`CocoResults`
(``detections.json``, ``image_ids.json`` when some names are not COCO names), :class:`Drawings`
(``<stem><ext>`` per image with the boxes drawn; needs the decoded image), :class:`ParquetTable`
(``detections.parquet``, :mod:`ssd_resnet34.output.parquet`). Of a video run
(``detection_formats(..., videos=sources)``): :class:`FrameLines` (``detections.jsonl``, a line
per frame, :mod:`ssd_resnet34.output.jsonl`) and :class:`AnnotatedVideos` (``<stem>.mp4`` per
stream, :mod:`ssd_resnet34.output.video_writer`; needs the decoded frames).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union
from urllib.parse import urlparse

import numpy as np

from ..types import ObjectDetectionResult
from .coco_results import assign_image_ids, write_coco_results
from .jsonl import JSONL_NAME, JsonlWriter
from .run_folder import MANIFEST, RunFolder

__all__ = [
    "AnnotatedVideos",
    "CocoResults",
    "Drawings",
    "FrameLines",
    "OutputFormat",
    "ParquetTable",
    "RunWriter",
    "VideoTarget",
    "WrittenFrame",
    "WrittenImage",
    "detection_formats",
    "drawing_names",
    "video_names",
]

# Suffixes OpenCV writes; a drawing of any other image is written as PNG.
_WRITABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass
class WrittenImage:
    """One image of a run, as the output formats see it.

    ``path``: the file as the user named it; ``width``/``height``: its size in pixels (None when
    it could not be read); ``records``: its COCO results records without ``image_id``
    (``category_id``, ``bbox`` ``[x, y, w, h]`` pixels, ``score``; score descending; see
    :func:`~ssd_resnet34.output.coco_results.image_records`); ``error``: ``"path: reason"`` when it
    could not be processed (then ``records`` is empty); ``image``: the decoded uint8 BGR image and
    ``results``: the same detections as ``ObjectDetectionResult`` (pixels), when the run has them
    (local runs; the Ray driver has neither). ``image`` and ``results`` are dropped once every
    format's ``add`` has seen them (``finish`` gets the records only).
    """

    path: str
    width: Optional[int] = None
    height: Optional[int] = None
    records: List[Dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None
    image: Optional[np.ndarray] = field(default=None, repr=False)
    results: Optional[List[ObjectDetectionResult]] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class WrittenFrame:
    """One processed video frame, as the output formats see it.

    ``result``: its :class:`~ssd_resnet34.video.FrameResult` (``image`` and the images of its
    ``held`` frames when the run keeps them); ``track_ids``: one per detection (int, or None for
    an untracked box) with ``--track``, else None. The run keeps no frame once every format's
    ``add`` has seen it (memory stays bounded on an endless stream).
    """

    result: Any
    track_ids: Optional[List[Optional[int]]] = None


class OutputFormat:
    """An output format of a run (see the module docstring); the hooks default to writing nothing."""

    def add(self, run: "RunWriter", item: Union[WrittenImage, WrittenFrame]) -> List[str]:
        return []

    def finish(self, run: "RunWriter", images: Sequence[WrittenImage], image_ids: Dict[str, int]) -> List[str]:
        return []

    def close(self, run: "RunWriter") -> None:
        return None

    def describe(self, run: "RunWriter", names: Sequence[str]) -> List[str]:
        return [str(run.out / name) for name in names]


class CocoResults(OutputFormat):
    """``detections.json`` (COCO results of every processed image, in input order) and
    ``image_ids.json`` (``{"id": path}``) when some image got a running number."""

    def finish(self, run, images, image_ids):
        processed = [image for image in images if image.ok]
        write_coco_results(run.path("detections.json"),
                           ({"image_id": image_ids[image.path], **record} for image in processed
                            for record in image.records))
        names = ["detections.json"]
        if run.running_numbers:
            run.write_json("image_ids.json", {str(image_ids[image.path]): image.path for image in processed}, indent=1)
            names.append("image_ids.json")
        return names

    def describe(self, run, names):
        images = run.processed
        parts = [f"{run.out / 'detections.json'} ({run.num_detections} detections, {images} "
                 f"image{'s' if images != 1 else ''})"]
        return parts + [str(run.out / name) for name in names if name != "detections.json"]


def drawing_names(paths: Sequence[str], out: "str | os.PathLike[str]") -> Dict[str, Path]:
    """``out/<stem><ext>`` per image path: unique (``cat-2.jpg`` for a second ``cat.jpg``), never one
    of the input files, ``.png`` for a suffix OpenCV does not write."""
    out = Path(out)
    inputs = {os.path.realpath(p) for p in paths}
    used = set()
    names: Dict[str, Path] = {}
    for path in paths:
        stem, suffix = os.path.splitext(os.path.basename(path))
        suffix = suffix.lower() if suffix.lower() in _WRITABLE_SUFFIXES else ".png"
        candidate, k = out / f"{stem}{suffix}", 1
        while candidate.name.lower() in used or os.path.realpath(candidate) in inputs or candidate.name == MANIFEST:
            k += 1
            candidate = out / f"{stem}-{k}{suffix}"
        used.add(candidate.name.lower())
        names[path] = candidate
    return names


class Drawings(OutputFormat):
    """One copy of each processed image with its labelled boxes drawn (:mod:`ssd_resnet34.output.draw`),
    named by :func:`drawing_names` over ``paths`` (every image of the run, known up front).
    Needs ``WrittenImage.image`` and ``results``."""

    def __init__(self, paths: Sequence[str], out: "str | os.PathLike[str]") -> None:
        self.targets = drawing_names(paths, out)

    def add(self, run, image):
        import cv2

        from .draw import draw_detections

        if not image.ok:
            return []
        if image.image is None or image.results is None:
            raise ValueError(f"{image.path}: no decoded image to draw on (the run did not keep the images)")
        target = self.targets[image.path]
        try:
            encoded_ok, encoded = cv2.imencode(target.suffix, draw_detections(image.image, image.results))
            if not encoded_ok:
                raise OSError(f"OpenCV could not encode {target.suffix}")
            run.path(target.name).write_bytes(encoded.tobytes())
        except (OSError, cv2.error) as error:
            raise OSError(f"{run.out / target.name}: cannot write the drawing: {error}") from None
        return [target.name]

    def describe(self, run, names):
        if not names:
            return []
        if len(names) == 1:
            return [f"1 drawing ({run.out / names[0]})"]
        return [f"{len(names)} drawings in {run.out}{os.sep}"]


class ParquetTable(OutputFormat):
    """``detections.parquet``: one row per image, processed or not (:mod:`ssd_resnet34.output.parquet`)."""

    def finish(self, run, images, image_ids):
        from .parquet import write_table

        write_table(run.path("detections.parquet"), [
            {"path": image.path, "image_id": image_ids.get(image.path) if image.ok else None, "width": image.width,
             "height": image.height, "error": image.error, "detections": image.records if image.ok else []}
            for image in images
        ])
        return ["detections.parquet"]


class FrameLines(OutputFormat):
    """``detections.jsonl``: a line per processed frame, flushed as it is written, so a run stopped
    at any point has complete lines (:mod:`ssd_resnet34.output.jsonl`). Opened at the first frame."""

    def __init__(self) -> None:
        self.writer: Optional[JsonlWriter] = None

    def add(self, run, frame):
        if self.writer is None:
            self.writer = JsonlWriter(run)
        self.writer.add(frame.result, frame.track_ids)
        return []

    def finish(self, run, images, image_ids):
        return [] if self.writer is None else self.writer.close()

    def close(self, run):
        if self.writer is not None:
            self.writer.close()

    def describe(self, run, names):
        if not names:
            return []
        return [f"{run.out / names[0]} ({run.frames} frames, {run.num_detections} detections)"]


@dataclass(frozen=True)
class VideoTarget:
    """The annotated video of one stream: its file ``name`` in the run folder and the input's
    ``width`` x ``height`` (pixels) and ``fps`` (None when the input declares none)."""

    name: str
    width: int
    height: int
    fps: Optional[float]


def video_names(sources: Sequence[Any], out: "str | os.PathLike[str]") -> Dict[int, str]:
    """``<stem>.mp4`` per video source (a :class:`~ssd_resnet34.video.VideoSource`: its
    ``stream``, ``target``, ``camera``, ``url``) in ``out``: ``camera<N>.mp4`` for a camera, a
    URL's last path part or its host, a file's stem; unique, never one of the input files nor
    ``detections.jsonl``."""
    out = Path(out)
    used = {JSONL_NAME}
    inputs = {os.path.realpath(str(s.target)) for s in sources if not (s.camera or s.url)}
    names: Dict[int, str] = {}
    for source in sources:
        if source.camera:
            stem = f"camera{source.target}"
        elif source.url:
            parsed = urlparse(str(source.target))
            stem = os.path.splitext(os.path.basename(parsed.path.rstrip("/")))[0] or parsed.hostname or "stream"
        else:
            stem = os.path.splitext(os.path.basename(str(source.target)))[0] or "video"
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        candidate, k = f"{stem}.mp4", 1
        while candidate.lower() in used or os.path.realpath(out / candidate) in inputs:
            k += 1
            candidate = f"{stem}-{k}.mp4"
        used.add(candidate.lower())
        names[source.stream] = candidate
    return names


def _labelled(results: List[ObjectDetectionResult], track_ids: List[Optional[int]]) -> List[ObjectDetectionResult]:
    """The boxes to draw, their labels prefixed with ``#<track id>``."""
    return [dataclasses.replace(r, label=f"#{t} {r.label}") if t is not None else r
            for r, t in zip(results, track_ids)]


class AnnotatedVideos(OutputFormat):
    """The annotated video of each stream (:class:`~ssd_resnet34.output.video_writer.AnnotatedVideoWriter`:
    every frame of the input, the boxes drawn, ``#<track id>`` before the label with track ids),
    ``targets`` by stream. All are opened at the first frame (a stream that ends before its first
    frame still gets its video) and finalized at the commit, also after Ctrl-C / SIGTERM, so each
    is playable up to its last frame. Needs the frames' images. ``codec(stream)``: the encoder
    used (``"h264"`` or ``"mp4v"``), None before the first frame."""

    def __init__(self, targets: Mapping[int, VideoTarget], codec: str = "auto") -> None:
        self.targets = dict(targets)
        self._codec = codec
        self.writers: Dict[int, Any] = {}

    def codec(self, stream: int) -> Optional[str]:
        writer = self.writers.get(stream)
        return None if writer is None else writer.codec

    def add(self, run, frame):
        from .video_writer import AnnotatedVideoWriter

        if not self.writers:
            for stream, target in self.targets.items():
                self.writers[stream] = AnnotatedVideoWriter(run, target.name, target.width, target.height,
                                                            target.fps, self._codec)
        result = frame.result
        drawn = _labelled(result.results, frame.track_ids) if frame.track_ids is not None else None
        self.writers[result.stream].add(result, drawn)
        return []

    def finish(self, run, images, image_ids):
        return [name for writer in self.writers.values() for name in writer.close()]

    def close(self, run):
        for writer in self.writers.values():
            writer.close()

    def describe(self, run, names):
        if not names:
            return []
        if len(names) == 1:
            return [str(run.out / names[0])]
        return [f"{len(names)} annotated videos in {run.out}{os.sep}"]


def detection_formats(paths: Sequence[str], out: "str | os.PathLike[str]", *, drawings: bool,
                      table: bool, videos: Optional[Sequence[Any]] = None) -> List[OutputFormat]:
    """The formats of a detection run into ``out``. Over the images ``paths``: COCO results
    always, drawings (local ``detect`` unless ``--no-draw``) and the Parquet table (the Ray path)
    when asked. Over the video sources ``videos`` instead (:class:`~ssd_resnet34.video.VideoSource`,
    ``paths`` empty, no table): ``detections.jsonl`` always and, with ``drawings``, the annotated
    videos (named by :func:`video_names`). The one place a new format is wired in. Raises
    ``ValueError`` for images and videos together, or a table of videos."""
    if videos is not None:
        if paths or table:
            raise ValueError("a video run writes detections.jsonl and the annotated videos: "
                             "no image paths and no Parquet table")
        formats: List[OutputFormat] = [FrameLines()]
        if drawings:
            names = video_names(videos, out)
            formats.append(AnnotatedVideos({s.stream: VideoTarget(names[s.stream], s.width, s.height, s.fps)
                                            for s in videos}))
        return formats
    formats = [CocoResults()]
    if drawings:
        formats.append(Drawings(paths, out))
    if table:
        formats.append(ParquetTable())
    return formats


class RunWriter:
    """Write a run's output folder ``out`` with ``formats``, as one set.

    ``add(...)`` each image as it finishes (in input order), or ``add_frame(...)`` each processed
    video frame; ``commit(summary)`` writes the run-wide
    files and ``run.json`` and replaces the previous set; leaving the ``with`` block without
    commit discards everything (the folder stays as the previous run left it). Raises ``OSError``
    when ``out`` cannot be created or is a file.
    """

    def __init__(self, out: "str | os.PathLike[str]", command: str, formats: Iterable[OutputFormat]) -> None:
        self.folder = RunFolder(out, command)
        self.out = self.folder.out
        self.formats = list(formats)
        self.images: List[WrittenImage] = []
        self._names: List[List[str]] = [[] for _ in self.formats]
        self.files: List[Path] = []
        #: Video frames added, and their detections.
        self.frames = 0
        self._frame_detections = 0
        #: Whether some processed image got a running number (set by :meth:`commit`).
        self.running_numbers = False

    # -- for the formats -------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Where a format writes the output file ``name`` (a plain file name) during the run."""
        return self.folder.path(name)

    def write_json(self, name: str, value: Any, indent: Optional[int] = None) -> Path:
        return self.folder.write_json(name, value, indent=indent)

    @property
    def processed(self) -> int:
        """Images added that were processed."""
        return sum(1 for image in self.images if image.ok)

    @property
    def num_detections(self) -> int:
        """Detections of the images processed and of the frames added."""
        return sum(len(image.records) for image in self.images if image.ok) + self._frame_detections

    # -- for the run -----------------------------------------------------------------------
    def add(self, path: str, *, width: Optional[int] = None, height: Optional[int] = None,
            records: Optional[List[Dict[str, Any]]] = None, error: Optional[str] = None,
            image: Optional[np.ndarray] = None, results: Optional[List[ObjectDetectionResult]] = None) -> List[str]:
        """Add one image (see :class:`WrittenImage` for the arguments); returns the problems of its
        own files (``"OUT/name: cannot write the drawing: ..."``), empty when all were written. The
        image counts once every format has seen it (an interruption in between drops its files)."""
        entry = WrittenImage(path, width, height, list(records or []), error, image, results)
        problems: List[str] = []
        written: List[List[str]] = []
        for output in self.formats:
            try:
                written.append(output.add(self, entry))
            except (OSError, ValueError) as problem:
                problems.append(str(problem))
                written.append([])
        entry.image = entry.results = None  # the formats are done with the pixels (records stay, for finish)
        self.images.append(entry)
        for names, new in zip(self._names, written):
            names.extend(new)
        return problems

    def add_frame(self, result: Any, track_ids: Optional[Iterable[Optional[int]]] = None) -> None:
        """Add one processed video frame (see :class:`WrittenFrame`) to every format: written, not
        kept. Raises ``OSError`` when a file cannot be written and ``ValueError`` when a format
        needs the frame's image and the run did not keep it: a video's file cannot skip a frame,
        so the run stops (leaving the ``with`` block discards its files)."""
        entry = WrittenFrame(result, None if track_ids is None else list(track_ids))
        for output, names in zip(self.formats, self._names):
            names.extend(output.add(self, entry))
        self.frames += 1
        self._frame_detections += len(result.detections)

    def commit(self, summary: Optional[dict] = None) -> List[Path]:
        """Write the run-wide files, then replace the previous set by this run's files and
        ``run.json`` (whose ``summary`` is ``summary``). Returns the final paths (``run.json``
        last)."""
        processed = [image.path for image in self.images if image.ok]
        image_ids, self.running_numbers = assign_image_ids(processed)
        for output, names in zip(self.formats, self._names):
            names.extend(output.finish(self, self.images, image_ids))
        keep = [name for names in self._names for name in names]
        self.files = self.folder.commit(summary, only=keep) + [self.out / MANIFEST]
        return self.files

    def describe(self) -> str:
        """The files committed, for the closing line: ``OUT/detections.json (N detections, M
        images), OUT/image_ids.json, 3 drawings in OUT/, OUT/run.json``; of a video run
        ``OUT/detections.jsonl (N frames, M detections), OUT/clip.mp4, OUT/run.json``."""
        parts = [part for output, names in zip(self.formats, self._names) for part in output.describe(self, names)]
        return ", ".join(parts + [str(self.out / MANIFEST)])

    def discard(self) -> None:
        """Close the formats' files and forget what was not committed (a file that cannot be closed
        cleanly is removed all the same)."""
        for output in self.formats:
            try:
                output.close(self)
            except (OSError, ValueError, RuntimeError):
                pass  # its file goes with the staging folder
        self.folder.discard()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()
