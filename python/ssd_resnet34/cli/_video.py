"""``ssd-resnet34 detect`` on videos: files, ``rtsp://`` / ``http(s)://`` streams and cameras.

``detect clip.mp4 [b.mkv rtsp://... http://...] [--camera 0] [--every N] [--realtime] [--no-draw]``
writes, through the one run writer (:class:`~ssd_resnet34.output.run_writer.RunWriter`, one set
with ``run.json``; its video formats, ``detection_formats(..., videos=sources)``):

- ``detections.jsonl``: one line per processed frame (:mod:`ssd_resnet34.output.jsonl`);
- ``<stem>.mp4`` per input (``camera0.mp4`` for ``--camera 0``): the annotated video, same size,
  frame rate and frame count as the input (:mod:`ssd_resnet34.output.video_writer`), unless
  ``--no-draw``.

This module keeps the sources, the sampling and the command line; the files are the writer's
(each result goes to ``RunWriter.add_frame``; the closing ``wrote ...`` line is its ``describe``).

All sources share one engine; their frames are interleaved into the same batches, each stream
in its own order. ``--track`` adds ByteTrack ids (``track_id`` in the jsonl, ``#id`` on the
boxes). The first Ctrl-C or a SIGTERM stops after the frames in flight and writes what
is finished (playable videos, complete lines); end of stream does the same. Exit status 0 when
every source was read to its end, 1 when one could not be opened or ended early (its error on
stderr: the frames before it are kept), 130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import engines
from ..output.run_writer import AnnotatedVideos, detection_formats
from ..video.detect import iter_detect_frames
from ..video.source import (
    DEFAULT_TIMEOUT_S,
    VIDEO_SUFFIXES,
    VideoError,
    VideoSource,
    is_video_input,
)
from ._common import (
    CommandError,
    graceful_interrupt,
    int_at_least,
    open_run,
    positive_int,
    positive_number,
)
from ._progress import Progress

__all__ = ["LATENCY_WINDOW", "add_video_arguments", "run_video", "wants_video"]

#: The median latency in run.json is over the last this many frames (memory stays bounded).
LATENCY_WINDOW = 10_000


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """``--camera N`` (repeatable), ``--every N``, ``--realtime``, ``--timeout S`` on ``detect``."""
    group = parser.add_argument_group("video", f"video files ({' '.join(sorted(VIDEO_SUFFIXES))}), rtsp:// and "
                                      "http(s):// streams and cameras; see README 'Video'")
    group.add_argument("--camera", type=int_at_least(0), action="append", metavar="N",
                       help="read camera N (0: the first; repeat for several)")
    group.add_argument("--every", type=positive_int, default=1, metavar="N",
                       help="process one frame in N (the annotated video keeps every frame, with the boxes "
                            "of the last processed one; default 1)")
    group.add_argument("--realtime", action="store_true",
                       help="read each source at its own pace and process only the newest frame when inference "
                            "is slower (dropped frames are counted)")
    group.add_argument("--track", action="store_true",
                       help="give each box a track id along its stream (ByteTrack; extra ssd-resnet34[track]): "
                            "in the jsonl (track_id) and the drawing (#id)")
    group.add_argument("--timeout", type=positive_number, default=DEFAULT_TIMEOUT_S, metavar="S",
                       help=f"seconds allowed to open a stream and to wait for a frame (default {DEFAULT_TIMEOUT_S:g})")


def wants_video(args: argparse.Namespace) -> bool:
    """True when ``detect``'s inputs are videos, stream URLs or cameras."""
    return bool(getattr(args, "camera", None)) or any(is_video_input(item) for item in args.images)


class _Stop:
    """Ctrl-C (first one) or SIGTERM: stop after the frames in flight."""

    def __init__(self, interrupt: Any) -> None:
        self.interrupt = interrupt
        self.signal: Optional[int] = None

    @property
    def requested(self) -> bool:
        if self.interrupt.requested and self.signal is None:
            self.signal = signal.SIGINT
        return self.signal is not None


def run_video(args: argparse.Namespace) -> int:
    """``detect`` on videos (see the module); returns the exit status."""
    if getattr(args, "ray", None) is not None:
        raise CommandError("--ray takes images, not videos or streams")
    stills = [item for item in args.images if not is_video_input(item)]
    if stills:
        raise CommandError(f"give either images or videos to one detect run; not videos: {', '.join(stills)} "
                           f"(video suffixes: {' '.join(sorted(VIDEO_SUFFIXES))}, or rtsp:// / http(s):// URLs)")
    targets: List[Any] = list(args.images) + list(args.camera or [])
    sources: List[VideoSource] = []
    ok = True
    for target in targets:
        try:
            sources.append(VideoSource(target, len(sources), timeout_s=args.timeout))
        except (VideoError, OSError) as error:
            ok = False
            print(f"error: {error}", file=sys.stderr)
    out_dir = Path(args.out)
    if not sources:
        raise CommandError(f"no video could be opened; {out_dir} is left as it was")
    try:
        return _detect(args, sources, ok, out_dir)
    finally:
        for source in sources:
            source.close()


