#!/usr/bin/env bash
# GPU check of the onnxruntime engine: CUDA fp32 and fp16, TensorRT fp16 and int8, on the synthetic
# SSD-ResNet34 (random weights: its detections are meaningless; speeds and SQNR are real), at batch
# 1, 8 and 32; the heads' SQNR against onnxruntime CPU fp32 on the same images. Prints a markdown
# table (also written to $OUT/gpu_check.md when $OUT is set).
#
#     bash benches/gpu_check.sh                 # on a machine with an NVIDIA GPU, from the repo root
#
# Environment:
#   VENV=DIR            the venv to create or reuse (default .venv-gpu); made with
#                       --system-site-packages, so a preinstalled TensorRT/CUDA can serve
#   WHEELS=DIR          install offline from these wheels (pip --no-index --find-links DIR)
#   IMAGES=DIR          calibration and SQNR photos (default ../shared/data/coco-val2017-subset/images,
#                       then .gpu-check/images); random images when none is found (int8 is then
#                       calibrated on noise: its SQNR says little)
#   BATCHES="1 8 32"    batch sizes; REPEATS=5 timed runs per batch (after 2 warm-up runs)
#   GPU_CHECK_DRY_RUN=1 no installs, no GPU: run the same Python on the CPU provider with the
#                       current interpreter (batches 1 2, 1 repeat), to check the script itself
#
# Needs: python3 >= 3.9 with venv, an NVIDIA driver for CUDA 12. Installs numpy, onnx,
# opencv-python-headless, pillow, platformdirs, onnxruntime-gpu[cuda,cudnn] and tensorrt-cu12; the
# package itself runs from ./python (no Rust build). TensorRT engines (minutes to build) are cached
# in $SSD_RESNET34_CACHE_DIR/tensorrt (default ~/.cache/ssd-resnet34/tensorrt).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
export PYTHONPATH="$REPO/python${PYTHONPATH:+:$PYTHONPATH}"

if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    PYTHON=${PYTHON:-python3}
    BATCHES=${BATCHES:-"1 2"}
    REPEATS=${REPEATS:-1}
else
    VENV=${VENV:-.venv-gpu}
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv --system-site-packages "$VENV"
    fi
    PYTHON="$VENV/bin/python"
    PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check)
    if [[ -n "${WHEELS:-}" ]]; then
        PIP+=(--no-index --find-links "$WHEELS")
    fi
    if ! "${PIP[@]}" numpy onnx opencv-python-headless pillow platformdirs \
            "onnxruntime-gpu[cuda,cudnn]" tensorrt-cu12; then
        echo "gpu_check: could not install onnxruntime-gpu and tensorrt (no network? set WHEELS=DIR)" >&2
        exit 2
    fi
    # TensorRT's pip wheels keep libnvinfer in tensorrt_libs; onnxruntime's TensorRT provider dlopens it.
    TRT_LIBS=$("$PYTHON" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null || true)
    export LD_LIBRARY_PATH="${TRT_LIBS:+$TRT_LIBS:}${LD_LIBRARY_PATH:-}"
    BATCHES=${BATCHES:-"1 8 32"}
    REPEATS=${REPEATS:-5}
fi

IMAGES=${IMAGES:-}
for candidate in "$IMAGES" "$REPO/../shared/data/coco-val2017-subset/images" "$REPO/.gpu-check/images"; do
    if [[ -n "$candidate" && -d "$candidate" ]]; then IMAGES=$candidate; break; fi
done

export BATCHES REPEATS IMAGES GPU_CHECK_DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"
exec "$PYTHON" - <<'PY'
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels (onnxruntime >= 1.21)
    try:
        ort.preload_dlls()
    except Exception as error:  # noqa: BLE001 - reported, the providers then say what is missing
        print(f"gpu_check: preload_dlls: {error}", file=sys.stderr)

from ssd_resnet34.engines import create
from ssd_resnet34.evaluation.accuracy.compare import sqnr_db
from ssd_resnet34.model.quantize import quantize
from ssd_resnet34.model.synthetic import synthetic_model_path

dry = os.environ["GPU_CHECK_DRY_RUN"] == "1"
batches = [int(b) for b in os.environ["BATCHES"].split()]
repeats = int(os.environ["REPEATS"])
biggest = max(batches)
providers = ort.get_available_providers()
print(f"onnxruntime {ort.__version__}, providers {providers}", file=sys.stderr)
if not dry and "CUDAExecutionProvider" not in providers:
    sys.exit("gpu_check: this onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu and a CUDA 12 driver needed)")

