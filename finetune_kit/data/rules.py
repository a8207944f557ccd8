"""The per-example rules of preflight, applied to raw JSON values.

The checks work on the parsed JSON (dicts and lists), not on typed records, so that one bad
example yields every problem it has, each with its field path (``messages[2].weight``),
instead of stopping at the first. They never raise on malformed data.

Example:
    >>> from finetune_kit.data.rules import CheckConfig, ExampleChecker
    >>> checker = ExampleChecker(CheckConfig(kind="chat"))
    >>> issues = []
    >>> example = {"messages": [{"role": "user", "content": "Hi", "weight": 1}]}
    >>> facts = checker.check(example, 4, issues)
    >>> for issue in issues:
    ...     print(issue.line, issue.code, issue.field)
    4 weight_on_non_assistant messages[0].weight
    4 example_missing_assistant_message messages
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .._lazy import renamed_names
from .issues import FileRole, Issue, make_issue

__all__ = [
    "SPECIAL_TOKENS",
    "CheckConfig",
    "ExampleChecker",
    "ExampleFacts",
    "LineKind",
    "detect_line_kind",
    "find_lone_surrogates",
    "find_special_tokens",
    "json_type",
]

LineKind = Literal["chat", "preference", "reinforcement", "completion"]
"""What a line of a training file holds: chat (supervised), preference (DPO), reinforcement
(RFT), or the legacy prompt/completion format. Wider than a record's
:data:`~finetune_kit.data.records.ExampleKind` (no record is a prompt/completion pair)."""

_MessageMode = Literal["chat", "reinforcement", "dpo_input", "dpo_output"]

_KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ROLES_BY_MODE: dict[_MessageMode, frozenset[str]] = {
    "chat": _KNOWN_ROLES,
    "reinforcement": frozenset({"developer", "user", "assistant", "tool"}),
    "dpo_input": frozenset({"system", "developer", "user", "assistant", "tool"}),
    "dpo_output": frozenset({"assistant"}),
}
_COMMON_KEYS = frozenset({"role", "content", "name"})
_KEYS_BY_ROLE = {
    "system": _COMMON_KEYS,
    "developer": _COMMON_KEYS,
    "user": _COMMON_KEYS,
    "assistant": _COMMON_KEYS | {"weight", "tool_calls", "function_call"},
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": _COMMON_KEYS,
}
_ALL_MESSAGE_KEYS = frozenset().union(*_KEYS_BY_ROLE.values())
# The keys of a message that can skip the full checks (see _check_messages).
_PLAIN_KEYS = {
    "system": frozenset({"role", "content"}),
    "developer": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "weight"}),
}
_CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
_PREFERENCE_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_PREFERENCE_INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
_COMPLETION_KEYS = frozenset({"prompt", "completion"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IMAGE_DETAILS = frozenset({"low", "high", "auto"})
# How alike a key must be to a known one to be reported as its misspelling: "wieght" and
# "weight" score 0.83, "tool" and "tools" 0.89; unrelated short keys stay well below.
_TYPO_CUTOFF = 0.75

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|endofprompt|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|startoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_sep|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|constrain|>",
    "<|return|>",
    "<|call|>",
)
"""Special-token markers of OpenAI's tokenizers and chat formats, flagged when found in text."""
_SPECIAL = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))
# A UTF-16 surrogate on its own: JSON's "\ud800" escape decodes to one when its pair is missing.
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_type(value: Any) -> str:
    """Name a value by its JSON type (``string``, ``number``, ``object``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def detect_line_kind(value: Any) -> LineKind | None:
    """Guess the format of one example from its keys.

    Args:
        value: A parsed JSON value.

    Returns:
        ``"chat"`` (a ``messages`` list: supervised or reinforcement), ``"preference"``,
        ``"completion"``, or ``None`` when it is not an object or has none of those keys.
    """
    if not isinstance(value, dict):
        return None
    if "messages" in value:
        return "chat"
    if "input" in value or "preferred_output" in value or "non_preferred_output" in value:
        return "preference"
    if "prompt" in value or "completion" in value:
        return "completion"
    return None


def _iter_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _iter_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _iter_strings(item, f"{path}[{index}]")


def find_special_tokens(value: Any) -> list[tuple[str, str]]:
    """List ``(field path, token)`` for every string in ``value`` holding a special token.

    Args:
        value: A parsed example.

    Returns:
        One entry per string (its first special token), in document order.
    """
    found = []
    try:
        for path, text in _iter_strings(value, ""):
            match = _SPECIAL.search(text)
            if match:
                found.append((path, match.group()))
    except RecursionError:
        pass
    return found


def find_lone_surrogates(value: Any) -> list[tuple[str | None, str]]:
    r"""List ``(field path, escape)`` for every string or key holding a lone surrogate.

    A surrogate pair written as two escapes (``"\ud83d\ude00"``) decodes to one character
    and is not reported; half of one is not a character at all: it cannot be encoded as
    UTF-8, so no tokenizer can read it.

    Args:
        value: A parsed example.

    Returns:
        One entry per string (its first lone surrogate, as a ``\uXXXX`` escape); a key is
        reported with the path of the object holding it, ``None`` at the top level.
    """
    found: list[tuple[str | None, str]] = []

    def walk(item: Any, path: str) -> None:
        if isinstance(item, str):
            match = _SURROGATE.search(item)
            if match:
                found.append((path or None, f"\\u{ord(match.group()):04x}"))
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    found.append((path or None, f"\\u{ord(_SURROGATE.findall(key)[0]):04x}"))
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, f"{path}[{index}]")

    with contextlib.suppress(RecursionError):
        walk(value, "")
    return found


@dataclass(frozen=True)
class CheckConfig:
    """What the checks need to know besides the example.

    Attributes:
        kind: The format the method expects: ``chat`` for supervised, ``preference`` for DPO,
            ``reinforcement``, or ``completion`` for legacy completions models.
        file: Which file the examples come from.
        images_supported: Whether the model takes images (``None``: unknown, not checked).
        max_images: Images allowed per example (``None``: no limit known).
        max_images_note: Said with a ``too_many_images`` issue (e.g. Azure's higher limit).
    """

    kind: LineKind = "chat"
    file: FileRole = "training"
    images_supported: bool | None = None
    max_images: int | None = None
    max_images_note: str = ""


class ExampleFacts(NamedTuple):
    """What the statistics need from one checked example.

    Attributes:
        kind: Its detected format, ``None`` when it is not an object of a known format.
        n_messages: Messages in it (input plus outputs for DPO).
        has_system: It has a system or developer message.
        has_user: It has a user message.
        n_images: Image parts in it.
        n_errors: Error-severity issues it raised.
    """

    kind: LineKind | None
    n_messages: int
    has_system: bool
    has_user: bool
    n_images: int
    n_errors: int


class _Sink:
    """Where the checks of one example put their issues."""

    __slots__ = ("file", "line", "out")

    def __init__(self, line: int | None, out: list[Issue], file: FileRole) -> None:
        self.line = line
        self.out = out
        self.file = file

    def add(self, code: str, field: str | None, message: str, fix: str | None = None) -> None:
        self.out.append(make_issue(code, self.line, field, message, file=self.file, fix=fix))

    def unknown_example_keys(
        self,
        value: dict[str, Any],
        known: frozenset[str],
        holds: str | None,
        *,
        inside: str | None = None,
    ) -> None:
        """Report each key of an example (or of its ``inside`` object) that its kind lacks.

        Args:
            value: The example, or the object inside it.
            known: The keys its kind has.
            holds: What an example of its kind holds, for the message.
            inside: The key of the object checked, when it is not the example itself.
        """
        for key in value:
            if key in known:
                continue
            if inside is not None:
                where, message = f"{inside}.{key}", f"unknown key {str(key)!r} in {inside}"
            else:
                where, message = str(key), f"unknown top-level key {str(key)!r}; {holds}"
            self.unknown_key("unrecognized_example_key", where, key, known, message)

    def unknown_key(
        self, code: str, field: str, key: Any, known: Iterable[str], message: str
    ) -> None:
        """Report an unknown key, with the known key it is a likely misspelling of."""
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=_TYPO_CUTOFF)
        if close:
            self.add(
                code, field, f"{message}; did you mean {close[0]!r}?", f"rename it to {close[0]!r}"
            )
        else:
            self.add(code, field, message)


class _MessageStats:
    __slots__ = ("has_system", "has_user", "n_assistant", "n_images", "n_trainable", "roles")

    def __init__(self) -> None:
        self.has_system = False
        self.has_user = False
        self.n_assistant = 0
        self.n_trainable = 0
        self.n_images = 0
        self.roles: list[Any] = []


class ExampleChecker:
    """Applies every per-example rule to one raw example.

    Args:
        config: The expected format and the model's limits.

    Example:
        >>> checker = ExampleChecker(CheckConfig(kind="chat"))
        >>> issues = []
        >>> checker.check([1, 2], 1, issues).kind is None, issues[0].code
        (True, 'top_level_array')
    """

    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self._file = config.file

    # ---------------------------------------------------------------- entry point
    def check(self, value: Any, line: int | None, out: list[Issue]) -> ExampleFacts:
        """Check one example, appending its issues to ``out``.

        Args:
            value: The parsed JSON value of one line.
            line: Its line number (or position), for the issues.
            out: Where issues go.

        Returns:
            The facts the statistics need.
        """
        sink = _Sink(line, out, self._file)
        start = len(out)
        expected = self.config.kind
        if not isinstance(value, dict):
            if isinstance(value, list):
                sink.add(
                    "top_level_array",
                    None,
                    "the line is a JSON array; each line must be one JSON object",
                )
            else:
                sink.add(
                    "data_type",
                    None,
                    f"the line is a JSON {json_type(value)}, not an object",
                )
            return ExampleFacts(None, 0, False, False, 0, len(out) - start)
        kind = detect_line_kind(value)
        if kind == "chat" and expected == "reinforcement":
            kind = "reinforcement"
        if kind is not None and kind != expected:
            sink.add(
                "wrong_example_format",
                None,
                f"this looks like a {_FORMAT_NAMES[kind]} example, but the data "
                f"is {_FORMAT_NAMES[expected]}",
            )
        kind_for_checks = kind or expected
        if kind_for_checks == "preference":
            stats = self._check_preference(value, sink)
        elif kind_for_checks == "completion":
            self._check_completion(value, sink)
            stats = _MessageStats()
        else:
            stats = self._check_conversation(value, sink, kind_for_checks)
        self._check_images(stats.n_images, kind_for_checks, sink)
        n_errors = (
            sum(1 for issue in out[start:] if issue.severity == "error") if len(out) > start else 0
        )
        return ExampleFacts(
            kind,
            len(stats.roles),
            stats.has_system,
            stats.has_user,
            stats.n_images,
            n_errors,
        )

    # ---------------------------------------------------------------- formats
    def _check_conversation(
        self, value: dict[str, Any], sink: _Sink, kind: LineKind
    ) -> _MessageStats:
        if kind != "reinforcement":
            sink.unknown_example_keys(
                value, _CHAT_KEYS, "a chat example has messages, tools, parallel_tool_calls"
            )
        declared, parallel = self._check_tools(value, "", sink)
        messages = value.get("messages")
        if not isinstance(messages, list) or not messages:
            what = "missing" if messages is None else f"a JSON {json_type(messages)}"
            if isinstance(messages, list):
                what = "empty"
            sink.add(
                "missing_messages_list",
                "messages",
                f"messages is {what}; it must be a non-empty list",
            )
            return _MessageStats()
        mode: _MessageMode = "reinforcement" if kind == "reinforcement" else "chat"
        stats = self._check_messages(messages, "messages", sink, mode, declared, parallel)
        if mode == "chat":
            if stats.n_assistant == 0:
                sink.add(
                    "example_missing_assistant_message",
                    "messages",
                    "no assistant message: there is nothing to train on",
                )
            elif stats.n_trainable == 0:
                sink.add(
                    "no_trainable_assistant_message",
                    "messages",
                    f"all {stats.n_assistant} assistant messages have weight 0",
                )
            elif stats.roles and stats.roles[-1] != "assistant" and stats.roles[-1] != "tool":
                sink.add(
                    "last_message_not_assistant",
                    f"messages[{len(messages) - 1}]",
                    f"the example ends with a {_short(stats.roles[-1])} message after the "
                    "last assistant reply",
                )
        elif stats.roles and stats.roles[-1] != "user":
            sink.add(
                "rft_last_message_not_user",
                f"messages[{len(messages) - 1}]",
                f"the last message is from {_short(stats.roles[-1])}; reinforcement "
                "examples end with the user turn to answer",
            )
        return stats

    def _check_preference(self, value: dict[str, Any], sink: _Sink) -> _MessageStats:
        sink.unknown_example_keys(
            value,
            _PREFERENCE_KEYS,
            "a DPO example has input, preferred_output, non_preferred_output",
        )
        stats = _MessageStats()
        source = value.get("input")
        if "input" not in value:
            sink.add("preference_missing_key", "input", "input is missing")
        elif not isinstance(source, dict):
            sink.add(
                "invalid_preference_input",
                "input",
                f"input is a JSON {json_type(source)}, not an object",
            )
        else:
            sink.unknown_example_keys(source, _PREFERENCE_INPUT_KEYS, None, inside="input")
            declared, parallel = self._check_tools(source, "input.", sink)
            messages = source.get("messages")
            if not isinstance(messages, list) or not messages:
                sink.add(
                    "invalid_preference_input",
                    "input.messages",
                    "input.messages must be a non-empty list of messages",
                )
            else:
                stats = self._check_messages(
                    messages, "input.messages", sink, "dpo_input", declared, parallel
                )
                if stats.roles and stats.roles[-1] != "user":
                    sink.add(
                        "role_order",
                        f"input.messages[{len(messages) - 1}]",
                        "the DPO input should end with the user turn the outputs answer",
                    )
        outputs = []
        for key in ("preferred_output", "non_preferred_output"):
            output = value.get(key)
            if key not in value:
                sink.add("preference_missing_key", key, f"{key} is missing")
                continue
            if (
                not isinstance(output, list)
                or len(output) != 1
                or not isinstance(output[0], dict)
                or output[0].get("role") != "assistant"
            ):
                sink.add(
                    "invalid_preference_output",
                    key,
                    f"{key} must be a list of exactly one assistant message, got {_short(output)}",
                )
                continue
            message = output[0]
            content = message.get("content")
            if not isinstance(content, str):
                sink.add(
                    "invalid_preference_output",
                    f"{key}[0].content",
                    f"DPO outputs are text only; content is a JSON {json_type(content)}",
                )
            self._check_messages(output, key, sink, "dpo_output", None, None)
            outputs.append(content)
            stats.roles.append("assistant")
        if len(outputs) == 2 and outputs[0] == outputs[1] and isinstance(outputs[0], str):
            sink.add(
                "identical_preference_outputs",
                "non_preferred_output",
                "the preferred and non-preferred outputs are identical",
            )
        return stats

    def _check_completion(self, value: dict[str, Any], sink: _Sink) -> None:
        sink.unknown_example_keys(
            value, _COMPLETION_KEYS, "a legacy example has prompt and completion"
        )
        for key in ("prompt", "completion"):
            if not isinstance(value.get(key), str):
                what = "missing" if key not in value else f"a JSON {json_type(value.get(key))}"
                sink.add("invalid_completion_example", key, f"{key} is {what}, not a string")

    # ---------------------------------------------------------------- tools
    def _check_tools(
        self, value: dict[str, Any], prefix: str, sink: _Sink
    ) -> tuple[set[str] | None, bool | None]:
        declared: set[str] | None = None
        for key in ("tools", "functions"):
            if key not in value:
                continue
            tools = value[key]
            if declared is None:
                declared = set()
            if not isinstance(tools, list):
                sink.add(
                    "invalid_tools",
                    f"{prefix}{key}",
                    f"{key} is a JSON {json_type(tools)}, not a list",
                )
                continue
            for index, tool in enumerate(tools):
                field = f"{prefix}{key}[{index}]"
                function = (
                    tool.get("function") if key == "tools" and isinstance(tool, dict) else tool
                )
                if key == "tools" and isinstance(tool, dict) and tool.get("type") != "function":
                    sink.add(
                        "invalid_tools",
                        f"{field}.type",
                        f'type is {_short(tool.get("type"))}; only "function" tools can be trained',
                    )
                    continue
                if not isinstance(function, dict):
                    sink.add(
                        "invalid_tools",
                        field,
                        'a tool must be {"type": "function", "function": {...}}',
                    )
                    continue
                name = function.get("name")
                if not isinstance(name, str) or not name:
                    sink.add(
                        "invalid_tools",
                        f"{field}.function.name" if key == "tools" else f"{field}.name",
                        "the function has no name",
                    )
                    continue
                parameters = function.get("parameters")
                if parameters is not None and not isinstance(parameters, dict):
                    sink.add(
                        "invalid_tools",
                        f"{field}.function.parameters",
                        "parameters must be a JSON Schema object",
                    )
                declared.add(name)
        parallel = value.get("parallel_tool_calls")
        if "parallel_tool_calls" in value and not isinstance(parallel, bool):
            sink.add(
                "invalid_parallel_tool_calls",
                f"{prefix}parallel_tool_calls",
                f"parallel_tool_calls is {_short(parallel)}, not true or false",
            )
            parallel = None
        return declared, parallel

    def _check_tool_calls(
        self,
        calls: Any,
        field: str,
        sink: _Sink,
        declared: set[str] | None,
        parallel: bool | None,
        seen_ids: set[str],
        pending: dict[str, str],
    ) -> None:
        if not isinstance(calls, list) or not calls:
            sink.add(
                "invalid_tool_calls",
                field,
                f"tool_calls must be a non-empty list, got {_short(calls)}",
            )
            return
        if parallel is False and len(calls) > 1:
            sink.add(
                "parallel_tool_calls_conflict",
                field,
                f"{len(calls)} tool calls in one message but parallel_tool_calls is false",
            )
        for index, call in enumerate(calls):
            at = f"{field}[{index}]"
            if not isinstance(call, dict):
                sink.add(
                    "invalid_tool_calls",
                    at,
                    f"a tool call is a JSON {json_type(call)}, not an object",
                )
                continue
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                sink.add("invalid_tool_calls", f"{at}.id", "the tool call has no id")
                call_id = None
            if "type" in call and call["type"] != "function":
                sink.add(
                    "invalid_tool_calls",
                    f"{at}.type",
                    f'type is {_short(call["type"])}, not "function"',
                )
            function = call.get("function")
            if not isinstance(function, dict):
                sink.add(
                    "invalid_tool_calls",
                    f"{at}.function",
                    "the tool call has no function object",
                )
            else:
                self._check_function_call(function, f"{at}.function", sink, declared)
            if call_id is not None:
                if call_id in seen_ids:
                    sink.add(
                        "duplicate_tool_call_id",
                        f"{at}.id",
                        f"tool call id {_short(call_id)} is used twice",
                    )
                else:
                    seen_ids.add(call_id)
                    pending[call_id] = at

    def _check_function_call(
        self,
        function: dict[str, Any],
        at: str,
        sink: _Sink,
        declared: set[str] | None,
    ) -> None:
        name = function.get("name")
        if not isinstance(name, str) or not name:
            sink.add("invalid_tool_calls", f"{at}.name", "the call names no function")
        elif declared is not None and name not in declared:
            sink.add(
                "undeclared_tool",
                f"{at}.name",
                f"function {_short(name)} is not declared in tools",
            )
        if "arguments" not in function:
            sink.add(
                "invalid_tool_calls",
                f"{at}.arguments",
                'the call has no arguments (use "{}" for none)',
            )
            return
        arguments = function["arguments"]
        if not isinstance(arguments, str):
            sink.add(
                "tool_arguments_not_string",
                f"{at}.arguments",
                f"arguments is a JSON {json_type(arguments)}; it must be a string holding JSON",
            )
            return
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            sink.add(
                "tool_arguments_invalid_json",
                f"{at}.arguments",
                f"arguments is not valid JSON ({exc})",
            )
            return
        except RecursionError:
            sink.add(
                "tool_arguments_invalid_json",
                f"{at}.arguments",
                "arguments is nested too deeply",
            )
            return
        if not isinstance(parsed, dict):
            sink.add(
                "tool_arguments_invalid_json",
                f"{at}.arguments",
                f"arguments holds a JSON {json_type(parsed)}; it must hold an object",
            )

    # ---------------------------------------------------------------- messages
    def _check_messages(
        self,
        messages: list[Any],
        prefix: str,
        sink: _Sink,
        mode: _MessageMode,
        declared: set[str] | None,
        parallel: bool | None,
    ) -> _MessageStats:
        stats = _MessageStats()
        allowed_roles = _ROLES_BY_MODE[mode]
        pending: dict[str, str] = {}
        answered: set[str] = set()
        seen_ids: set[str] = set()
        has_calls = False
        order_flagged = False
        started = False  # a non-system message has been seen
        roles = stats.roles
        for index, message in enumerate(messages):
            # Fast path for the plain messages that make up most files: a known role, text
            # content and nothing else. Anything unusual takes the full checks below.
            if type(message) is dict and not pending:
                role = message.get("role")
                plain = _PLAIN_KEYS.get(role) if type(role) is str else None
                content = message.get("content")
                if (
                    plain is not None
                    and type(content) is str
                    and content
                    and not content.isspace()
                    and message.keys() <= plain
                    and role in allowed_roles
                ):
                    if role == "user":
                        stats.has_user = True
                        started = True
                        roles.append(role)
                        continue
                    if role == "assistant":
                        weight = message.get("weight", 1)
                        if (
                            started
                            and type(weight) is int
                            and (weight == 1 or weight == 0)
                            and ("weight" not in message or mode in ("chat", "reinforcement"))
                        ):
                            stats.n_assistant += 1
                            stats.n_trainable += weight
                            roles.append(role)
                            continue
                    elif not started:
                        stats.has_system = True
                        roles.append(role)
                        continue
            field = f"{prefix}[{index}]"
            if not isinstance(message, dict):
                sink.add(
                    "message_data_type",
                    field,
                    f"the message is a JSON {json_type(message)}, not an object",
                )
                stats.roles.append(None)
                continue
            role = message.get("role")
            stats.roles.append(role)
            if role != "tool" and pending:
                self._flush_unanswered(pending, sink)
            if "role" not in message:
                sink.add("message_missing_key", f"{field}.role", "the message has no role")
                known_role = False
            elif not isinstance(role, str) or role not in _KNOWN_ROLES:
                sink.add(
                    "unrecognized_role",
                    f"{field}.role",
                    f"role {_short(role)} is not one of system, developer, user, assistant, "
                    "tool, function",
                )
                known_role = False
            elif role not in allowed_roles:
                fix = (
                    "use developer instead of system for reinforcement fine-tuning"
                    if role == "system" and mode == "reinforcement"
                    else None
                )
                sink.add(
                    "role_not_allowed",
                    f"{field}.role",
                    f"role {role!r} is not allowed here ({_MODE_NAMES[mode]})",
                    fix,
                )
                known_role = True
            else:
                known_role = True
            # Keys.
            allowed_keys = (
                _KEYS_BY_ROLE[role] if known_role and isinstance(role, str) else _ALL_MESSAGE_KEYS
            )
            for key in message:
                if key in allowed_keys:
                    continue
                if key == "weight" and known_role:
                    sink.add(
                        "weight_on_non_assistant",
                        f"{field}.weight",
                        f"weight on a {role} message; only assistant messages take it",
                    )
                else:
                    sink.unknown_key(
                        "message_unrecognized_key",
                        f"{field}.{key}",
                        key,
                        allowed_keys,
                        f"unknown key {str(key)!r} on a {_short(role)} message",
                    )
            if role == "assistant" and mode in ("dpo_output", "dpo_input") and "weight" in message:
                sink.add(
                    "message_unrecognized_key",
                    f"{field}.weight",
                    "weight is not used in DPO examples",
                )
            # Order.
            if role in ("system", "developer"):
                stats.has_system = True
                if started and not order_flagged:
                    sink.add(
                        "role_order",
                        f"{field}.role",
                        f"a {role} message after the conversation started",
                    )
                    order_flagged = True
            elif known_role:
                if not started and role == "assistant" and mode == "chat" and not order_flagged:
                    sink.add(
                        "role_order",
                        f"{field}.role",
                        "the conversation starts with the assistant, before any user message",
                    )
                    order_flagged = True
                started = True
            if role == "user":
                stats.has_user = True
            # Name.
            if "name" in message and (
                not isinstance(message["name"], str) or not _NAME.match(message["name"])
            ):
                sink.add(
                    "invalid_name",
                    f"{field}.name",
                    f"name {_short(message['name'])} must be 1-64 letters, digits, _ or -",
                )
            # Assistant specifics.
            calls_here = False
            if role == "assistant":
                stats.n_assistant += 1
                weight = message.get("weight", 1)
                if (
                    "weight" in message
                    and mode in ("chat", "reinforcement")
                    and (type(weight) is not int or weight not in (0, 1))
                ):
                    sink.add(
                        "invalid_weight",
                        f"{field}.weight",
                        f"weight is {_short(weight)}; it must be the integer 0 or 1",
                    )
                    # Not known to be 0: do not also report the example as untrainable.
                    stats.n_trainable += 1
                elif weight != 0:
                    stats.n_trainable += 1
                if "tool_calls" in message:
                    calls_here = True
                    has_calls = True
                    if mode == "dpo_output":
                        sink.add(
                            "invalid_preference_output",
                            f"{field}.tool_calls",
                            "DPO outputs are text only; tool calls are not supported",
                        )
                    else:
                        self._check_tool_calls(
                            message["tool_calls"],
                            f"{field}.tool_calls",
                            sink,
                            declared,
                            parallel,
                            seen_ids,
                            pending,
                        )
                if "function_call" in message:
                    calls_here = True
                    function_call = message["function_call"]
                    if isinstance(function_call, dict):
                        self._check_function_call(
                            function_call, f"{field}.function_call", sink, declared
                        )
                    else:
                        sink.add(
                            "invalid_tool_calls",
                            f"{field}.function_call",
                            "function_call must be an object {name, arguments}",
                        )
            elif role == "tool":
                self._check_tool_answer(message, field, sink, pending, answered)
            # Content.
            stats.n_images += self._check_content(message, role, field, sink, calls_here)
        # An example may end on the assistant's tool calls: it teaches the model to call the
        # tool (OpenAI's own function-calling examples end so). Calls still pending at the end
        # are unanswered only when something else came after them.
        if pending and not (stats.roles and stats.roles[-1] == "assistant"):
            self._flush_unanswered(pending, sink)
        if has_calls and declared is None and mode != "dpo_output":
            sink.add(
                "missing_tools",
                "tools",
                "the example makes tool calls but declares no tools",
            )
        return stats

    def _flush_unanswered(self, pending: dict[str, str], sink: _Sink) -> None:
        for call_id, at in pending.items():
            sink.add(
                "unanswered_tool_call",
                f"{at}.id",
                f"tool call {_short(call_id)} is never answered by a tool message",
            )
        pending.clear()

    def _check_tool_answer(
        self,
        message: dict[str, Any],
        field: str,
        sink: _Sink,
        pending: dict[str, str],
        answered: set[str],
    ) -> None:
        if "tool_call_id" not in message:
            sink.add(
                "message_missing_key",
                f"{field}.tool_call_id",
                "the tool message has no tool_call_id",
            )
            return
        call_id = message["tool_call_id"]
        if isinstance(call_id, str) and call_id in pending:
            del pending[call_id]
            answered.add(call_id)
            return
        why = (
            "answers a call that was already answered"
            if isinstance(call_id, str) and call_id in answered
            else "matches no tool call of the assistant message just before"
        )
        sink.add(
            "unknown_tool_call_id",
            f"{field}.tool_call_id",
            f"tool_call_id {_short(call_id)} {why}",
        )

    def _check_content(
        self,
        message: dict[str, Any],
        role: Any,
        field: str,
        sink: _Sink,
        has_calls: bool,
    ) -> int:
        at = f"{field}.content"
        if "content" not in message:
            if not has_calls:
                sink.add("message_missing_key", at, "the message has no content")
            return 0
        content = message["content"]
        if isinstance(content, str):
            if not content:
                if not has_calls:
                    sink.add("missing_content", at, "content is an empty string")
            elif content.isspace():
                sink.add("empty_content", at, "content is only whitespace")
            return 0
        if content is None:
            if not has_calls:
                sink.add("missing_content", at, "content is null and there are no tool calls")
            return 0
        if not isinstance(content, list):
            sink.add(
                "missing_content",
                at,
                f"content is a JSON {json_type(content)}; it must be a string or a list of parts",
            )
            return 0
        if not content:
            if not has_calls:
                sink.add("missing_content", at, "content is an empty list")
            return 0
        images = 0
        for index, part in enumerate(content):
            where = f"{at}[{index}]"
            if not isinstance(part, dict):
                sink.add(
                    "invalid_content_part",
                    where,
                    f"a content part is a JSON {json_type(part)}, not an object",
                )
                continue
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    sink.add(
                        "invalid_content_part",
                        f"{where}.text",
                        "a text part needs a string text",
                    )
                elif not text.strip():
                    sink.add("empty_content", f"{where}.text", "the text part is empty")
            elif kind == "image_url":
                images += 1
                if role != "user":
                    sink.add(
                        "image_in_non_user_message",
                        where,
                        f"an image in a {_short(role)} message",
                    )
                self._check_image(part, where, sink)
            else:
                sink.add(
                    "invalid_content_part",
                    f"{where}.type",
                    f'part type {_short(kind)} is not "text" or "image_url"',
                )
        return images

    def _check_image(self, part: dict[str, Any], where: str, sink: _Sink) -> None:
        image = part.get("image_url")
        if not isinstance(image, dict):
            sink.add(
                "invalid_content_part",
                f"{where}.image_url",
                "image_url must be an object {url, detail?}",
            )
            return
        url = image.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://", "data:image/")):
            sink.add(
                "invalid_image_url",
                f"{where}.image_url.url",
                f"image URL {_short(url)} is not http(s) or a data:image URL",
            )
        detail = image.get("detail")
        if detail is not None and detail not in _IMAGE_DETAILS:
            sink.add(
                "invalid_content_part",
                f"{where}.image_url.detail",
                f"detail {_short(detail)} is not low, high or auto",
            )

    def _check_images(self, n_images: int, kind: LineKind, sink: _Sink) -> None:
        if not n_images:
            return
        config = self.config
        if kind in ("preference", "reinforcement") or config.images_supported is False:
            what = "this model" if kind == "chat" else f"{_FORMAT_NAMES[kind]} data"
            sink.add(
                "images_not_supported",
                None,
                f"{n_images} image(s), but {what} takes none",
            )
        elif config.max_images is not None and n_images > config.max_images:
            sink.add(
                "too_many_images",
                None,
                f"{n_images} images; the limit is {config.max_images} per example"
                f"{config.max_images_note}",
            )


_FORMAT_NAMES: dict[LineKind, str] = {
    "chat": "chat (supervised)",
    "preference": "preference (DPO)",
    "reinforcement": "reinforcement (RFT)",
    "completion": "legacy prompt/completion",
}
_MODE_NAMES: dict[_MessageMode, str] = {
    "chat": "chat data",
    "reinforcement": "reinforcement data takes developer, user, assistant and tool",
    "dpo_input": "a DPO input",
    "dpo_output": "a DPO output takes one assistant message",
}


if not TYPE_CHECKING:  # old names stay importable (with a warning) but unseen by type checkers
    __getattr__ = renamed_names(
        __name__, {"ExampleKind": "LineKind", "detect_kind": "detect_line_kind"}
    )
