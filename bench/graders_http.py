"""``POST /v1/fine_tuning/alpha/graders/run`` throughput on the local backend, against the metric.

For ``string_check`` (``eq``) and ``text_similarity`` (``fuzzy_match``, ``bleu``, ``rouge_l``), on
the same pairs of sample and reference (bench/graders.py's), in one process:

- direct: the library call a user would make instead, on text already in hand (``==``,
  rapidfuzz ``WRatio``, sacrebleu ``sentence_bleu``, rouge-score ``RougeScorer.score``);
- http: ``client.fine_tuning.alpha.graders.run(...)`` with the official ``openai`` client, one
  request at a time, over real HTTP to the local backend's app on 127.0.0.1, served by uvicorn
  as ``finetune-kit local serve`` serves it (validation, compilation, grading, the JSON answer
  and its parsing by openai-python's own type, every request). ``--backend`` uses an in-process
  ``LocalBackend`` instead, which hands uvicorn a listening socket of its own.

Figures are per second, the ratio http / direct, and the load average next to them.
Run:  .venv/bin/python bench/graders_http.py [--pairs 200] [--seconds 2]
(figures go to bench/out/graders_http.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import openai
import uvicorn
from graders import direct_metric, pairs

from finetune_kit.local import LocalBackend
from finetune_kit.local.server.app import LocalApp
from finetune_kit.local.settings import ServerSettings

METRICS = ("fuzzy_match", "bleu", "rouge_l")


def grader(kind: str) -> dict[str, Any]:
    common = {"input": "{{sample.output_text}}", "reference": "{{item.reference}}"}
    if kind == "eq":
        return {"type": "string_check", "name": "eq", "operation": "eq", **common}
    return {"type": "text_similarity", "name": kind, "evaluation_metric": kind, **common}


def per_second(
    call: Callable[[str, str], Any], data: list[tuple[str, str]], seconds: float
) -> float:
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for sample, reference in data:
            call(sample, reference)
            done += 1
    return done / (time.perf_counter() - started)


@contextmanager
def served(folder: str, in_process_backend: bool) -> Iterator[openai.OpenAI]:
    """A client of the local backend's app, served as `local serve` does or by LocalBackend."""
    if in_process_backend:
        with (
            LocalBackend(folder, default_model="tiny-random", max_concurrent_jobs=0) as backend,
            backend.client() as client,
        ):
            yield client
        return
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings = ServerSettings(
        data_dir=Path(folder), max_concurrent_jobs=0, default_model="tiny-random"
    )
    config = uvicorn.Config(
        LocalApp(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with openai.OpenAI(
            api_key="unused", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        ) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--backend", action="store_true", help="serve through an in-process LocalBackend"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "out" / "graders_http.json"))
    args = parser.parse_args()
    data = pairs(args.pairs)
    rows = []
    with tempfile.TemporaryDirectory() as folder, served(folder, args.backend) as client:
        graders = client.fine_tuning.alpha.graders
        for kind in ("eq", *METRICS):
            definition = grader(kind)

            def over_http(sample: str, reference: str, definition: Any = definition) -> float:
                result = graders.run(
                    grader=definition, model_sample=sample, item={"reference": reference}
                )
                return result.reward

            direct: Callable[[str, str], Any] = (
                (lambda s, r: s == r) if kind == "eq" else direct_metric(kind)
            )
            over_http(*data[0])  # the metric's library loaded in the server once, first
            fast = per_second(direct, data, args.seconds)
            slow = per_second(over_http, data[: max(20, args.pairs // 10)], args.seconds)
            rows.append(
                {"grader": kind, "direct_per_s": fast, "http_per_s": slow, "ratio": slow / fast}
            )
            print(f"{kind:12} direct {fast:>12,.0f}/s   http {slow:>8,.0f}/s   {slow / fast:.4f}")
    report = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "pairs": args.pairs,
        "served_by": "LocalBackend" if args.backend else "uvicorn, as local serve",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"load average {report['load_average']}; written to {args.out}")


if __name__ == "__main__":
    main()
