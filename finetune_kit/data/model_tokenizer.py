"""The hook through which preflight counts tokens with a backend's own model.

Preflight counts tokens offline with tiktoken, as OpenAI's models count them. A backend that
fine-tunes another model counts differently: the local backend renders each example with its
base model's chat template and tokenizer, so the same example is often several times as many
tokens there. A ``ModelTokenizer`` gives preflight those counts: preflight hands it the examples,
a block at a time, and it answers what the backend's trainer would count for each.

This package never talks to a network: the hook is a protocol, filled by a caller that may
(``FineTuneSession`` on the local backend passes one that asks the server's ``/v1/tokenize``).

Example:
    >>> class ByChars:
    ...     data_format = "chat"
    ...     def count_examples(self, examples, *, method):
    ...         counts = tuple(ExampleCount(len(str(e)), 1) for e in examples)
    ...         return TokenizedBatch("chars", None, counts)
    >>> from finetune_kit.data.validation import preflight
    >>> row = {"messages": [{"role": "user", "content": "Hi"},
    ...                     {"role": "assistant", "content": "Yo"}]}
    >>> report = preflight([row] * 10, tokenizer=ByChars())
    >>> report.encoding, report.total_tokens.max
    ('chars', 89)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .base_models import DataFormat

__all__ = ["ExampleCount", "ModelTokenizer", "TokenizedBatch"]


@dataclass(frozen=True)
class ExampleCount:
    """What a backend's trainer counts for one example.

    Attributes:
        total: Tokens of the example as rendered for training, before any truncation (what
            one epoch bills); ``None`` when the backend cannot render the example.
        trained: Tokens that are trained on (the assistant turns with weight 1).
        error: Why the backend cannot use the example, when it cannot.
        field: The field the error is about, such as ``messages[1].content[0]``.
    """

    total: int | None
    trained: int = 0
    error: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class TokenizedBatch:
    """The counts of a block of examples.

    Attributes:
        tokenizer: What counted them (the base model's name), reported as the encoding.
        max_example_tokens: The longest example the model trains on whole (its context
            length); a longer one is cut off. ``None`` when unknown.
        counts: One count per example, in order.
    """

    tokenizer: str
    max_example_tokens: int | None
    counts: tuple[ExampleCount, ...]


class ModelTokenizer(Protocol):
    """Counts training examples' tokens as a backend's own model does.

    Attributes:
        data_format: The format of supervised examples the model takes (``"chat"`` for a
            chat model): data in the other format is a ``format_not_supported`` error.
    """

    data_format: DataFormat

    def count_examples(
        self, examples: Sequence[Mapping[str, Any]], *, method: Literal["supervised", "dpo"]
    ) -> TokenizedBatch:
        """Count a block of examples.

        Args:
            examples: JSON objects, as read from the file.
            method: How they will be trained.

        Returns:
            One count per example, in order.
        """
        ...
