"""``BackendTokenizer``: preflight's token counts from a backend's own model, over HTTP.

The local backend fine-tunes its own base model (SmolLM2 by default), whose chat template and
tokenizer count an example very differently from OpenAI's encodings (often three times as many
tokens). Its ``POST /v1/tokenize`` route renders examples exactly as its trainer does; this
class asks it, through the ``openai`` client and the library's retry policy, and gives
preflight the answers (it is a ``finetune_kit.data.model_tokenizer.ModelTokenizer``).
``FineTuneSession`` passes one to preflight on the local backend.

Example:
    ```python
    from finetune_kit.session import BackendTokenizer
    from finetune_kit.data.validation import preflight

    with BackendTokenizer(client, "gpt-4o-mini") as tokenizer:  # a client of `local serve`
        report = preflight("train.jsonl", tokenizer=tokenizer)
    report.billing_tokens   # what one epoch of a local job reports as trained_tokens
    ```
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import openai

from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy, without_client_retries
from ..data.base_models import DataFormat
from ..data.model_tokenizer import ExampleCount, TokenizedBatch
from ..errors import LocalBackendError

__all__ = ["BackendTokenizer"]

logger = logging.getLogger("finetune_kit.backend_tokenizer")

_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Examples per request are cut at about this size (the local backend takes 16 MB bodies)."""
_MAX_REQUEST_EXAMPLES = 1000


class BackendTokenizer:
    """Counts training examples with the backend's own tokenizer (``POST /v1/tokenize``).

    Args:
        client: A client of the local backend (or of a server with the same route). An
            ``AsyncOpenAI`` client is read for its URL and key, and a sync client is made for
            the counts (preflight runs synchronously); :meth:`close` closes it.
        model: The model whose tokenizer counts (an alias, a base or a fine-tuned model);
            ``None``: the server's default base model.
        policy: The retry policy; the library's default when ``None``.

    Attributes:
        data_format: ``"chat"``: the local backend's models are chat models.
    """

    data_format: DataFormat = "chat"

    def __init__(
        self,
        client: openai.OpenAI | openai.AsyncOpenAI,
        model: str | None = None,
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.model = model
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY
        self._owned = isinstance(client, openai.AsyncOpenAI)
        if isinstance(client, openai.AsyncOpenAI):
            self._client = openai.OpenAI(
                api_key=client.api_key,
                base_url=client.base_url,
                timeout=client.timeout,
                max_retries=0,
            )
        else:
            self._client = without_client_retries(client)

    def __repr__(self) -> str:
        return f"BackendTokenizer(base_url='{self._client.base_url}', model={self.model!r})"

    def count_examples(
        self, examples: Sequence[Mapping[str, Any]], *, method: Literal["supervised", "dpo"]
    ) -> TokenizedBatch:
        """Count examples as the backend's trainer renders them.

        Args:
            examples: JSON objects, as read from a training file.
            method: How they will be trained.

        Returns:
            One count per example, in order, with the model and its context length.

        Raises:
            openai.APIError: The server refused the request (after the policy's retries).
            LocalBackendError: The server's answer is not what the route promises.
        """
        counts: list[ExampleCount] = []
        tokenizer = ""
        max_len: int | None = None
        for part in _parts(examples) if examples else iter([[]]):
            answer = self._post(part, method)
            tokenizer, max_len, found = _read(answer, len(part))
            counts.extend(found)
        logger.debug("%s counted %d example(s)", tokenizer, len(counts))
        return TokenizedBatch(tokenizer, max_len, tuple(counts))

    def _post(self, examples: Sequence[Mapping[str, Any]], method: str) -> Any:
        body: dict[str, Any] = {"examples": list(examples), "method": method}
        if self.model is not None:
            body["model"] = self.model
        return self.policy.call(self._client.post, "/tokenize", body=body, cast_to=object)

    def close(self) -> None:
        """Close the client this object made (a client passed in is left open)."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> BackendTokenizer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _parts(examples: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Cut examples into requests of bounded size, in order."""
    part: list[Mapping[str, Any]] = []
    size = 0
    for example in examples:
        length = len(json.dumps(example, ensure_ascii=False))
        if part and (size + length > _MAX_REQUEST_BYTES or len(part) == _MAX_REQUEST_EXAMPLES):
            yield part
            part, size = [], 0
        part.append(example)
        size += length
    if part:
        yield part


def _read(answer: Any, expected: int) -> tuple[str, int | None, list[ExampleCount]]:
    """Check the route's answer and turn it into counts."""
    data = answer.get("data") if isinstance(answer, dict) else None
    model = answer.get("model") if isinstance(answer, dict) else None
    max_len = answer.get("max_model_len") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != expected or not isinstance(model, str):
        raise LocalBackendError(
            f"the server's /v1/tokenize answer is not a list of {expected} count(s) with its "
            "model; is it finetune_kit's local backend, and as new as this library?"
        )
    counts: list[ExampleCount] = []
    for item in data:
        count = item.get("count") if isinstance(item, dict) else None
        if isinstance(count, int) and count >= 0:
            trained = item.get("trained")
            counts.append(ExampleCount(count, trained if isinstance(trained, int) else 0))
            continue
        error = item.get("error") if isinstance(item, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        param = error.get("param") if isinstance(error, dict) else None
        counts.append(
            ExampleCount(
                None,
                0,
                message if isinstance(message, str) else "the server could not count it",
                param if isinstance(param, str) else None,
            )
        )
    return model, max_len if isinstance(max_len, int) else None, counts
