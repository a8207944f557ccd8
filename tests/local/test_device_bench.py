"""bench/gpu.py's --smoke mode: the GPU bench's code path, on the CPU with tiny configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_bench_runs_its_code_on_the_cpu_in_smoke_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_KIT_")}
    figures = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--json", str(figures)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("card: CPU (smoke run")
    report = json.loads(figures.read_text())
    assert set(report["models"]) == {"qwen2.5-0.5b", "llama-3.2-1b"}
    qwen = report["models"]["qwen2.5-0.5b"]
    assert qwen["engine"]["tokens"] > 0
    assert qwen["engine"]["device"].startswith("cpu")
    assert set(qwen["chat_builtin"]) == {"1", "2"}
    if "trl" in qwen:  # trl is not a dependency; where installed, both count the same tokens
        assert qwen["trl"]["tokens"] == qwen["engine"]["tokens"]
