"""The local backend's HTTP server: OpenAI's API over the store, the engine and the workers.

Owns everything about requests and answers: the ASGI app and its middleware stack (``app``,
``middleware``, ``access_log``), one router per OpenAI resource (``routes/``: files, uploads,
fine_tuning jobs, models, chat completions, tokenize, health, and the ``/_faults`` admin routes),
the state a running server shares (``context``: store, model catalog, validator, worker pool),
the model names it answers for (``catalog``), chat on top of the engine (``chat_service``), job
file validation (``validator``), who may reach it (``exposure``) and running it in the
foreground (``run``: ``serve()``, behind ``finetune-kit local serve``).

May import: the store, the engine, the worker pool, fault injection, ``finetune_kit.errors``,
``finetune_kit.data`` and the local backend's shared leaves (``settings``, ``api_errors``);
nothing imports the server but the backend's entry points (``LocalBackend``, the CLI). A new
route is a router module in ``routes/`` added to ``app``'s list, its request and answer models
in ``routes/schemas.py`` (``/openapi.json`` and the fuzz test read them).

Example:
    >>> import inspect
    >>> list(inspect.signature(serve).parameters)[:3]
    ['host', 'port', 'data_dir']
"""

from __future__ import annotations

from .run import default_data_dir, serve

__all__ = ["default_data_dir", "serve"]
