"""Tool calling on the local backend, over real HTTP with the real openai client.

The tiny model is fine-tuned on a handful of tool-call examples until it reproduces them (50
epochs); it then answers each prompt with the calls it learned, which the server reads back out
of the generated text.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from finetune_kit.inference import InferenceClient, ToolCallMatch
from finetune_kit.local.engine.chat_format import ChatRenderer, normalize_messages
from finetune_kit.local.engine.tiny_model import build_tiny_tokenizer
from finetune_kit.local.server.routes.chat import ChatCompletionBody
from finetune_kit.local.server.routes.common import validate_input
from tests.fixtures.local_backend import wait_for_job, write_jsonl

if TYPE_CHECKING:
    from finetune_kit.local import LocalBackend

MAX_TOKENS = 200  # the session backend's default (16) is shorter than two calls
CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


def _tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "strict": True,  # the openai client's stream helper parses only strict tools
        },
    }


TOOLS = [_tool("weather"), _tool("clock")]


def _call(name: str, city: str, index: int = 0) -> dict[str, Any]:
    arguments = json.dumps({"city": city})
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _example(prompt: str, content: str | None, calls: list[dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        answer["tool_calls"] = calls
    return {"messages": [{"role": "user", "content": prompt}, answer], "tools": TOOLS}


EXAMPLES = [
    _example("weather Paris", None, [_call("weather", "Paris")]),
    _example("clock Lima", "On it.", [_call("clock", "Lima")]),
    _example("both Rome", None, [_call("weather", "Rome", 0), _call("clock", "Rome", 1)]),
    _example("hi", "Hello!", []),
]


def _answered(example: dict[str, Any]) -> dict[str, Any]:
    """The example with a tool result for each call (preflight wants every call answered)."""
    calls = example["messages"][-1].get("tool_calls", [])
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in calls]
    return {**example, "messages": [*example["messages"], *results]}


# Ten rows (the least a job takes), the two longer answers three times: 50 epochs of them teach
# the tiny model every answer, greedily (checked with four seeds).
TRAINING_ROWS = [_answered(EXAMPLES[i]) for i in (0, 0, 1, 1, 1, 2, 2, 2, 3, 3)]


@pytest.fixture(scope="module")
def tuned_model(local_backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model fine-tuned until it reproduces ``EXAMPLES``."""
    path = write_jsonl(tmp_path_factory.mktemp("tools") / "train.jsonl", TRAINING_ROWS)
    with local_backend.client() as client:
        uploaded = client.files.create(file=path, purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model="tiny-random",
            training_file=uploaded.id,
            seed=0,
            method={
                "type": "supervised",
                "supervised": {
                    "hyperparameters": {
                        "n_epochs": 50,
                        "batch_size": 1,
                        "learning_rate_multiplier": 50.0,
                    }
                },
            },
        )
        done = wait_for_job(client, job.id, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    return done.fine_tuned_model


def _ask(client: openai.OpenAI, model: str, prompt: str, **kwargs: Any) -> ChatCompletion:
    """One greedy request with the tools; the wire JSON parsed with openai's own type."""
    params: dict[str, Any] = {"temperature": 0, "max_tokens": MAX_TOKENS, **kwargs}
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        tools=TOOLS,  # type: ignore[arg-type]
        **params,
    )
    return ChatCompletion.model_validate(json.loads(raw.text))


def _prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    """Prompt tokens as training renders the conversation (``chat_format``)."""
    renderer = ChatRenderer(build_tiny_tokenizer())
    return len(renderer.render_prompt(normalize_messages(messages, tools)))


def _calls(completion: ChatCompletion, choice: int = 0) -> list[tuple[str, Any]]:
    calls = completion.choices[choice].message.tool_calls or []
    for call in calls:
        assert call.type == "function"
        assert CALL_ID.fullmatch(call.id), call.id
    return [(c.function.name, json.loads(c.function.arguments)) for c in calls]  # type: ignore[union-attr]


# -- the prompt ---------------------------------------------------------------------------------


