"""A multi grader's ``calculate_output``: a small arithmetic language, parsed, never ``eval``-ed.

What OpenAI's guide allows, and nothing else: the sub-graders' names as variables, numbers,
parentheses, ``+ - * /``, ``^`` for powers (``**`` is read the same way), unary minus, and the
functions ``min max abs floor ceil exp sqrt log`` (``log`` is the natural logarithm; ``min`` and
``max`` take one or more arguments). The text is parsed with Python's ``ast`` after ``^`` is
turned into ``**`` (so it binds tighter than ``*`` and to the right, as in mathematics), then
walked against a whitelist of node types; the result is a tree of closures over floats.

Examples:
    >>> f = Formula.parse("0.5 * accuracy + 0.5 * style ^ 2", names=["accuracy", "style"])
    >>> f.evaluate({"accuracy": 1.0, "style": 0.5})
    0.625
    >>> Formula.parse("max(a, b) - min(a, b)", names=["a", "b"]).names
    ('a', 'b')
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Iterable, Mapping

from ..errors import GraderValidationError

__all__ = ["FUNCTIONS", "Formula", "FormulaError"]

_Node = Callable[[Mapping[str, float]], float]

FUNCTIONS: dict[str, tuple[Callable[..., float], int | None]] = {
    # name: (function, number of arguments; None = one or more)
    "min": (min, None),
    "max": (max, None),
    "abs": (abs, 1),
    "floor": (lambda x: float(math.floor(x)), 1),
    "ceil": (lambda x: float(math.ceil(x)), 1),
    "exp": (math.exp, 1),
    "sqrt": (math.sqrt, 1),
    "log": (math.log, 1),
}
"""The functions a formula may call."""

# A formula is a line of arithmetic; the cap keeps the parser (recursive) far from its limits.
MAX_LENGTH = 4096

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: math.pow(a, b),
}
_SYMBOL = {ast.BitAnd: "&", ast.BitOr: "|", ast.FloorDiv: "//", ast.Mod: "%", ast.LShift: "<<"}


class FormulaError(ArithmeticError):
    """A valid formula cannot be computed for these rewards (division by zero, log of 0...)."""


class Formula:
    """A parsed ``calculate_output``; build it with :meth:`parse`, run it with :meth:`evaluate`."""

    __slots__ = ("_root", "names", "source")

    def __init__(self, source: str, root: _Node, names: tuple[str, ...]) -> None:
        self.source = source
        self._root = root
        self.names = names

    @classmethod
    def parse(cls, text: str, *, names: Iterable[str], grader: str | None = None) -> Formula:
        """Parse ``text``, whose variables must be among ``names``.

        Args:
            text: The formula.
            names: The variables it may use (a multi grader's sub-grader names).
            grader: The multi grader's name, for error messages.

        Returns:
            The parsed formula.

        Raises:
            GraderValidationError: The text is not a formula, or uses an operator, a function
                or a name that is not allowed; the message names it.
        """
        allowed = list(names)
        if not text.strip():
            raise _error(grader, "is empty", "write a formula such as '(a + b) / 2'")
        if len(text) > MAX_LENGTH:
            raise _error(grader, f"is {len(text)} characters long; the limit is {MAX_LENGTH}", "")
        # No string literals in the language, so '^' can only be the power operator.
        try:
            tree = ast.parse(text.replace("^", "**").strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            detail = getattr(exc, "msg", None) or type(exc).__name__
            raise _error(
                grader,
                f"{text!r} is not a formula ({detail})",
                "use names, numbers, parentheses, + - * / ^ and min max abs floor ceil exp "
                "sqrt log",
            ) from None
        used: list[str] = []
        root = _Compiler(text, allowed, used, grader).compile(tree.body)
        return cls(text, root, tuple(dict.fromkeys(used)))

    def evaluate(self, values: Mapping[str, float]) -> float:
        """Compute the formula.

        Args:
            values: A value for each name the formula uses.

        Returns:
            The result, a finite float.

        Raises:
            FormulaError: The result is not a finite number for these values (division by
                zero, the log or square root of a negative number, an overflow).
        """
        try:
            result = float(self._root(values))
        except ZeroDivisionError:
            raise FormulaError(f"{self.source!r} divides by zero") from None
        except (ValueError, OverflowError) as exc:
            raise FormulaError(f"{self.source!r} cannot be computed: {exc}") from None
        if not math.isfinite(result):
            raise FormulaError(f"{self.source!r} gives {result}, not a finite number")
        return result

    def __repr__(self) -> str:
        return f"Formula({self.source!r})"


class _Compiler:
    def __init__(self, text: str, allowed: list[str], used: list[str], grader: str | None):
        self.text = text
        self.allowed = allowed
        self.used = used
        self.grader = grader

    def compile(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self._refuse(f"the constant {value!r}", "only numbers are allowed")
            number = float(value)
            return lambda _values: number
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.compile(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda values: -operand(values)
            return operand
        if isinstance(node, ast.BinOp):
            operation = _BINARY.get(type(node.op))
            if operation is None:
                symbol = _SYMBOL.get(type(node.op), type(node.op).__name__)
                raise self._refuse(f"the operator {symbol!r}", "the operators are + - * / ^")
            left, right = self.compile(node.left), self.compile(node.right)
            return lambda values: operation(left(values), right(values))
        if isinstance(node, ast.Call):
            return self._call(node)
        segment = ast.get_source_segment(self.text.replace("^", "**"), node) or type(node).__name__
        raise self._refuse(
            repr(segment.replace("**", "^")),
            "use names, numbers, parentheses, + - * / ^ and min max abs floor ceil exp sqrt log",
        )

    def _name(self, name: str) -> _Node:
        if name not in self.allowed:
            if name in FUNCTIONS:
                raise self._refuse(f"{name!r} without parentheses", f"call it: {name}(...)")
            close = difflib.get_close_matches(name, self.allowed, n=1, cutoff=0.6)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(self.allowed)
            raise _error(
                self.grader,
                f"uses {name!r}{guess}, which is not one of the graders' names ({known})",
                "refer to sub-graders by their key in graders",
            )
        self.used.append(name)
        return lambda values: float(values[name])

    def _call(self, node: ast.Call) -> _Node:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name is None or name not in FUNCTIONS:
            shown = name or ast.unparse(node.func)
            raise self._refuse(
                f"the function {shown!r}", f"the functions are {', '.join(FUNCTIONS)}"
            )
        if node.keywords:
            raise self._refuse(f"keyword arguments to {name}()", "pass arguments by position")
        function, arity = FUNCTIONS[name]
        count = len(node.args)
        if (arity is None and count < 1) or (arity is not None and count != arity):
            wanted = "one or more arguments" if arity is None else f"{arity} argument"
            raise self._refuse(f"{name}() with {count} argument(s)", f"{name} takes {wanted}")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self._refuse(f"*arguments to {name}()", "list the arguments")
        args = [self.compile(arg) for arg in node.args]
        return lambda values: float(function(*(arg(values) for arg in args)))

    def _refuse(self, what: str, fix: str) -> GraderValidationError:
        return _error(self.grader, f"{self.text!r} uses {what}, which is not supported", fix)


def _error(grader: str | None, problem: str, fix: str) -> GraderValidationError:
    who = f"grader {grader!r} (multi)" if grader else "multi grader"
    tail = f"; {fix}" if fix else ""
    return GraderValidationError(
        f"{who}, field 'calculate_output': {problem}{tail}.",
        grader=grader,
        field="calculate_output",
    )
