"""Use a model: chat with it, compare two models side by side, evaluate on held-out examples.

:class:`InferenceClient` (sync) and :class:`AsyncInferenceClient` sit side by side in this file
and differ only in how they wait: the request building, reply parsing, case handling and report
assembly live in :class:`_InferenceBase`. Every request goes through the shared
:class:`~finetune_kit._retry.RetryPolicy` (the ``openai`` client's own retries are off), so rate
limits slow a run down but lose nothing: a request that still fails after its retries is
recorded as that example's error, never dropped, and results keep the input order.

Examples:
    >>> import openai
    >>> client = InferenceClient(openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1"))
    >>> client
    InferenceClient(base_url='http://127.0.0.1:9/v1/', concurrency=8)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import openai

from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy, without_client_retries
from .._urls import public_url
from ..errors import ConfigurationError
from ..jobs.views import CheckpointRecord
from .comparison import Comparison, ComparisonRow
from .evaluation import (
    EvalCase,
    EvaluationReport,
    ExampleResult,
    PairedEvaluationReport,
    to_eval_cases,
)
from .replies import ChatReply, ReplyToolCall
from .scorers import (
    FATAL_API_ERRORS,
    Scorer,
    ScorerLike,
    ascore_reply,
    check_references,
    resolve_scorers,
    score_reply,
)

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "DEFAULT_CONCURRENCY",
    "AsyncInferenceClient",
    "InferenceClient",
    "model_name",
]

logger = logging.getLogger("finetune_kit.inference")

DEFAULT_CONCURRENCY = 8
"""Requests in flight at once during compare and evaluate, unless told otherwise."""

ClientT = TypeVar("ClientT", openai.OpenAI, openai.AsyncOpenAI)
T = TypeVar("T")
R = TypeVar("R")

Prompt = str | Sequence[Mapping[str, Any]]
"""A prompt: a user message's text, or a list of message dicts."""


def model_name(model: Any) -> str:
    """The model name to send, from a name, a job, a checkpoint or a saved checkpoint record.

    Args:
        model: A model name (``"gpt-4o-mini"``, ``"ft:..."``); a fine-tuning job (its
            ``fine_tuned_model``); a job checkpoint (its ``fine_tuned_model_checkpoint``); or a
            ``CheckpointRecord``, such as a session's state keeps (its ``model``).

    Returns:
        The name.

    Raises:
        ConfigurationError: No name can be found, or the job has no fine-tuned model yet.

    Examples:
        >>> model_name("ft:gpt-4o-mini:org::abc123")
        'ft:gpt-4o-mini:org::abc123'
    """
    if isinstance(model, str):
        if not model.strip():
            raise ConfigurationError("model is empty: give a model name", param="model")
        return model
    checkpoint = getattr(model, "fine_tuned_model_checkpoint", None)
    if isinstance(checkpoint, str) and checkpoint:
        return checkpoint
    if hasattr(model, "fine_tuned_model"):
        tuned = model.fine_tuned_model
        if isinstance(tuned, str) and tuned:
            return tuned
        raise ConfigurationError(
            f"job {getattr(model, 'id', '?')} has no fine-tuned model yet (status "
            f"{getattr(model, 'status', '?')}); wait for it to succeed or pass a model name",
            param="model",
        )
    if isinstance(model, CheckpointRecord):
        return model.model
    raise ConfigurationError(
        "model must be a model name, a fine-tuning job or a checkpoint, "
        f"not {type(model).__name__}",
        param="model",
    )


def _describe_error(exc: BaseException) -> str:
    request_id = getattr(exc, "request_id", None)
    suffix = f" (request id {request_id})" if request_id else ""
    return f"{type(exc).__name__}: {exc}{suffix}"


def _is_async_client(client: object) -> bool:
    # Checked at run time because a user may hand the wrong twin its client.
    return isinstance(client, openai.AsyncOpenAI)


# Errors recorded for one example (after the policy's retries) instead of stopping the run.
_RECORDED_ERRORS = (openai.APIError,)


@dataclass(frozen=True)
class _Outcome:
    reply: ChatReply | None
    error: str | None


