"""Detection on a Ray cluster (``ssd_resnet34.distributed``, ``detect/eval --ray``).

The cluster tests start a real Ray head node with 2 CPUs in a subprocess (``ray start --head
--block``), bound to the loopback interface only (``--node-ip-address=127.0.0.1`` and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which makes every Ray process listen on and talk to
127.0.0.1), with its own temp folder, ports and auth token, usage stats off; the runs connect to
it through its address. The head node is stopped at the end of the module, even on failure (SIGTERM to the
``ray start`` process, which stops the processes it started; SIGKILL to any of its session left).

Timing: the synthetic model costs 2-4 s per image here, so only the equality test and the
``eval --ray`` test use it (sharing one single-machine run); the others run small real ONNX
models with the 12 heads' shapes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from _models import tiny_heads_model
from ssd_resnet34 import SSDResNet34
from ssd_resnet34.cli import main
from ssd_resnet34.output.coco_results import assign_image_ids, to_coco_results, write_coco_results

from _paths import SHARED_DATA

DATA = SHARED_DATA
CAT = DATA / "images" / "cat.jpg"
COCO_IMAGES = DATA / "coco-val2017-subset" / "images"
COCO_ANNOTATIONS = DATA / "coco-val2017-subset" / "instances_val2017_subset.json"

HAVE_RAY = importlib.util.find_spec("ray") is not None  # not `import ray`: see _loopback_environment
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'ssd-resnet34[ray]')")
needs_data = pytest.mark.skipif(not (CAT.is_file() and COCO_IMAGES.is_dir()),
                                reason=f"shared test photos not found under {DATA}")


def _coco_photos(n: int) -> list:
    return sorted(COCO_IMAGES.glob("*.jpg"))[:n]


# -- the cluster -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _loopback_environment() -> dict:
    """The variables that keep Ray on 127.0.0.1, quiet and self-contained. They must be set
    before ``ray`` is imported in this process (Ray reads the cluster switch at import)."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # bind and advertise 127.0.0.1 only
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),  # not ~/.ray/auth_token: nothing written to $HOME
    }


