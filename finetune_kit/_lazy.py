"""Lazy exports: a package's public names, imported from their modules on first use.

``import finetune_kit`` (and every ``import finetune_kit.<submodule>``, which runs the package's
``__init__`` first) then costs only what it uses: preflight's worker processes do not load the
``openai`` client, and nothing loads torch until the local backend is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any], *, rename: bool = True
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a package's ``__getattr__`` and ``__dir__`` for names living in its submodules.

    On first access a name is imported from its module and cached in the package's namespace;
    with ``rename``, its ``__module__`` is set to the package, so reprs and tracebacks read
    ``finetune_kit.Dataset``, not the private module.

    Args:
        package: The package's name (``__name__``).
        exports: Public name -> the absolute module it lives in.
        namespace: The package's ``globals()``.
        rename: Give the objects the package's name (only the top-level package does).

    Returns:
        The ``__getattr__`` and ``__dir__`` functions to assign in the package.
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        if rename and getattr(value, "__module__", "").startswith(f"{package}."):
            value.__module__ = package
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
