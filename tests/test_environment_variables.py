"""docs/environment-variables.md names every environment variable the package reads or sets."""

from __future__ import annotations

import re
from pathlib import Path

import finetune_kit

ROOT = Path(finetune_kit.__file__).parent
PAGE = ROOT.parent / "docs" / "environment-variables.md"

# A quoted name with one of the prefixes environment variables of ours, of the libraries we
# drive, or of the system have: how every one the package reads or sets is written.
_QUOTED = re.compile(
    r"""["']((?:FINETUNE_KIT|OPENAI|AZURE_OPENAI|RAY|VLLM|HF|TRANSFORMERS|TOKENIZERS|OMP|"""
    r"""LLAMA_ARG|CUDA|XDG|LD)_[A-Za-z0-9_]+|COLUMNS)["']"""
)
# A Python name defined in the package (a constant such as OPENAI_MODEL_NAMES, quoted in
# ``__all__``), which is no environment variable.
_DEFINED = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*(?::[^=\n]*)?=", re.MULTILINE)


def _variables_in_source() -> dict[str, set[str]]:
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(ROOT.rglob("*.py"))}
    defined = {name for text in sources.values() for name in _DEFINED.findall(text)}
    found: dict[str, set[str]] = {}
    for path, text in sources.items():
        for name in _QUOTED.findall(text):
            if name not in defined:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_page_names_every_variable_the_package_uses() -> None:
    page = PAGE.read_text(encoding="utf-8")
    variables = _variables_in_source()
    # The scan finds what it should (a broken pattern would pass the check below vacuously).
    assert {"FINETUNE_KIT_LOCAL_DEVICE", "RAY_ADDRESS", "HF_HUB_OFFLINE"} <= set(variables)
    # Written as `NAME` or, for one the package sets, `NAME=value`.
    missing = {
        name: sorted(where)
        for name, where in variables.items()
        if f"`{name}`" not in page and f"`{name}=" not in page
    }
    assert not missing, f"docs/environment-variables.md lacks (variable: read in) {missing}"
