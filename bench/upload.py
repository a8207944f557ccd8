"""Upload the same large JSONL file with FileUploader and with the SDK's files.create.

Both upload to the local backend (started in this process, its files kept in RAM), each run in
its own subprocess so its peak memory (VmHWM) is its own. Runs alternate (SDK, FileUploader,
SDK, ...); each side's best run is reported, beside the medians, with the ratios the docs quote:

- throughput: FileUploader's best MB/s over the SDK's (target >= 0.90);
- peak memory: FileUploader's peak RSS minus the SDK's (target <= +20 MB).

With ``--multipart`` both go through the Uploads API in 64 MB parts instead: the SDK's
``client.uploads.upload_file_chunked`` (parts one after another, each read into memory) against
FileUploader with ``multipart_threshold`` below the file's size (parts in parallel, streamed
from the file, md5 checked). The targets are the same.

FileUploader runs with ``preflight=False`` (the SDK checks nothing either; preflight has its own
bench), ``reuse=True`` and ``cache=False``; every uploaded file is deleted before the next run, so
each run is a first upload of a file never seen before: the time includes looking for an
existing copy and hashing the file (beside the upload).

    .venv/bin/python bench/upload.py                   # 300 MB, 3 rounds
    .venv/bin/python bench/upload.py --mb 50 --rounds 1
    .venv/bin/python bench/upload.py --multipart       # the Uploads API path

Figures go to bench/out/upload.json; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def make_file(path: Path, megabytes: int) -> Path:
    """A valid chat JSONL file of about ``megabytes`` MB (written once, then reused)."""
    target = megabytes * 1024 * 1024
    if path.exists() and abs(path.stat().st_size - target) < 1024 * 1024:
        return path
    filler = "lorem ipsum dolor sit amet " * 20
    with open(path, "w", encoding="utf-8") as handle:
        written, i = 0, 0
        while written < target:
            line = json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "You answer briefly."},
                        {"role": "user", "content": f"Question {i}: {filler}"},
                        {"role": "assistant", "content": f"Answer {i}: {filler}"},
                    ]
                }
            )
            handle.write(line + "\n")
            written += len(line) + 1
            i += 1
    return path


def peak_rss_kb() -> int:
    """This process's peak resident memory, in KB.

    ``VmHWM`` where Linux provides it: ``ru_maxrss`` of a process started by a large parent
    reports the parent's size at the fork, not the child's own peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


PART_SIZE = 64 * 1024 * 1024  # the SDK's default part size


