"""Graders' throughput: gradings per second against calling the metric library directly.

For ``string_check`` (each operation) and ``text_similarity`` (each local metric), on the same
pairs of sample and reference, in one process, rounds alternating, best round per side:

- direct: what a user would call instead: ``==`` / ``in`` for string_check, the library's own
  function for each metric (rapidfuzz ``WRatio``, sacrebleu ``sentence_bleu``, nltk
  ``sentence_gleu`` and ``meteor_score``, rouge-score ``RougeScorer.score``), on text already in
  hand;
- compiled: ``compile_grader(...)`` once, then ``grader.run(sample, item)`` per pair: templates
  rendered, the metric, the full ``GraderRunResult`` (what RFT and evaluations do);
- run_grader: ``run_grader(grader_dict, sample, item)`` per pair: validation and compilation
  every time (what one ``graders/run`` request costs, without HTTP).

Also a python grader: one sandboxed worker reused for every sample (the compiled grader) against
a new worker per sample (``run_grader``).

Figures are per second and ratios (ours / direct); the load average is recorded with them.
Run:  .venv/bin/python bench/graders.py [--pairs 200] [--rounds 3] [--seconds 0.5]
(figures go to bench/out/graders.json by default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune_kit.graders import compile_grader, run_grader
from finetune_kit.graders._metrics import wordnet_available

_TEXT = (
    "the quick brown fox jumps over lazy dog river bank sleeps near a small house while "
    "children play in garden under bright summer sun and birds sing songs of joy"
)
WORDS = _TEXT.split()


def pairs(n: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    out = []
    for _ in range(n):
        reference = rng.sample(WORDS, rng.randint(6, 18))
        sample = list(reference)
        for _ in range(rng.randint(0, 4)):
            sample[rng.randrange(len(sample))] = rng.choice(WORDS)
        out.append((" ".join(sample), " ".join(reference)))
    return out


def direct_metric(metric: str) -> Callable[[str, str], float]:
    """The library call a user would make, set up once."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz, utils

        return lambda s, r: fuzz.WRatio(s, r, processor=utils.default_process) / 100
    if metric == "bleu":
        import sacrebleu

        return lambda s, r: sacrebleu.sentence_bleu(s, [r]).score / 100
    if metric in ("gleu", "meteor"):
        from nltk.tokenize import NLTKWordTokenizer

        words = NLTKWordTokenizer().tokenize
        if metric == "gleu":
            from nltk.translate.gleu_score import sentence_gleu

            return lambda s, r: sentence_gleu([words(r)], words(s))
        from nltk.translate.meteor_score import meteor_score

        class NoSynonyms:
            def synsets(self, *_a: Any, **_k: Any) -> list[Any]:
                return []

        wordnet: Any = NoSynonyms()
        if wordnet_available():
            from finetune_kit.graders._metrics import _load_wordnet

            wordnet = _load_wordnet()
        return lambda s, r: meteor_score([words(r)], words(s), wordnet=wordnet)
    from rouge_score import rouge_scorer

    kind = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
    scorer = rouge_scorer.RougeScorer([kind])
    return lambda s, r: scorer.score(r, s)[kind].fmeasure


def direct_check(operation: str) -> Callable[[str, str], float]:
    if operation == "eq":
        return lambda s, r: float(s == r)
    if operation == "ne":
        return lambda s, r: float(s != r)
    if operation == "like":
        return lambda s, r: float(r in s)
    return lambda s, r: float(r.casefold() in s.casefold())


def grader_for(kind: str, name: str) -> dict[str, Any]:
    base = {"name": name, "input": "{{sample.output_text}}", "reference": "{{item.reference}}"}
    if kind == "string_check":
        return {"type": "string_check", "operation": name, **base}
    return {"type": "text_similarity", "evaluation_metric": name, **base}


