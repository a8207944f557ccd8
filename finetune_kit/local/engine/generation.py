"""Chat with local base models and their fine-tuned adapters, many requests batched together.

``Generator`` serves ``/v1/chat/completions`` for the local backend. Each base model is loaded
once; fine-tuned models and checkpoints are LoRA adapters swapped in on one ``PeftModel``, named
by their folder, the least recently used evicted beyond ``max_adapters``.

Requests from any number of threads go to one background thread, which owns the models. It
waits a few milliseconds for more requests to arrive, then decodes them together
(``finetune_kit.local.engine.batch_decoding``): one forward pass per new token for the whole batch,
requests that arrive meanwhile joining it at the next token, each sequence leaving it when it ends.
Rows may use different adapters of the same base. On a small CPU a forward pass costs about the
same for one row or eight, so concurrent requests multiply the throughput.

Sampling follows OpenAI's parameters: ``temperature`` 0 is greedy; ``top_p`` keeps the smallest
set of tokens whose probability reaches it; ``seed`` makes a request reproducible whatever it is
batched with (each choice draws from its own generator seeded from it); ``n`` asks for several
choices; ``stop`` holds up to four strings that end a choice and are not returned.

Example:
    >>> from finetune_kit.local.engine.registry import ModelRegistry
    >>> generator = Generator(ModelRegistry())
    >>> result = generator.chat(
    ...     ModelRef("tiny-random"), [{"role": "user", "content": "Hi"}],
    ...     max_tokens=5, temperature=0)
    >>> result.choices[0].finish_reason, result.completion_tokens
    ('length', 5)
    >>> generator.close()
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError, LocalBackendError
from ._quiet import quiet_loading
from .batch_decoding import (
    BASE_ADAPTER,
    BaseSlot,
    BatchDecoder,
    DecodeParams,
    DecodeRequest,
    FinishReason,
)
from .chat_format import ChatRenderer, MessageFormatError, normalize_messages
from .device import resolve_device
from .precision import DtypeName, resolve_dtype
from .registry import ModelRegistry
from .tiny_model import TINY_MODEL_NAME
from .training import threads_for

__all__ = [
    "ChatChoice",
    "ChatDelta",
    "ChatResult",
    "ChatStream",
    "Generator",
    "ModelRef",
    "sampling_params",
]

logger = logging.getLogger("finetune_kit.local.generation")

# 2**56 * 131 + 127 (the largest per-choice seed) stays below 2**64, the most torch accepts.
_SEED_SPAN = 2**56


def sampling_params(
    *,
    context: int,
    n_prompt: int,
    default_max_tokens: int,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    n: int,
) -> DecodeParams:
    """Check a request's sampling parameters against OpenAI's ranges and the model's context.

    Shared by every engine, so a request is refused alike whichever serves it.

    Args:
        context: The model's context in tokens.
        n_prompt: Tokens of the rendered prompt.
        default_max_tokens: A choice's token limit when the request gives none (bounded by the
            room the prompt leaves).
        max_tokens: The request's limit, or ``None``.
        temperature: 0 to 2; ``None`` means 1.
        top_p: In (0, 1]; ``None`` means 1.
        stop: Up to four non-empty strings.
        seed: Any integer, folded into 56 bits; ``None`` draws one.
        n: Choices, 1 to 128.

    Raises:
        ConfigurationError: A parameter is out of range, or the prompt leaves no room
            (``param`` names which).

    Example:
        >>> sampling_params(context=100, n_prompt=10, default_max_tokens=512, max_tokens=None,
        ...                 temperature=0, top_p=None, stop="x", seed=1, n=1).max_tokens
        90
    """
    temperature = 1.0 if temperature is None else float(temperature)
    top_p = 1.0 if top_p is None else float(top_p)
    if not 0 <= temperature <= 2:
        raise ConfigurationError(f"temperature is {temperature}; use 0 to 2", param="temperature")
    if not 0 < top_p <= 1:
        raise ConfigurationError(f"top_p is {top_p}; use a number in (0, 1]", param="top_p")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
        raise ConfigurationError(f"n is {n!r}; use 1 to 128", param="n")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ConfigurationError("stop takes up to 4 non-empty strings", param="stop")
    room = context - n_prompt
    if room < 1:
        raise ConfigurationError(
            f"the prompt is {n_prompt} tokens; this model's context is {context}: "
            "shorten the messages",
            param="messages",
        )
    if max_tokens is None:
        limit = min(default_max_tokens, room)
    elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigurationError(f"max_tokens is {max_tokens!r}; use 1 or more", param="max_tokens")
    elif max_tokens > room:
        raise ConfigurationError(
            f"max_tokens is {max_tokens}, but the prompt ({n_prompt} tokens) leaves {room} of "
            f"this model's {context}-token context; lower max_tokens",
            param="max_tokens",
        )
    else:
        limit = max_tokens
    if seed is None:
        seed = int.from_bytes(os.urandom(6), "big")
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed is {seed!r}; use an integer", param="seed")
    # Each choice's generator is seeded with seed * 131 + index, which torch takes only within
    # 64 bits: any integer is folded into 56 bits first (seeds below 2**56 are unchanged).
    return DecodeParams(limit, temperature, top_p, stops, seed % _SEED_SPAN, n)


@dataclass(frozen=True)
class ModelRef:
    """A model to chat with: a base model, optionally with a LoRA adapter.

    Attributes:
        base: A base model name, alias or path (see ``ModelRegistry.resolve``).
        adapter_path: The adapter folder of a fine-tuned model or checkpoint; ``None`` for the
            base model itself.
    """

    base: str
    adapter_path: Path | None = None


@dataclass(frozen=True)
class ChatChoice:
    """One generated answer.

    Attributes:
        index: Its position among the request's ``n`` choices.
        text: The answer (stop strings excluded).
        finish_reason: ``"stop"`` (end of turn or a stop string) or ``"length"`` (token limit).
        completion_tokens: Tokens generated for it.
    """

    index: int
    text: str
    finish_reason: FinishReason
    completion_tokens: int


@dataclass(frozen=True)
class ChatResult:
    """A whole chat completion.

    Attributes:
        choices: One per requested choice, by index.
        prompt_tokens: Tokens of the rendered prompt (counted once, whatever ``n``).
        completion_tokens: Tokens generated over all choices.
        base_model: The base model really used.
    """

    choices: list[ChatChoice]
    prompt_tokens: int
    completion_tokens: int
    base_model: str

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatDelta:
    """A piece of a streamed answer.

    Attributes:
        index: The choice it belongs to.
        text: New text (may be empty on the final delta).
        finish_reason: Set on the choice's last delta.
    """

    index: int
    text: str
    finish_reason: FinishReason | None = None


class ChatStream:
    """The deltas of a streamed chat completion, and its token counts once it is consumed.

    Iterate it to get ``ChatDelta`` items as tokens are generated; ``prompt_tokens`` is known at
    once, ``completion_tokens`` when iteration ends. Closing it (or leaving the loop early and
    dropping it) stops the generation.
    """

    def __init__(self, request: DecodeRequest, base_model: str) -> None:
        self._request = request
        self.base_model = base_model
        self.prompt_tokens = len(request.prompt_ids)
        self.choice_tokens = [0] * request.params.n
        self._remaining = request.params.n

    @property
    def completion_tokens(self) -> int:
        """Tokens generated over all choices (complete once iteration has ended)."""
        return sum(self.choice_tokens)

    def __iter__(self) -> Iterator[ChatDelta]:
        try:
            while self._remaining:
                event = self._request.events.get()
                if isinstance(event, BaseException):
                    raise event
                index, text, finish, tokens = event
                if finish is not None:
                    self._remaining -= 1
                    self.choice_tokens[index] = tokens
                yield ChatDelta(index, text, finish)
        finally:
            self.close()

    def close(self) -> None:
        """Stop generating (no-op once every choice has finished)."""
        if self._remaining:
            self._request.cancelled.set()


_OPEN_GENERATORS: weakref.WeakSet[Generator] = weakref.WeakSet()


@atexit.register
def _close_open_generators() -> None:
    # A decoding thread still inside torch when the interpreter tears down aborts the process
    # ("terminate called without an active exception"): stop them first.
    for generator in list(_OPEN_GENERATORS):
        generator.close()


class Generator:
    """Chat completions from local models, thread-safe, concurrent requests batched.

    Args:
        registry: Resolves and loads base models.
        max_adapters: Adapters kept loaded; the least recently used is evicted beyond this.
        max_batch_size: Sequences decoded together at most.
        batch_window: Seconds to wait for more requests before decoding a batch.
        default_max_tokens: Token limit of a choice when the request gives none (OpenAI's is
            the context window; a CPU is better served by a bound).
        num_threads: Torch CPU threads (``None``: see ``training.threads_for``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (see
            ``finetune_kit.local.engine.device``); ``None`` reads ``$FINETUNE_KIT_LOCAL_DEVICE``.
        dtype: ``"auto"``, ``"float32"`` or ``"bfloat16"`` for the base weights and adapters (see
            ``finetune_kit.local.engine.precision``).

    Example:
        >>> generator = Generator(ModelRegistry(default_model="tiny-random"))
        >>> stream = generator.stream(ModelRef("gpt-4o-mini"), [{"role": "user", "content": "Hi"}],
        ...                           max_tokens=3, temperature=0)
        >>> [delta.finish_reason for delta in stream][-1]
        'length'
        >>> generator.close()
    """

    name = "torch"
    """The engine's name (``engine.serving.ChatEngine``)."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        max_adapters: int = 4,
        max_batch_size: int = 16,
        batch_window: float = 0.005,
        default_max_tokens: int = 512,
        num_threads: int | None = None,
        dtype: DtypeName = "auto",
        device: str | None = None,
    ) -> None:
        if max_adapters < 1 or max_batch_size < 1:
            raise ConfigurationError(
                "max_adapters and max_batch_size must be at least 1", param="max_adapters"
            )
        self.registry = registry
        self.max_adapters = max_adapters
        self.max_batch_size = max_batch_size
        self.batch_window = batch_window
        self.default_max_tokens = default_max_tokens
        self.num_threads = num_threads
        self.dtype = dtype
        self.device = device
        self._slots: dict[str, BaseSlot] = {}
        self._slot_lock = threading.Lock()
        self._adapters: OrderedDict[tuple[str, Path], str] = OrderedDict()
        self._pending: list[DecodeRequest] = []
        self._condition = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches_run = 0
        """Batches decoded so far."""
        self.largest_batch = 0
        """The most sequences decoded together so far."""

    def __repr__(self) -> str:
        return f"Generator(bases={sorted(self._slots)}, adapters={len(self._adapters)})"

    # -- public API -------------------------------------------------------------------------

    def serves(self, model: ModelRef) -> bool:
        """Always true: the built-in decoder serves every model (``engine.serving``)."""
        return True

    def chat(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> ChatResult:
        """Generate a chat completion.

        Args:
            model: The base model and optional adapter.
            messages: OpenAI-style messages (see ``normalize_messages``).
            tools: Tool declarations, written into the system message as in training.
            max_tokens: Token limit of each choice (``None``: ``default_max_tokens``).
            temperature: 0 to 2; 0 is greedy; ``None`` means 1.
            top_p: Nucleus sampling mass in (0, 1]; ``None`` means 1.
            stop: Up to four strings that end a choice.
            seed: Makes sampling reproducible; any integer (seeds equal modulo ``2**56`` sample
                alike).
            n: Number of choices.

        Returns:
            The choices and token counts.

        Raises:
            ConfigurationError: A parameter is out of range, a message cannot be read, or the
                prompt does not fit the model's context (``param`` names which).
            LocalBackendError: The model or adapter cannot be loaded.
        """
        stream = self.stream(
            model,
            messages,
            tools=tools,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            n=n,
        )
        texts = [""] * n
        finishes: list[FinishReason] = ["length"] * n
        for delta in stream:
            texts[delta.index] += delta.text
            if delta.finish_reason is not None:
                finishes[delta.index] = delta.finish_reason
        choices = [ChatChoice(i, texts[i], finishes[i], stream.choice_tokens[i]) for i in range(n)]
        return ChatResult(
            choices, stream.prompt_tokens, stream.completion_tokens, stream.base_model
        )

    def stream(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        n: int = 1,
    ) -> ChatStream:
        """Start a chat completion and return its deltas as they are generated.

        Takes the same arguments as ``chat``; errors in the arguments are raised here, before
        any delta.
        """
        slot = self._slot(model.base)
        prompt_ids = self.prompt_ids(model, messages, tools=tools)
        params = self._params(slot, len(prompt_ids), max_tokens, temperature, top_p, stop, seed, n)
        adapter = Path(model.adapter_path).resolve() if model.adapter_path is not None else None
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise ConfigurationError(
                f"no adapter in {str(adapter)!r}: the folder has no adapter_config.json",
                param="model",
            )
        request = DecodeRequest(slot.name, adapter, prompt_ids, params)
        with self._condition:
            if self._closed:
                raise LocalBackendError("the generator is closed")
            self._pending.append(request)
            self._ensure_thread()
            self._condition.notify()
        return ChatStream(request, slot.name)

    def prompt_ids(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """Token ids of the prompt a request would send to the model (counts prompt tokens).

        Raises:
            ConfigurationError: A message cannot be read (``param="messages"``).
        """
        slot = self._slot(model.base)
        try:
            normalized = normalize_messages(messages, tools)
            # The model's template may refuse the conversation too (Gemma's: roles that do not
            # alternate): a request error, not a server error.
            return slot.renderer.render_prompt(normalized)
        except MessageFormatError as exc:
            raise ConfigurationError(str(exc), param="messages") from exc

    def loaded_adapters(self) -> list[Path]:
        """Adapter folders currently loaded, least recently used first."""
        with self._slot_lock:
            return [path for (_, path) in self._adapters]

    def close(self) -> None:
        """Stop the background thread; pending requests fail with ``LocalBackendError``."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- preparation (callers' threads) ------------------------------------------------------

    def _slot(self, base: str) -> BaseSlot:
        import torch

        name = self.registry.resolve(base)
        with self._slot_lock:
            slot = self._slots.get(name)
            if slot is None:
                # A private instance: adapters are injected into it, which must not leak into
                # the registry's shared copy.
                device = resolve_device(self.device)
                bfloat16 = (
                    resolve_dtype(self.dtype, tiny=name == TINY_MODEL_NAME, device=device)
                    == "bfloat16"
                )
                model, tokenizer = self.registry.load(
                    name,
                    shared=False,
                    dtype=torch.bfloat16 if bfloat16 else torch.float32,
                    device=device.name,
                )
                eos = {int(tokenizer.eos_token_id)}
                eos.update(_as_ids(getattr(model.generation_config, "eos_token_id", None)))
                context = int(getattr(model.config, "max_position_embeddings", 2048))
                slot = BaseSlot(
                    name, model, tokenizer, ChatRenderer(tokenizer), frozenset(eos), context
                )
                self._slots[name] = slot
            return slot

    def _params(
        self,
        slot: BaseSlot,
        n_prompt: int,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        stop: str | Sequence[str] | None,
        seed: int | None,
        n: int,
    ) -> DecodeParams:
        return sampling_params(
            context=slot.context,
            n_prompt=n_prompt,
            default_max_tokens=self.default_max_tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            n=n,
        )

    # -- the decoding thread -----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            _OPEN_GENERATORS.add(self)
            self._thread = threading.Thread(
                target=self._serve, name="finetune_kit-generator", daemon=True
            )
            self._thread.start()

    def _serve(self) -> None:
        import torch

        threads = 0
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if self._closed:
                    failed, self._pending = self._pending, []
                    for request in failed:
                        request.events.put(LocalBackendError("the generator is closed"))
                    return
                wait = self._pending[0].created + self.batch_window - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self._condition:
                batch = self._take(None, set(), self.max_batch_size)
            if not batch:
                continue
            decoder = BatchDecoder(self._slots[batch[0].base])
            wanted = threads_for(decoder.slot.name, self.num_threads)
            if wanted != threads:
                # Process-wide, but this thread is the only one computing in the server.
                torch.set_num_threads(wanted)
                threads = wanted
            self.batches_run += 1
            try:
                self._admit(decoder, batch)
                while decoder.rows:
                    if self._is_closed():
                        decoder.fail(LocalBackendError("the generator is closed"))
                        break
                    decoder.step()
                    room = self.max_batch_size - len(decoder.rows)
                    if room > 0 and self._pending:
                        with self._condition:
                            joining = self._take(decoder.slot.name, self._paths(decoder), room)
                        if joining:
                            self._admit(decoder, joining)
            except BaseException as exc:  # every waiting caller must hear of the failure
                logger.exception("generation failed")
                error = LocalBackendError(f"generation failed: {exc}")
                decoder.fail(error)
                for request in batch:
                    request.events.put(error)

    def _is_closed(self) -> bool:
        # A method, not the attribute: another thread flips it while this one decodes.
        return self._closed

    def _paths(self, decoder: BatchDecoder) -> set[Path]:
        return {r.adapter for r in decoder.requests() if r.adapter is not None}

    def _take(self, base: str | None, adapters: set[Path], room: int) -> list[DecodeRequest]:
        """Take pending requests of one base model that fit the room and the adapter limit.

        Args:
            base: The base model; ``None`` for the oldest pending request's.
            adapters: Adapters the running batch already uses.
            room: Rows available (a lone request larger than the room still goes alone).
        """
        self._pending = [r for r in self._pending if not r.cancelled.is_set()]
        if not self._pending:
            return []
        base = base or self._pending[0].base
        chosen: list[DecodeRequest] = []
        adapters = set(adapters)
        rows = 0
        for request in self._pending:
            if request.base != base:
                continue
            fits = rows + request.params.n <= room
            # A request with more choices than a batch holds starts a batch of its own.
            alone = not chosen and room == self.max_batch_size
            if not fits and not alone:
                continue
            if request.adapter is not None and request.adapter not in adapters:
                if len(adapters) == self.max_adapters:
                    continue
                adapters.add(request.adapter)
            chosen.append(request)
            rows += request.params.n
            if not fits:
                break
        self._pending = [r for r in self._pending if r not in chosen]
        return chosen

    def _admit(self, decoder: BatchDecoder, requests: list[DecodeRequest]) -> None:
        """Load the requests' adapters and add them to the running batch."""
        names: dict[int, str] = {}
        ready: list[DecodeRequest] = []
        in_use = set(decoder.adapters_in_use)
        for request in requests:
            if request.adapter is None:
                names[id(request)] = BASE_ADAPTER
                ready.append(request)
                continue
            try:
                name = self._adapter_name(decoder.slot, request.adapter, in_use)
            except LocalBackendError as exc:
                request.events.put(exc)
                continue
            in_use.add(name)
            names[id(request)] = name
            ready.append(request)
        if ready:
            decoder.add(ready, names)
            self.largest_batch = max(self.largest_batch, len(decoder.rows))

    def _adapter_name(self, slot: BaseSlot, path: Path, in_use: set[str]) -> str:
        """Load an adapter (or find it loaded), evicting the least recently used idle ones."""
        from peft import PeftModel

        key = (slot.name, path)
        with self._slot_lock:
            name = self._adapters.get(key)
            if name is not None:
                self._adapters.move_to_end(key)
                return name
        name = "a" + hashlib.sha1(str(path).encode()).hexdigest()[:16]
        try:
            with quiet_loading():
                if slot.peft is None:
                    # Adapters take the base weights' dtype (bfloat16 on capable CPUs): inference
                    # needs no float32 master copy.
                    slot.peft = PeftModel.from_pretrained(
                        slot.model,
                        str(path),
                        adapter_name=name,
                        is_trainable=False,
                        autocast_adapter_dtype=False,
                    )
                    slot.peft.eval()
                else:
                    slot.peft.load_adapter(
                        str(path),
                        adapter_name=name,
                        is_trainable=False,
                        autocast_adapter_dtype=False,
                    )
        except Exception as exc:  # peft raises many kinds for a bad folder; all mean the same
            raise LocalBackendError(f"cannot load the adapter in {str(path)!r}: {exc}") from exc
        with self._slot_lock:
            self._adapters[key] = name
            evicted = []
            idle = [k for k, v in self._adapters.items() if v not in in_use and v != name]
            while len(self._adapters) > self.max_adapters and idle:
                old = idle.pop(0)
                evicted.append((old, self._adapters.pop(old)))
        logger.debug("loaded adapter %s from %s", name, path)
        for (old_base, old_path), old_name in evicted:
            self._slots[old_base].peft.delete_adapter(old_name)
            logger.debug("evicted adapter %s (%s)", old_name, old_path)
        return name


def _as_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}
