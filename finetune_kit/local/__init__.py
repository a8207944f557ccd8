"""The local backend: an OpenAI-compatible fine-tuning server that really trains, offline.

``LocalBackend`` runs the server in-process on a free port and gives a configured ``openai``
client; ``finetune_kit.local.server.serve`` runs it in the foreground (``finetune-kit local
serve``). Fault injection (``FaultInjector``, ``RemoteFaults``) makes requests fail on purpose,
for tests of retry logic.

One folder per capability, each importing only those below it: ``server/`` (HTTP) over
``worker/`` (job processes) over ``store/`` (SQLite and blobs) and ``engine/`` (models, training,
generation); ``faults/`` beside them. At the top sit the entry points (this module,
``backend``) and the leaves every folder may import (``settings``, ``api_errors``).

May import, from outside: ``finetune_kit.errors``, ``finetune_kit.data``, ``finetune_kit.graders``
and two leaves of shared infrastructure (``_version``, ``_served``); never the services, the
session or the CLI (``tests/local/test_layout.py`` checks every edge).

Example:
    >>> from finetune_kit.local import LocalBackend
    >>> with LocalBackend(default_model="tiny-random") as backend:  # doctest: +SKIP
    ...     job = backend.client().fine_tuning.jobs.list()
"""

from __future__ import annotations

from .backend import LocalBackend
from .faults import Fault, FaultInjector, RemoteFaults, RequestRecord
from .server import serve
from .settings import RequestLimits, ServerSettings

__all__ = [
    "Fault",
    "FaultInjector",
    "LocalBackend",
    "RemoteFaults",
    "RequestLimits",
    "RequestRecord",
    "ServerSettings",
    "serve",
]
