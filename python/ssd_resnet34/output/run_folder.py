"""A run's output files, written as one consistent set or not at all.

A command (``detect``, ``eval``) writes its files into a hidden staging folder inside the output
folder while it runs. :meth:`RunFolder.commit` then moves them into place and records their
names in ``run.json``; the files the previous run recorded there and this one did not write are
removed, so the folder never mixes two runs. :meth:`RunFolder.discard` (a run that produced
nothing, or failed) removes the staging folder and leaves the previous set untouched. Files the
package did not write (not listed in ``run.json``) are never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterable, List, Optional

from .._files import replacing
from .._manifest import MANIFEST, recorded_files

__all__ = ["MANIFEST", "RunFolder"]

_STAGING_PREFIX = ".ssd-resnet34-run-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_staging(out: Path) -> None:
    """Staging folders of runs whose process is gone (killed before it could clean up)."""
    for entry in out.glob(_STAGING_PREFIX + "*"):
        try:
            pid = int(entry.name[len(_STAGING_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if entry.is_dir() and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


class RunFolder:
    """Stage a run's files in ``out`` and commit them as one set.

    ``out`` is created if needed (``OSError`` when it cannot be, or is a file). Write the files
    under :meth:`path`; then :meth:`commit` or :meth:`discard` (a ``with`` block discards
    whatever was not committed).
    """

    def __init__(self, out: "str | os.PathLike[str]", command: str) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise NotADirectoryError(f"the output folder {self.out} is a file")
        self.out.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(self.out)
        self.command = command
        self._staging: Optional[Path] = self.out / f"{_STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._staging.mkdir()
        self._names: List[str] = []

    def path(self, name: str) -> Path:
        """Where to write the output file ``name`` (a plain file name) during the run."""
        if self._staging is None:
            raise RuntimeError("the run folder was already committed or discarded")
        if os.path.basename(name) != name or name in ("", ".", "..", MANIFEST):
            raise ValueError(f"output names are plain file names other than {MANIFEST!r}, got {name!r}")
        if name not in self._names:
            self._names.append(name)
        return self._staging / name

    def write_json(self, name: str, value: Any, indent: Optional[int] = None) -> Path:
        """Write ``value`` as JSON to the output file ``name``; returns its final path."""
        with open(self.path(name), "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=indent)
            handle.write("\n")
        return self.out / name

    def _previous(self) -> List[str]:
        return recorded_files(self.out)

    def commit(self, summary: Optional[dict] = None, only: Optional[Iterable[str]] = None) -> List[Path]:
        """Replace the previous set by the files written (or by those of them named in ``only``):
        remove the previous run's files that this set does not have, move the new ones into
        place, then write ``run.json`` (``command``, ``files`` and ``summary``). Returns the
        final paths."""
        staging = self._require_staging()
        chosen = self._names if only is None else [n for n in self._names if n in set(only)]
        written = [n for n in chosen if (staging / n).exists()]
        for name in set(self._previous()) - set(written):
            (self.out / name).unlink(missing_ok=True)
        for name in written:
            os.replace(staging / name, self.out / name)
        with replacing(self.out / MANIFEST) as tmp:
            tmp.write_text(json.dumps({"command": self.command, "files": written, "summary": summary or {}},
                                      indent=1) + "\n", encoding="utf-8")
        self.discard()
        return [self.out / n for n in written]

    def discard(self) -> None:
        """Forget what was written and leave the folder as the previous run left it."""
        staging, self._staging = self._staging, None
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

    def _require_staging(self) -> Path:
        if self._staging is None:
            raise RuntimeError("the run folder was already committed or discarded")
        return self._staging

    @property
    def names(self) -> Iterable[str]:
        return tuple(self._names)

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