model = synthetic_model_path(0)  # built from the official-like full graph: truncated, BatchNorms folded
folder = Path(os.environ.get("IMAGES") or "/nonexistent")
photos = sorted(folder.glob("*.jpg"))[:biggest + 4] if folder.is_dir() else []
if len(photos) >= 5:
    from ssd_resnet34.image import preprocess

    calibration, measured = photos[-4:], photos[:-4]
    images, _ = preprocess([str(p) for p in measured], exact=True)  # exact: no native extension needed
    source = f"{len(measured)} photos of {folder}"
else:
    calibration, measured = [], []
    images = np.random.default_rng(0).standard_normal((biggest, 3, 1200, 1200), dtype=np.float32)
    source = "random images (no photos found: set IMAGES=DIR)"
images = np.concatenate([images] * -(-biggest // len(images)))[:biggest]  # repeat to the largest batch
sqnr_images = images[:min(8, biggest)]

t0 = time.perf_counter()
with create(model, device="cpu", engine="onnxruntime", precision="fp32") as cpu:
    reference = cpu.run(sqnr_images)
print(f"CPU fp32 reference on {len(sqnr_images)} images: {time.perf_counter() - t0:.0f} s", file=sys.stderr)

targets = ["onnxruntime"] if dry else ["tensorrt"]  # TensorRT's int8: the symmetric QDQ model
if calibration:
    t0 = time.perf_counter()
    for target in targets:
        quantize(model, calibration, count=len(calibration), engine=target)
    print(f"int8 QDQ calibrated on {len(calibration)} photos: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
else:  # no photos: calibrate on noise images written as PNG files
    import cv2

    noise_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "gpu-check-noise"
    noise_dir.mkdir(exist_ok=True)
    noise = []
    for k in range(4):
        noise.append(noise_dir / f"noise{k}.png")
        cv2.imwrite(str(noise[-1]), np.random.default_rng(k).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    for target in targets:
        quantize(model, noise, count=4, engine=target)

configs = [("cuda", "fp32"), ("cuda", "fp16"), ("tensorrt", "fp16"), ("tensorrt", "int8")]
if dry:
    configs = [("cpu", "fp32"), ("cpu", "int8")]
rows = []
for device, precision in configs:
    t0 = time.perf_counter()
    try:
        engine = create(model, device=device, engine="onnxruntime", precision=precision, max_batch=biggest)
    except Exception as error:  # noqa: BLE001 - one failing configuration must not hide the others
        rows.append((device, precision, None, f"could not start: {type(error).__name__}: {error}"))
        continue
    with engine:
        heads = engine.run(sqnr_images)  # also the warm-up that builds TensorRT's engine
        started = time.perf_counter() - t0
        db = sqnr_db(reference, heads)
        for batch in batches:
            x = np.ascontiguousarray(images[:batch])
            for _ in range(2):
                engine.run(x)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                engine.run(x)
                times.append(time.perf_counter() - t)
            median = statistics.median(times)
            rows.append((device, precision, batch, dict(ms=1e3 * median, ips=batch / median, db=db, start=started,
                                                        providers=engine.providers[0])))

lines = [f"# GPU check: onnxruntime {ort.__version__} on the synthetic SSD-ResNet34 (random weights), "
         f"{source}; SQNR against CPU fp32 on {len(sqnr_images)} images", "",
         "| device | precision | provider | batch | ms / batch (median) | images/s | head SQNR dB (min..max) "
         "| start incl. engine build s |", "|---|---|---|---:|---:|---:|---|---:|"]
for device, precision, batch, r in rows:
    if batch is None:
        lines.append(f"| {device} | {precision} | - | - | - | - | {r} | - |")
    else:
        lines.append(f"| {device} | {precision} | {r['providers']} | {batch} | {r['ms']:.1f} | {r['ips']:.1f} | "
                     f"{min(r['db']):.1f}..{max(r['db']):.1f} | {r['start']:.0f} |")
text = "\n".join(lines)
print(text)
if os.environ.get("OUT"):
    Path(os.environ["OUT"], "gpu_check.md").write_text(text + "\n")
PY
