"""The native postprocessor gives the same bits with every SIMD kernel level: the decode of
dense, random and batched inputs in subprocesses whose kernels are capped by
``SSD_RESNET34_ISA`` (``portable``, ``avx2``, ``avx512``; a level the CPU lacks falls back to
the best it has) equals, bit for bit, the decode with the detected level."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from _paths import BENCHES

sys.path.insert(0, str(BENCHES))
from _common import dense_head_outputs, oracle  # noqa: E402

DECODE = """
import sys
import numpy as np
from ssd_resnet34 import _native

data = np.load(sys.argv[1])
outputs = [data[f"o{k}"] for k in range(12)]
detections = _native.Postprocessor().decode(outputs[:6], outputs[6:])
np.savez(sys.argv[2], *[array for image in detections for array in image])
"""


@pytest.fixture(scope="module")
def inputs():
    boxes, labels = oracle.random_ground_truth(10, seed=4)
    return {
        "dense": dense_head_outputs(boxes, labels, seed=4),
        "random": oracle.random_head_outputs(1, seed=6),
        "batch": oracle.encode_ground_truth_batch(
            [oracle.random_ground_truth(n, seed=n) for n in (3, 9)], seed=2),
    }


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512"])
def test_every_kernel_level_gives_the_same_bits(native, inputs, tmp_path, isa):
    pp = native.Postprocessor()
    for name, outputs in inputs.items():
        source = tmp_path / f"{name}.npz"
        np.savez(source, **{f"o{k}": t for k, t in enumerate(outputs)})
        result = tmp_path / f"{name}-{isa}.npz"
        env = dict(os.environ, SSD_RESNET34_ISA=isa)
        subprocess.run([sys.executable, "-c", DECODE, str(source), str(result)], env=env, check=True,
                       timeout=300)
        expected = [array for image in pp.decode(outputs[:6], outputs[6:]) for array in image]
        got = np.load(result)
        assert len(got.files) == len(expected)
        for k, array in enumerate(expected):
            assert len(array) > 0
            assert got[f"arr_{k}"].tobytes() == array.tobytes(), f"{name}, array {k}"