def rate(work: Callable[[], int], seconds: float) -> float:
    """Calls per second of ``work`` (which does a batch and returns its size), over ``seconds``."""
    done = 0
    started = time.perf_counter()
    while True:
        done += work()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def measure(kind: str, name: str, data: list[tuple[str, str]], rounds: int, seconds: float):
    direct = direct_check(name) if kind == "string_check" else direct_metric(name)
    spec = grader_for(kind, name)
    compiled = compile_grader(spec)
    items = [(s, {"reference": r}) for s, r in data]
    # Warm up each side once (imports, WordNet, caches).
    direct(*data[0])
    compiled.run(items[0][0], items[0][1])
    run_grader(spec, items[0][0], items[0][1])

    def do_direct() -> int:
        for s, r in data:
            direct(s, r)
        return len(data)

    def do_compiled() -> int:
        for s, item in items:
            compiled.run(s, item)
        return len(items)

    def do_run_grader() -> int:
        for s, item in items:
            run_grader(spec, s, item)
        return len(items)

    best = {"direct": 0.0, "compiled": 0.0, "run_grader": 0.0}
    for _ in range(rounds):
        for side, work in (
            ("direct", do_direct),
            ("compiled", do_compiled),
            ("run_grader", do_run_grader),
        ):
            best[side] = max(best[side], rate(work, seconds))
    return best


def measure_python(samples: int) -> dict[str, float]:
    source = "def grade(sample, item):\n    return float(sample['output_text'] == item['x'])\n"
    spec = {"type": "python", "name": "py", "source": source}
    with compile_grader(spec) as grader:
        grader.run("a", {"x": "a"})  # start the worker
        started = time.perf_counter()
        for i in range(samples):
            grader.run(str(i), {"x": "a"})
        reused = samples / (time.perf_counter() - started)
    count = max(5, samples // 50)
    started = time.perf_counter()
    for i in range(count):
        run_grader(spec, str(i), {"x": "a"})
    spawned = count / (time.perf_counter() - started)
    return {"reused worker": reused, "worker per sample": spawned}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pairs", type=int, default=200, help="sample/reference pairs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5, help="per side and round")
    parser.add_argument("--python-samples", type=int, default=500)
    parser.add_argument("--json", type=Path, default=Path("bench/out/graders.json"))
    args = parser.parse_args()

    data = pairs(args.pairs)
    cases = [("string_check", op) for op in ("eq", "ne", "like", "ilike")]
    cases += [
        ("text_similarity", m)
        for m in ("fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_l")
    ]
    one, five, _ = os.getloadavg()
    print(f"{args.pairs} pairs, best of {args.rounds} rounds, load average {one:.1f} / {five:.1f}")
    header = ("direct/s", 10), ("compiled/s", 11), ("ratio", 7), ("run_grader/s", 13), ("ratio", 7)
    print(f"{'grader':30} " + " ".join(f"{text:>{width}}" for text, width in header))
    results: dict[str, Any] = {}
    for kind, name in cases:
        best = measure(kind, name, data, args.rounds, args.seconds)
        label = f"{kind} {name}"
        results[label] = {
            **best,
            "compiled_ratio": best["compiled"] / best["direct"],
            "run_grader_ratio": best["run_grader"] / best["direct"],
        }
        print(
            f"{label:30} {best['direct']:10.0f} {best['compiled']:11.0f} "
            f"{best['compiled'] / best['direct']:7.3f} {best['run_grader']:13.0f} "
            f"{best['run_grader'] / best['direct']:7.3f}"
        )
    python = measure_python(args.python_samples)
    results["python"] = {**python, "ratio": python["reused worker"] / python["worker per sample"]}
    print(
        f"python grader: reused worker {python['reused worker']:.0f}/s, a worker per sample "
        f"{python['worker per sample']:.1f}/s (x{results['python']['ratio']:.0f})"
    )
    after, _, _ = os.getloadavg()
    figures = {
        "pairs": args.pairs,
        "rounds": args.rounds,
        "wordnet": wordnet_available(),
        "results": results,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "cpus": os.cpu_count(),
        "load": {"loadavg_1m": one, "loadavg_5m": five, "loadavg_1m_after": after},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
