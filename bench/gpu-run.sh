#!/bin/bash
# The GPU checks in one command, from the repository root of a GPU machine:
#   bash bench/gpu-run.sh [bench/gpu.py options]
# installs the wheels in .whl/ (bench/gpu-wheels.sh) when there are any, runs the GPU tests
# (tests/local/test_device_gpu.py) and then bench/gpu.py; logs and figures go to $OUT (or
# bench/out). Exit status: the tests' if they fail, else the bench's (1: a target missed).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/ftk-site .whl/*.whl || exit 3
  export PYTHONPATH="/tmp/ftk-site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m pytest tests/local/test_device_gpu.py -q -p no:cacheprovider -o addopts="" \
  -W ignore::DeprecationWarning 2>&1 | tee "$out/gpu-tests.log"
tests=${PIPESTATUS[0]}
python3 bench/gpu.py --json "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.log"
bench=${PIPESTATUS[0]}
[ "$tests" -ne 0 ] && exit "$tests"
exit "$bench"
