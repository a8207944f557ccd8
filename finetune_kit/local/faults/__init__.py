"""Fault injection: make chosen requests to the local backend fail on purpose, for tests.

Owns what a fault is and when it strikes (``injector``: ``FaultInjector``, ``Fault``, the request
log), how it strikes a real connection (``middleware``: the ASGI layer outside the whole app) and
how a test in another process steers it (``remote``: ``RemoteFaults`` over HTTP). The server
mounts the middleware and the ``/_faults`` admin routes (``server/routes/faults.py``).

May import: ``finetune_kit.errors`` and the local backend's shared leaves (``api_errors``);
never the server, worker, store or engine (they import this, not the other way round).

Example:
    >>> faults = FaultInjector()
    >>> faults.script("GET", "/v1/models", ["503"])
    >>> faults.decide("GET", "/v1/models").fault.kind
    '503'
"""

from __future__ import annotations

from .injector import (
    Fault,
    FaultControl,
    FaultDecision,
    FaultInjector,
    FaultKind,
    FaultSpec,
    RequestRecord,
    compile_path,
)
from .remote import RemoteFaults

__all__ = [
    "Fault",
    "FaultControl",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "FaultSpec",
    "RemoteFaults",
    "RequestRecord",
    "compile_path",
]
