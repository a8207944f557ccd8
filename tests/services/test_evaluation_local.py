"""Evaluation against the local backend (tiny model) over real HTTP: scorers, bounds, faults."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.data.dataset import Dataset
from finetune_kit.inference import (
    AsyncInferenceClient,
    Contains,
    ExactMatch,
    InferenceClient,
    ModelJudge,
    RegexMatch,
    ToolCallMatch,
    ValidJSON,
)
from finetune_kit.inference.evaluation import EvalCase, EvaluationReport, PairedEvaluationReport
from finetune_kit.inference.replies import ChatReply, ReplyToolCall
from tests.fixtures.local_backend import chat_examples

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend
    from finetune_kit.local.faults import RequestRecord

BASE = "tiny-random"
CHAT = "/v1/chat/completions"
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 6}


def fast_retries(max_attempts: int = 8) -> RetryPolicy:
    return RetryPolicy(max_attempts=max_attempts, initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def inference(client: openai.OpenAI) -> InferenceClient:
    return InferenceClient(client, policy=fast_retries(), concurrency=4)


def held_out(n: int) -> list[tuple[str, str]]:
    return [(f"Tell me about element {i}.", f"Element {i}") for i in range(n)]


def test_every_scorer_on_real_replies(inference: InferenceClient) -> None:
    # The tiny model's answers are random text, so the expected scores are worked out here from
    # the answers themselves, each scorer's rule applied by hand.
    answers = [inference.chat(BASE, p, **GREEDY).text for p, _ in held_out(4)]
    examples: list[Any] = [
        (held_out(4)[0][0], answers[0]),  # the exact answer as the reference
        (held_out(4)[1][0], answers[1][:3] or "x"),  # a prefix of the answer
        (held_out(4)[2][0], "certainly not the answer"),
        EvalCase(
            messages=({"role": "user", "content": held_out(4)[3][0]},),
            reference="unused",
            reference_tool_calls=(ReplyToolCall(name="lookup", arguments='{"n": 3}'),),
        ),
    ]

    def length(reply: ChatReply, case: EvalCase) -> float:
        return float(len(reply.text))

    report = inference.evaluate(
        BASE,
        examples,
        [
            ExactMatch(),
            Contains(),
            RegexMatch(r"\S"),
            ValidJSON(),
            ToolCallMatch(),
            length,
        ],
        **GREEDY,
    )
    assert isinstance(report, EvaluationReport)
    assert [r.reply.text for r in report if r.reply] == answers
    prefix = examples[1][1]
    same = " ".join(answers[1].split()) == " ".join(prefix.split())
    assert report.scores("exact_match") == [1.0, float(same), 0.0, 0.0]
    assert report.scores("contains")[:3] == [1.0, float(prefix.strip() in answers[1]), 0.0]

    def is_json(text: str) -> bool:
        try:
            json.loads(text)
        except ValueError:
            return False
        return True

    assert report.scores("regex") == [float(bool(re.search(r"\S", a))) for a in answers]
    assert report.scores("valid_json") == [float(is_json(a.strip())) for a in answers]
    # The server makes no tool calls: right where none is expected, wrong where one is.
    assert report.scores("tool_call_match") == [1.0, 1.0, 1.0, 0.0]
    assert report.scores("length") == [float(len(a)) for a in answers]
    assert report.errors == []


def test_a_dataset_of_chat_examples(
    inference: InferenceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = Dataset.from_dicts(chat_examples(5))
    report = inference.evaluate(BASE, dataset, "contains", progress=True, **GREEDY)
    assert len(report) == 5
    assert [r.case.reference for r in report] == [f"Element {i} is number {i}." for i in range(5)]
    # The dataset's own system message was sent, not a second one.
    assert [m["role"] for m in report[0].case.messages] == ["system", "user"]
    assert report.mean("contains") is not None
    assert "evaluating tiny-random" in capsys.readouterr().err


def test_model_as_judge_on_the_local_model(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    # A parse that always finds a score: every example gets one, from a real judge request.
    lenient = ModelJudge(BASE, scale=(0, 1), parse=lambda text: 1.0 if text.strip() else 0.0)
    # The default parse on a random model's words: no "Score: n", so no score, but no loss.
    strict = ModelJudge(BASE, name="strict_judge", max_tokens=4)
    report = inference.evaluate(BASE, held_out(3), [lenient, strict], **GREEDY)
    assert len(report) == 3
    # One request for each answer and one per judge per answer.
    assert local_faults.count("POST", CHAT) == 3 * 3
    for result in report:
        assert result.scores["judge"] in (0.0, 1.0)
        strict_score = result.scores["strict_judge"]
        if strict_score is None:
            assert "no score from 1 to 10" in result.scorer_errors["strict_judge"]
        else:
            assert 0.0 <= strict_score <= 1.0


def peak_in_flight(records: list[RequestRecord]) -> int:
    """Most requests the server was handling at once, from its own arrival and finish times."""
    assert all(r.finished_at is not None for r in records)
    # At equal times an end counts before a start: a request that arrived as another was
    # answered did not overlap it.
    events = sorted([(r.started_at, 1) for r in records] + [(r.finished_at, -1) for r in records])
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


# Keeps each request in the server long enough for the client to fill its concurrency bound.
LATENCY = 0.3


def test_concurrency_bound_is_respected(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    local_faults.latency("POST", CHAT, LATENCY)
    report = inference.evaluate(BASE, held_out(12), "contains", concurrency=3, **GREEDY)
    assert len(report) == 12
    records = local_faults.requests("POST", CHAT)
    assert len(records) == 12
    assert peak_in_flight(records) == 3


def test_async_concurrency_bound_is_respected(
    local_backend: LocalBackend, local_faults: FaultInjector
) -> None:
    local_faults.latency("POST", CHAT, LATENCY)

    async def run() -> EvaluationReport:
        async with local_backend.async_client() as async_client:
            twin = AsyncInferenceClient(async_client, policy=fast_retries(), concurrency=3)
            return await twin.evaluate(BASE, held_out(12), "contains", **GREEDY)

    report = asyncio.run(run())
    assert len(report) == 12
    assert peak_in_flight(local_faults.requests("POST", CHAT)) == 3


def test_429_and_500_faults_lose_nothing_and_keep_the_order(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    faults = ["429", "500", "429", "503", "drop", "429", "500", "429"]
    local_faults.script("POST", CHAT, faults, retry_after=0.05)
    examples = held_out(20)
    report = inference.evaluate(BASE, examples, "contains", concurrency=4, **GREEDY)
    assert len(report) == 20
    assert report.errors == []
    assert [r.index for r in report] == list(range(20))
    assert [r.case.prompt_text for r in report] == [p for p, _ in examples]
    log = local_faults.requests("POST", CHAT)
    assert sum(1 for r in log if r.fault is not None) == len(faults)
    assert len(log) == 20 + len(faults)
    assert sum(r.reply.attempts for r in report if r.reply) == len(log)


def test_a_request_failing_after_its_retries_is_recorded_in_place(
    client: openai.OpenAI, local_faults: FaultInjector
) -> None:
    sequential = InferenceClient(client, policy=fast_retries(max_attempts=2), concurrency=1)
    local_faults.script("POST", CHAT, ["ok", "500", "500"])
    report = sequential.evaluate(BASE, held_out(3), "contains", **GREEDY)
    assert len(report) == 3
    assert [r.ok for r in report] == [True, False, True]
    assert report[1].error is not None
    assert report[1].error.startswith("InternalServerError")
    assert report[1].scores == {}
    assert report.summary()["contains"]["scored"] == 2
    assert "examples[1]: InternalServerError" in str(report)


def test_requests_the_server_refuses_are_recorded_per_example(inference: InferenceClient) -> None:
    # The local backend refuses a tool name with a space (as OpenAI does) with a 400: the
    # example that sends it records the error, the others go on.
    tools = [{"type": "function", "function": {"name": "look up", "parameters": {}}}]
    with_tools = {
        "messages": [
            {"role": "user", "content": "Look up 3"},
            {"role": "assistant", "content": "3"},
        ],
        "tools": tools,
    }
    report = inference.evaluate(BASE, [("plain", "x"), with_tools], "contains", **GREEDY)
    assert report[0].ok
    assert report[1].error is not None
    assert report[1].error.startswith("BadRequestError")
    assert "tools" in report[1].error


def test_an_unknown_model_stops_the_evaluation(
    inference: InferenceClient, local_backend: LocalBackend, local_faults: FaultInjector
) -> None:
    with pytest.raises(openai.NotFoundError):
        inference.evaluate("no-such-model", held_out(40), "contains", concurrency=2, **GREEDY)
    # The requests not yet started were cancelled, not sent one by one to fail alike.
    assert local_faults.count("POST", CHAT) < 40

    async def run() -> None:
        async with local_backend.async_client() as async_client:
            twin = AsyncInferenceClient(async_client, policy=fast_retries(), concurrency=2)
            await twin.evaluate("no-such-model", held_out(40), "contains", **GREEDY)

    local_faults.clear_log()
    with pytest.raises(openai.NotFoundError):
        asyncio.run(run())
    assert local_faults.count("POST", CHAT) < 40


def test_evaluate_pair_base_against_tuned(inference: InferenceClient) -> None:
    examples = held_out(6)
    references = {p: inference.chat(BASE, p, **GREEDY).text for p, _ in examples}
    # References equal to the base model's answers on even examples: the base is right there.
    pairs = [(p, references[p] if i % 2 == 0 else "no") for i, (p, _) in enumerate(examples)]
    paired = inference.evaluate_pair(BASE, "gpt-4o-mini", pairs, ExactMatch(), seed=1, **GREEDY)
    assert isinstance(paired, PairedEvaluationReport)
    assert paired.base.scores("exact_match") == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    d = paired.differences["exact_match"]
    assert d.n == 6
    base_scores = paired.base.scores("exact_match")
    tuned_scores = paired.tuned.scores("exact_match")
    assert list(d.improved) == [i for i in range(6) if base_scores[i] == 0 and tuned_scores[i] == 1]
    assert list(d.regressed) == [
        i for i in range(6) if base_scores[i] == 1 and tuned_scores[i] == 0
    ]
    assert d.ci_low is not None
    assert d.ci_high is not None
    assert d.ci_low <= d.mean_difference <= d.ci_high  # type: ignore[operator]
    frame = paired.to_dataframe()
    assert len(frame) == 6


def test_async_evaluation_gives_the_same_results_as_sync(
    inference: InferenceClient, local_backend: LocalBackend
) -> None:
    examples = held_out(8)
    scorers = [Contains(), RegexMatch(r"[aeiou]")]
    sync_report = inference.evaluate(BASE, examples, scorers, **GREEDY)

    async def run() -> EvaluationReport:
        async with local_backend.async_client() as async_client:
            twin = AsyncInferenceClient(async_client, policy=fast_retries(), concurrency=4)
            return await twin.evaluate(BASE, examples, scorers, **GREEDY)

    async_report = asyncio.run(run())
    assert [r.reply.text for r in async_report if r.reply] == [
        r.reply.text for r in sync_report if r.reply
    ]
    assert [dict(r.scores) for r in async_report] == [dict(r.scores) for r in sync_report]
    assert len(async_report) == len(sync_report) == 8