def child(mode: str, base_url: str, path: Path, multipart: bool) -> None:
    """One upload, in a fresh process; prints its figures as JSON."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="local", max_retries=0)
    if mode != "sdk":
        from finetune_kit.files import FileUploader

        # cache=False: a first upload of a file never seen before (no cached digest or id).
        options: dict[str, Any] = {}
        if multipart:
            options = {"multipart_threshold": PART_SIZE, "part_size": PART_SIZE}
        uploader = FileUploader(client, progress=False, cache=False, **options)
    client.models.list()  # warm the connection and the imports before the clock starts
    baseline = peak_rss_kb()
    cpu_start = time.process_time()
    start = time.perf_counter()
    if mode == "sdk" and multipart:
        upload = client.uploads.upload_file_chunked(
            file=path, mime_type="application/jsonl", purpose="fine-tune", part_size=PART_SIZE
        )
        assert upload.file is not None, upload
        file_id = upload.file.id
    elif mode == "sdk":
        with open(path, "rb") as handle:
            file_id = client.files.create(file=handle, purpose="fine-tune").id
    else:
        file_id = uploader.upload(path, preflight=False).id
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    peak = peak_rss_kb()
    figures = {"file_id": file_id, "seconds": seconds, "cpu_s": cpu, "peak_kb": peak}
    print(json.dumps({**figures, "baseline_kb": baseline}))


def run_child(mode: str, base_url: str, path: Path, multipart: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--base-url", base_url]
    command += ["--path", str(path)] + (["--multipart"] if multipart else [])
    out = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def measure(
    args: argparse.Namespace, path: Path, store: Path, size_mb: float
) -> dict[str, list[dict[str, Any]]]:
    """Every round's uploads, each side in a child process, against one local backend."""
    from finetune_kit.local import LocalBackend

    runs: dict[str, list[dict[str, Any]]] = {"sdk": [], "finetune_kit": []}
    with (
        LocalBackend(store / "backend", default_model="tiny-random") as backend,
        backend.client() as client,
    ):
        for round_number in range(args.rounds):
            # Alternate which goes first, so neither always follows the other.
            order = ("sdk", "finetune_kit") if round_number % 2 == 0 else ("finetune_kit", "sdk")
            for mode in order:
                result = run_child(mode, backend.base_url, path, args.multipart)
                # Retried: the server may have closed the pooled connection while the child ran.
                client.with_options(max_retries=3).files.delete(result["file_id"])
                # Where the store is on disk (no /dev/shm), its pages reach the disk before the
                # next run, so no run pays for the writeback of the one before.
                os.sync()
                time.sleep(args.settle)
                runs[mode].append(result)
                rate = size_mb / result["seconds"]
                peak = result["peak_kb"] / 1024
                print(
                    f"round {round_number + 1} {mode:13s} {result['seconds']:6.2f} s "
                    f"{rate:6.1f} MB/s  client cpu {result['cpu_s']:5.2f} s  peak {peak:6.1f} MB",
                    flush=True,
                )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="file size in MB")
    parser.add_argument("--rounds", type=int, default=3, help="uploads per tool")
    parser.add_argument("--settle", type=float, default=1.0, help="pause between runs (s)")
    parser.add_argument("--path", type=Path, help="the file (default: a temporary one)")
    parser.add_argument(
        "--multipart", action="store_true", help="both through the Uploads API, in 64 MB parts"
    )
    parser.add_argument(
        "--json", type=Path, help="figures file (default: bench/out/upload[-multipart].json)"
    )
    parser.add_argument("--child", choices=["sdk", "finetune_kit"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.base_url, args.path, args.multipart)
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    path = make_file(args.path or work / "bench.jsonl", args.mb)
    # The backend keeps what it receives in RAM where it can, its store and the temporary file
    # a multipart body is spooled to: writing 600 MB per run to disk made both sides' times
    # swing by 2x with the writeback of earlier runs, which says nothing about the clients.
    shm = Path("/dev/shm")
    store = Path(tempfile.mkdtemp(prefix="bench-upload-", dir=shm if shm.is_dir() else None))
    tempfile.tempdir = str(store)
    size_mb = path.stat().st_size / 1024 / 1024
    try:
        runs = measure(args, path, store, size_mb)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        if args.path is None:
            shutil.rmtree(work, ignore_errors=True)

    def summary(mode: str) -> dict[str, float]:
        seconds = [r["seconds"] for r in runs[mode]]
        return {
            "best_seconds": min(seconds),
            "median_seconds": statistics.median(seconds),
            "mb_per_s": size_mb / min(seconds),
            "median_mb_per_s": size_mb / statistics.median(seconds),
            "client_cpu_s": statistics.median(r["cpu_s"] for r in runs[mode]),
            "peak_mb": statistics.median(r["peak_kb"] for r in runs[mode]) / 1024,
        }

    sdk, ours = summary("sdk"), summary("finetune_kit")
    # Noise on this loopback path only ever adds time (a run takes 1.5 s or, now and then,
    # 2.7 s, on either side), so each side's best run is its cost, as timeit takes the minimum;
    # the medians and each round's own ratio are kept beside it.
    paired = [
        theirs["seconds"] / mine["seconds"]
        for theirs, mine in zip(runs["sdk"], runs["finetune_kit"], strict=True)
    ]
    figures = {
        "path": "uploads API, 64 MB parts" if args.multipart else "one request",
        "file_mb": round(size_mb, 1),
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "sdk": sdk,
        "finetune_kit": ours,
        "throughput_ratio": ours["mb_per_s"] / sdk["mb_per_s"],
        "median_throughput_ratio": ours["median_mb_per_s"] / sdk["median_mb_per_s"],
        "round_ratios": [round(r, 3) for r in paired],
        "peak_memory_delta_mb": ours["peak_mb"] - sdk["peak_mb"],
    }
    print(
        f"\n{size_mb:.0f} MB file ({figures['path']}), best of {args.rounds}: "
        f"SDK {sdk['mb_per_s']:.1f} MB/s, peak {sdk['peak_mb']:.1f} MB; "
        f"FileUploader {ours['mb_per_s']:.1f} MB/s, peak {ours['peak_mb']:.1f} MB\n"
        f"throughput ratio {figures['throughput_ratio']:.3f} (target >= 0.90; of the medians "
        f"{figures['median_throughput_ratio']:.3f}; rounds {figures['round_ratios']}), "
        f"peak memory {figures['peak_memory_delta_mb']:+.1f} MB (target <= +20 MB), "
        f"load average {figures['load_average_1m']:.2f} on {figures['cpus']} CPUs"
    )
    out = (
        args.json or ROOT / "bench" / "out" / f"upload{'-multipart' if args.multipart else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    met = figures["throughput_ratio"] >= 0.90 and figures["peak_memory_delta_mb"] <= 20
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
