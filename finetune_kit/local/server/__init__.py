"""The local backend's HTTP server: OpenAI's API over the store, the engine and the workers.

Owns everything about requests and answers: the ASGI app and its middleware stack (``app``,
``middleware``, ``access_log``), one router per OpenAI resource (``routes/``) and the state a
running server shares (``context``: store, model catalog, validator, worker pool), the model
names it answers for (``catalog``), chat on top of the engine (``chat_service``), the judge
models of model graders (``grader_model``: chat with a model the server serves), job file
validation (``validator``), who may reach it (``exposure``) and running it in the foreground
(``run``: ``serve()``, behind ``finetune-kit local serve``).

The routes (``/openapi.json`` declares each, and ``tests/local/test_server.py`` checks the set):

- ``health``: ``GET /health``;
- ``files``: ``POST /v1/files``, ``GET /v1/files``, ``GET`` and ``DELETE /v1/files/{file_id}``,
  ``GET /v1/files/{file_id}/content``;
- ``uploads``: ``POST /v1/uploads``, ``/v1/uploads/{upload_id}/parts``, ``/complete``,
  ``/cancel``;
- ``jobs``: ``POST`` and ``GET /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs/{job_id}``,
  ``POST .../cancel``, ``.../pause``, ``.../resume``, ``GET .../events``, ``.../checkpoints``;
- ``weights`` (a local extension): ``GET /v1/models/{model}/weights`` (the forms a tuned
  model's weights come in) and ``GET /v1/models/{model}/weights/{format}`` (one, as a tar
  archive: ``adapter``, ``hf``, ``gguf``); its router goes before ``models``, whose
  ``{model:path}`` would take these URLs;
- ``models``: ``GET /v1/models``, ``GET`` and ``DELETE /v1/models/{model}``;
- ``chat``: ``POST /v1/chat/completions``;
- ``tokenize`` (a local extension): ``POST /v1/tokenize`` (and ``POST /tokenize``, vLLM's path,
  left out of the schema);
- ``graders``: ``POST /v1/fine_tuning/alpha/graders/run`` and ``.../graders/validate``;
- ``faults``, when fault injection is on: ``POST /_faults/script``, ``/_faults/probability``,
  ``/_faults/latency``, ``/_faults/clear``, ``GET /_faults/requests``.

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
