"""Reaching the Ray cluster from the bridge process: the address, a reachability check, the link.

A process connected to a Ray cluster is a Ray *driver*, and Ray terminates a driver whose
cluster goes away (after ``RAY_gcs_rpc_server_reconnect_timeout_s``; a Python ``except`` cannot
stop it), and ``ray.init`` towards an address where nothing listens may hang for minutes. So
only the bridge process connects, never the API server; it checks the GCS port with a plain TCP
connection first, and fails the job with a message saying what to start instead of hanging.

Example:
    >>> resolve_address("10.0.0.5:6379")
    '10.0.0.5:6379'
    >>> gcs_endpoint("ray://head:10001"), gcs_endpoint("auto")
    (('head', 10001), None)
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from ....errors import LocalBackendError

__all__ = [
    "DRIVER_ENVIRONMENT",
    "NAMESPACE",
    "ClusterUnreachableError",
    "check_reachable",
    "connect",
    "gcs_endpoint",
    "resolve_address",
]

logger = logging.getLogger("finetune_kit.local.worker")

NAMESPACE = "finetune_kit"
"""The Ray namespace of the job actors (``ftk-job-<job id>``)."""

DRIVER_ENVIRONMENT: Mapping[str, str] = {
    # Read by Ray when it is imported: set before the first ``import ray`` of the process.
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "RAY_TRAIN_V2_ENABLED": "1",
    # A lost cluster ends the bridge after this many seconds (Ray's default is 60); the pool
    # then starts another, which finds the cluster unreachable and fails the job saying so.
    "RAY_gcs_rpc_server_reconnect_timeout_s": "20",
}
"""Defaults for the bridge's environment; a value already set wins."""

_CHECK_TIMEOUT = 3.0


class ClusterUnreachableError(LocalBackendError):
    """The Ray cluster cannot be reached (nothing listens at its address, or it went away)."""


def resolve_address(configured: str | None) -> str:
    """The cluster to join: the configured address, else ``$RAY_ADDRESS``, else ``auto``.

    ``auto`` is Ray's own search for a cluster started on this machine with ``ray start``.
    """
    return configured or os.environ.get("RAY_ADDRESS") or "auto"


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """The ``(host, port)`` a TCP check can try, or ``None`` for ``auto`` (Ray resolves it)."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = _CHECK_TIMEOUT) -> None:
    """Open (and close) a TCP connection to the cluster's port.

    Raises:
        ClusterUnreachableError: Nothing answers there.
    """
    endpoint = gcs_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as exc:
        raise ClusterUnreachableError(unreachable_message(address, exc)) from exc


def unreachable_message(address: str, cause: object) -> str:
    """What a job that cannot reach its cluster says, with what to do."""
    return (
        f"The Ray cluster at {address} cannot be reached ({cause}): it went away or is not "
        "started. Start it (ray start --head on its head node) or point the server at a "
        "running one (--ray-address), then create the job again."
    )


def connect(address: str) -> None:
    """Join the cluster as a driver, once per process.

    Raises:
        ClusterUnreachableError: The cluster cannot be reached.
    """
    for name, value in DRIVER_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import ray

    if ray.is_initialized():
        return
    check_reachable(address)
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
        if gcs_endpoint(address) is None:  # "auto" found no cluster on this machine
            raise ClusterUnreachableError(unreachable_message(address, exc)) from exc
        # Its port answered the check above, so the cluster is there and turned this server
        # away: most often a token it does not accept (Ray only says it could not connect).
        raise ClusterUnreachableError(
            f"The Ray cluster at {address} answers but refused this server "
            f"({type(exc).__name__}: {exc}). A cluster with token authentication (Ray's "
            "default) needs its token in the server's environment: RAY_AUTH_TOKEN, or the "
            "same user's ~/.ray/auth_token on the head node's machine (see docs/scale-out.md, "
            "Security)."
        ) from exc
    logger.debug("connected to the Ray cluster at %s", address)