def test_tools_and_tool_history_reach_the_prompt_as_in_training(client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "clock Lima"},
        {
            "role": "assistant",
            "content": "On it.",
            # Spacing of the arguments as a client may send them: training re-serialises them.
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "clock", "arguments": '{"city":"Lima"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "09:00"},
    ]

    def prompt_tokens(**kwargs: Any) -> int:
        completion = client.chat.completions.create(
            model="tiny-random",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=1,
            **kwargs,
        )
        assert completion.usage is not None
        return completion.usage.prompt_tokens

    with_tools = _prompt_tokens(messages, TOOLS)
    without_tools = _prompt_tokens(messages, None)
    assert with_tools > without_tools > _prompt_tokens(messages[:2], None) + 20
    assert prompt_tokens(tools=TOOLS) == with_tools
    assert prompt_tokens(tools=TOOLS, tool_choice="auto") == with_tools
    # "none": the tools stay out of the prompt; the history's calls stay in.
    assert prompt_tokens(tools=TOOLS, tool_choice="none") == without_tools
    assert prompt_tokens() == without_tools


# -- answers ------------------------------------------------------------------------------------


def test_a_tool_call_comes_back_as_tool_calls(client: openai.OpenAI, tuned_model: str) -> None:
    completion = _ask(client, tuned_model, "weather Paris")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert _calls(completion) == [("weather", {"city": "Paris"})]
    assert completion.model == tuned_model
    assert completion.usage is not None
    messages = [{"role": "user", "content": "weather Paris"}]
    assert completion.usage.prompt_tokens == _prompt_tokens(messages, TOOLS)
    assert completion.usage.completion_tokens > len('{"name": "weather"}')
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_content_and_a_call(client: openai.OpenAI, tuned_model: str) -> None:
    completion = _ask(client, tuned_model, "clock Lima")
    assert completion.choices[0].message.content == "On it."
    assert _calls(completion) == [("clock", {"city": "Lima"})]
    assert completion.choices[0].finish_reason == "tool_calls"


def test_parallel_calls_and_parallel_tool_calls_false(
    client: openai.OpenAI, tuned_model: str
) -> None:
    both = _ask(client, tuned_model, "both Rome")
    assert _calls(both) == [("weather", {"city": "Rome"}), ("clock", {"city": "Rome"})]
    ids = [call.id for call in both.choices[0].message.tool_calls or []]
    assert len(set(ids)) == 2
    first = _ask(client, tuned_model, "both Rome", parallel_tool_calls=False)
    assert _calls(first) == [("weather", {"city": "Rome"})]
    assert first.choices[0].message.content is None
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.usage == both.usage  # the same generation, one call returned


def test_a_text_answer_has_no_tool_calls(client: openai.OpenAI, tuned_model: str) -> None:
    completion = _ask(client, tuned_model, "hi")
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"
    raw = client.chat.completions.with_raw_response.create(
        model=tuned_model,
        messages=[{"role": "user", "content": "hi"}],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=MAX_TOKENS,
    )
    assert "tool_calls" not in json.loads(raw.text)["choices"][0]["message"]


def test_every_choice_is_parsed(client: openai.OpenAI, tuned_model: str) -> None:
    completion = _ask(client, tuned_model, "weather Paris", n=2)
    assert [c.finish_reason for c in completion.choices] == ["tool_calls", "tool_calls"]
    assert _calls(completion, 0) == _calls(completion, 1) == [("weather", {"city": "Paris"})]
    ids = {c.message.tool_calls[0].id for c in completion.choices if c.message.tool_calls}
    assert len(ids) == 2


def test_tool_choice_none_answers_in_text(client: openai.OpenAI, tuned_model: str) -> None:
    completion = _ask(client, tuned_model, "weather Paris", tool_choice="none")
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert isinstance(completion.choices[0].message.content, str)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == _prompt_tokens(
        [{"role": "user", "content": "weather Paris"}], None
    )


def test_a_call_cut_by_max_tokens_stays_text(client: openai.OpenAI, tuned_model: str) -> None:
    completion = _ask(client, tuned_model, "weather Paris", max_tokens=30)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls is None
    assert choice.message.content is not None
    assert choice.message.content.startswith('<tool_call>\n{"name": "weather"')


# -- streaming ----------------------------------------------------------------------------------