class _InferenceBase(Generic[ClientT]):
    """What the sync and async clients share: everything but the waiting."""

    def __init__(
        self,
        client: ClientT,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._client: ClientT = without_client_retries(client)
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY
        self.concurrency = self._check_concurrency(concurrency)

    @property
    def client(self) -> ClientT:
        """The ``openai`` client in use (its own retries off)."""
        return self._client

    def __repr__(self) -> str:
        url = public_url(str(self._client.base_url))
        return f"{type(self).__name__}(base_url={url!r}, concurrency={self.concurrency})"

    @staticmethod
    def _check_concurrency(concurrency: int) -> int:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be a whole number of at least 1, got {concurrency!r}",
                param="concurrency",
            )
        return concurrency

    def _concurrency(self, concurrency: int | None) -> int:
        return self.concurrency if concurrency is None else self._check_concurrency(concurrency)

    @staticmethod
    def _messages(messages: Prompt, system: str | None) -> list[dict[str, Any]]:
        if isinstance(messages, str):
            out: list[dict[str, Any]] = [{"role": "user", "content": messages}]
        else:
            out = [dict(m) for m in messages]
            if not out:
                raise ConfigurationError("messages is empty: give at least one", param="messages")
        if system is not None:
            if any(m.get("role") in ("system", "developer") for m in out):
                raise ConfigurationError(
                    "system= was given but the messages already start with a system or "
                    "developer message; give one or the other",
                    param="system",
                )
            out.insert(0, {"role": "system", "content": system})
        return out

    @staticmethod
    def _request(
        model: Any,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        case: EvalCase | None = None,
    ) -> dict[str, Any]:
        if params.get("stream"):
            raise ConfigurationError(
                "stream=True is not supported here: a reply is collected whole", param="stream"
            )
        request: dict[str, Any] = {"model": model_name(model), "messages": list(messages)}
        if case is not None and case.tools is not None:
            request["tools"] = [dict(t) for t in case.tools]
            if case.parallel_tool_calls is not None:
                request["parallel_tool_calls"] = case.parallel_tool_calls
        # Parameters given to the call win over what an example declares.
        request.update(params)
        return request

    @staticmethod
    def _reply(completion: Any, latency: float, attempts: int) -> ChatReply:
        choices = getattr(completion, "choices", None) or []
        message = choices[0].message if choices else None
        calls = []
        for call in getattr(message, "tool_calls", None) or []:
            function = getattr(call, "function", None)
            if function is not None:
                calls.append(ReplyToolCall(function.name, function.arguments or "", call.id))
            elif getattr(call, "custom", None) is not None:
                calls.append(ReplyToolCall(call.custom.name, call.custom.input or "", call.id))
        usage = getattr(completion, "usage", None)
        return ChatReply(
            text=(getattr(message, "content", None) or "") if message is not None else "",
            model=getattr(completion, "model", "") or "",
            finish_reason=choices[0].finish_reason if choices else None,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            latency=latency,
            tool_calls=tuple(calls),
            request_id=getattr(completion, "_request_id", None),
            attempts=attempts,
            raw=completion,
        )

    @staticmethod
    def _failed(request: Mapping[str, Any], exc: BaseException) -> _Outcome:
        """A request that failed after its retries: kept as its cell's error, not raised."""
        logger.debug("request to %s failed after retries: %s", request["model"], exc)
        return _Outcome(None, _describe_error(exc))

    @staticmethod
    def _compare_cases(prompts: Any, system: str | None) -> list[EvalCase]:
        if isinstance(prompts, str):
            prompts = [prompts]
        cases = to_eval_cases(prompts, system=system)
        if not cases:
            raise ConfigurationError("prompts is empty: give at least one", param="prompts")
        return cases

    def _jobs(
        self, models: Sequence[Any], cases: Sequence[EvalCase], params: Mapping[str, Any]
    ) -> list[tuple[int, EvalCase, Mapping[str, Any]]]:
        """One request per case and model, the models of a case side by side."""
        return [
            (i, case, self._request(model, case.messages, params, case))
            for i, case in enumerate(cases)
            for model in models
        ]

    @staticmethod
    def _comparison(
        models: tuple[Any, Any],
        cases: Sequence[EvalCase],
        outcomes: Sequence[_Outcome],
        elapsed: float,
    ) -> Comparison:
        base, tuned = outcomes[0::2], outcomes[1::2]
        rows = [
            ComparisonRow(
                case=case,
                base=base[i].reply,
                tuned=tuned[i].reply,
                base_error=base[i].error,
                tuned_error=tuned[i].error,
            )
            for i, case in enumerate(cases)
        ]
        return Comparison(model_name(models[0]), model_name(models[1]), rows, elapsed=elapsed)

    def _prepare_evaluation(
        self,
        examples: Any,
        scorers: ScorerLike | Sequence[ScorerLike] | Mapping[str, ScorerLike] | None,
        system: str | None,
    ) -> tuple[list[EvalCase], list[Scorer]]:
        if isinstance(examples, str):
            raise ConfigurationError(
                "examples is a string; give a Dataset, a list of examples or of "
                "(prompt, reference) pairs",
                param="examples",
            )
        cases = to_eval_cases(examples, system=system)
        # The ignore: self is always one of the two twins, which mypy cannot see from the base.
        resolved = [scorer.bind(self) for scorer in resolve_scorers(scorers)]  # type: ignore[arg-type]
        check_references(resolved, cases)
        return cases, resolved

    @staticmethod
    def _report(
        model: Any,
        results: Sequence[ExampleResult],
        scorers: Sequence[Scorer],
        elapsed: float,
        concurrency: int,
    ) -> EvaluationReport:
        return EvaluationReport(
            model=model_name(model),
            results=tuple(results),
            thresholds={s.name: s.threshold for s in scorers},
            elapsed=elapsed,
            concurrency=concurrency,
        )

    @staticmethod
    def _progress(enabled: bool, total: int, description: str) -> tqdm[Any] | None:
        if not enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=description, unit="request")


