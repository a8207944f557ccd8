"""Reading tool calls back out of generated text: the inverse of how training renders them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from finetune_kit.local.engine.chat_format import normalize_messages
from finetune_kit.local.engine.tool_parsing import (
    TOOL_CALL_OPEN,
    ParsedAnswer,
    ParsedToolCall,
    ToolCallStreamParser,
    parse_tool_calls,
)

NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Arguments as a client sends them: a JSON string, or (rarely) a string that is not JSON.
ARGUMENTS = st.one_of(
    st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4).map(json.dumps),
    JSON_VALUES.map(json.dumps),
    st.text(max_size=20),
)
# Content a model writes before its calls; its own edges are not whitespace (the whitespace
# between content and blocks is layout, not content).
CONTENT = st.one_of(
    st.none(),
    st.just(""),
    st.text(min_size=1, max_size=40).filter(lambda t: t == t.strip(" \t\n\r")),
)


def _canonical(arguments: str) -> tuple[str, Any]:
    try:
        return ("json", json.loads(arguments))
    except ValueError:
        return ("text", arguments)


def _python_only_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    try:
        json.loads(text, parse_constant=_refuse)
    except ValueError:
        return True
    return False


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _rendered(content: str | None, calls: list[tuple[str, str]]) -> str:
    """The assistant text training writes for this content and these calls."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return normalize_messages([message])[0]["content"]


def _block(name: str, arguments: Any) -> str:
    return f"{TOOL_CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


@given(CONTENT, st.lists(st.tuples(NAMES, ARGUMENTS), min_size=1, max_size=4))
def test_rendered_calls_parse_back(content: str | None, calls: list[tuple[str, str]]) -> None:
    assume(content is None or TOOL_CALL_OPEN not in content)
    # Training writes a JSON string argument and arguments that are not JSON alike (as a string):
    # read back, a string is the arguments' text. Real arguments are objects.
    assume(not any(isinstance(_canonical(a)[1], str) for _, a in calls))
    # Python reads NaN and Infinity as JSON, other parsers do not: such a call is not returned.
    assume(not any(_python_only_json(a) for _, a in calls))
    answer = parse_tool_calls(_rendered(content, calls), {name for name, _ in calls})
    assert answer.content == (content or None)
    assert [call.name for call in answer.tool_calls] == [name for name, _ in calls]
    assert [_canonical(call.arguments) for call in answer.tool_calls] == [
        _canonical(arguments) for _, arguments in calls
    ]
    for call in answer.tool_calls:
        if _canonical(call.arguments)[0] == "json":
            json.loads(call.arguments)  # what a client does with function.arguments


@given(st.text(max_size=60))
def test_text_without_calls_is_returned_unchanged(text: str) -> None:
    assert parse_tool_calls(text, {"f"}) == ParsedAnswer(text)


def test_content_is_none_when_only_calls() -> None:
    text = _block("get_weather", {"city": "Paris"}) + "\n" + _block("get_time", {})
    answer = parse_tool_calls(text, {"get_weather", "get_time"})
    assert answer.content is None
    assert answer.tool_calls == (
        ParsedToolCall("get_weather", '{"city": "Paris"}'),
        ParsedToolCall("get_time", "{}"),
    )


def test_layout_whitespace_is_dropped_and_text_between_blocks_kept() -> None:
    text = (
        'First.\n\n<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>\n'
        "Then.  <tool_call>\n\n"
        '  {"name": "g"}  \n</tool_call>\n'
    )
    answer = parse_tool_calls(text, {"f", "g"})
    assert answer.content == "First.\nThen."
    assert answer.tool_calls == (ParsedToolCall("f", '{"x": 1}'), ParsedToolCall("g", "{}"))


@pytest.mark.parametrize(
    "block",
    [
        "<tool_call>\n{\"name\": 'f'}\n</tool_call>",  # not JSON
        '<tool_call>\n{"name": "f", "arguments": {"x": NaN}}\n</tool_call>',  # NaN is not JSON
        '<tool_call>\n["f", {}]\n</tool_call>',  # not an object
        '<tool_call>\n{"arguments": {}}\n</tool_call>',  # no name
        '<tool_call>\n{"name": "", "arguments": {}}\n</tool_call>',  # empty name
        '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',  # not offered
        '<tool_call>\n{"name": "f", "arguments": {}} trailing\n</tool_call>',  # junk before close
        '<tool_call>\n{"name": "f", "arguments": {"x": 1',  # cut off (max_tokens)
        '<tool_call>\n{"name": "f", "arguments": {}}\n',  # no closing tag
    ],
)
def test_malformed_blocks_stay_in_the_content(block: str) -> None:
    good = _block("f", {"x": 2})
    answer = parse_tool_calls(f"Hm.\n{block}\n{good}", {"f"})
    assert answer.tool_calls == (ParsedToolCall("f", '{"x": 2}'),)
    assert answer.content == f"Hm.\n{block}".rstrip()
    alone = parse_tool_calls(block, {"f"})
    assert alone == ParsedAnswer(block)


def test_any_name_is_accepted_without_a_list_of_names() -> None:
    assert parse_tool_calls(_block("anything", {}), None).tool_calls == (
        ParsedToolCall("anything", "{}"),
    )


def test_string_arguments_are_kept_as_they_are() -> None:
    # Training writes arguments that are not valid JSON as a JSON string.
    rendered = _rendered(None, [("f", "not json {")])
    assert parse_tool_calls(rendered, {"f"}).tool_calls == (ParsedToolCall("f", "not json {"),)


def test_unicode_arguments_stay_readable() -> None:
    answer = parse_tool_calls(_block("f", {"city": "Zürich"}), {"f"})
    assert answer.tool_calls[0].arguments == '{"city": "Zürich"}'


def test_parallel_false_keeps_the_first_call() -> None:
    text = "Two.\n" + _block("f", {"x": 1}) + "\n" + _block("g", {"y": 2})
    answer = parse_tool_calls(text, {"f", "g"}, parallel=False)
    assert answer.tool_calls == (ParsedToolCall("f", '{"x": 1}'),)
    assert answer.dropped_calls == 1
    assert answer.content == "Two."
    assert parse_tool_calls(text, {"f", "g"}).dropped_calls == 0


# -- streaming ---------------------------------------------------------------------------------

PIECES = st.lists(
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(["\n", "  ", "<tool", "<tool_call>", "</tool_call>", "<", "_call>"]),
        st.builds(
            _block,
            st.sampled_from(["f", "g", "h"]),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
    ),
    max_size=8,
)


@given(PIECES, st.data())
def test_streamed_content_equals_the_whole_parse(pieces: list[str], data: st.DataObject) -> None:
    text = "".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    parallel = data.draw(st.booleans())
    parser = ToolCallStreamParser({"f", "g"}, parallel=parallel)
    released = [parser.feed(chunk) for chunk in chunks[:-1]]
    rest, answer = parser.finish(chunks[-1])
    whole = parse_tool_calls(text, {"f", "g"}, parallel=parallel)
    assert answer == whole
    assert "".join(released) + rest == (whole.content or "")


def test_stream_releases_plain_text_as_it_comes() -> None:
    parser = ToolCallStreamParser({"f"})
    assert parser.feed("Hello") == "Hello"
    assert parser.feed(" world ") == " world"  # the trailing space waits for what follows
    assert parser.feed("<") == ""
    assert parser.feed("3") == " <3"  # not a tag after all
    assert parser.finish() == ("", ParsedAnswer("Hello world <3"))
