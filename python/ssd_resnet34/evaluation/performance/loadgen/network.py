"""LoadGen over the network (MLPerf's network division, as ``loadgen/demos/lon/`` in
mlcommons/inference): :class:`NetworkSUT` sends each query's samples to a server on the open
inference protocol (``ssd-resnet34 serve``, or any V2 server with this model's tensors) and
answers LoadGen with the detections it returns.

The QSL is the same as in-process (:class:`~.qsl.ImageSampleLibrary`: the images preprocessed
into memory before the timed run), so the timed path is the server's: each request is a binary
V2 request (``Inference-Header-Content-Length``) of the samples' ``images`` (FP32
``[n, 3, 1200, 1200]``) with ``image_sizes`` ``[[1, 1], ...]``, so the ``boxes`` come back
normalized, exactly as the in-process SUT's. Requests run on ``concurrency`` client threads (one
kept-alive HTTP connection each, stdlib ``http.client``); Offline's samples go in requests of
``batch_size``, the other scenarios' one query per request.
"""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import numpy as np

from ....detections import Detections
from .qsl import ImageSampleLibrary
from .sut import Responder

__all__ = ["NetworkSUT", "infer_request", "parse_infer_response"]

_DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def infer_request(batch: np.ndarray) -> Tuple[bytes, Dict[str, str]]:
    """The binary V2 request body and headers for a preprocessed ``batch`` ((n, 3, 1200, 1200)
    float32), with ``image_sizes`` 1 x 1 (normalized boxes back), all outputs binary."""
    batch = np.ascontiguousarray(batch, dtype="<f4")
    sizes = np.ones((len(batch), 2), "<i4")
    header = json.dumps({
        "inputs": [
            {"name": "images", "shape": list(batch.shape), "datatype": "FP32",
             "parameters": {"binary_data_size": batch.nbytes}},
            {"name": "image_sizes", "shape": list(sizes.shape), "datatype": "INT32",
             "parameters": {"binary_data_size": sizes.nbytes}},
        ],
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("boxes", "labels", "scores", "count")],
    }).encode()
    return header + batch.tobytes() + sizes.tobytes(), {
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}


def parse_infer_response(body: bytes, header_length: Optional[str]) -> List[Detections]:
    """The detections of a V2 response of this model (``boxes``, ``labels``, ``scores``,
    ``count``; JSON or binary): one :class:`~ssd_resnet34.Detections` per image. Raises
    ``ValueError`` for a response that is not one."""
    length = int(header_length) if header_length is not None else len(body)
    document = json.loads(body[:length])
    arrays, offset = {}, length
    for output in document.get("outputs", []):
        dtype = _DTYPES.get(output["datatype"])
        if dtype is None:
            raise ValueError(f"unexpected datatype {output['datatype']} of output {output['name']!r}")
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            data = np.frombuffer(body, dtype=np.dtype(dtype).newbyteorder("<"), count=size // np.dtype(dtype).itemsize,
                                 offset=offset)
            offset += size
        else:
            data = np.asarray(output["data"], dtype=dtype)
        arrays[output["name"]] = data.astype(dtype).reshape(output["shape"])
    missing = {"boxes", "labels", "scores", "count"} - set(arrays)
    if missing:
        raise ValueError(f"the response lacks the outputs {sorted(missing)}")
    return [Detections(arrays["boxes"][i, :n].copy(), arrays["labels"][i, :n].copy(), arrays["scores"][i, :n].copy())
            for i, n in enumerate(arrays["count"].tolist())]


class NetworkSUT:
    """A LoadGen SUT whose inference is a V2 server at ``url`` (``http://host:port``).

    ``batch_size``: samples per request when a query has many (Offline); ``concurrency``: requests
    in flight at most; ``model``: the model's name on the server; ``api_key``: its bearer token.
    A failed request (a refused connection, a non-200 answer) is recorded in the responder, its
    samples answered empty so that LoadGen finishes, and raised by ``run_loadgen`` afterwards.
    """

    def __init__(self, library: ImageSampleLibrary, url: str, responder: Responder, *, batch_size: int = 1,
                 concurrency: int = 16, model: str = "ssd-resnet34", api_key: Optional[str] = None,
                 timeout_s: float = 600.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--sut-url must be http://HOST:PORT, got {url!r}")
        self.library, self.responder, self.batch_size = library, responder, batch_size
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = f"{parts.path.rstrip('/')}/v2/models/{model}/infer"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="ssd-resnet34-network-sut")
        self._local = threading.local()
        self._connections: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _post(self, body: bytes, headers: Dict[str, str]) -> Tuple[int, bytes, Optional[str]]:
        for attempt in (0, 1):  # a kept-alive connection the server closed: reconnect once
            connection = self._connection()
            try:
                connection.request("POST", self.path, body=body, headers={**headers, **self.headers})
                reply = connection.getresponse()
                return reply.status, reply.read(), reply.getheader("Inference-Header-Content-Length")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _send(self, samples: Sequence[Any]) -> None:
        try:
            if self.responder.error is not None:
                self.responder.respond(samples, None)
                return
            body, headers = infer_request(self.library.batch([s.index for s in samples]))
            status, content, header_length = self._post(body, headers)
            if status != 200:
                try:
                    message = json.loads(content).get("error", "")
                except ValueError:
                    message = content[:200].decode("utf-8", "replace")
                raise RuntimeError(f"the server at http://{self.host}:{self.port} answered {status}: {message}")
            found = parse_infer_response(content, header_length)
            if len(found) != len(samples):
                raise ValueError(f"the server answered {len(found)} images for {len(samples)}")
            self.responder.respond(samples, found)
        except BaseException as error:  # never let an exception reach LoadGen's threads
            self.responder.fail(error)
            self.responder.respond(samples, None)

    def issue_queries(self, samples: List[Any]) -> None:
        for start in range(0, len(samples), self.batch_size):
            self._pool.submit(self._send, samples[start:start + self.batch_size])

    def flush_queries(self) -> None:
        pass

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for connection in self._connections:
            connection.close()
