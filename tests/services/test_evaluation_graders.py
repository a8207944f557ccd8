"""OpenAI's graders as scorers: evaluate() and evaluate_pair(), sync and async, locally.

The graders run here, in the library, without any server route; the answers come from the local
backend (tiny model) over real HTTP, and model graders ask their judge through the evaluation's
own client, so the judge's requests are real chat requests too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.errors import ConfigurationError, GraderValidationError
from finetune_kit.graders import GraderModelReply, GraderModelRequest, compile_grader
from finetune_kit.inference import (
    AsyncInferenceClient,
    ChatGraderModel,
    GraderScorer,
    InferenceClient,
    resolve_scorers,
)
from finetune_kit.inference.evaluation import EvalCase, EvaluationReport, PairedEvaluationReport
from finetune_kit.inference.replies import ChatReply

if TYPE_CHECKING:
    from finetune_kit.local import FaultInjector, LocalBackend

BASE = "tiny-random"
CHAT = "/v1/chat/completions"
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 6}

EXACT = {
    "type": "string_check",
    "name": "exact_answer",
    "operation": "eq",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
}


def fast_retries() -> RetryPolicy:
    return RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def inference(client: openai.OpenAI) -> InferenceClient:
    return InferenceClient(client, policy=fast_retries(), concurrency=4)


def prompts(n: int) -> list[str]:
    return [f"Tell me about element {i}." for i in range(n)]


def rft_style(prompt: str, **fields: Any) -> dict[str, Any]:
    """An example as an RFT line or an Evals row carries it: the prompt, and fields for item."""
    return {"messages": [{"role": "user", "content": prompt}], **fields}


def test_a_grader_dict_scores_real_replies_with_its_item_fields(
    inference: InferenceClient,
) -> None:
    answers = [inference.chat(BASE, p, **GREEDY).text for p in prompts(3)]
    examples = [
        rft_style(prompts(3)[0], answer=answers[0]),  # the model's own answer: eq holds
        rft_style(prompts(3)[1], answer=answers[1] + " and more"),
        rft_style(prompts(3)[2], answer=answers[2]),
    ]
    report = inference.evaluate(BASE, examples, EXACT, **GREEDY)
    assert report.scores("exact_answer") == [1.0, 0.0, 1.0]
    assert report.thresholds == {"exact_answer": 0.5}
    assert report.pass_rate("exact_answer") == pytest.approx(2 / 3)
    assert report.errors == []


def test_graders_sit_beside_scorers_under_their_own_names(inference: InferenceClient) -> None:
    answers = [inference.chat(BASE, p, **GREEDY).text for p in prompts(2)]
    similar = {
        "type": "text_similarity",
        "name": "close",
        "evaluation_metric": "fuzzy_match",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
    }
    mentions = EXACT | {"name": "mentions", "operation": "like", "reference": "{{item.reference}}"}
    # A (prompt, reference) pair gives its reference to graders as item.reference.
    pairs = [(prompts(2)[0], answers[0]), (prompts(2)[1], "certainly not the answer")]
    report = inference.evaluate(
        BASE, pairs, {"exact": "exact_match", "fuzzy": similar, "mentioned": mentions}, **GREEDY
    )
    assert report.scorer_names == ["exact", "fuzzy", "mentioned"]
    assert report.scores("mentioned") == [1.0, 0.0]
    fuzzy = report.scores("fuzzy")
    assert fuzzy[0] == 1.0
    assert fuzzy[1] is not None
    assert 0.0 <= fuzzy[1] < 1.0


def test_an_example_without_the_field_a_grader_reads_is_refused_before_any_request(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    examples = [rft_style("a", answer="x"), rft_style("b", solution="y")]
    with pytest.raises(
        ConfigurationError, match=r"examples\[1\] has no 'answer'.*item.answer"
    ) as e:
        inference.evaluate(BASE, examples, EXACT, **GREEDY)
    assert e.value.param == "examples"
    assert local_faults.count("POST", CHAT) == 0


def test_an_invalid_grader_is_refused_before_any_request_naming_the_field(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    bad = dict(EXACT, refrence="{{item.answer}}")
    with pytest.raises(GraderValidationError, match="refrence") as e:
        inference.evaluate(BASE, [rft_style("a", answer="x")], bad)
    assert e.value.param == "grader.refrence"
    with pytest.raises(ConfigurationError, match="pass_threshold must be a finite number"):
        inference.evaluate(BASE, [rft_style("a", answer="x")], EXACT | {"pass_threshold": "hi"})
    assert local_faults.count("POST", CHAT) == 0


def test_evaluate_pair_takes_an_evals_testing_criterion_with_its_pass_threshold(
    inference: InferenceClient,
) -> None:
    base_answers = [inference.chat(BASE, p, **GREEDY).text for p in prompts(4)]
    # An eval's testing_criteria entry, as the Evals API took it: pass_threshold beside the grader.
    criterion = {
        "type": "text_similarity",
        "name": "similar",
        "evaluation_metric": "fuzzy_match",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "pass_threshold": 0.99,
    }
    examples = [rft_style(p, answer=a) for p, a in zip(prompts(4), base_answers, strict=True)]
    paired = inference.evaluate_pair(BASE, "gpt-4o-mini", examples, [criterion], **GREEDY)
    assert isinstance(paired, PairedEvaluationReport)
    assert paired.base.thresholds == {"similar": 0.99}
    # The alias serves the same tiny model, greedily: the same answers, the same rewards.
    assert paired.base.scores("similar") == [1.0] * 4
    assert paired.tuned.scores("similar") == paired.base.scores("similar")
    assert paired.flips("similar") == {"improved": [], "regressed": []}


def test_an_openai_python_testing_criterion_object_is_a_grader_with_its_threshold() -> None:
    from openai.types.eval_create_response import TestingCriterionEvalGraderTextSimilarity

    criterion = TestingCriterionEvalGraderTextSimilarity.construct(
        type="text_similarity",
        name="similar",
        evaluation_metric="fuzzy_match",
        input="{{sample.output_text}}",
        reference="{{item.answer}}",
        pass_threshold=0.8,
    )
    [scorer] = resolve_scorers(criterion)
    assert isinstance(scorer, GraderScorer)
    assert (scorer.name, scorer.threshold) == ("similar", 0.8)


def test_one_grader_a_list_and_a_mapping_all_resolve() -> None:
    compiled = compile_grader(EXACT)
    assert [s.name for s in resolve_scorers(EXACT)] == ["exact_answer"]
    assert [s.name for s in resolve_scorers([EXACT, "contains"])] == ["exact_answer", "contains"]
    assert [s.name for s in resolve_scorers({"mine": EXACT})] == ["mine"]
    assert [s.name for s in resolve_scorers(compiled)] == ["exact_answer"]
    score_range = {
        "type": "score_model",
        "name": "judge",
        "model": "m",
        "input": [{"role": "user", "content": "{{sample.output_text}}"}],
        "range": [0, 10],
    }
    # The default threshold is the middle of the reward's range.
    assert resolve_scorers(score_range)[0].threshold == 5.0
    compiled.close()


def test_the_async_twin_gives_the_same_scores(
    inference: InferenceClient, local_backend: LocalBackend
) -> None:
    answers = [inference.chat(BASE, p, **GREEDY).text for p in prompts(3)]
    examples = [rft_style(p, answer=a) for p, a in zip(prompts(3), answers, strict=True)]
    examples[1]["answer"] = "no"
    python = {
        "type": "python",
        "name": "length_match",
        "source": (
            "def grade(sample, item):\n"
            "    return 1.0 if len(sample['output_text']) == len(item['answer']) else 0.0\n"
        ),
    }
    sync = inference.evaluate(BASE, examples, [EXACT, python], **GREEDY)

    async def run() -> EvaluationReport:
        async with local_backend.async_client() as async_client:
            twin = AsyncInferenceClient(async_client, policy=fast_retries(), concurrency=3)
            return await twin.evaluate(BASE, examples, [EXACT, python], **GREEDY)

    asynchronous = asyncio.run(run())
    assert sync.scores("exact_answer") == asynchronous.scores("exact_answer") == [1.0, 0.0, 1.0]
    expected = [float(len(a) == len(e["answer"])) for a, e in zip(answers, examples, strict=True)]
    assert sync.scores("length_match") == asynchronous.scores("length_match") == expected


SCORE_MODEL = {
    "type": "score_model",
    "name": "helpful",
    "model": "gpt-4o-mini",
    "input": [
        {"role": "system", "content": "Score the answer from 0 to 1."},
        {"role": "user", "content": "Q: {{item.question}}\nA: {{sample.output_text}}"},
    ],
    "sampling_params": {"max_completions_tokens": 6, "temperature": 0},
}


def test_a_model_grader_asks_its_judge_through_the_evaluations_client(
    inference: InferenceClient, local_faults: FaultInjector
) -> None:
    examples = [rft_style(p, question=p) for p in prompts(2)]
    report = inference.evaluate(BASE, examples, SCORE_MODEL, concurrency=1, **GREEDY)
    # The tiny model writes no JSON: no score, and the flag says why, per example; nothing lost.
    assert report.scores("helpful") == [None, None]
    for result in report:
        assert result.reply is not None
        assert "model_grader_parse_error" in result.scorer_errors["helpful"]
    chats = local_faults.requests("POST", CHAT)
    # An answer; its judge question offers the schema as response_format, which the local
    # backend refuses (400), so it is asked again with the schema in the prompt; then the next
    # answer, whose question is asked that way at once.
    assert [r.status for r in chats] == [200, 400, 200, 200, 200]


class FixedJudge:
    """A judge registered the way a user registers one: anything with complete()."""

    def __init__(self) -> None:
        self.asked: list[GraderModelRequest] = []

    def complete(self, request: GraderModelRequest) -> GraderModelReply:
        self.asked.append(request)
        return GraderModelReply(text='{"steps": [], "result": 0.75}', model="fixed")


def test_a_model_grader_with_a_judge_of_ones_own(inference: InferenceClient) -> None:
    judge = FixedJudge()
    scorer = GraderScorer(SCORE_MODEL, model=judge, pass_threshold=0.7)
    report = inference.evaluate(BASE, [rft_style(p, question=p) for p in prompts(2)], scorer)
    assert report.scores("helpful") == [0.75, 0.75]
    assert report.pass_rate("helpful") == 1.0
    assert [r.model for r in judge.asked] == ["gpt-4o-mini"] * 2
    # Each example's question reached the judge (in whatever order the concurrent replies came).
    questions = sorted(str(r.messages[-1]["content"]).split("\n")[0] for r in judge.asked)
    assert questions == ["Q: Tell me about element 0.", "Q: Tell me about element 1."]


def test_an_async_evaluation_asks_the_judge_on_its_own_loop(local_backend: LocalBackend) -> None:
    examples = [rft_style(p, question=p) for p in prompts(2)]

    async def run() -> EvaluationReport:
        async with local_backend.async_client() as async_client:
            twin = AsyncInferenceClient(async_client, policy=fast_retries(), concurrency=2)
            return await twin.evaluate(BASE, examples, SCORE_MODEL, **GREEDY)

    report = asyncio.run(run())
    assert report.scores("helpful") == [None, None]
    assert all("model_grader_parse_error" in r.scorer_errors["helpful"] for r in report)


def test_a_model_grader_alone_needs_a_judge() -> None:
    reply = ChatReply(
        text="Hi", model="m", finish_reason="stop", prompt_tokens=1, completion_tokens=1, latency=0
    )
    case = EvalCase(messages=({"role": "user", "content": "Hi"},), extra={"question": "Hi"})
    with pytest.raises(ConfigurationError, match="asks a judge model") as e:
        GraderScorer(SCORE_MODEL).score(reply, case)
    assert e.value.param == "model"


def test_chat_grader_model_over_an_async_client_outside_an_evaluation_says_so(
    local_backend: LocalBackend,
) -> None:
    client = AsyncInferenceClient(local_backend.async_client())
    judge = ChatGraderModel(client)
    assert judge.is_async
    scorer = GraderScorer(SCORE_MODEL, model=judge)
    reply = ChatReply(
        text="Hi", model="m", finish_reason="stop", prompt_tokens=1, completion_tokens=1, latency=0
    )
    case = EvalCase(messages=({"role": "user", "content": "Hi"},), extra={"question": "Hi"})
    with pytest.raises(ConfigurationError, match="evaluate with AsyncInferenceClient"):
        scorer.score(reply, case)
    asyncio.run(client.client.close())
