"""Shared pytest fixtures for the synthetic SSD-ResNet34 model (owned by the weights/session tests).

The synthetic model's detections are meaningless (random weights); it has the exact MLPerf
topology, so shapes, plumbing and timings are real. Each fp32 inference costs about 2-4 s on a
2-core CPU (bf16 about 0.5 s): share the engines and the reference outputs below instead of
running more. ``heads_session`` is the faithful reference: onnxruntime, fp32.

Use from a test module with ``pytest_plugins = ["_fixtures"]``: fixtures registered that way
are defined once for the whole run (importing them into each module would make one copy,
and one inference, per module).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssd_resnet34.engines import create
from ssd_resnet34.engines.onnxruntime import OnnxRuntimeEngine as Session
from ssd_resnet34.model.synthetic import synthetic_model_path

from _paths import SHARED_DATA

#: Seed of the shared synthetic models.
SEED = 0
#: The shared COCO val2017 photos (../shared/data next to the repository).
COCO_IMAGES = SHARED_DATA / "coco-val2017-subset" / "images"


@pytest.fixture(scope="session")
def synthetic_heads_path() -> Path:
    """The synthetic heads-only model (dynamic batch, 12 outputs), cached in ``cache_dir()``."""
    return synthetic_model_path(SEED)


@pytest.fixture(scope="session")
def synthetic_full_path() -> Path:
    """The synthetic model with the decode + NMS tail (batch 1), cached in ``cache_dir()``."""
    return synthetic_model_path(SEED, full_graph=True)


@pytest.fixture(scope="session")
def test_images() -> np.ndarray:
    """Two different (2, 3, 1200, 1200) float32 images of seeded standard-normal noise
    (the scale of normalized RGB)."""
    return np.random.default_rng(1234).standard_normal((2, 3, 1200, 1200), dtype=np.float32)


@pytest.fixture(scope="session")
def heads_session(synthetic_heads_path) -> Session:
    """One onnxruntime fp32 CPU session (the faithful reference) over the synthetic heads model
    for the whole test run."""
    with create(synthetic_heads_path, device="cpu", engine="onnxruntime", precision="fp32") as session:
        yield session


@pytest.fixture(scope="session")
def heads_reference(heads_session, test_images) -> list[np.ndarray]:
    """The 12 heads of the synthetic heads model for ``test_images[:1]`` (one inference)."""
    return heads_session.run(test_images[:1])


@pytest.fixture(scope="session")
def full_session(synthetic_full_path) -> Session:
    """One onnxruntime CPU session over the synthetic full graph (decode + NMS tail, batch 1)."""
    with create(synthetic_full_path, device="cpu", engine="onnxruntime") as session:
        yield session


@pytest.fixture(scope="session")
def photo_paths() -> list[Path]:
    """Two real COCO val2017 photos; skips when ../shared is absent."""
    paths = [COCO_IMAGES / name for name in ("000000000802.jpg", "000000001490.jpg")]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"shared COCO photos not found in {COCO_IMAGES}")
    return paths


@pytest.fixture(scope="session")
def photo_batch(photo_paths) -> tuple[np.ndarray, list]:
    """The two photos preprocessed: ``(2, 3, 1200, 1200)`` float32 and their contexts."""
    from ssd_resnet34.image import preprocess

    return preprocess([str(p) for p in photo_paths])


@pytest.fixture(scope="session")
def photo_reference(heads_session, photo_batch) -> list[np.ndarray]:
    """onnxruntime fp32 heads of the two photos (one inference of a batch of 2)."""
    return heads_session.run(photo_batch[0])


@pytest.fixture(scope="session")
def openvino_engine(synthetic_heads_path):
    """``get(precision, mode="latency")``: an OpenVINO CPU engine over the synthetic heads model,
    compiled once per (precision, mode) for the whole run."""
    pytest.importorskip("openvino")
    opened = {}

    def get(precision: str, mode: str = "latency"):
        if (precision, mode) not in opened:
            opened[precision, mode] = create(synthetic_heads_path, device="cpu", engine="openvino",
                                             precision=precision, mode=mode)
        return opened[precision, mode]

    yield get
    for engine in opened.values():
        engine.close()