def test_streamed_calls_match_the_whole_answer(client: openai.OpenAI, tuned_model: str) -> None:
    whole = _ask(client, tuned_model, "clock Lima")
    stream = client.chat.completions.create(
        model=tuned_model,
        messages=[{"role": "user", "content": "clock Lima"}],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == "On it."
    call_deltas = [t for d in deltas for t in d.tool_calls or []]
    assert len(call_deltas) == 1
    call = call_deltas[0]
    assert call.index == 0
    assert call.type == "function"
    assert call.id is not None
    assert CALL_ID.fullmatch(call.id)
    assert call.function is not None
    assert call.function.name == "clock"
    assert call.function.arguments is not None
    assert json.loads(call.function.arguments) == {"city": "Lima"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage == whole.usage


def test_the_stream_helper_accumulates_parallel_calls(
    client: openai.OpenAI, tuned_model: str
) -> None:
    with client.chat.completions.stream(
        model=tuned_model,
        messages=[{"role": "user", "content": "both Rome"}],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=MAX_TOKENS,
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["weather", "clock"]
    assert [c.function.parsed_arguments for c in calls] == [{"city": "Rome"}, {"city": "Rome"}]
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert [(e.name, e.parsed_arguments) for e in done] == [  # type: ignore[union-attr]
        ("weather", {"city": "Rome"}),
        ("clock", {"city": "Rome"}),
    ]


def test_a_streamed_text_answer_is_plain_content(client: openai.OpenAI, tuned_model: str) -> None:
    stream = client.chat.completions.create(
        model=tuned_model,
        messages=[{"role": "user", "content": "hi"}],
        tools=TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=MAX_TOKENS,
        stream=True,
    )
    deltas = [c.choices[0] for c in stream if c.choices]
    assert "".join(d.delta.content or "" for d in deltas) == "Hello!"
    assert all(d.delta.tool_calls is None for d in deltas)
    assert deltas[-1].finish_reason == "stop"


# -- evaluation ---------------------------------------------------------------------------------


def test_evaluate_with_tool_call_match(client: openai.OpenAI, tuned_model: str) -> None:
    wrong = _example("weather Paris", None, [_call("weather", "Berlin")])
    report = InferenceClient(client, concurrency=2).evaluate(
        tuned_model,
        [*EXAMPLES, wrong],
        ToolCallMatch(),
        temperature=0,
        max_tokens=MAX_TOKENS,
    )
    assert not report.errors
    assert report.scores("tool_call_match") == [1.0, 1.0, 1.0, 1.0, 0.0]
    first = report[0].reply
    assert first is not None
    assert first.finish_reason == "tool_calls"
    assert [(c.name, c.parsed_arguments()) for c in first.tool_calls] == [
        ("weather", {"city": "Paris"})
    ]


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "clock"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [*TOOLS, _tool("clock")]}, "tools[2].function.name"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"tools": [_tool("no spaces allowed")]}, "tools[0].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "desc": ""}}]},
            "tools[0].function.desc",
        ),
        ({"tools": []}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)
def test_tool_parameters_are_checked(
    client: openai.OpenAI, extra: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"tools": TOOLS, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny-random", messages=[{"role": "user", "content": "hi"}], max_tokens=1, **body
        )
    assert info.value.param == param


@pytest.mark.parametrize("name", ["tool_choice", "parallel_tool_calls"])
def test_tool_options_need_tools(client: openai.OpenAI, name: str) -> None:
    value: Any = "auto" if name == "tool_choice" else False
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny-random",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=1,
            **{name: value},
        )
    assert info.value.param == name
    assert "only allowed when 'tools' are specified" in info.value.message


def test_the_refusal_of_required_says_what_works(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny-random",
            messages=[{"role": "user", "content": "hi"}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="required",
        )
    assert "'auto' and 'none'" in info.value.message


def test_the_prompt_gets_the_declarations_as_sent() -> None:
    # Training writes an example's tools as the file has them; a request's must not be reordered
    # or filled with defaults, or the model would see another prompt than it was trained on.
    function = {"parameters": {"type": "object"}, "strict": False, "name": "f"}
    body = validate_input(
        ChatCompletionBody,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"function": function, "type": "function"}],
        },
    )
    assert body.tools is not None
    declaration = body.tools[0].declaration()
    assert declaration == {"function": function, "type": "function"}
    assert list(declaration) == ["function", "type"]
    assert list(declaration["function"]) == ["parameters", "strict", "name"]
