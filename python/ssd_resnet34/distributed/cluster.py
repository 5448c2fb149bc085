"""Connecting to a Ray cluster, or starting a local one, for the length of a run.

Ray is an optional dependency (``pip install 'ssd-resnet34[ray]'``); :func:`require_ray` imports
it on first use and says which extra to install when it is missing. Nothing here runs at import.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

__all__ = ["CONNECT_TIMEOUT_ENV_VAR", "RAY_EXTRA", "check_reachable", "cluster_resources", "ray_session",
           "require_ray", "resolve_address"]

#: The optional dependency set that brings Ray Data.
RAY_EXTRA = "ssd-resnet34[ray]"
#: Environment variable: seconds to wait for a cluster's address to accept a connection (default 30).
CONNECT_TIMEOUT_ENV_VAR = "SSD_RESNET34_RAY_CONNECT_TIMEOUT"
_CONNECT_TIMEOUT = 30.0


def require_ray() -> Any:
    """``import ray`` and ``ray.data``; returns the ``ray`` module.

    Raises ``ImportError`` naming the extra to install (``pip install 'ssd-resnet34[ray]'``) when
    Ray or Ray Data is not installed.
    """
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data's own dependencies: pyarrow, pandas)
    except ImportError as error:
        raise ImportError(
            f"ssd_resnet34.distributed needs Ray Data, which is not installed ({error}); "
            f"install the extra: pip install '{RAY_EXTRA}'"
        ) from error
    return ray


def _check_address(address: Any) -> Optional[str]:
    if address is None:
        return None
    if not isinstance(address, str):
        raise TypeError(f"address must be a str (e.g. 'auto', 'HOST:6379', 'ray://HOST:10001') or None, "
                        f"got {type(address).__name__}")
    if not address.strip():
        raise ValueError("address is empty: give 'auto', 'HOST:PORT' or 'ray://HOST:PORT', or None for a "
                         "local Ray instance")
    return address.strip()


def resolve_address(address: Optional[str]) -> Optional[str]:
    """The cluster address a run connects to: ``address``, else ``$RAY_ADDRESS`` (set inside
    ``ray job submit``), else None (a local instance). Raises ``TypeError``/``ValueError`` for
    a bad ``address``."""
    address = _check_address(address)
    if address is None and os.environ.get("RAY_ADDRESS", "").strip():
        return os.environ["RAY_ADDRESS"].strip()
    return address


def _connect_timeout(timeout: Optional[float]) -> float:
    if timeout is None:
        text = os.environ.get(CONNECT_TIMEOUT_ENV_VAR, "").strip()
        try:
            timeout = float(text) if text else _CONNECT_TIMEOUT
        except ValueError:
            raise ValueError(f"${CONNECT_TIMEOUT_ENV_VAR} = {text!r}: expected a number of seconds > 0") from None
    if not timeout > 0 or timeout == float("inf"):
        raise ValueError(f"connect timeout = {timeout!r}: expected a finite number of seconds > 0")
    return float(timeout)


#: The HTTP/2 client connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


def _first_frame(sock: socket.socket, deadline: float) -> bytes:
    """Up to the 9 bytes of the server's first HTTP/2 frame header, read until ``deadline``
    (``time.monotonic()``); fewer when the server closes first. ``socket.timeout`` when it is silent."""
    sock.sendall(_HTTP2_PREFACE)
    answer = b""
    while len(answer) < 9:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout
        sock.settimeout(left)
        block = sock.recv(9 - len(answer))
        if not block:
            break
        answer += block
    return answer


def check_reachable(address: str, timeout: float) -> None:
    """Fail fast when ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``; ``auto`` is not checked) is
    not a Ray endpoint: Ray itself retries an address forever when nothing listens there, and waits
    forever on a port that accepts connections but is not Ray's.

    Within ``timeout`` seconds in all: a TCP connection, then a protocol probe. Ray's GCS (and the
    Ray Client server) speak gRPC over HTTP/2, so the probe sends the HTTP/2 client preface and
    needs the server's SETTINGS frame back; a silent server, a plain HTTP/1.1 server (a web server,
    Ray's dashboard on 8265) or one that closes the connection fails it. A gRPC server that is not
    Ray passes the probe and is left to ``ray.init``.

    Raises ``ConnectionError`` naming the address, what happened (refused, no answer within
    ``timeout`` seconds, unknown host, not Ray's protocol) and what to check; ``ValueError`` for an
    address with no port.
    """
    if address == "auto":
        return
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ray address {address!r}: expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT' with a port "
                         "in 1..65535")
    deadline = time.monotonic() + timeout
    connected = False
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            connected = True
            answer = _first_frame(sock, deadline)
    except socket.timeout:
        why = (f"the port accepts connections but sent nothing within {timeout:g} s, where Ray answers at once "
               f"(gRPC over HTTP/2): not a Ray port" if connected else
               f"no answer within {timeout:g} s") + f" (${CONNECT_TIMEOUT_ENV_VAR} sets the wait)"
    except ConnectionRefusedError:
        why = "connection refused: nothing listens on that port"
    except socket.gaierror as error:
        why = f"unknown host ({error.strerror or error})"
    except OSError as error:
        why = (f"the connection failed during the protocol check ({error.strerror or error}): not a Ray port"
               if connected else error.strerror or str(error))
    else:
        if len(answer) == 9 and answer[3] == _SETTINGS and answer[5:9] == bytes(4):
            return
        why = ("the port closed the connection without answering Ray's protocol (gRPC over HTTP/2)" if not answer
               else f"the port answered {answer!r}, which is not Ray's protocol (gRPC over HTTP/2): e.g. a web "
                    "server, or Ray's dashboard (8265)")
    raise ConnectionError(f"no Ray cluster at {address}: {why}; start one (ray start --head) or give the "
                          "address its head node prints (HOST:6379, or ray://HOST:10001 for Ray Client)")


@contextmanager
def ray_session(address: Optional[str] = None, *, num_cpus: Optional[int] = None,
                runtime_env: Optional[dict] = None, connect_timeout: Optional[float] = None) -> Iterator[Any]:
    """Ray connected for the block; yields the ``ray`` module.

    - Ray already initialized in this process (``ray.init`` was called, e.g. inside ``ray job
      submit``): that connection is used, and left open.
    - ``address`` given (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``): ``ray.init(address)``
      connects to that cluster; the block's end disconnects (the cluster keeps running).
    - ``address`` None and ``$RAY_ADDRESS`` set (as ``ray job submit`` does): that cluster, as
      for an ``address``.
    - ``address`` None otherwise: a local Ray instance is started on this machine (``num_cpus``: its CPUs,
      None for all) and shut down at the end of the block. It listens on the loopback interface
      only (127.0.0.1) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is set, and has no dashboard:
      a throwaway instance for one run is reachable from this machine alone.

    ``runtime_env``: Ray's runtime environment for the job (e.g. ``{"pip": ["ssd-resnet34"]}``
    when the cluster's nodes do not have the package). ``connect_timeout``: seconds an address
    may take to accept a TCP connection and answer as Ray (the HTTP/2 probe of
    :func:`check_reachable`) before the run fails (None: ``$SSD_RESNET34_RAY_CONNECT_TIMEOUT``,
    else 30), since Ray retries an unreachable address, and waits on a port that is not Ray's,
    forever. Raises ``ImportError`` without Ray, ``TypeError``/``ValueError`` for a bad
    ``address``, ``ConnectionError`` when nothing answers at ``address`` or it is not Ray's, and what ``ray.init``
    raises.
    """
    address = resolve_address(address)
    timeout = _connect_timeout(connect_timeout)
    if address is None and "ray" not in sys.modules:
        # Read once, when ray is imported: without it a local instance binds every interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict = {"runtime_env": runtime_env} if runtime_env else {}
    if address is None:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **options)
    else:
        check_reachable(address, timeout)
        ray.init(address=address, **options)
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_resources() -> dict:
    """The connected cluster's total resources (``{"CPU": 16.0, "GPU": 2.0, ...}``)."""
    return dict(require_ray().cluster_resources())
