"""Offline token counts for training examples, with the encodings shipped in the package.

tiktoken normally downloads its byte-pair files on first use; finetune_kit ships
``o200k_base`` (gpt-4o, gpt-4.1, o4-mini) and ``cl100k_base`` (gpt-3.5-turbo, gpt-4) gzipped
inside the package, checks each file's sha256 on load and builds the ``tiktoken.Encoding``
itself, so counting works on a machine with no network.

How an example is counted (the chat data-prep cookbook's rule, extended to today's format;
docs/tokens.md explains each choice):

- every message costs 3 tokens, plus its ``role``, its text content, and its ``name`` (+1);
- text content parts count their text; an image part counts 85 tokens at ``detail: "low"`` and
  765 otherwise (a 1024x1024 image at high detail), since the file does not say its size;
- each tool call counts its function name and its ``arguments`` string; ids are not counted;
- ``tools`` (and legacy ``functions``) count as their compact JSON, once per example;
- every example adds 3 tokens of priming;
- assistant tokens are those of assistant messages that are trained (``weight`` is not 0).

A string met again (a shared system prompt, the same ``tools`` list) is remembered from its
second sighting, so it is encoded twice however many examples repeat it, which is also what
makes counting a large file fast.

Example:
    >>> from finetune_kit.data.tokens import count_example_tokens, count_tokens
    >>> count_tokens("Hello world", "gpt-4o-mini")
    2
    >>> example = {"messages": [{"role": "user", "content": "Hi"},
    ...                         {"role": "assistant", "content": "Hello!"}]}
    >>> count_example_tokens(example, "gpt-4o-mini")
    ExampleTokens(total=14, assistant=2)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import threading
from base64 import b64decode
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import tiktoken

from ..errors import ConfigurationError, TokenizerFileError
from .base_models import get_model_info

__all__ = [
    "DEFAULT_ENCODING",
    "ENCODING_SHA256",
    "IMAGE_TOKENS_HIGH",
    "IMAGE_TOKENS_LOW",
    "PRIMING_TOKENS",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "ExampleTokens",
    "TokenCounter",
    "count_example_tokens",
    "count_tokens",
    "encoding_for_model",
    "encoding_name_for_model",
    "get_encoding",
    "read_ranks",
]

logger = logging.getLogger("finetune_kit.data.tokens")

TOKENS_PER_MESSAGE = 3
"""Tokens every message costs besides its text (the cookbook's ``tokens_per_message``)."""
TOKENS_PER_NAME = 1
"""Extra tokens when a message carries a ``name``."""
PRIMING_TOKENS = 3
"""Tokens that prime the reply, once per example."""
IMAGE_TOKENS_LOW = 85
"""An image part at ``detail: "low"`` (gpt-4o's fixed low-detail cost)."""
IMAGE_TOKENS_HIGH = 765
"""An image part at high or auto detail, taken as a 1024x1024 image (85 + 4 tiles x 170)."""

DEFAULT_ENCODING = "o200k_base"
"""The encoding used for models the table does not know."""

ENCODING_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
"""sha256 of each gunzipped encoding file: the ``expected_hash`` tiktoken itself checks."""

# Split patterns and special tokens exactly as tiktoken_ext/openai_public.py defines them
# (tiktoken 0.7 to 0.14); tests compare them with tiktoken's own definitions.
_O200K_PAT_STR = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT_STR = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_ENCODING_SPECS: dict[str, tuple[str, dict[str, int]]] = {
    "o200k_base": (_O200K_PAT_STR, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
    "cl100k_base": (
        _CL100K_PAT_STR,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}


class _ShippedEncoding(tiktoken.Encoding):
    """An encoding built from a shipped file; it pickles as its name (and rebuilds from it)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return get_encoding, (self.name,)


_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def _load_ranks(name: str) -> dict[bytes, int]:
    """Read ``<name>.tiktoken.gz`` from the package, checking its sha256."""
    resource = resources.files("finetune_kit.data") / "_encodings" / f"{name}.tiktoken.gz"
    with resources.as_file(resource) as path:
        return read_ranks(path, ENCODING_SHA256[name])


def read_ranks(path: str | os.PathLike[str], sha256: str) -> dict[bytes, int]:
    """Read a gzipped tiktoken file (``base64-token rank`` lines), checking its sha256.

    Args:
        path: The ``.tiktoken.gz`` file.
        sha256: The expected sha256 (hex) of the gunzipped content.

    Returns:
        The mergeable ranks, as ``tiktoken.Encoding`` takes them.

    Raises:
        TokenizerFileError: The file is missing, unreadable, or its hash differs.
    """
    resource = Path(path)
    where = str(resource)
    digest = hashlib.sha256()
    ranks: dict[bytes, int] = {}
    try:
        # Streamed line by line: the gunzipped file (3.6 MB for o200k) is never held whole.
        with resource.open("rb") as raw, gzip.open(raw, "rb") as lines:
            for line in lines:
                digest.update(line)
                token, rank = line.split()
                ranks[b64decode(token)] = int(rank)
    except FileNotFoundError as exc:
        raise TokenizerFileError(
            f"the tokenizer file {where} is missing; reinstall finetune-kit", path=where
        ) from exc
    except (OSError, ValueError, EOFError) as exc:
        raise TokenizerFileError(
            f"the tokenizer file {where} cannot be read ({exc}); reinstall finetune-kit",
            path=where,
        ) from exc
    actual = digest.hexdigest()
    if actual != sha256:
        raise TokenizerFileError(
            f"the tokenizer file {where} is damaged: sha256 of its content is {actual}, "
            f"expected {sha256}; reinstall finetune-kit",
            path=where,
        )
    return ranks


def get_encoding(name: str) -> tiktoken.Encoding:
    """Return the ``tiktoken.Encoding`` called ``name``, built offline from the shipped file.

    The file's sha256 is checked on first use; the encoding is then kept for the life of the
    process (building one takes about 0.3 s).

    Args:
        name: ``"o200k_base"`` or ``"cl100k_base"``.

    Returns:
        The encoding, equal to what ``tiktoken.get_encoding(name)`` would download.

    Raises:
        ConfigurationError: ``name`` is not one of the shipped encodings.
        TokenizerFileError: The shipped file is missing or does not match its sha256.
    """
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    if name not in _ENCODING_SPECS:
        raise ConfigurationError(
            f"unknown encoding {name!r}; finetune_kit ships {sorted(_ENCODING_SPECS)}",
            param="name",
        )
    with _encodings_lock:
        encoding = _encodings.get(name)
        if encoding is None:
            pat_str, special_tokens = _ENCODING_SPECS[name]
            logger.debug("building the %s encoding from the shipped file", name)
            encoding = _ShippedEncoding(
                name,
                pat_str=pat_str,
                mergeable_ranks=_load_ranks(name),
                special_tokens=dict(special_tokens),
            )
            # The ranks now live in the Rust tables; tiktoken keeps the Python dict (~35 MB for
            # o200k) only to pickle the encoding, which _ShippedEncoding does by name instead.
            encoding._mergeable_ranks = {}
            _encodings[name] = encoding
    return encoding


def encoding_name_for_model(model: str | None) -> str:
    """Name the encoding a model counts its tokens with.

    Args:
        model: Any model name the table accepts (snapshot, alias, ``ft:``, Azure); an unknown
            model or ``None`` gives ``o200k_base``, the encoding of every current model.

    Returns:
        ``"o200k_base"`` or ``"cl100k_base"``.
    """
    info = get_model_info(model)
    return info.encoding if info is not None else DEFAULT_ENCODING


def encoding_for_model(model: str | None) -> tiktoken.Encoding:
    """Return the encoding a model counts its tokens with (see ``encoding_name_for_model``).

    Args:
        model: Any model name; an unknown model or ``None`` gives ``o200k_base``.

    Returns:
        The ``tiktoken.Encoding``.
    """
    return get_encoding(encoding_name_for_model(model))


class ExampleTokens(NamedTuple):
    """The tokens of one training example.

    Attributes:
        total: All tokens of the example, overheads included (what training reads and bills).
        assistant: Tokens of the trained assistant turns (the ones the model learns to write).
    """

    total: int
    assistant: int


class TokenCounter:
    """Counts tokens of text and of training examples with one encoding.

    Strings seen twice are remembered (only strings seen twice, so a file of unique texts does
    not fill memory): a system prompt shared by every example is encoded twice, at its first
    and second sighting, and looked up after that. The memory used is bounded by
    ``cache_size`` entries.

    Args:
        encoding: An encoding name, or a ``tiktoken.Encoding``.
        cache_size: How many repeated strings to remember.

    Example:
        >>> counter = TokenCounter("o200k_base")
        >>> counter.count_text("Hello world")
        2
        >>> example = {"messages": [{"role": "user", "content": "Hi"},
        ...                         {"role": "assistant", "content": "Hello!", "weight": 0}]}
        >>> counter.count_example(example)
        ExampleTokens(total=14, assistant=0)
    """

    _SEEN_LIMIT = 32_768

    def __init__(
        self, encoding: str | tiktoken.Encoding = DEFAULT_ENCODING, *, cache_size: int = 4096
    ) -> None:
        self.encoding = get_encoding(encoding) if isinstance(encoding, str) else encoding
        self._encode = self.encoding.encode_ordinary
        self._cache: dict[str, int] = {}
        self._cache_size = max(1, cache_size)
        self._seen: set[int] = set()

    def count_text(self, text: str) -> int:
        """Count the tokens of ``text``; special tokens such as ``<|endoftext|>`` count as text.

        Args:
            text: Any string.

        Returns:
            The number of tokens, equal to ``len(encoding.encode_ordinary(text))``.
        """
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        count = len(self._encode(text))
        # Admission on the second sighting: the str hash is already computed by the lookup.
        key = hash(text)
        seen = self._seen
        if key in seen:
            cache = self._cache
            if len(cache) >= self._cache_size:
                del cache[next(iter(cache))]
            cache[text] = count
        else:
            if len(seen) >= self._SEEN_LIMIT:
                seen.clear()
            seen.add(key)
        return count

    def _content(self, content: Any) -> int:
        if type(content) is str:
            return self.count_text(content)
        if not isinstance(content, list):
            return 0
        total = 0
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if isinstance(text, str):
                    total += self.count_text(text)
            elif kind == "image_url":
                image = part.get("image_url")
                detail = image.get("detail") if isinstance(image, Mapping) else None
                total += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
        return total

    def _call(self, function: Any) -> int:
        if not isinstance(function, Mapping):
            return 0
        total = 0
        name = function.get("name")
        if isinstance(name, str):
            total += self.count_text(name)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            total += self.count_text(arguments)
        return total

    def _message(self, message: Any) -> tuple[int, int]:
        if type(message) is not dict and not isinstance(message, Mapping):
            return 0, 0
        count_text = self.count_text
        total = TOKENS_PER_MESSAGE
        role = message.get("role")
        if type(role) is str:
            total += count_text(role)
        content = message.get("content")
        written = count_text(content) if type(content) is str else self._content(content)
        if len(message) > ("role" in message) + ("content" in message):  # keys beyond those two
            name = message.get("name")
            if isinstance(name, str):
                total += count_text(name) + TOKENS_PER_NAME
            tool_calls = message.get("tool_calls")
            if isinstance(tool_calls, list):
                for call in tool_calls:
                    if isinstance(call, Mapping):
                        written += self._call(call.get("function"))
            function_call = message.get("function_call")
            if function_call is not None:
                written += self._call(function_call)
        total += written
        if role == "assistant" and message.get("weight", 1) != 0:
            return total, written
        return total, 0

    def count_message(self, message: Any) -> ExampleTokens:
        """Count one message: overhead, role, content, name, tool calls.

        Args:
            message: A message object; anything malformed counts what can be counted.

        Returns:
            The message's tokens and, for a trained assistant message, its trained tokens.
        """
        return ExampleTokens(*self._message(message))

    def count_messages(self, messages: Any) -> ExampleTokens:
        """Count a list of messages (without the example's priming tokens).

        Args:
            messages: A list of message objects.

        Returns:
            The messages' tokens and their trained assistant tokens.
        """
        if not isinstance(messages, list):
            return ExampleTokens(0, 0)
        total = assistant = 0
        count = self._message
        for message in messages:
            message_total, message_assistant = count(message)
            total += message_total
            assistant += message_assistant
        return ExampleTokens(total, assistant)

    def count_tools(self, tools: Any) -> int:
        """Count a ``tools`` (or legacy ``functions``) list as its compact JSON.

        Args:
            tools: The list, as it appears in the example.

        Returns:
            Its tokens; 0 when it is absent or cannot be written as JSON.
        """
        if not tools:
            return 0
        try:
            text = json.dumps(tools, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            return 0
        return self.count_text(text)

    def count_example(self, example: Any) -> ExampleTokens:
        """Count one training example of any kind.

        Chat and reinforcement examples count their messages and tools; a preference (DPO)
        example counts its input once plus both outputs; a legacy completion example counts its
        prompt and completion with no overhead. Malformed parts are skipped, never raised on.

        Args:
            example: The example as a JSON object (a dict).

        Returns:
            ``ExampleTokens(total, assistant)``.
        """
        if not isinstance(example, Mapping):
            return ExampleTokens(0, 0)
        messages = example.get("messages")
        if messages is not None:
            total, assistant = self.count_messages(messages)
            total += self.count_tools(example.get("tools"))
            total += self.count_tools(example.get("functions"))
            return ExampleTokens(total + PRIMING_TOKENS, assistant)
        if "input" in example or "preferred_output" in example:
            total = assistant = 0
            source = example.get("input")
            if isinstance(source, Mapping):
                total, _ = self.count_messages(source.get("messages"))
                total += self.count_tools(source.get("tools"))
            for key in ("preferred_output", "non_preferred_output"):
                counted = self.count_messages(example.get(key))
                total += counted.total
                assistant += counted.assistant
            return ExampleTokens(total + PRIMING_TOKENS, assistant)
        prompt = example.get("prompt")
        completion = example.get("completion")
        total = self.count_text(prompt) if isinstance(prompt, str) else 0
        assistant = self.count_text(completion) if isinstance(completion, str) else 0
        return ExampleTokens(total + assistant, assistant)


_counters: dict[str, TokenCounter] = {}


def _counter_for(model: str | None) -> TokenCounter:
    name = encoding_name_for_model(model)
    counter = _counters.get(name)
    if counter is None:
        counter = _counters.setdefault(name, TokenCounter(name))
    return counter


def count_tokens(text: str, model: str | None = "gpt-4o-mini-2024-07-18") -> int:
    """Count the tokens of a string with the encoding of ``model``.

    Args:
        text: Any string; special tokens such as ``<|endoftext|>`` count as ordinary text.
        model: A model name (see ``encoding_name_for_model``).

    Returns:
        The number of tokens.
    """
    return _counter_for(model).count_text(text)


def count_example_tokens(
    example: Any, model: str | None = "gpt-4o-mini-2024-07-18"
) -> ExampleTokens:
    """Count one training example's tokens the way preflight does.

    Args:
        example: The example as a dict, or a record with ``to_dict()``.
        model: A model name (see ``encoding_name_for_model``).

    Returns:
        ``ExampleTokens(total, assistant)``; see the module docstring for the rules.
    """
    to_dict = getattr(example, "to_dict", None)
    if callable(to_dict):
        example = to_dict()
    return _counter_for(model).count_example(example)
