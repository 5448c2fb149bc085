"""Shared pytest fixtures for the synthetic SSD-ResNet34 model (owned by the weights/session tests).

The synthetic model's detections are meaningless (random weights); it has the exact MLPerf
topology, so shapes, plumbing and timings are real. Each inference costs about 2 s on a
2-core CPU: share the sessions and the reference outputs below instead of running more.

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

#: Seed of the shared synthetic models.
SEED = 0


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
    """One CPU session over the synthetic heads model for the whole test run."""
    with create(synthetic_heads_path, device="cpu") as session:
        yield session


@pytest.fixture(scope="session")
def heads_reference(heads_session, test_images) -> list[np.ndarray]:
    """The 12 heads of the synthetic heads model for ``test_images[:1]`` (one inference)."""
    return heads_session.run(test_images[:1])


@pytest.fixture(scope="session")
def full_session(synthetic_full_path) -> Session:
    """One CPU session over the synthetic full graph (decode + NMS tail, batch 1)."""
    with create(synthetic_full_path, device="cpu") as session:
        yield session
