"""``ssd-resnet34 serve``: an HTTP detection service on the open inference protocol (KServe V2).

Endpoints: GET /v2/health/live, /v2/health/ready (ready once the engine is open and warmed up),
/v2/models/ssd-resnet34 (metadata), POST /v2/models/ssd-resnet34/infer (encoded images as a
BYTES tensor, or a preprocessed FP32 [N, 3, 1200, 1200] tensor with image_sizes; JSON or the
binary tensor extension), POST /v1/detect (one image: JSON detections in pixels, or ?draw=1 for
the drawn image), GET /metrics (Prometheus). Requests are batched dynamically (--max-batch,
--max-delay-ms); past --max-queue waiting images the answer is 503 with Retry-After.

Listens on 127.0.0.1 unless --host says otherwise. With --api-key (or $SSD_RESNET34_API_KEY)
every endpoint but the health checks needs "Authorization: Bearer <key>". SIGTERM or Ctrl-C
stops it gracefully (requests in flight are answered) with exit status 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ..pipeline import MAX_BATCH_SIZE
from ._common import (
    CommandError,
    add_model_arguments,
    int_at_least,
    load_model,
    non_negative_number,
    open_engine,
    positive_int,
    positive_number,
    probability,
)

__all__ = ["register", "run"]


def register(subparsers) -> None:
    from ..serving.settings import API_KEY_ENV, ServerSettings

    defaults = ServerSettings()
    parser = subparsers.add_parser(
        "serve", help="serve detections over HTTP (open inference protocol / KServe V2, and /v1/detect)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    net.add_argument("--port", type=int_at_least(0), default=8000, help="port (default 8000; 0: any free port)")
    net.add_argument("--workers", type=positive_int, default=1, metavar="N",
                     help="server processes, each with its own engine (default 1)")
    net.add_argument("--api-key", metavar="TOKEN",
                     help=f"require 'Authorization: Bearer TOKEN' (default: ${API_KEY_ENV}; none: no authentication)")
    net.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run as a Ray Serve deployment (pip install 'ray[serve]'): no ADDRESS starts a local Ray "
                     "instance on 127.0.0.1; 'auto' or HOST:6379 connect to a cluster")
    net.add_argument("--replicas", type=positive_int, default=1, metavar="N",
                     help="with --ray: replicas, one engine each (num_gpus=1 each on GPU devices; default 1)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch", type=int_at_least(1), default=defaults.max_batch, metavar="N",
                          help=f"images per engine batch, 1..{MAX_BATCH_SIZE} (default {defaults.max_batch})")
    batching.add_argument("--max-delay-ms", type=non_negative_number, default=defaults.max_delay_ms, metavar="MS",
                          help=f"how long a batch waits for more images when others are queued or in flight; a lone "
                               f"image on an idle server goes at once (default {defaults.max_delay_ms:g})")
    batching.add_argument("--max-queue", type=positive_int, default=defaults.max_queue, metavar="N",
                          help=f"images waiting at most; 503 + Retry-After beyond (default {defaults.max_queue})")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-body-mb", type=positive_number, default=defaults.max_body_bytes / 2**20, metavar="MB",
                        help=f"largest request body, MiB (413 beyond; default {defaults.max_body_bytes / 2**20:g})")
    limits.add_argument("--max-image-pixels", type=positive_int, default=defaults.max_image_pixels, metavar="N",
                        help=f"largest width x height an image may declare (413 beyond; default "
                             f"{defaults.max_image_pixels:,})")
    limits.add_argument("--max-images-per-request", type=positive_int, default=defaults.max_images_per_request,
                        metavar="N", help=f"images in one request at most (default {defaults.max_images_per_request})")
    limits.add_argument("--request-timeout", type=positive_number, default=defaults.request_timeout_s, metavar="S",
                        help=f"each request's deadline, seconds (504 beyond; default {defaults.request_timeout_s:g})")
    limits.add_argument("--body-timeout", type=positive_number, default=defaults.body_timeout_s, metavar="S",
                        help=f"the body must arrive within S seconds (408 beyond; default {defaults.body_timeout_s:g})")
    limits.add_argument("--max-connections", type=positive_int, default=defaults.max_connections, metavar="N",
                        help=f"concurrent connections at most (503 beyond; default {defaults.max_connections})")
    parser.add_argument("--score-threshold", type=probability, default=defaults.score_threshold, metavar="F",
                        help=f"default score threshold (requests may ask for another; default {defaults.score_threshold})")
    parser.add_argument("--exact", action="store_true", help="preprocess with MLPerf's float path as written (slower)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                        help="log level (default info: one access-log line per request)")
    parser.set_defaults(func=run)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    """Run ``serve`` with parsed ``args``; returns the exit status (0 after SIGTERM/SIGINT)."""
    from .. import serving
    from ..serving.settings import API_KEY_ENV, ServerSettings

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    try:
        settings = ServerSettings(
            max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, max_queue=args.max_queue,
            max_body_bytes=int(args.max_body_mb * 2**20), max_image_pixels=args.max_image_pixels,
            max_images_per_request=args.max_images_per_request, request_timeout_s=args.request_timeout,
            body_timeout_s=args.body_timeout, max_connections=args.max_connections, api_key=api_key,
            score_threshold=args.score_threshold, exact=args.exact)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if not _is_loopback(args.host) and api_key is None:
        print(f"warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
              file=sys.stderr)
    engine_options = {"device": args.device, "engine": args.engine, "precision": args.precision,
                      "threads": args.threads}
    if args.ray is not None:
        return _run_on_ray(args, settings, engine_options)
    if args.replicas != 1:
        raise CommandError("--replicas goes with --ray (without Ray, --workers N runs N processes)")
    try:
        sock = serving.bind(args.host, args.port)
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {error}") from None
    model = load_model(args, score_threshold=args.score_threshold)
    engine = open_engine(args, model) if args.workers == 1 else None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    where = f"{engine.name} {engine.device} {engine.precision}" if engine is not None else f"{args.workers} workers"
    print(f"serving {settings.model_name} on http://{shown}:{port} ({where}); ready at /v2/health/ready",
          file=sys.stderr, flush=True)
    return serving.serve(settings, model, engine=engine, engine_options=engine_options, workers=args.workers,
                         sock=sock, log_level=args.log_level)


def _run_on_ray(args: argparse.Namespace, settings, engine_options) -> int:
    """``serve --ray``: the same application as a Ray Serve deployment of ``--replicas`` replicas."""
    from ..serving.ray_serve import serve_on_ray

    if args.workers != 1:
        raise CommandError("--workers does not go with --ray: use --replicas N")
    if args.port == 0:
        raise CommandError("--ray needs a port (Ray Serve's proxy takes no port 0)")
    model = load_model(args, score_threshold=args.score_threshold)
    return serve_on_ray(settings, model, engine_options, address=args.ray or None, replicas=args.replicas,
                        host=args.host, port=args.port)
