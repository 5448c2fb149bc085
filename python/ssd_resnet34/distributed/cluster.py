"""Connecting to a Ray cluster, or starting a local one, for the length of a run.

Ray is an optional dependency (``pip install 'ssd-resnet34[ray]'``); :func:`require_ray` imports
it on first use and says which extra to install when it is missing. Nothing here runs at import.
"""

from __future__ import annotations

import os
import socket
import sys
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


def check_reachable(address: str, timeout: float) -> None:
    """Fail fast when nothing accepts a TCP connection at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``; ``auto`` is not checked): Ray itself retries such an address forever.

    Raises ``ConnectionError`` naming the address, what happened (refused, no answer within
    ``timeout`` seconds, unknown host) and what to check; ``ValueError`` for an address with no port.
    """
    if address == "auto":
        return
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--ray address {address!r}: expected 'auto', 'HOST:PORT' or 'ray://HOST:PORT' with a port "
                         "in 1..65535")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except socket.timeout:
        why = f"no answer within {timeout:g} s (${CONNECT_TIMEOUT_ENV_VAR} sets the wait)"
    except ConnectionRefusedError:
        why = "connection refused: nothing listens on that port"
    except socket.gaierror as error:
        why = f"unknown host ({error.strerror or error})"
    except OSError as error:
        why = error.strerror or str(error)
    else:
        return
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
    may take to accept a TCP connection before the run fails (:func:`check_reachable`; None:
    ``$SSD_RESNET34_RAY_CONNECT_TIMEOUT``, else 30), since Ray retries an unreachable address
    forever. Raises ``ImportError`` without Ray, ``TypeError``/``ValueError`` for a bad
    ``address``, ``ConnectionError`` when nothing answers at ``address``, and what ``ray.init``
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
