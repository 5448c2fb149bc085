"""Progress on stderr for the commands' long loops (``detect``, ``eval``, ``bench``), and :func:`say`,
the report line that a closed stdout never turns into a failure.

On a terminal it is a tqdm bar. Anywhere else (a pipe, a log file, CI) bar frames would pile up,
so it writes one plain line at most every ``interval`` seconds, and a last one at the end:
``eval (oracle): 120/250 images (48%), 31.2 s``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional, TextIO

__all__ = ["PLAIN_INTERVAL_S", "Progress", "say"]

#: Seconds between two plain progress lines on a stderr that is not a terminal.
PLAIN_INTERVAL_S = 10.0


def _silence(stream: TextIO) -> None:
    """Point the stream's file descriptor at /dev/null, so that its later lines (and the flush
    when the interpreter exits, whose failure would set exit status 120) go nowhere quietly."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):  # no descriptor (a StringIO): nothing will be flushed at exit
        pass


def say(text: str, stream: Optional[TextIO] = None, *, bar: Any = None) -> None:
    """Write one report line to ``stream`` (default stdout) and flush it. A stream whose reader is
    gone (``detect ... | head -1``) or that is closed never costs the results: the line, and every
    later one, is dropped quietly and the run goes on. ``bar``: a tqdm bar on stderr to keep intact
    (the line is written with ``tqdm.write``)."""
    stream = stream if stream is not None else sys.stdout
    try:
        if bar is not None:
            bar.write(text, file=stream)
        else:
            stream.write(text + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError):  # ValueError: I/O operation on a closed file
        _silence(stream)
    except OSError as error:
        import errno

        if error.errno != errno.EPIPE:
            raise
        _silence(stream)


class Progress:
    """A counter of ``total`` items (None: unknown) named ``desc``, shown on ``stream`` (stderr).

    ``update(n)`` counts n more; ``describe(text)`` changes the name (e.g. the stage at hand);
    ``write(line, stream)`` writes a report line that leaves the bar intact; ``close()`` (or
    leaving the ``with`` block) ends it. ``interval``: seconds between plain lines when
    ``stream`` is not a terminal (0: a line per update). ``enabled=False`` shows nothing.
    ``rate``: add the items per second to the plain lines (``detect`` on videos: frames/s; the
    terminal bar always shows it).
    """

    def __init__(self, total: Optional[int], desc: str, unit: str = "images", *,
                 stream: Optional[TextIO] = None, interval: float = PLAIN_INTERVAL_S, enabled: bool = True,
                 rate: bool = False) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.show_rate = rate
        if not enabled:  # no bar and no lines (e.g. a single image); write() still writes
            self.interval = float("inf")
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self._start = self._last = time.monotonic()
        self._closed = False
        self._written = -1
        self._bar: Any = None
        isatty = getattr(self.stream, "isatty", None)
        if enabled and isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit.rstrip("s") or unit, file=self.stream,
                             dynamic_ncols=True)

    def _line(self) -> str:
        done = f"{self.count}/{self.total} {self.unit}" if self.total else f"{self.count} {self.unit}"
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total else ""
        elapsed = time.monotonic() - self._start
        rate = f", {self.count / elapsed:.2f} {self.unit}/s" if self.show_rate and elapsed > 0 else ""
        return f"{self.desc}: {done}{share}, {elapsed:.1f} s{rate}"

    def _write(self) -> None:
        self._written = self.count
        try:
            print(self._line(), file=self.stream, flush=True)
        except (BrokenPipeError, ValueError):  # a closed stderr never costs the results
            self.interval = float("inf")
            _silence(self.stream)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write()

    def write(self, text: str, stream: Optional[TextIO] = None) -> None:
        """A report line on ``stream`` (default stdout) that leaves the bar intact (:func:`say`)."""
        say(text, stream, bar=self._bar)

    def describe(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.interval != float("inf") and self._written != self.count:
            self._write()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