class HeadNode:
    """A ``ray start --head --block`` subprocess in a session of its own; ``address`` is
    127.0.0.1:PORT."""

    def __init__(self, env: dict, num_cpus: int = 2) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="ssd-ray-", dir="/tmp")  # short: Unix socket paths
        self.address = f"127.0.0.1:{_free_port()}"
        ray = Path(sys.executable).with_name("ray")
        self.process = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
             f"--port={self.address.rsplit(':', 1)[1]}", f"--num-cpus={num_cpus}", "--num-gpus=0",
             "--include-dashboard=false", f"--dashboard-port={_free_port()}", "--disable-usage-stats",
             "--object-store-memory=500000000", f"--temp-dir={self.temp_dir}"],
            env={**os.environ, **env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "2"}, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        host, port = self.address.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with status {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Ray head node did not listen on {self.address} within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM to ``ray start`` (it stops the processes it started), then SIGKILL to any
        process of its session still alive (Ray's workers have their own process groups)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def session_pids(self) -> dict:
        """``{pid: process title}`` of the processes this head node started (its session)."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getsid(int(entry)) != self.process.pid:
                    continue
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except (OSError, ProcessLookupError):
                continue
        return found

    def busy_actor_pids(self) -> list:
        """The Ray Data actors of this cluster running a task (``ray::MapWorker(...).submit``)."""
        return [pid for pid, title in self.session_pids().items()
                if title.startswith("ray::MapWorker") and title.endswith(".submit")]


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU Ray head node on 127.0.0.1 for this module; stopped at the end, even on failure."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed (pip install 'ssd-resnet34[ray]')")
    env = _loopback_environment()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    if "ray" in sys.modules:  # imported earlier in this process: its cluster switch is already read
        import ray._private.ray_constants as constants

        assert not constants.ENABLE_RAY_CLUSTER, "ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0"
    head = HeadNode(env)
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- models and the single-machine reference -------------------------------------------------
def _slow_heads_model(path: Path, channels: int = 64, kernel: int = 7) -> Path:
    """The tiny heads model plus a costly convolution whose result is multiplied by 0 into the
    first head: the same detections, about 0.5 s per image on one core (time to kill an actor)."""
    tiny_heads_model(path)
    model = onnx.load(str(path))
    graph = model.graph
    weights = np.random.default_rng(1).standard_normal((channels, 3, kernel, kernel)).astype(np.float32)
    graph.initializer.extend([numpy_helper.from_array(weights, "slow_w"),
                              numpy_helper.from_array(np.zeros(1, np.float32), "slow_zero")])
    first = graph.output[0].name
    for node in graph.node:
        if first in node.output:
            node.output[list(node.output).index(first)] = "first_head"
    graph.node.extend([
        helper.make_node("Conv", ["image", "slow_w"], ["slow_conv"], pads=[kernel // 2] * 4),
        helper.make_node("ReduceMean", ["slow_conv"], ["slow_mean"], keepdims=1),
        helper.make_node("Mul", ["slow_mean", "slow_zero"], ["slow_nothing"]),
        helper.make_node("Add", ["first_head", "slow_nothing"], [first]),
    ])
    onnx.save(model, str(path))
    return path


def _single_machine_detections(model: SSDResNet34, paths: list, out: Path) -> bytes:
    """``detections.json`` as the single-machine pipeline (``iter_detect``) gives it."""
    done = [(outcome.source, outcome.results) for outcome in model.iter_detect([str(p) for p in paths])
            if outcome.ok]
    ids, _ = assign_image_ids([path for path, _ in done])
    write_coco_results(out, [record for path, found in done for record in to_coco_results(found, ids[path])])
    return out.read_bytes()


def _cli(*argv: str) -> tuple:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(list(argv))
    return status, stdout.getvalue(), stderr.getvalue()


# -- no cluster needed -----------------------------------------------------------------------
def test_importing_the_package_and_the_commands_does_not_import_ray():
    code = ("import sys; import ssd_resnet34, ssd_resnet34.distributed; from ssd_resnet34.cli import build_parser; "
            "build_parser(); from ssd_resnet34.distributed import ModelSpec, list_inputs; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_without_ray_the_error_names_the_extra(tmp_path, monkeypatch):
    from ssd_resnet34.distributed import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'ssd-resnet34\[ray\]'"):
        require_ray()


@pytest.mark.parametrize("options, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1"),
    ({"workers": 0}, ValueError, "workers must be an int >= 1"),
    ({"images_per_task": 2.5}, ValueError, "images_per_task"),
    ({"cpus_per_worker": -1}, ValueError, "cpus_per_worker must be a finite number >= 0"),
    ({"gpus_per_worker": "1"}, TypeError, "gpus_per_worker must be a number"),
    ({"max_restarts": -2}, ValueError, "max_restarts"),
    ({"device": "tpu"}, ValueError, "unknown device 'tpu'"),
    ({"precison": "fp16"}, TypeError, "unknown engine option 'precison'"),
    ({"model_path": "m.onnx"}, ValueError, "at most one of model, model_path and synthetic"),
    ({"synthetic": False, "model": "m.onnx"}, TypeError, "model must be an SSDResNet34"),
    ({"address": 6379}, TypeError, "address must be a str"),
])
def test_bad_arguments_are_refused_before_anything_starts(tmp_path, options, error, match):
    from ssd_resnet34.distributed import detect_dataset

    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(error, match=match):
        detect_dataset([str(tmp_path / "a.jpg")], tmp_path / "out", **{"synthetic": True, **options})


def test_bad_inputs_and_outputs_are_refused(tmp_path):
    from ssd_resnet34.distributed import detect_dataset

    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        detect_dataset([str(tmp_path)], tmp_path / "file", synthetic=True)
    with pytest.raises(TypeError, match="paths_or_uri must be a path"):
        detect_dataset(42, tmp_path / "out", synthetic=True)
    with pytest.raises(ValueError, match="paths_or_uri is empty"):
        detect_dataset([], tmp_path / "out", synthetic=True)
    with pytest.raises(ValueError, match="mixes file systems"):
        detect_dataset([str(tmp_path), "s3://bucket/images/"], tmp_path / "out", synthetic=True)
    with pytest.raises(ValueError, match=r"no image file to process: .*missing.jpg: no such file"):
        detect_dataset([str(tmp_path / "missing.jpg")], tmp_path / "out", synthetic=True)


@needs_data
def test_bytes_read_elsewhere_decode_as_the_file_reads(tmp_path):
    """What the actors decode (``EncodedImage``: bytes Ray Data read) is what ``detect`` reads."""
    from ssd_resnet34.image import EncodedImage, ImageError, decode_image, load_image, read_image

    data = CAT.read_bytes()
    assert np.array_equal(decode_image(data, "s3://b/cat.jpg"), read_image(CAT))
    image, context = load_image(EncodedImage("s3://b/cat.jpg", data))
    assert np.array_equal(image, read_image(CAT))
    assert context == {"width": image.shape[1], "height": image.shape[0], "file_name": "cat.jpg",
                       "path": "s3://b/cat.jpg"}
    with pytest.raises(ImageError, match=r"^s3://b/cut.jpg: truncated JPEG"):
        decode_image(data[:4000], "s3://b/cut.jpg")
    with pytest.raises(ImageError, match="empty file"):
        decode_image(b"", "x.jpg")
    with pytest.raises(TypeError, match="data must be bytes, got str"):
        decode_image("not bytes", "x.jpg")


@needs_data
def test_inputs_are_listed_in_the_order_of_detect(tmp_path):
    from ssd_resnet34.image.listing import list_images
    from ssd_resnet34.distributed import list_inputs
    from ssd_resnet34.distributed.inputs import read_key

    local = list_inputs([str(COCO_IMAGES), str(CAT), str(CAT)])
    listing = list_images([str(COCO_IMAGES), str(CAT)])
    assert (local.paths, local.errors) == (listing.paths, listing.problems)
    assert local.sources == [os.path.abspath(p) for p in local.paths]
    uri = list_inputs([COCO_IMAGES.as_uri() + "/", CAT.as_uri(), (tmp_path / "nothing").as_uri()])
    assert uri.paths[:-1] == [p.as_uri() for p in sorted(COCO_IMAGES.glob("*.jpg"))]
    assert uri.paths[-1] == CAT.as_uri()
    assert uri.errors == [f"{(tmp_path / 'nothing').as_uri()}: no such file or folder"]
    # Ray Data reports a file:// object by its path: the key matches it to its input.
    assert read_key(CAT.as_uri()) == str(CAT) == read_key(str(CAT))


# -- on the cluster --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_folder_single_machine(tmp_path_factory):
    """6 COCO photos and a JPEG cut short in a folder, and ``detect FOLDER --synthetic --no-draw``
    run on it by the single-machine pipeline: ``(folder, out, status, stderr)``."""
    if not (CAT.is_file() and COCO_IMAGES.is_dir()):
        pytest.skip(f"shared test photos not found under {DATA}")
    root = tmp_path_factory.mktemp("coco6")
    photos = root / "photos"
    photos.mkdir()
    for photo in _coco_photos(6):
        shutil.copy(photo, photos / photo.name)
    (photos / "broken.jpg").write_bytes(_coco_photos(1)[0].read_bytes()[:5000])  # cut short
    status, _, stderr = _cli("detect", str(photos), "--synthetic", "--no-draw", "--out", str(root / "single"))
    return photos, root / "single", status, stderr


@needs_ray
def test_the_protocol_probe_accepts_a_real_ray_head_node(ray_cluster):
    """``--ray``'s probe before ray.init (the HTTP/2 client preface; Ray's GCS answers with its
    SETTINGS frame) passes a real head node's GCS port at once (test_ray_address.py: the ports it
    refuses)."""
    from ssd_resnet34.distributed.cluster import check_reachable

    start = time.monotonic()
    check_reachable(ray_cluster.address, 10)
    assert time.monotonic() - start < 10


@needs_ray
@needs_data
def test_detect_on_ray_equals_the_single_machine_run(ray_cluster, coco_folder_single_machine, tmp_path):
    """The synthetic model (the real topology), onnxruntime fp32: ``detect --ray ADDRESS`` writes
    byte for byte the ``detections.json`` of ``detect`` for 6 COCO photos, and a broken file among
    them is reported by both, the rest processed."""
    photos, single, status_single, err_single = coco_folder_single_machine
    ray = tmp_path / "ray"
    status, _, err_ray = _cli("detect", str(photos), "--synthetic", "--no-draw", "--out", str(ray),
                              f"--ray={ray_cluster.address}", "--ray-workers", "2")
    assert status == status_single == 1, err_ray
    broken = f"error: {photos / 'broken.jpg'}: truncated JPEG (no end-of-image marker; the file is cut short)\n"
    assert broken in err_single and broken in err_ray

    assert (ray / "detections.json").read_bytes() == (single / "detections.json").read_bytes()
    records = json.loads((ray / "detections.json").read_text())
    assert {r["image_id"] for r in records} == {int(p.stem) for p in _coco_photos(6)}
    manifest = json.loads((ray / "run.json").read_text())
    assert manifest["files"] == ["detections.json", "detections.parquet"]
    assert manifest["summary"]["images"] == 6 and manifest["summary"]["errors"] == 1


@needs_ray
@needs_data
def test_a_fifo_dev_zero_and_a_symlink_loop_behave_as_without_ray(ray_cluster, tmp_path):
    """Issue 15 items 9 and 11: named among the inputs, a FIFO and /dev/zero are "not a regular
    file"; in a folder, a symbolic link loop and a FIFO are reported and skipped; the good images
    are processed, with --clip, exactly as by the single-machine run (before: --ray printed only
    the path as the error and dropped the good images; the loop stopped the run)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in _coco_photos(2):
        shutil.copy(photo, photos / photo.name)
    os.symlink("b.jpg", photos / "a.jpg")
    os.symlink("a.jpg", photos / "b.jpg")
    os.mkfifo(photos / "f.jpg")
    named = tmp_path / "named.jpg"
    os.mkfifo(named)
    inputs = [str(photos), str(named), "/dev/zero", "--synthetic", "--no-draw", "--clip"]
    status_local, _, err_local = _cli("detect", *inputs, "--out", str(tmp_path / "local"))
    status_ray, _, err_ray = _cli("detect", *inputs, "--out", str(tmp_path / "ray"), f"--ray={ray_cluster.address}",
                                  "--ray-workers", "1")
    expected = [
        f"error: {named}: not a regular file (a FIFO)",
        "error: /dev/zero: not a regular file (a character device)",
        f"error: {photos / 'a.jpg'}: a symbolic link loop; skipped",
        f"error: {photos / 'b.jpg'}: a symbolic link loop; skipped",
        f"error: {photos / 'f.jpg'}: not a regular file (a FIFO); skipped",
    ]
    for status, err in ((status_local, err_local), (status_ray, err_ray)):
        assert status == 1, err
        assert [line for line in err.splitlines() if line.startswith("error: ")] == expected
    local = (tmp_path / "local" / "detections.json").read_bytes()
    assert (tmp_path / "ray" / "detections.json").read_bytes() == local
    assert {r["image_id"] for r in json.loads(local)} == {int(p.stem) for p in _coco_photos(2)}
    assert f"wrote {tmp_path / 'ray' / 'detections.json'} (" in err_ray and \
        f"{tmp_path / 'ray' / 'detections.parquet'}, {tmp_path / 'ray' / 'run.json'} (1 Ray worker, " in err_ray
    for run in ("local", "ray"):
        assert json.loads((tmp_path / run / "run.json").read_text())["summary"]["images"] == 2


