"""Write head-output fixtures for the Rust criterion benchmark (``benches/decoder.rs``).

    .venv/bin/python benches/make_fixtures.py [--out target/fixtures] [--images 4] [--dense 1]
        [--data ../shared/data]

Each fixture set is a folder ``<out>/<name>/`` with ``outputs_0.npy`` .. ``outputs_11.npy``: the
model card's 12 float32 NCHW tensors (class logits, then box offsets), batch axis first:

- ``coco_<image id>``: the oracle's outputs (the oracle's ``encode_ground_truth``) for
  the first ``--images`` images of the shared COCO val2017 subset, batch 1 (realistic: a few
  hundred candidates, clusters of boxes for NMS); ``synthetic_<k>`` instead when ``../shared``
  is absent;
- ``coco_batch8`` (or ``synthetic_batch8``): 8 such images in one batch;
- ``dense_<image id>`` (or ``dense_synthetic_<k>``): the first ``--dense`` images at the candidate
  density of a real trained model (``_common.dense_head_outputs``: the oracle plus N(0, 1) noise
  on every class logit, background logit shifted; 2,000-4,000 candidates), batch 1;
- ``random_logits``: Gaussian logits and offsets N(0, 1), batch 1 (the worst case for NMS).

Deterministic (fixed seeds). The default output folder is ``target/fixtures`` under the
repository root (git-ignored; never commit the fixtures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SHARED_DATA, candidate_count, dense_head_outputs, ground_truths, oracle  # noqa: E402


def write_set(out: Path, name: str, outputs) -> None:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for k, tensor in enumerate(outputs):
        np.save(folder / f"outputs_{k}.npy", np.ascontiguousarray(tensor, dtype=np.float32))
    print(f"{folder}: batch {outputs[0].shape[0]}, {candidate_count(outputs)} candidates in item 0")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "target" / "fixtures")
    parser.add_argument("--images", type=int, default=4, help="single-image COCO sets")
    parser.add_argument("--dense", type=int, default=1, help="single-image dense sets")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)

    description, truths = ground_truths(args.data, max(args.images, 8))
    print(f"ground truth: {description}")
    batch_name = truths[0][0].split("_")[0] + "_batch8"
    for n, (name, boxes, labels) in enumerate(truths[: args.images]):
        write_set(args.out, name, oracle.encode_ground_truth_batch([(boxes, labels)], seed=n))
    write_set(args.out, batch_name,
              oracle.encode_ground_truth_batch([t[1:] for t in truths[:8]], seed=0))
    for n, (name, boxes, labels) in enumerate(truths[: args.dense]):
        dense_name = "dense_" + name.removeprefix("coco_")
        write_set(args.out, dense_name, dense_head_outputs(boxes, labels, seed=n))
    write_set(args.out, "random_logits", oracle.random_head_outputs(1, seed=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
