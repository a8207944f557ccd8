"""The python grader, compiled: its source checked here, run in the sandbox (``sandbox.py``)."""

from __future__ import annotations

import ast
import threading
from typing import Any

from ..errors import GraderValidationError
from .base import CompiledGrader, GradeContext, Outcome
from .sandbox import PythonSandbox, SandboxLayers, SandboxLimits
from .specs import PythonGrader

__all__ = ["MAX_SOURCE_BYTES", "PythonCode"]

MAX_SOURCE_BYTES = 256 * 1024
"""OpenAI's limit on a python grader's source."""


def check_source(source: str, *, name: str) -> None:
    """Check a grader's source without running it: size, syntax, a top-level ``grade``.

    The source is only parsed (``ast.parse``), never compiled or run, in this process.

    Raises:
        GraderValidationError: It is too large, is not valid Python, or defines no ``grade``.
    """
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise _error(name, f"is {size:,} bytes; the limit is {MAX_SOURCE_BYTES:,} (256 kB)")
    try:
        tree = ast.parse(source, filename="<grader>")
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno else ""
        raise _error(name, f"is not valid Python{where}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _error(name, f"is not valid Python: {type(exc).__name__}: {exc}") from None
    if not any(_defines_grade(node) for node in tree.body):
        raise _error(
            name,
            "defines no grade function; define def grade(sample, item) -> float at the top level",
        )


def _defines_grade(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name == "grade"
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(isinstance(t, ast.Name) and t.id == "grade" for t in targets)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return any((alias.asname or alias.name) == "grade" for alias in node.names)
    # grade may be defined under a condition (try/except import fallbacks and the like).
    if isinstance(node, (ast.If, ast.Try)):
        branches = [node.body, node.orelse]
        if isinstance(node, ast.Try):
            branches += [node.finalbody, *[h.body for h in node.handlers]]
        return any(_defines_grade(child) for branch in branches for child in branch)
    return False


def _error(name: str, problem: str) -> GraderValidationError:
    return GraderValidationError(
        f"grader {name!r} (python), field 'source': {problem}.", grader=name, field="source"
    )


class PythonCode(CompiledGrader):
    """Runs ``grade(sample, item)`` in a sandboxed worker, started on the first sample."""

    spec: PythonGrader

    def __init__(self, spec: Any, *, limits: SandboxLimits | None = None) -> None:
        super().__init__(spec)
        check_source(spec.source, name=spec.name)
        self._limits = limits
        self._sandbox: PythonSandbox | None = None
        self._lock = threading.Lock()

    @property
    def sandbox_layers(self) -> SandboxLayers | None:
        """The isolation its worker got; None before the first sample."""
        return self._sandbox.layers if self._sandbox is not None else None

    def grade(self, context: GradeContext) -> Outcome:
        with self._lock:
            if self._sandbox is None:
                self._sandbox = PythonSandbox(self.spec.source, limits=self._limits)
        outcome = self._sandbox.grade(context.sample.for_python(), context.item)
        if outcome.error is None and outcome.reward is not None:
            return Outcome(outcome.reward)
        if outcome.error == "server":
            return Outcome.failed(
                python_grader_server_error=True,
                python_grader_server_error_type=outcome.server_error_type or "SandboxError",
                python_grader_server_error_details=outcome.details,
            )
        return Outcome.failed(
            python_grader_runtime_error=True,
            python_grader_runtime_error_details=outcome.details,
            unresponsive_reward_error=outcome.error == "timeout",
        )

    def close(self) -> None:
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()
