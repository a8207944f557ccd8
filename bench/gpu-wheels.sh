#!/bin/bash
# Download, on a machine with network access, the wheels bench/gpu-run.sh installs on a GPU
# machine that has none: what finetune_kit needs beyond that machine's image (torch,
# transformers, peft, accelerate, tokenizers, safetensors, httpx and numpy are there), and trl
# with datasets for the comparison. Versions are those of scripts/constraints.txt.
#
#   bash bench/gpu-wheels.sh            # writes .whl/ (ignored by git: add /.whl/ to .git/info/exclude)
#   PYTHON_VERSION=3.12 bash bench/gpu-wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${PYTHON_VERSION:-3.12}
constraint() { grep -i "^$1==" scripts/constraints.txt | head -1; }
packages=(
  "trl==1.16.0"
  "$(constraint datasets)" "$(constraint dill)" "$(constraint multiprocess)" "$(constraint xxhash)"
  "$(constraint openai)" "$(constraint httpx2)" "$(constraint httpcore2)" "$(constraint jiter)"
  "$(constraint pydantic)" "$(constraint pydantic_core)" "$(constraint annotated-types)"
  "$(constraint typing-inspection)" "$(constraint sniffio)" "$(constraint tenacity)"
  "$(constraint fastapi)" "$(constraint starlette)" "$(constraint annotated-doc)"
  "$(constraint uvicorn)" "$(constraint python-multipart)" "$(constraint gguf)"
)
wheels=${WHEEL_DIR:-.whl}
mkdir -p "$wheels"
for package in "${packages[@]}"; do
  [ -n "$package" ] || continue
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$wheels" "$package"
done
ls "$wheels"
