"""Locust users for ``ssd-resnet34 serve``: each posts the shared COCO photos, in a closed loop
(no think time), to ``POST /v1/detect`` (one raw JPEG per request) and, every fourth request, to
the open inference protocol's ``POST /v2/models/ssd-resnet34/infer`` (a JSON request with one
image file as a ``BYTES`` tensor, base64 in JSON). A request counts as a failure unless it is a
200 whose answer has the detections (``count``).

Run by benches/load_serving.py (which starts the server and reads locust's CSV), or by hand:

    pip install locust
    SSD_RESNET34_DATA=../shared/data locust -f benches/locustfile.py --headless -u 8 -r 8 --run-time 30s --host http://127.0.0.1:8000

Locust runs on gevent and patches the standard library when it starts, so this file imports
nothing of ssd_resnet34 (only benches/_serving.py, which imports the standard library alone at
its top): locust is its own process. ``SSD_RESNET34_DATA``: the shared data folder, whose
``coco-val2017-subset/images`` are posted (default: ``../shared/data`` beside the repository, as the
other benches' ``--data``); ``SSD_RESNET34_PHOTO_COUNT``: how many of its photos (default 16).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serving import photo_payloads  # noqa: E402

#: The model's name on the server (``ServerSettings.model_name``).
MODEL = "ssd-resnet34"
_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _load_photos() -> list:
    data = Path(os.environ.get("SSD_RESNET34_DATA", _DEFAULT_DATA))
    payloads = photo_payloads(data, int(os.environ.get("SSD_RESNET34_PHOTO_COUNT", "16")))
    if not payloads:
        raise SystemExit(f"locustfile: no COCO photos under {data} (set SSD_RESNET34_DATA)")
    return payloads


def v2_body(image: bytes) -> bytes:
    """The JSON V2 infer request of one encoded image file as a ``BYTES`` tensor."""
    return json.dumps({"inputs": [{"name": "image_files", "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(image).decode("ascii")]}]}).encode()


PHOTOS = _load_photos()
V2_BODIES = [v2_body(photo) for photo in PHOTOS]  # encoded once: the load tool's own cost stays small


class DetectUser(FastHttpUser):
    """A client in a closed loop: post a photo, read the answer, post the next."""

    wait_time = constant(0)
    network_timeout = 120.0
    connection_timeout = 30.0

    def on_start(self) -> None:
        self._next = itertools.count(random.randrange(len(PHOTOS)))
        self._sent = itertools.count()

    @task
    def post_photo(self) -> None:
        """The next photo: to ``/v1/detect``, or every fourth request (the second, sixth, ...: each
        user sends both kinds from its second request on) as a V2 infer."""
        k = next(self._next) % len(PHOTOS)
        if next(self._sent) % 4 == 1:
            self.v2_infer(k)
        else:
            self.detect(k)

    def detect(self, k: int) -> None:
        with self.client.post("/v1/detect", data=PHOTOS[k], headers={"Content-Type": "image/jpeg"},
                              name="/v1/detect", catch_response=True) as reply:
            _check(reply, lambda doc: "count" in doc and "detections" in doc)

    def v2_infer(self, k: int) -> None:
        with self.client.post(f"/v2/models/{MODEL}/infer", data=V2_BODIES[k],
                              headers={"Content-Type": "application/json"}, name="/v2/models/[model]/infer",
                              catch_response=True) as reply:
            _check(reply, lambda doc: {"boxes", "count"} <= {o.get("name") for o in doc.get("outputs", [])})


def _check(reply, has_answer) -> None:
    if reply.status_code != 200:
        reply.failure(f"HTTP {reply.status_code}: {(reply.text or '')[:200]}")
        return
    try:
        ok = has_answer(reply.json())
    except ValueError:
        ok = False
    if ok:
        reply.success()
    else:
        reply.failure(f"a 200 without detections: {(reply.text or '')[:200]}")