def _trackers(args: argparse.Namespace, sources: List[VideoSource]) -> Dict[int, Any]:
    """A :class:`~ssd_resnet34.video.tracking.StreamTracker` per source with ``--track``."""
    if not getattr(args, "track", False):
        return {}
    from ..video.tracking import StreamTracker

    return {s.stream: StreamTracker(s.fps / args.every if s.fps else None) for s in sources}


def _detect(args: argparse.Namespace, sources: List[VideoSource], ok: bool, out_dir: Path) -> int:
    trackers = _trackers(args, sources)  # ImportError (naming the extra) before the model loads
    # --realtime: one request on all cores (the latency mode) gives each frame its result soonest
    mode = engines.LATENCY if args.realtime else engines.THROUGHPUT
    draw = not args.no_draw
    formats = detection_formats([], out_dir, drawings=draw, table=False, videos=sources)
    videos = next((f for f in formats if isinstance(f, AnnotatedVideos)), None)
    model, engine, writer = open_run(args, out_dir, "detect", formats, mode=mode)
    known = [s.frame_count for s in sources]
    total = None if args.realtime or None in known else sum(-(-n // args.every) for n in known)
    if args.limit is not None:
        total = args.limit if total is None else min(total, args.limit)
    frames: Dict[int, int] = {s.stream: 0 for s in sources}
    dropped: Dict[int, int] = {s.stream: 0 for s in sources}
    # seconds from a frame's decoding to its result being written: the last ones (bounded for
    # endless streams) and the largest
    latencies: "deque[float]" = deque(maxlen=LATENCY_WINDOW)
    worst = 0.0
    with writer, engine, graceful_interrupt("stopping after the frames in flight (Ctrl-C again to abort)") as interrupt:
        stop = _Stop(interrupt)
        previous_term = None
        if threading.current_thread() is threading.main_thread():
            def on_term(signum, frame):
                stop.signal = signal.SIGTERM
                print("SIGTERM: stopping after the frames in flight", file=sys.stderr)

            previous_term = signal.signal(signal.SIGTERM, on_term)
        try:
            results = iter_detect_frames(sources, engine, model.postprocessor.decode, every=args.every,
                                         realtime=args.realtime, batch_size=args.batch_size, keep_images=draw,
                                         exact=args.exact)
            with Progress(total, "detect", unit="frames", rate=True) as progress:
                try:
                    for result in results:
                        writer.add_frame(result, trackers[result.stream].track(result) if trackers else None)
                        latencies.append(time.monotonic() - result.read_at)
                        worst = max(worst, latencies[-1])
                        frames[result.stream] += 1
                        dropped[result.stream] += result.dropped_before
                        progress.update(1)
                        if stop.requested or (args.limit is not None and writer.frames >= args.limit):
                            break
                except KeyboardInterrupt:  # a second Ctrl-C: keep what is written so far
                    stop.signal = signal.SIGINT
                finally:
                    results.close()
        finally:
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)
        for source in sources:
            if source.error is not None:
                ok = False
                print(f"error: {source.error}", file=sys.stderr)
        if writer.frames == 0:
            raise CommandError(f"no frame could be processed; {out_dir} is left as it was")
        summary = {
            "frames": writer.frames, "detections": writer.num_detections, "every": args.every,
            "realtime": args.realtime, "interrupted": stop.signal is not None, "track": bool(trackers),
            "latency_s": {"median": round(statistics.median(latencies), 4), "max": round(worst, 4)},
            "streams": [{"source": s.name, "frames": frames[s.stream], "frames_read": s.frames_read,
                         "dropped": dropped[s.stream], "width": s.width, "height": s.height, "fps": s.fps,
                         "video": videos.targets[s.stream].name if videos else None,
                         "codec": videos.codec(s.stream) if videos else None,
                         "error": None if s.error is None else str(s.error)} for s in sources],
        }
        writer.commit(summary)  # finalizes the videos and the jsonl, then moves the set into place
    for source in sources:
        extra = f", {dropped[source.stream]} dropped (--realtime)" if args.realtime else ""
        video = f" -> {out_dir / videos.targets[source.stream].name}" if videos else ""
        print(f"{source.name}: {frames[source.stream]} frame(s) processed of {source.frames_read} read{extra}{video}",
              file=sys.stderr)
    print(f"wrote {writer.describe()}", file=sys.stderr)
    if stop.signal is not None:
        print(f"interrupted: {out_dir} holds the frames finished before the signal", file=sys.stderr)
        return 130 if stop.signal == signal.SIGINT else 143
    return 0 if ok else 1
