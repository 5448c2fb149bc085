"""Detection over an image set with Ray Data: the dataset, the run, and its output folder.

``read_binary_files`` (the files' bytes, read on the nodes) -> ``map_batches(ImageDetector)`` on
an autoscaling pool of actors (one model and engine each; ``num_gpus=1`` per actor for a GPU
device) -> rows of per-image detections, collected by the driver in input order. Ray Data retries
the tasks of an actor that dies (``max_restarts`` / ``max_task_retries``); the driver keeps one
result per image and counts what it received, so nothing is lost or counted twice unnoticed.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..engines import AUTO, CUDA_DEVICES, THROUGHPUT
from ..image.listing import display_path
from .cluster import cluster_resources, ray_session, require_ray, resolve_address
from .inputs import Inputs, list_inputs, read_key
from .worker import ImageDetector, ModelSpec

__all__ = ["DetectionRun", "ImageDetections", "build_dataset", "detect_dataset"]

#: CPUs Ray Data reserves per read task: reading bytes is I/O, and the actors may hold every
#: CPU of the cluster (a read task waiting for a CPU would stall the run) ...
READ_CPUS = 0.0
#: ... so their number is capped instead: read tasks at once per actor (each may need a worker
#: process of its own; two keep an actor fed from object storage's per-request latency).
READ_TASKS_PER_WORKER = 2
#: Tasks queued per actor: one running, one whose input is being fetched (more would starve
#: actors that start later on a small set).
TASKS_IN_FLIGHT_PER_ACTOR = 2


@dataclass
class ImageDetections:
    """One input's outcome from the cluster.

    ``index``: its position in the run's inputs; ``path``: the file as the user named it;
    ``width``/``height``: the image size in pixels (None when it could not be read);
    ``detections``: its COCO results records without ``image_id`` (``category_id``, ``bbox``
    ``[x, y, w, h]`` in pixels, ``score``), score descending; ``error``: ``"path: reason"``
    when it could not be processed (then ``detections`` is empty).
    """

    index: int
    path: str
    width: Optional[int] = None
    height: Optional[int] = None
    detections: List[Dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def coco_records(self, image_id: int) -> List[Dict[str, Any]]:
        """Its COCO results records with ``image_id``, key for key as
        :func:`ssd_resnet34.output.coco_results.to_coco_results` writes them."""
        return [{"image_id": image_id, **record} for record in self.detections]


@dataclass
class DetectionRun:
    """What a distributed run gave.

    ``images``: one :class:`ImageDetections` per input file, in input order (after an
    interruption, only those finished); ``errors``: ``"input: reason"`` for every input that
    was missing or could not be processed; ``rows``: the result rows the cluster returned (one
    per file read: equal to ``len(images)`` when nothing was lost or duplicated);
    ``duplicates``: rows for an image already received (dropped; 0 expected); ``workers``: the
    actor pool's largest size; ``seconds``: wall time of the Ray Data execution; ``interrupted``:
    Ctrl-C stopped it; ``out`` / ``files``: the output folder and the files written there
    (when written, ``run.json`` last); ``description``: those files as ``detect``'s closing line
    names them.
    """

    images: List[ImageDetections]
    errors: List[str]
    rows: int
    duplicates: int
    workers: int
    seconds: float
    interrupted: bool = False
    out: Optional[Path] = None
    files: List[Path] = field(default_factory=list)
    description: str = ""

    @property
    def processed(self) -> int:
        """Images processed (detections found, possibly none)."""
        return sum(1 for image in self.images if image.ok)

    @property
    def num_detections(self) -> int:
        return sum(len(image.detections) for image in self.images if image.ok)


# -- arguments -------------------------------------------------------------------------------
def _positive_int(name: str, value: Any, allow_none: bool = True) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")
    return value


def _non_negative(name: str, value: Any, allow_none: bool = True) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_engine_options(device: Any, options: Dict[str, Any]) -> None:
    from .. import engines

    engines.choice("device", device, engines.DEVICES)
    accepted = set(inspect.signature(engines.create).parameters) - {"model", "device"}
    for key in options:
        if key not in accepted:
            raise TypeError(f"unknown engine option {key!r}: ssd_resnet34.engines.create accepts "
                            f"{', '.join(sorted(accepted))}")


def _model_spec(model: Any, model_path: Any, synthetic: bool, seed: int, verify: bool, use_native: bool,
                score_threshold: float, clip: bool = False) -> ModelSpec:
    chosen = [name for name, given in (("model", model is not None), ("model_path", model_path is not None),
                                       ("synthetic", bool(synthetic))) if given]
    if len(chosen) > 1:
        raise ValueError(f"give at most one of model, model_path and synthetic, got {' and '.join(chosen)}")
    if model is not None:
        return dataclasses.replace(ModelSpec.from_model(model), clip=bool(clip))
    if synthetic:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        return ModelSpec("synthetic", seed=seed, use_native=use_native, score_threshold=score_threshold,
                         clip=bool(clip))
    if model_path is not None and not isinstance(model_path, (str, os.PathLike)):
        raise TypeError(f"model_path must be a str or os.PathLike, got {type(model_path).__name__}")
    return ModelSpec("official", None if model_path is None else os.fspath(model_path), verify=bool(verify),
                     use_native=use_native, score_threshold=score_threshold, clip=bool(clip))


# -- the dataset -----------------------------------------------------------------------------
def build_dataset(
    sources: Sequence[str],
    spec: ModelSpec,
    *,
    workers: int = 1,
    batch_size: int = 1,
    device: str = AUTO,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    images_per_task: Optional[int] = None,
    max_restarts: Optional[int] = None,
    engine_options: Optional[Dict[str, Any]] = None,
) -> Any:
    """The lazy ``ray.data.Dataset`` of per-image detections for ``sources``.

    Args:
        sources: files Ray Data can read: absolute local paths (seen by every node) or URIs
            (``s3://bucket/key.jpg``); see :func:`ssd_resnet34.distributed.inputs.list_inputs`.
        spec: the model each actor builds (:class:`~ssd_resnet34.distributed.worker.ModelSpec`).
        workers: the actor pool autoscales from 1 to ``workers`` actors.
        batch_size: images per engine call inside an actor.
        device: the engines' device on the nodes.
        cpus_per_worker, gpus_per_worker: Ray resources per actor (``num_cpus``, ``num_gpus``).
        images_per_task: images per ``map_batches`` call, the unit of load balancing and of
            retry (default ``4 * batch_size``).
        max_restarts: restarts of a dead actor (None: Ray Data's default, -1 = always; the
            tasks it was running are retried on the restarted or another actor).
        engine_options: keyword arguments for :func:`ssd_resnet34.engines.create`, unchanged.

    Rows: :func:`ssd_resnet34.distributed.worker.result_schema`. Write them where you like
    (``.write_parquet("s3://bucket/run/")``) or iterate them (as :func:`detect_dataset` does).
    Needs Ray connected (or starts a local instance, as any Ray Data call).
    """
    ray = require_ray()
    images_per_task = images_per_task or 4 * batch_size
    remote_args: Dict[str, Any] = {}
    if max_restarts is not None:
        remote_args["max_restarts"] = max_restarts
    sources = list(sources)
    files = ray.data.read_binary_files(sources, include_paths=True, ignore_missing_paths=True, num_cpus=READ_CPUS,
                                       concurrency=max(1, min(READ_TASKS_PER_WORKER * workers, len(sources))))
    return files.map_batches(
        ImageDetector,
        fn_constructor_kwargs={"spec": spec, "device": device, "batch_size": batch_size,
                               "engine_options": dict(engine_options or {})},
        batch_size=images_per_task,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers,
                                           max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT_PER_ACTOR),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
        **remote_args,
    )


def _collect(dataset: Any, inputs: Inputs) -> tuple:
    """Iterate the dataset's rows into one :class:`ImageDetections` per input; returns
    ``(by_index, rows, duplicates, interrupted)``."""
    index_of = inputs.index_by_key()
    by_index: Dict[int, ImageDetections] = {}
    rows = duplicates = 0
    try:
        for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            for row in table.to_pylist():
                rows += 1
                index = index_of.get(read_key(row["path"]))
                if index is None:
                    raise RuntimeError(f"Ray Data returned a file that is not an input: {row['path']!r}")
                if index in by_index:
                    duplicates += 1
                    continue
                path = inputs.paths[index]
                records = [{key: value for key, value in record.items() if key != "image_id"}
                           for record in row["detections"] or []]
                by_index[index] = ImageDetections(
                    index, path, row["width"], row["height"], records,
                    None if row["error"] is None else f"{display_path(path)}: {row['error']}",
                )
    except KeyboardInterrupt:
        return by_index, rows, duplicates, True
    return by_index, rows, duplicates, False


def detect_dataset(
    paths_or_uri: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
    out: Union[str, "os.PathLike[str]", None],
    *,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    batch_size: int = 1,
    device: str = AUTO,
    model: Any = None,
    model_path: Union[str, "os.PathLike[str]", None] = None,
    synthetic: bool = False,
    seed: int = 0,
    verify: bool = True,
    use_native: bool = True,
    score_threshold: float = 0.05,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: Optional[float] = None,
    images_per_task: Optional[int] = None,
    max_restarts: Optional[int] = None,
    limit: Optional[int] = None,
    clip: bool = False,
    progress: bool = True,
    runtime_env: Optional[dict] = None,
    **engine_options: Any,
) -> DetectionRun:
    """Detect objects in every image of ``paths_or_uri`` on a Ray cluster and write ``out/``.

    Args:
        paths_or_uri: image files, folders (their image files, sorted, as ``detect``), or URIs
            of objects or prefixes (``s3://bucket/val2017/``, ``gs://...``, ``file:///...``);
            one or a sequence. Local paths must be visible to every node.
        out: the output folder on the driver (created if needed); None writes nothing (the
            results are in the returned run only).
        address: None starts a local Ray instance for the run (loopback only) and stops it;
            ``"auto"``, ``"HOST:6379"`` or ``"ray://HOST:10001"`` connect to a cluster (inside
            ``ray job submit``, Ray is already initialized and that connection is used).
        workers: the actor pool autoscales from 1 to ``workers`` actors (default: as many as
            the cluster's GPUs, or CPUs / ``cpus_per_worker``; never more than there are tasks).
        batch_size: images per engine call in an actor (as ``detect --batch-size``).
        device: the engines' device (``"cpu"``, ``"cuda"``, ``"tensorrt"``, ``"auto"``); a
            CUDA device gives each actor ``num_gpus=1`` unless ``gpus_per_worker`` says otherwise.
        model, model_path, synthetic, seed, verify: the model, at most one of: an
            ``SSDResNet34`` (its heads file must be visible to every node), the official file
            (``SSDResNet34.load(model_path, verify=verify)`` on each node; None finds or
            downloads it), or ``synthetic=True`` (random weights from ``seed``: boxes are noise).
        use_native, score_threshold: the postprocessor (as ``SSDResNet34``).
        cpus_per_worker, gpus_per_worker: Ray resources of each actor (default 1 CPU; 1 GPU for
            a CUDA device). On CPU, the engine gets ``threads=int(cpus_per_worker)`` unless
            ``threads`` is given.
        images_per_task: images per ``map_batches`` call: the unit of load balancing and of
            retry (default ``4 * batch_size``).
        max_restarts: restarts of an actor that dies (None: Ray Data's default, always); its
            tasks are retried, so a killed node or actor loses no image.
        limit: process only the first ``limit`` images.
        clip: clip each box to its image in the records (``detect --clip``; default: not clipped,
            as the MLPerf reference).
        progress: show Ray Data's progress bars.
        runtime_env: Ray runtime environment for the job (e.g. ``{"pip": ["ssd-resnet34"]}``).
        **engine_options: passed unchanged to :func:`ssd_resnet34.engines.create` on each actor
            (``engine``, ``threads``, ``mode``, and whatever else it accepts).

    Writes, as one set (:class:`ssd_resnet34.output.run_folder.RunFolder`), like ``detect``:
    ``detections.json`` (COCO results of every processed image, in input order: byte for byte
    what ``ssd-resnet34 detect`` writes for the same images and model), ``image_ids.json`` when
    some names are not COCO names, ``detections.parquet`` (one row per image: ``path``,
    ``image_id``, ``width``, ``height``, ``error``, ``detections`` = its COCO records) and
    ``run.json``. No drawings. A run that processed no image leaves ``out`` as it was
    (``files`` is then empty). A bad image is an error in the result (and in the Parquet file);
    the others are processed.

    Returns the :class:`DetectionRun`. Raises ``ImportError`` without Ray (naming the
    ``ssd-resnet34[ray]`` extra), ``TypeError``/``ValueError`` naming a bad argument,
    ``ValueError`` when no input names an image file, ``OSError`` when ``out`` cannot be used,
    ``RuntimeError`` when an actor cannot load the model or open its engine (the message ends
    with the node's error, e.g. ``FileNotFoundError: model file not found: ...``), and what Ray
    raises when the cluster fails.
    """
    from ..output.run_writer import RunWriter, detection_formats

    if out is not None:
        if not isinstance(out, (str, os.PathLike)):
            raise TypeError(f"out must be a str or os.PathLike folder, or None, got {type(out).__name__}")
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"the output folder {out} is a file")
    resolve_address(address)  # TypeError / ValueError for a bad one, before anything starts
    _positive_int("batch_size", batch_size, allow_none=False)
    _positive_int("workers", workers)
    _positive_int("images_per_task", images_per_task)
    _positive_int("limit", limit)
    cpus = _non_negative("cpus_per_worker", cpus_per_worker, allow_none=False)
    gpus = _non_negative("gpus_per_worker", gpus_per_worker)
    if max_restarts is not None and (isinstance(max_restarts, bool) or not isinstance(max_restarts, int)
                                     or max_restarts < -1):
        raise ValueError(f"max_restarts must be an int >= -1 (-1: always restart) or None, got {max_restarts!r}")
    _check_engine_options(device, engine_options)
    spec = _model_spec(model, model_path, synthetic, seed, verify, use_native, score_threshold, clip)
    inputs = list_inputs(paths_or_uri)
    if limit is not None:
        inputs.paths, inputs.sources = inputs.paths[:limit], inputs.sources[:limit]
    if not inputs.sources:
        raise ValueError("no image file to process: " + ("; ".join(inputs.errors) or "no input"))
    options = dict(engine_options)
    if device.lower() in ("cpu", "auto") and "threads" not in options:
        options["threads"] = max(1, int(cpus))  # one inference thread per CPU Ray gives the actor
    options.setdefault("mode", THROUGHPUT)  # each actor streams its share of the images
    run = _run(inputs, spec, address=address, workers=workers, batch_size=batch_size, device=device.lower(),
               cpus=cpus, gpus=gpus, images_per_task=images_per_task or 4 * batch_size,
               max_restarts=max_restarts, progress=progress, runtime_env=runtime_env, engine_options=options)
    processed = [image for image in run.images if image.ok]
    if out is None or not processed:
        return run
    run.out = out
    with RunWriter(out, "detect", detection_formats(inputs.paths, out, drawings=False, table=True)) as writer:
        for image in run.images:
            writer.add(image.path, width=image.width, height=image.height, records=image.detections, error=image.error)
        run.files = writer.commit({"images": writer.processed, "detections": writer.num_detections,
                                   "errors": len(run.errors), "interrupted": run.interrupted, "clipped": bool(clip), "ray": True,
                                   "workers": run.workers})
        run.description = writer.describe()
    return run


def _run(inputs: Inputs, spec: ModelSpec, *, address: Optional[str], workers: Optional[int], batch_size: int,
         device: str, cpus: float, gpus: Optional[float], images_per_task: int, max_restarts: Optional[int],
         progress: bool, runtime_env: Optional[dict], engine_options: Dict[str, Any]) -> DetectionRun:
    """Run the dataset on the cluster and gather one :class:`ImageDetections` per input."""
    local = resolve_address(address) is None
    with ray_session(address, runtime_env=runtime_env) as ray:
        if local:
            spec.build("cpu")  # build or check the model files once, in the cache the actors share
        resources = cluster_resources()
        if gpus is None:
            gpus = 1.0 if device in CUDA_DEVICES or (device == "auto" and resources.get("GPU")) else 0.0
        if workers is None:
            fits = resources.get("GPU", 0.0) // gpus if gpus else resources.get("CPU", 1.0) // max(cpus, 1e-9)
            workers = max(1, int(fits))
        workers = max(1, min(workers, math.ceil(len(inputs.sources) / images_per_task)))
        ray.data.DataContext.get_current().enable_progress_bars = bool(progress)
        dataset = build_dataset(inputs.sources, spec, workers=workers, batch_size=batch_size, device=device,
                                cpus_per_worker=cpus, gpus_per_worker=gpus, images_per_task=images_per_task,
                                max_restarts=max_restarts, engine_options=engine_options)
        start = time.perf_counter()
        try:
            by_index, rows, duplicates, interrupted = _collect(dataset, inputs)
        except ray.exceptions.ActorDiedError as error:
            if not getattr(error, "actor_init_failed", False):
                raise
            # Ray's message is the actor's whole traceback; its last line is the cause.
            cause = (getattr(error, "error_msg", "") or str(error)).strip().splitlines()[-1]
            raise RuntimeError(f"the detector could not start on the cluster (loading the model and opening its "
                               f"engine on a node failed): {cause}") from None
        seconds = time.perf_counter() - start

    images: List[ImageDetections] = []
    errors = list(inputs.errors)
    for index, path in enumerate(inputs.paths):
        image = by_index.get(index)
        if image is None:
            if interrupted:
                continue
            image = ImageDetections(index, path, error=f"{display_path(path)}: the cluster returned no result for it "
                                                       "(missing when Ray read it?)")
        images.append(image)
        if image.error is not None:
            errors.append(image.error)
    return DetectionRun(images, errors, rows, duplicates, workers, seconds, interrupted)
