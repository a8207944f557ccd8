"""Hypothesis strategies that draw training lines as the API documents them.

Every object is built in the API's key order with no null fields, so a record that round-trips
it must give back the very same compact JSON.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

text = st.text(max_size=12)
ids = st.text(min_size=1, max_size=12)  # ids and function names may not be empty
names = st.none() | st.text(min_size=1, max_size=6)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _obj(**fields: Any) -> dict[str, Any]:
    """A dict of the fields that are not None, in the order given."""
    return {key: value for key, value in fields.items() if value is not None}


text_part = st.builds(lambda t: {"type": "text", "text": t}, text)
image_part = st.builds(
    lambda url, detail: {"type": "image_url", "image_url": _obj(url=url, detail=detail)},
    text,
    st.none() | st.sampled_from(["auto", "low", "high"]),
)
text_content = text | st.lists(text_part, min_size=1, max_size=3)
user_content = text | st.lists(text_part | image_part, min_size=1, max_size=3)


def _message(role: str, content: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda c, n: _obj(role=role, content=c, name=n), content, names)


system_message = _message("system", text_content)
developer_message = _message("developer", text_content)
user_message = _message("user", user_content)

tool_call = st.builds(
    lambda call_id, name, args: {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    },
    ids,
    ids,
    st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)

assistant_message = st.builds(
    lambda c, n, calls, w: _obj(role="assistant", content=c, name=n, tool_calls=calls, weight=w),
    st.none() | text_content,
    names,
    st.none() | st.lists(tool_call, min_size=1, max_size=2),
    st.none() | st.sampled_from([0, 1]),
).filter(lambda m: "content" in m or "tool_calls" in m)

tool_message = st.builds(
    lambda call_id, c: {"role": "tool", "tool_call_id": call_id, "content": c}, ids, text_content
)

tool = st.builds(
    lambda name, desc, params, strict: {
        "type": "function",
        "function": _obj(name=name, description=desc, parameters=params, strict=strict),
    },
    ids,
    st.none() | text,
    st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    st.none() | st.booleans(),
)
tools = st.none() | st.lists(tool, max_size=2)

chat_message = system_message | developer_message | user_message | assistant_message | tool_message


def chat_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Chat (SFT) example objects."""
    return st.builds(
        lambda m, t, p: _obj(messages=m, tools=t, parallel_tool_calls=p),
        st.lists(chat_message, min_size=1, max_size=6),
        tools,
        st.none() | st.booleans(),
    )


def preference_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Preference (DPO) example objects."""
    return st.builds(
        lambda m, t, p, good, bad: {
            "input": _obj(messages=m, tools=t, parallel_tool_calls=p),
            "preferred_output": [good],
            "non_preferred_output": [bad],
        },
        st.lists(chat_message, min_size=1, max_size=4),
        tools,
        st.none() | st.booleans(),
        assistant_message,
        assistant_message,
    )


def reinforcement_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Reinforcement (RFT) example objects, with extra keys for the grader."""
    history = st.lists(
        developer_message | user_message | assistant_message | tool_message, max_size=4
    )
    extras = st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in ("messages", "tools")),
        json_values,
        max_size=3,
    )
    return st.builds(
        lambda h, last, t, x: {**_obj(messages=[*h, last], tools=t), **x},
        history,
        user_message,
        tools,
        extras,
    )
