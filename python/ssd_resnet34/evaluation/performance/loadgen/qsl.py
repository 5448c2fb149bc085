"""The QSL's storage (query sample library): image files preprocessed into memory when LoadGen
loads them, before the timed run, as MLCommons' reference harness does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

__all__ = ["ImageSampleLibrary"]


class ImageSampleLibrary:
    """The QSL's storage: image files, preprocessed into memory when LoadGen loads them.

    ``paths``: the image files (sample index i is ``paths[i]``). ``preprocess``: maps a list of
    image paths to ``(batch (n, 3, H, W) float32 NCHW, contexts)``, e.g.
    ``ssd_resnet34.image.preprocess``. Each loaded sample takes 3*1200*1200*4 bytes (17.3 MB),
    so keep ``performance_count`` moderate (MLPerf's is 64 for this model).
    """

    def __init__(self, paths: Sequence[str | Path], preprocess: Optional[Callable[[list], tuple[np.ndarray, list]]]):
        if len(paths) == 0:
            raise ValueError("the sample library needs at least one image path, got none")
        self.paths = [Path(p) for p in paths]
        self._preprocess = preprocess
        self._loaded: dict[int, np.ndarray] = {}
        self._contexts: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def loaded_count(self) -> int:
        """How many samples are in memory now."""
        return len(self._loaded)

    def load(self, indices: Sequence[int]) -> None:
        """Preprocess the samples ``indices`` into memory (LoadGen's ``load_samples_to_ram``)."""
        for i in indices:
            if i not in self._loaded:
                self._loaded[i], self._contexts[i] = self._make(i)

    def _make(self, i: int) -> tuple[Any, dict]:
        """Sample ``i``'s input and its context (subclasses store other inputs)."""
        batch, contexts = self._preprocess([self.paths[i]])
        return np.ascontiguousarray(batch, dtype=np.float32), contexts[0]

    def _stack(self, inputs: list) -> Any:
        return inputs[0] if len(inputs) == 1 else np.concatenate(inputs, axis=0)

    def unload(self, indices: Sequence[int]) -> None:
        """Drop the samples ``indices`` from memory (LoadGen's ``unload_samples_from_ram``)."""
        for i in indices:
            self._loaded.pop(i, None)
            self._contexts.pop(i, None)

    def contexts(self, indices: Sequence[int]) -> list[dict]:
        """The preprocess contexts of the loaded samples ``indices`` (``width``/``height`` of each
        original image, pixels), as the postprocessor takes them."""
        self._check_loaded(indices)
        return [self._contexts[i] for i in indices]

    def _check_loaded(self, indices: Sequence[int]) -> None:
        missing = [i for i in indices if i not in self._loaded]
        if missing:
            raise ValueError(f"samples {missing[:5]} were not loaded by LoadGen before being queried")

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        """The loaded samples ``indices`` as one (n, 3, H, W) float32 batch (no copy for n == 1)."""
        self._check_loaded(indices)
        return self._stack([self._loaded[i] for i in indices])