class InferenceClient(_InferenceBase[openai.OpenAI]):
    """Chat with, compare and evaluate models through an ``openai.OpenAI`` client.

    Every request goes through ``retry`` (the shared policy by default); the client is used with
    its own retries off. ``compare`` and ``evaluate`` keep at most ``concurrency`` requests in
    flight, on a pool of threads.

    Args:
        client: An ``openai.OpenAI`` (or ``AzureOpenAI``) client.
        policy: The retry policy; by default the library's shared one.
        concurrency: Requests in flight at once during compare and evaluate.

    Examples:
        >>> import openai
        >>> inference = InferenceClient(openai.OpenAI(api_key="sk-test"), concurrency=16)
        >>> inference.concurrency
        16

        With a backend running, ``inference.chat("gpt-4o-mini", "Tell me about Neon").text``
        is the answer, and ``print(inference.compare(base, tuned, prompts))`` prints the table.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if _is_async_client(client):
            raise ConfigurationError(
                "InferenceClient needs a sync openai.OpenAI client; use AsyncInferenceClient "
                "for an AsyncOpenAI client",
                param="client",
            )
        super().__init__(client, policy=policy, concurrency=concurrency)

    def _send(self, request: Mapping[str, Any]) -> ChatReply:
        attempts = 0
        latency = 0.0

        def attempt() -> Any:
            nonlocal attempts, latency
            attempts += 1
            started = time.perf_counter()
            completion = self._client.chat.completions.create(**request)
            latency = time.perf_counter() - started
            return completion

        completion = self.policy.call(attempt)
        return self._reply(completion, latency, attempts)

    def _outcome(self, request: Mapping[str, Any]) -> _Outcome:
        try:
            return _Outcome(self._send(request), None)
        except FATAL_API_ERRORS:
            raise
        except _RECORDED_ERRORS as exc:
            return self._failed(request, exc)

    def _map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        concurrency: int,
        progress: tqdm[Any] | None = None,
    ) -> list[R]:
        if not items:
            return []
        pool = ThreadPoolExecutor(
            max_workers=min(concurrency, len(items)), thread_name_prefix="finetune_kit"
        )
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        try:
            for future in as_completed(futures):
                # Only errors that must stop the run get here: the others are recorded.
                error = future.exception()
                if error is not None:
                    raise error
                if progress is not None:
                    progress.update(1)
        except Exception:
            # The requests already sent fail as fast (the same key, the same missing model), so
            # wait for them: none is left running on the client after this returns.
            logger.debug("stopping: cancelling the requests not yet started")
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        except BaseException:
            # Ctrl-C: return at once; requests in flight end on their own.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            if progress is not None:
                progress.close()
        pool.shutdown(wait=True)
        return [future.result() for future in futures]

    def chat(
        self,
        model: Any,
        messages: Prompt,
        *,
        system: str | None = None,
        **params: Any,
    ) -> ChatReply:
        """Send one chat request and return the reply.

        Args:
            model: A model name (base, ``ft:`` tuned model, or checkpoint), a fine-tuning job or a
                checkpoint object.
            messages: The user's text, or a list of message dicts.
            system: A system message to put first.
            **params: Other ``chat.completions.create`` parameters (``temperature``,
                ``max_tokens``, ``tools``, ``seed``...).

        Returns:
            The reply (text, tool calls, tokens, latency, finish reason, model).

        Raises:
            ConfigurationError: A parameter cannot be used.
            openai.APIError: The request failed after the policy's retries.
        """
        request = self._request(model, self._messages(messages, system), params)
        return self._send(request)

    def compare(
        self,
        base_model: Any,
        tuned_model: Any,
        prompts: Prompt | Iterable[Any],
        *,
        system: str | None = None,
        concurrency: int | None = None,
        **params: Any,
    ) -> Comparison:
        """Ask both models the same prompts and put the answers side by side.

        Args:
            base_model: The base model (a name, job or checkpoint).
            tuned_model: The tuned model (a name, job or checkpoint).
            prompts: One prompt, or several: strings, message lists, or examples (whose
                reference answer is kept, and whose last assistant turn is not sent).
            system: A system message for prompts that have none.
            concurrency: Requests in flight at once (default: the client's).
            **params: Chat parameters for every request (``temperature``, ``max_tokens``...).

        Returns:
            The comparison; a request that failed after its retries shows as that cell's error.

        Raises:
            ConfigurationError: A prompt or parameter cannot be used.
            openai.AuthenticationError: The key was refused (the comparison stops).
            openai.NotFoundError: A model does not exist (the comparison stops).
        """
        models = (base_model, tuned_model)
        cases = self._compare_cases(prompts, system)
        jobs = self._jobs(models, cases, params)
        started = time.perf_counter()
        outcomes = self._map(
            self._outcome, [job[2] for job in jobs], self._concurrency(concurrency)
        )
        return self._comparison(models, cases, outcomes, time.perf_counter() - started)

    def _evaluate_one(
        self, job: tuple[int, EvalCase, Mapping[str, Any]], scorers: Sequence[Scorer]
    ) -> ExampleResult:
        index, case, request = job
        outcome = self._outcome(request)
        if outcome.reply is None:
            return ExampleResult(index=index, case=case, error=outcome.error)
        scores, errors = score_reply(scorers, outcome.reply, case)
        return ExampleResult(index, case, outcome.reply, None, scores, errors)

    def evaluate(
        self,
        model: Any,
        examples: Iterable[Any],
        scorers: ScorerLike | Sequence[ScorerLike] | Mapping[str, ScorerLike] | None = None,
        *,
        system: str | None = None,
        concurrency: int | None = None,
        progress: bool = False,
        **params: Any,
    ) -> EvaluationReport:
        """Answer every held-out example with one model and score the answers.

        Args:
            model: The model (a name, job or checkpoint).
            examples: A ``Dataset``, chat examples (the last assistant turn is the reference),
                ``(prompt, reference)`` pairs, or
                :class:`~finetune_kit.inference.evaluation.EvalCase` values.
            scorers: One scorer or several (see :mod:`finetune_kit.inference.scorers`), a
                built-in's name, any callable ``(reply, case) -> float | bool``, or a
                ``{name: scorer}`` mapping. Default: exact match.
            system: A system message for examples that have none.
            concurrency: Requests in flight at once (default: the client's).
            progress: Show a progress bar.
            **params: Chat parameters for every request (``temperature``, ``max_tokens``...).

        Returns:
            One result per example, in input order; a request that failed after its retries is
            that example's ``error``.

        Raises:
            ConfigurationError: An example or scorer cannot be used (before any request).
            openai.AuthenticationError: The key was refused (the evaluation stops).
            openai.NotFoundError: The model does not exist (the evaluation stops).
        """
        cases, resolved = self._prepare_evaluation(examples, scorers, system)
        limit = self._concurrency(concurrency)
        jobs = self._jobs((model,), cases, params)
        bar = self._progress(progress, len(jobs), f"evaluating {model_name(model)}")
        started = time.perf_counter()
        results = self._map(lambda job: self._evaluate_one(job, resolved), jobs, limit, bar)
        return self._report(model, results, resolved, time.perf_counter() - started, limit)

    def evaluate_pair(
        self,
        base_model: Any,
        tuned_model: Any,
        examples: Iterable[Any],
        scorers: ScorerLike | Sequence[ScorerLike] | Mapping[str, ScorerLike] | None = None,
        *,
        system: str | None = None,
        concurrency: int | None = None,
        progress: bool = False,
        confidence: float = 0.95,
        n_resamples: int = 10_000,
        seed: int = 0,
        **params: Any,
    ) -> PairedEvaluationReport:
        """Evaluate a base and a tuned model on the same examples and compare them.

        Both models' requests share one pool, so the pair takes about as long as one model at
        twice the concurrency.

        Args:
            base_model: The base model (a name, job or checkpoint).
            tuned_model: The tuned model (a name, job or checkpoint).
            examples: As for :meth:`evaluate`.
            scorers: As for :meth:`evaluate`.
            system: A system message for examples that have none.
            concurrency: Requests in flight at once (default: the client's).
            progress: Show a progress bar.
            confidence: Coverage of the bootstrap intervals of the mean differences.
            n_resamples: Bootstrap resamples.
            seed: Bootstrap seed.
            **params: Chat parameters for every request.

        Returns:
            The paired report: per-example scores of both, flips, mean differences with bootstrap
            intervals.
        """
        cases, resolved = self._prepare_evaluation(examples, scorers, system)
        limit = self._concurrency(concurrency)
        jobs = self._jobs((base_model, tuned_model), cases, params)
        bar = self._progress(progress, len(jobs), "evaluating base and tuned")
        started = time.perf_counter()
        results = self._map(lambda job: self._evaluate_one(job, resolved), jobs, limit, bar)
        elapsed = time.perf_counter() - started
        return PairedEvaluationReport(
            self._report(base_model, results[0::2], resolved, elapsed, limit),
            self._report(tuned_model, results[1::2], resolved, elapsed, limit),
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )


class AsyncInferenceClient(_InferenceBase[openai.AsyncOpenAI]):
    """The async twin of :class:`InferenceClient`, for an ``openai.AsyncOpenAI`` client.

    The same methods, awaited; ``compare`` and ``evaluate`` bound the requests in flight with a
    semaphore instead of threads, and give the same results as the sync client.

    Args:
        client: An ``openai.AsyncOpenAI`` (or ``AsyncAzureOpenAI``) client.
        policy: The retry policy; by default the library's shared one.
        concurrency: Requests in flight at once during compare and evaluate.

    Examples:
        >>> import openai
        >>> inference = AsyncInferenceClient(openai.AsyncOpenAI(api_key="sk-test"))
        >>> inference.concurrency
        8

        In async code: ``reply = await inference.chat("gpt-4o-mini", "Tell me about Neon")``.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if not _is_async_client(client):
            raise ConfigurationError(
                "AsyncInferenceClient needs an openai.AsyncOpenAI client; use InferenceClient "
                "for a sync openai.OpenAI client",
                param="client",
            )
        super().__init__(client, policy=policy, concurrency=concurrency)

    async def _send(self, request: Mapping[str, Any]) -> ChatReply:
        attempts = 0
        latency = 0.0

        async def attempt() -> Any:
            nonlocal attempts, latency
            attempts += 1
            started = time.perf_counter()
            completion = await self._client.chat.completions.create(**request)
            latency = time.perf_counter() - started
            return completion

        completion = await self.policy.acall(attempt)
        return self._reply(completion, latency, attempts)

    async def _outcome(self, request: Mapping[str, Any]) -> _Outcome:
        try:
            return _Outcome(await self._send(request), None)
        except FATAL_API_ERRORS:
            raise
        except _RECORDED_ERRORS as exc:
            return self._failed(request, exc)

    async def _map(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Sequence[T],
        concurrency: int,
        progress: tqdm[Any] | None = None,
    ) -> list[R]:
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(item: T) -> R:
            async with semaphore:
                return await fn(item)

        tasks = [asyncio.ensure_future(bounded(item)) for item in items]
        try:
            for next_done in asyncio.as_completed(tasks):
                await next_done
                if progress is not None:
                    progress.update(1)
        except BaseException:
            logger.debug("stopping: cancelling the requests not yet finished")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if progress is not None:
                progress.close()
        return [task.result() for task in tasks]

    async def chat(
        self,
        model: Any,
        messages: Prompt,
        *,
        system: str | None = None,
        **params: Any,
    ) -> ChatReply:
        """Send one chat request and return the reply (see :meth:`InferenceClient.chat`).

        Args:
            model: A model name, a fine-tuning job or a checkpoint object.
            messages: The user's text, or a list of message dicts.
            system: A system message to put first.
            **params: Other ``chat.completions.create`` parameters.

        Returns:
            The reply.
        """
        request = self._request(model, self._messages(messages, system), params)
        return await self._send(request)

    async def compare(
        self,
        base_model: Any,
        tuned_model: Any,
        prompts: Prompt | Iterable[Any],
        *,
        system: str | None = None,
        concurrency: int | None = None,
        **params: Any,
    ) -> Comparison:
        """Ask both models the same prompts (see :meth:`InferenceClient.compare`).

        Args:
            base_model: The base model.
            tuned_model: The tuned model.
            prompts: One prompt, or several.
            system: A system message for prompts that have none.
            concurrency: Requests in flight at once (default: the client's).
            **params: Chat parameters for every request.

        Returns:
            The comparison.
        """
        models = (base_model, tuned_model)
        cases = self._compare_cases(prompts, system)
        jobs = self._jobs(models, cases, params)
        started = time.perf_counter()
        outcomes = await self._map(
            self._outcome, [job[2] for job in jobs], self._concurrency(concurrency)
        )
        return self._comparison(models, cases, outcomes, time.perf_counter() - started)

    async def _evaluate_one(
        self, job: tuple[int, EvalCase, Mapping[str, Any]], scorers: Sequence[Scorer]
    ) -> ExampleResult:
        index, case, request = job
        outcome = await self._outcome(request)
        if outcome.reply is None:
            return ExampleResult(index=index, case=case, error=outcome.error)
        scores, errors = await ascore_reply(scorers, outcome.reply, case)
        return ExampleResult(index, case, outcome.reply, None, scores, errors)

    async def evaluate(
        self,
        model: Any,
        examples: Iterable[Any],
        scorers: ScorerLike | Sequence[ScorerLike] | Mapping[str, ScorerLike] | None = None,
        *,
        system: str | None = None,
        concurrency: int | None = None,
        progress: bool = False,
        **params: Any,
    ) -> EvaluationReport:
        """Answer and score every held-out example (see :meth:`InferenceClient.evaluate`).

        Args:
            model: The model.
            examples: The examples.
            scorers: The scorers (default: exact match).
            system: A system message for examples that have none.
            concurrency: Requests in flight at once (default: the client's).
            progress: Show a progress bar.
            **params: Chat parameters for every request.

        Returns:
            One result per example, in input order.
        """
        cases, resolved = self._prepare_evaluation(examples, scorers, system)
        limit = self._concurrency(concurrency)
        jobs = self._jobs((model,), cases, params)
        bar = self._progress(progress, len(jobs), f"evaluating {model_name(model)}")
        started = time.perf_counter()
        results = await self._map(lambda job: self._evaluate_one(job, resolved), jobs, limit, bar)
        return self._report(model, results, resolved, time.perf_counter() - started, limit)

    async def evaluate_pair(
        self,
        base_model: Any,
        tuned_model: Any,
        examples: Iterable[Any],
        scorers: ScorerLike | Sequence[ScorerLike] | Mapping[str, ScorerLike] | None = None,
        *,
        system: str | None = None,
        concurrency: int | None = None,
        progress: bool = False,
        confidence: float = 0.95,
        n_resamples: int = 10_000,
        seed: int = 0,
        **params: Any,
    ) -> PairedEvaluationReport:
        """Evaluate base and tuned on the same examples (see :meth:`InferenceClient.evaluate_pair`).

        Args:
            base_model: The base model.
            tuned_model: The tuned model.
            examples: The examples.
            scorers: The scorers (default: exact match).
            system: A system message for examples that have none.
            concurrency: Requests in flight at once (default: the client's).
            progress: Show a progress bar.
            confidence: Coverage of the bootstrap intervals.
            n_resamples: Bootstrap resamples.
            seed: Bootstrap seed.
            **params: Chat parameters for every request.

        Returns:
            The paired report.
        """
        cases, resolved = self._prepare_evaluation(examples, scorers, system)
        limit = self._concurrency(concurrency)
        jobs = self._jobs((base_model, tuned_model), cases, params)
        bar = self._progress(progress, len(jobs), "evaluating base and tuned")
        started = time.perf_counter()
        results = await self._map(lambda job: self._evaluate_one(job, resolved), jobs, limit, bar)
        elapsed = time.perf_counter() - started
        return PairedEvaluationReport(
            self._report(base_model, results[0::2], resolved, elapsed, limit),
            self._report(tuned_model, results[1::2], resolved, elapsed, limit),
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
