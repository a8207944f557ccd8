"""The comparison's renderings and model-name resolution: pure, no server needed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import openai
import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.inference import (
    AsyncInferenceClient,
    Comparison,
    ComparisonRow,
    InferenceClient,
    model_name,
)
from finetune_kit.inference.evaluation import EvalCase
from finetune_kit.inference.replies import ChatReply, ReplyToolCall
from finetune_kit.session.state import CheckpointRecord

LONG = "Strontium burns a bright red - In fireworks it lights up the bed - Atomic thirty-eight"


def reply(text: str, completion_tokens: int, latency: float, **kw: object) -> ChatReply:
    return ChatReply(
        text=text,
        model="m",
        finish_reason="stop",
        prompt_tokens=20,
        completion_tokens=completion_tokens,
        latency=latency,
        **kw,  # type: ignore[arg-type]
    )


def comparison() -> Comparison:
    prompt = EvalCase(messages=({"role": "user", "content": "Tell me about <Strontium>"},))
    other = EvalCase(messages=({"role": "user", "content": "Tell me about Argon"},))
    call = ReplyToolCall(name="lookup", arguments='{"element": "Ar"}')
    return Comparison(
        "base-model",
        "ft:base-model:org::abc",
        [
            ComparisonRow(
                prompt, reply("Strontium is <b>an element</b>.", 10, 0.5), reply(LONG, 30, 0.3)
            ),
            ComparisonRow(
                other,
                None,
                reply("", 5, 0.1, tool_calls=(call,)),
                base_error="APIConnectionError: down",
            ),
        ],
        elapsed=1.0,
    )


def test_summary_means_and_errors() -> None:
    summary = comparison().summary()
    assert summary["base"] == {
        "mean_prompt_tokens": 20.0,
        "mean_completion_tokens": 10.0,
        "mean_latency": 0.5,
        "errors": 1,
    }
    assert summary["tuned"]["mean_completion_tokens"] == pytest.approx(17.5)
    assert summary["tuned"]["errors"] == 0


@pytest.mark.parametrize("width", [60, 100, 140])
def test_text_table_fits_its_width(width: int) -> None:
    text = comparison().to_text(width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert str(comparison()) == comparison().to_text()


def test_text_table_shows_answers_tokens_latency_and_errors() -> None:
    text = comparison().to_text(width=200)
    for needle in (
        "base: base-model",
        "tuned: ft:base-model:org::abc",
        "Strontium is <b>an element</b>.",
        LONG,
        "[20 prompt + 10 completion tokens, 0.50 s]",
        "[error] APIConnectionError: down",
        '[tool calls] lookup({"element": "Ar"})',
        "mean 20.0 prompt + 17.5 completion tokens, 0.20 s; 0 errors",
    ):
        assert needle in text, needle


def test_html_escapes_answers_and_prompts() -> None:
    html = comparison()._repr_html_()
    assert "<b>an element</b>" not in html
    assert "&lt;b&gt;an element&lt;/b&gt;" in html
    assert "&lt;Strontium&gt;" in html
    assert "error: APIConnectionError: down" in html


def test_dataframe_and_dict() -> None:
    frame = comparison().to_dataframe()
    assert list(frame.index) == [0, 1]
    assert frame.loc[0, "tuned_completion_tokens"] == 30
    assert frame.loc[1, "base_error"] == "APIConnectionError: down"
    data = json.loads(json.dumps(comparison().to_dict()))
    assert data["rows"][1]["tuned"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert data["rows"][0]["prompt"] == "Tell me about <Strontium>"


def test_model_name_accepts_names_jobs_and_checkpoints() -> None:
    assert model_name("gpt-4o-mini") == "gpt-4o-mini"
    job = SimpleNamespace(id="ftjob-1", status="succeeded", model="base", fine_tuned_model="ft:x")
    assert model_name(job) == "ft:x"
    checkpoint = SimpleNamespace(fine_tuned_model_checkpoint="ft:x:ckpt-step-2", step_number=2)
    assert model_name(checkpoint) == "ft:x:ckpt-step-2"
    assert model_name(CheckpointRecord(id="ckpt-1", model="ft:x:ckpt-step-1")) == "ft:x:ckpt-step-1"
    running = SimpleNamespace(id="ftjob-2", status="running", model="base", fine_tuned_model=None)
    with pytest.raises(ConfigurationError, match="ftjob-2 has no fine-tuned model yet"):
        model_name(running)
    with pytest.raises(ConfigurationError) as info:
        model_name("  ")
    assert info.value.param == "model"
    with pytest.raises(ConfigurationError, match="not int"):
        model_name(3)


def test_clients_refuse_the_wrong_twin_and_bad_concurrency() -> None:
    sync = openai.OpenAI(api_key="sk-secret-key", base_url="http://user:pw@127.0.0.1:9/v1")
    asynchronous = openai.AsyncOpenAI(api_key="sk-secret-key", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigurationError, match="AsyncInferenceClient"):
        InferenceClient(asynchronous)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="use InferenceClient"):
        AsyncInferenceClient(sync)  # type: ignore[arg-type]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigurationError) as info:
            InferenceClient(sync, concurrency=bad)  # type: ignore[arg-type]
        assert info.value.param == "concurrency"
    client = InferenceClient(sync)
    # The user's client keeps its retries; ours has them off (the policy retries).
    assert sync.max_retries == 2
    assert client.client.max_retries == 0
    shown = repr(client)
    assert "sk-secret" not in shown
    assert "pw" not in shown
    assert "127.0.0.1:9" in shown


def test_chat_refuses_conflicting_system_and_streaming() -> None:
    client = InferenceClient(openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigurationError) as info:
        client.chat(
            "m", [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], system="c"
        )
    assert info.value.param == "system"
    with pytest.raises(ConfigurationError) as info:
        client.chat("m", "hi", stream=True)
    assert info.value.param == "stream"
    with pytest.raises(ConfigurationError) as info:
        client.chat("m", [])
    assert info.value.param == "messages"


def test_control_bytes_are_shown_escaped_never_sent_to_the_terminal() -> None:
    # A model can answer anything: terminal escape sequences (colours, a bell, cursor moves,
    # a title change), NUL, DEL, C1 controls, a right-to-left override that reorders the line.
    hostile = "ok\x1b[31mred\x1b[0m\x07\x00\x7f\x9b2J\u202edesrever\r\nnext line\tend"
    case = EvalCase(messages=({"role": "user", "content": "say \x1b]0;title\x07 it"},))
    table = Comparison("base\x1b[2J", "tuned", [ComparisonRow(case, reply(hostile, 5, 0.1), None)])
    for shown in (str(table), table._repr_html_()):
        for raw in ("\x1b", "\x07", "\x00", "\x7f", "\x9b", "\u202e", "\r"):
            assert raw not in shown, repr(raw)
    text = table.to_text(width=400)  # wide: no answer wrapped
    assert "ok\\x1b[31mred\\x1b[0m\\x07\\x00\\x7f\\x9b2J\\u202edesrever" in text
    assert "say \\x1b]0;title\\x07 it" in text
    assert "base\\x1b[2J" in text
    assert "next line" in text  # line breaks and tabs stay what they are
    assert "\\x1b[31m" in table._repr_html_()
