"""A judge asks any ChatClient: scorers see clients only through that protocol."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from finetune_kit.errors import ConfigurationError
from finetune_kit.inference import ChatReply, EvalCase, ModelJudge


def _reply(text: str) -> ChatReply:
    return ChatReply(
        text=text, model="m", finish_reason="stop", prompt_tokens=1, completion_tokens=1, latency=0
    )


class _Grader:
    """A chat client of the user's own: no openai client, no InferenceClient."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, Any]] = []

    def chat(self, model: Any, messages: Any, *, system: str | None = None, **params: Any) -> Any:
        self.asked.append((model, messages))
        return _reply("Score: 4")


class _AsyncGrader(_Grader):
    async def chat(  # type: ignore[override]  # the async twin of the client above
        self, model: Any, messages: Any, *, system: str | None = None, **params: Any
    ) -> Any:
        return super().chat(model, messages, system=system, **params)


CASE = EvalCase(messages=({"role": "user", "content": "Capital of France?"},), reference="Paris")


def test_a_judge_asks_a_chat_client_of_the_users_own() -> None:
    grader = _Grader()
    judge = ModelJudge("judge-model", client=grader, scale=(1, 5))
    assert judge.client is grader
    assert judge.score(_reply("Paris"), CASE) == 0.75
    assert grader.asked[0][0] == "judge-model"
    assert asyncio.run(judge.ascore(_reply("Paris"), CASE)) == 0.75


def test_an_async_chat_client_is_awaited_and_refused_by_the_sync_score() -> None:
    judge = ModelJudge("judge-model", client=_AsyncGrader(), scale=(1, 5))
    assert asyncio.run(judge.ascore(_reply("Paris"), CASE)) == 0.75
    with pytest.raises(ConfigurationError, match="async client"):
        judge.score(_reply("Paris"), CASE)


def test_something_that_cannot_chat_is_refused_naming_the_protocol() -> None:
    with pytest.raises(ConfigurationError, match="ChatClient"):
        ModelJudge("judge-model", client=object())
