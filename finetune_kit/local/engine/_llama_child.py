"""The llama.cpp engine process: the llama.cpp server embedded in the ``xllamacpp`` wheel.

``engine/llama_cpp.py`` runs this file by its path (``runpy``, the last argument ``SPEC``), so
the process imports nothing but the standard library and ``xllamacpp``: not the package, whose
import would cost the engine's start-up. ``SPEC`` is a JSON object: ``model`` (a GGUF file),
``adapters`` (GGUF LoRA adapters, loaded at scale 0: each request names its own), ``port``,
``slots`` (sequences decoded together), ``context`` (tokens of the KV cache), ``unified``
(one cache for all slots, else ``context`` split evenly between them), ``threads``
and ``parent`` (the pid to die with). The API key comes in ``$FINETUNE_KIT_LLAMA_KEY``, never on
the command line (which any local user can read).

The process serves until SIGTERM or SIGINT, or until its parent is gone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def _watch_parent(parent: int) -> None:
    # An orphaned engine would hold its memory and port forever: leave with the server.
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(1.0)


def main() -> None:
    """Start the server described by the last argument and serve until told to stop."""
    spec = json.loads(sys.argv[-1])
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = spec["model"]
    params.n_parallel = int(spec["slots"])
    params.n_ctx = int(spec["context"])
    params.kv_unified = bool(spec["unified"])
    params.cpuparams.n_threads = int(spec["threads"])
    params.cpuparams_batch.n_threads = int(spec["threads"])
    params.hostnames = ["127.0.0.1"]
    params.port = int(spec["port"])
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(path, 0.0) for path in spec["adapters"]]
    params.lora_init_without_apply = True
    key = os.environ.pop("FINETUNE_KIT_LLAMA_KEY", "")
    if key:
        params.api_keys = [key]
    params.verbosity = int(spec.get("verbosity", 2))
    threading.Thread(target=_watch_parent, args=(int(spec["parent"]),), daemon=True).start()
    server = xllamacpp.Server(params)
    print(f"finetune_kit llama.cpp engine listening on {server.listening_address}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    # The embedded server's threads are not joined on the way out; nothing is left to save.
    os._exit(0)


if __name__ == "__main__":
    main()