@needs_ray
@needs_data
def test_eval_on_ray_gives_the_single_machine_records(ray_cluster, coco_folder_single_machine, tmp_path):
    """``eval --ray`` on the first 2 annotated images (by id: the first 2 photos above) gives the
    records the single-machine pipeline gave for them, and scores them."""
    _, single, _, _ = coco_folder_single_machine
    status, out, err = _cli("eval", "--images", str(COCO_IMAGES), "--annotations", str(COCO_ANNOTATIONS),
                            "--synthetic", "--limit", "2", "--out", str(tmp_path / "ray"), "--ray", ray_cluster.address)
    assert status == 0, err
    first_two = {int(p.stem) for p in _coco_photos(2)}
    expected = [r for r in json.loads((single / "detections.json").read_text()) if r["image_id"] in first_two]
    assert json.loads((tmp_path / "ray" / "coco_results.json").read_text()) == expected
    assert out.splitlines()[-1].startswith("mAP=")


@needs_ray
@needs_data
def test_bad_images_are_reported_and_the_rest_processed(ray_cluster, tmp_path):
    """On a local Ray instance that the run starts and stops (``address=None``; loopback only, from
    this module's environment), the images named by a ``file://`` folder URI."""
    import ray

    model = SSDResNet34(tiny_heads_model(tmp_path / "tiny.onnx"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in _coco_photos(4):
        shutil.copy(photo, photos / photo.name)
    shutil.copy(CAT, photos / "cat.jpg")
    (photos / "000000999999.jpg").write_text("not an image\n")
    (photos / "empty.png").write_bytes(b"")
    from ssd_resnet34.distributed import detect_dataset

    run = detect_dataset(photos.as_uri(), tmp_path / "out", model=model, workers=2, images_per_task=2,
                         progress=False)
    assert not ray.is_initialized()  # the local instance is gone
    assert run.processed == 5 and run.rows == 7 and run.duplicates == 0
    assert sorted(run.errors) == sorted([
        f"{photos.as_uri()}/000000999999.jpg: not an image (unrecognized format: the first bytes are no known "
        "image signature)",
        f"{photos.as_uri()}/empty.png: empty file (0 bytes)",
    ])
    good = [photos / name for name in sorted(os.listdir(photos))]
    expected = _single_machine_detections(model, good, tmp_path / "single.json")
    # file:// URIs name the images: same ids (COCO names, then running numbers), same bytes
    assert (tmp_path / "out" / "detections.json").read_bytes() == expected
    assert json.loads((tmp_path / "out" / "image_ids.json").read_text())["1"] == (photos / "cat.jpg").as_uri()

    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "out" / "detections.parquet").to_pylist()
    assert [row["path"] for row in rows] == [(photos / name).as_uri() for name in sorted(os.listdir(photos))]
    assert [row["error"] is None for row in rows] == [True, True, True, True, False, True, False]
    flat = [record for row in rows for record in row["detections"]]
    assert flat == json.loads(expected)


@needs_ray
@needs_data
def test_killing_an_actor_mid_run_loses_and_duplicates_no_image(ray_cluster, tmp_path):
    from ssd_resnet34.distributed import detect_dataset

    model = SSDResNet34(_slow_heads_model(tmp_path / "slow.onnx"))
    photos = _coco_photos(8)
    killed: list = []
    finished = threading.Event()

    def kill_one_busy_actor() -> None:
        seen: dict = {}
        while not finished.is_set() and not killed:
            now = time.monotonic()
            for pid in ray_cluster.busy_actor_pids():
                seen.setdefault(pid, now)
                if now - seen[pid] > 0.3:  # in the middle of its images: its task must be retried
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    break
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_busy_actor, daemon=True)
    killer.start()
    try:
        run = detect_dataset([str(p) for p in photos], tmp_path / "out", address=ray_cluster.address, model=model,
                             workers=2, images_per_task=1, progress=False)
    finally:
        finished.set()
        killer.join(timeout=10)
    assert killed, "no actor was killed during the run"
    assert not run.errors
    assert run.rows == len(photos) and run.duplicates == 0  # every image exactly once
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert sorted({r["image_id"] for r in records}) == sorted(int(p.stem) for p in photos)
    expected = json.loads(_single_machine_detections(model, photos, tmp_path / "single.json"))
    assert len(records) == len(expected) and records == expected



@needs_ray
@needs_data
def test_a_model_the_nodes_cannot_load_fails_the_run_with_its_error(ray_cluster, tmp_path):
    from ssd_resnet34.distributed import detect_dataset

    missing = SSDResNet34(tmp_path / "gone.onnx")  # the nodes do not have this file
    with pytest.raises(RuntimeError, match=r"could not start on the cluster .*FileNotFoundError: model file not "
                                           r"found: .*gone\.onnx"):
        detect_dataset([str(_coco_photos(1)[0])], tmp_path / "out", address=ray_cluster.address, model=missing,
                       progress=False)
    assert not (tmp_path / "out").exists()
