"""Chat through llama.cpp: base models, fine-tuned models and checkpoints at llama.cpp's speed.

``LlamaCppEngine`` is a ``ChatEngine`` (``engine.serving``). It runs one llama.cpp server
process per base model: the server embedded in the ``xllamacpp`` wheel (installed with the
``local`` extra, prebuilt, no compiler), or a ``llama-server`` binary named by
``$FINETUNE_KIT_LLAMA_SERVER`` (a faster build of one's own: docs/local-models.md). The
process decodes the requests of up to ``slots`` sequences together (continuous batching), each
in a KV cache of its own when the slots' caches fit in ``kv_cache_mib``, and holds the base's
fine-tuned adapters as GGUF LoRA adapters, one base shared by all.

What it serves (``serves``): the default SmolLM2 (its Q4_1 GGUF file, the very weights training
dequantized), any ``.gguf`` base, and Hugging Face folders of the Llama architecture (converted
once into the cache folder: ``gguf.hf_folder_to_gguf``); with each, the LoRA adapters
``gguf.write_adapter_gguf`` can convert. ``tiny-random`` (built in memory) and everything else
stays with the torch ``Generator``.

How a request runs:

- The prompt is rendered by ``chat_format`` with the base's own tokenizer, tool declarations and
  calls written as training wrote them, and sent as token ids to the native ``/completion``
  endpoint, so llama.cpp sees exactly the tokens a tuned model was trained on. Answers come back
  as text for the chat service's tool-call parsing.
- Parameters are checked as the torch engine checks them (``generation.sampling_params``);
  sampling is OpenAI's: temperature and ``top_p`` only (llama.cpp's ``top_k``, ``min_p`` and
  penalties off); ``temperature`` 0 is greedy. Each of the ``n`` choices is a request of its own,
  seeded ``seed * 131 + index``, so a seed gives the same answers run after run.
- A request without a seed reuses the longest prefix of its prompt a slot holds (llama.cpp's
  ``cache_prompt``: a shared system prompt is evaluated once, as OpenAI's prompt caching); the
  rest is then evaluated in other batch shapes, whose arithmetic differs, so the same request
  may get another greedy answer. A seeded request is evaluated whole, every time.
- ``stop`` strings end a choice and are not returned; llama.cpp's stop reasons ``eos`` and
  ``word`` read ``stop``, ``limit`` reads ``length``.
- Every request names every loaded adapter with its scale (1 for its own, 0 for the others):
  llama.cpp applies an adapter a request leaves out at its global scale.

Adapters are loaded when a process starts, not into a running one; so the first request for an
adapter the process lacks starts a new process with it (and the most recently used others, up to
``max_adapters``), waits until it answers, switches to it and stops the old one once its last
request has ended (blue/green). A job's runner writes each adapter's GGUF when it is saved;
one that is missing (an older job) is written on first use.

Threads: llama.cpp's OpenMP threads meet at a barrier after each of the graph's operations,
hundreds per token. Sleeping there (``OMP_WAIT_POLICY=PASSIVE``, which the backend sets
for torch) makes the engine several times slower, and a LoRA adapter's extra operations slower
still; spinning as long as libgomp does by default makes two engine processes decoding at once
(two models) many times slower on a small machine, each spinning while the other's threads hold
the cores. So each process waits with ``GOMP_SPINCOUNT=300``: longer than a barrier's usual
wait, and short enough that a thread whose partner is not running soon gives its core up
(``bench/llama_threads.py`` measures the three).
A user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is kept.

Example:
    >>> from finetune_kit.local.engine.registry import ModelRegistry
    >>> engine = LlamaCppEngine(ModelRegistry(default_model="tiny-random"))
    >>> engine.serves(ModelRef("tiny-random"))
    False
    >>> engine.close()
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ...errors import ConfigurationError, LocalBackendError
from .batch_decoding import DecodeParams, FinishReason
from .chat_format import ChatRenderer, MessageFormatError, normalize_messages
from .generation import ChatChoice, ChatDelta, ChatResult, ModelRef, sampling_params
from .gguf import (
    BaseLayout,
    GgufHeader,
    UnsupportedModelError,
    adapter_unsupported_reason,
    gguf_architecture,
    hf_folder_to_gguf,
    requantize_gguf,
    unsupported_reason,
    write_adapter_gguf,
    write_merged_gguf,
)
from .registry import USER_OMP_WAIT_POLICY, ModelRegistry, ModelSource

__all__ = [
    "LLAMA_KV_CACHE_ENV",
    "LLAMA_SERVER_ENV",
    "LLAMA_THREADS_ENV",
    "TUNED_WEIGHTS",
    "EngineProcess",
    "LlamaCppEngine",
    "base_layout",
    "base_unsupported_reason",
    "gguf_unsupported_reason",
    "llama_cpp_unavailable_reason",
    "served_base_gguf",
    "write_served_adapter",
]

logger = logging.getLogger("finetune_kit.local.llama_cpp")

LLAMA_SERVER_ENV = "FINETUNE_KIT_LLAMA_SERVER"
"""A ``llama-server`` binary (or the folder holding it) to run instead of xllamacpp's server."""

LLAMA_THREADS_ENV = "FINETUNE_KIT_LLAMA_THREADS"
"""Threads of each llama.cpp process (default: every core this process may use)."""

LLAMA_KV_CACHE_ENV = "FINETUNE_KIT_LLAMA_KV_CACHE_MIB"
"""``LlamaCppEngine``'s ``kv_cache_mib`` when none is given (default: 2048)."""

_CHILD = Path(__file__).with_name("_llama_child.py")
# Run by path, not as a module (importing the package would slow the start), and without its
# folder on sys.path: engine/types.py would shadow the standard library's types.
_RUN_CHILD = (
    "import runpy, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "runpy.run_path(sys.argv[1], run_name='__main__')"
)
# llama.cpp's seed is 32 bits and 0xFFFFFFFF asks it for a random one.
_SEED_SPAN = 2**32 - 1
_FINISH: dict[str, FinishReason] = {"eos": "stop", "word": "stop", "limit": "length"}
ENGINE_SPINCOUNT = 300
"""Spins of a waiting OpenMP thread before it sleeps (``GOMP_SPINCOUNT`` of each process)."""
TUNED_WEIGHTS = ("adapter", "merged")
"""How ``LlamaCppEngine`` serves a tuned model (its ``tuned_weights``; the server's setting,
``local.settings.TUNED_WEIGHTS``, names the same choices: the engine imports nothing above it)."""


def _server_binary() -> Path | None:
    raw = os.environ.get(LLAMA_SERVER_ENV, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if path.is_dir():
        path = path / "llama-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ConfigurationError(
            f"${LLAMA_SERVER_ENV} is {raw!r}, which is no llama-server executable; build one "
            "(docs/local-models.md) or unset it to use the one in the xllamacpp wheel",
            param=LLAMA_SERVER_ENV,
        )
    return path


def llama_cpp_unavailable_reason() -> str | None:
    """Why llama.cpp cannot run here, or ``None`` when it can.

    It can when ``$FINETUNE_KIT_LLAMA_SERVER`` names a ``llama-server`` or the ``xllamacpp``
    wheel is installed (``pip install 'finetune-kit[local]'``).
    """
    try:
        if _server_binary() is not None:
            return None
    except ConfigurationError as exc:
        return str(exc)
    if importlib.util.find_spec("xllamacpp") is None:
        return "the xllamacpp package is not installed (pip install 'finetune-kit[local]')"
    return None


def base_unsupported_reason(registry: ModelRegistry, source: ModelSource) -> str | None:
    """Why llama.cpp does not serve a base model here, or ``None`` when it does.

    Reads headers only (``config.json``, the GGUF metadata): nothing is converted or loaded.
    """
    unavailable = llama_cpp_unavailable_reason()
    if unavailable is not None:
        return unavailable
    return gguf_unsupported_reason(registry, source)


def gguf_unsupported_reason(registry: ModelRegistry, source: ModelSource) -> str | None:
    """Why a base model has no GGUF form with Llama adapters here, or ``None`` when it has."""
    if source.kind == "tiny":
        return f"{source.name} is built in memory for tests"
    if source.kind == "hf":
        assert source.path is not None
        return unsupported_reason(source.path)
    try:
        path = source.path if source.path is not None else registry.default_gguf_path()
        architecture = gguf_architecture(path)
    except LocalBackendError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:
        return f"{source.name} cannot be read as GGUF: {exc}"
    if architecture != "llama":
        # llama.cpp serves it, but adapters are converted for Llama only: one engine for a
        # base and its tuned models keeps their answers comparable.
        return f"its architecture is {architecture!r}; adapters are converted for Llama"
    return None


def base_layout(registry: ModelRegistry, name: str) -> BaseLayout:
    """The layout adapters of a base model are converted for (no GGUF is made for it).

    Raises:
        UnsupportedModelError: The base has no GGUF form here (the message says why).
    """
    source = registry.source(name)
    reason = gguf_unsupported_reason(registry, source)
    if reason is not None:
        raise UnsupportedModelError(f"{source.name} has no GGUF form here: {reason}")
    if source.kind == "hf":
        assert source.path is not None
        return BaseLayout.from_config(source.path)
    return BaseLayout.from_gguf(source.path or registry.default_gguf_path())


def _cache_file(registry: ModelRegistry, key: str, stem: str) -> Path:
    import hashlib

    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return registry.cache_dir / "gguf" / f"{stem}-{digest}.gguf"


def served_base_gguf(registry: ModelRegistry, name: str, *, base_type: str = "same") -> Path:
    """The GGUF file llama.cpp serves for a base model, made once and cached when needed.

    A GGUF base is served as it is (``base_type="same"``) or as a copy in ``base_type``
    (``"Q8_0"``); a Llama-architecture folder is converted (``gguf.hf_folder_to_gguf``) into
    the registry's cache folder, keyed by the folder and its files' sizes and times, so a
    changed model is converted anew.

    Raises:
        ConfigurationError: The name is unknown.
        LocalBackendError: The model has no GGUF form here (the message says why).
    """
    source = registry.source(name)
    reason = gguf_unsupported_reason(registry, source)
    if reason is not None:
        raise LocalBackendError(f"{source.name} has no GGUF form here: {reason}")
    if source.kind == "hf":
        assert source.path is not None
        folder = source.path
        files = sorted(p for p in folder.iterdir() if p.is_file())
        key = json.dumps(
            [str(folder)] + [[p.name, p.stat().st_size, p.stat().st_mtime] for p in files]
        )
        target = _cache_file(registry, key, folder.name.lower().replace(" ", "-"))
        if not target.is_file():
            logger.info("converting %s to GGUF for llama.cpp (once): %s", folder, target)
            try:
                hf_folder_to_gguf(folder, target)
            except UnsupportedModelError as exc:
                raise LocalBackendError(str(exc)) from exc
        return target
    path = source.path if source.path is not None else registry.default_gguf_path()
    if base_type == "same":
        return path
    stat = path.stat()
    key = json.dumps([str(path), stat.st_size, stat.st_mtime, base_type])
    target = _cache_file(registry, key, f"{path.stem}.{base_type}".lower())
    if not target.is_file():
        logger.info("writing a %s copy of %s for llama.cpp (once)", base_type, path)
        requantize_gguf(path, target, type_name=base_type)
    return target


def write_served_adapter(registry: ModelRegistry, base: str, adapter: Path) -> Path:
    """Write the GGUF LoRA adapter llama.cpp serves a fine-tuned model or checkpoint with.

    Called by a job's worker when it saves an adapter, so the first chat need not convert it.

    Args:
        registry: Resolves the base model.
        base: The base model the adapter was trained on.
        adapter: The peft adapter folder.

    Returns:
        The GGUF file (``adapter/adapter.gguf``).

    Raises:
        UnsupportedModelError: llama.cpp does not serve the base or the adapter (the message
            says why: the torch generator serves the model then).
    """
    return write_adapter_gguf(adapter, base_layout(registry, base))


def _environment_number(variable: str, least: int) -> int | None:
    """The whole number in ``$variable``, or ``None`` when it is unset or blank.

    Raises:
        ConfigurationError: It is not a whole number of at least ``least`` (names the variable).
    """
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = least - 1
    if value < least:
        raise ConfigurationError(
            f"${variable} is {raw!r}; give a whole number of at least {least}", param=variable
        )
    return value


def _threads() -> int:
    value = _environment_number(LLAMA_THREADS_ENV, 1)
    if value is not None:
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _engine_environment() -> dict[str, str]:
    """The environment of an engine process: libgomp's short spin (see the module docstring)."""
    env = dict(os.environ)
    if USER_OMP_WAIT_POLICY is None:
        env.pop("OMP_WAIT_POLICY", None)  # the backend's PASSIVE, meant for torch
    env.setdefault("GOMP_SPINCOUNT", str(ENGINE_SPINCOUNT))
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EngineProcess:
    """One llama.cpp server process: a base GGUF model and its adapters, on a port of 127.0.0.1.

    Args:
        model: The base GGUF file.
        adapters: GGUF LoRA adapters to load (each request names its own, by index).
        slots: Sequences decoded together.
        context: Tokens of the KV cache: split evenly between the slots, or ``unified``, one
            cache each request may use all of.
        threads: Compute threads.
        log_path: Where the process writes its log.
        unified: One cache shared by the slots rather than one per slot.
    """

    def __init__(
        self,
        model: Path,
        adapters: Sequence[Path],
        *,
        slots: int,
        context: int,
        threads: int,
        log_path: Path,
        unified: bool = False,
    ) -> None:
        self.model = model
        self.adapters = list(adapters)
        self.adapter_ids = {path: index for index, path in enumerate(self.adapters)}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = secrets.token_urlsafe(24)
        self.inflight = 0
        self.retired = False
        binary = _server_binary()
        env = _engine_environment()
        if binary is not None:
            self.kind = f"llama-server ({binary})"
            command = [
                str(binary),
                "--model",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--threads",
                str(threads),
                "--threads-batch",
                str(threads),
                "--parallel",
                str(slots),
                "--ctx-size",
                str(context),
                "--no-webui",
                "--lora-init-without-apply",
            ]
            if unified:
                command.append("--kv-unified")
            for adapter in self.adapters:
                command += ["--lora", str(adapter)]
            # llama-server reads its options from LLAMA_ARG_* too: the key stays off argv.
            env["LLAMA_ARG_API_KEY"] = self.key
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [str(binary.parent), env.get("LD_LIBRARY_PATH", "")]
            ).rstrip(os.pathsep)
        else:
            self.kind = "xllamacpp"
            spec = {
                "model": str(model),
                "adapters": [str(a) for a in self.adapters],
                "port": self.port,
                "slots": slots,
                "context": context,
                "unified": unified,
                "threads": threads,
                "parent": os.getpid(),
            }
            command = [sys.executable, "-c", _RUN_CHILD, str(_CHILD), json.dumps(spec)]
            env["FINETUNE_KIT_LLAMA_KEY"] = self.key
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115  # lives with the process
        logger.info(
            "starting llama.cpp (%s) on %s with %d adapter(s); log: %s",
            self.kind,
            model.name,
            len(self.adapters),
            log_path,
        )
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, close_fds=True
        )

    def __repr__(self) -> str:
        return f"EngineProcess({self.model.name!r}, adapters={len(self.adapters)}, {self.url})"

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server answers ``/health``.

        Raises:
            LocalBackendError: It exited, or did not answer within ``timeout`` seconds (the
                message points at its log).
        """
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise LocalBackendError(
                    f"the llama.cpp engine for {self.model.name} exited with code "
                    f"{self.process.returncode} before serving; see {self.log_path}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise LocalBackendError(
                    f"the llama.cpp engine for {self.model.name} did not answer within "
                    f"{timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process."""
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@dataclass
class _Base:
    """A base model served by llama.cpp: its GGUF file, tokenizer and current process."""

    name: str
    gguf: Path
    layout: BaseLayout
    renderer: ChatRenderer
    context: int
    kv_token_bytes: int  # of the KV cache (f16 keys and values, every layer)
    label: str = ""  # names the process logs (default: the base's name)
    process: EngineProcess | None = None
    recent: OrderedDict[Path, None] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    restart_lock: threading.Lock = field(default_factory=threading.Lock)
    starts: int = 0
    # A merged model dropped from the engine's list: a process started for a request that
    # still held it serves that request, then stops.
    evicted: bool = False


class LlamaCppEngine:
    """Chat completions through llama.cpp server processes (see the module docstring).

    Args:
        registry: Resolves base model names (and holds the cache folder for converted GGUFs).
        default_max_tokens: A choice's token limit when a request gives none.
        slots: Sequences each process decodes together.
        max_context: The most tokens a request may span (a model's own context may be less).
        max_adapters: Adapters one process holds at most (the most recently used are kept).
        kv_cache_mib: The most memory a process's KV cache may take for a cache per slot, each
            as long as a request may be (the faster layout under concurrent requests); a model
            whose slots need more shares one cache of 2,048 tokens a slot between them. The
            default SmolLM2-135M's 8 slots of 8,192 tokens take 1,440 MiB. ``None``:
            ``$FINETUNE_KIT_LLAMA_KV_CACHE_MIB``, else 2,048.
        threads: Threads of each process (``None``: ``$FINETUNE_KIT_LLAMA_THREADS`` or every
            core).
        base_type: ``"same"`` serves a GGUF base as it is; ``"Q8_0"`` serves a Q8_0 copy of a
            quantized one (llama.cpp batches Q8_0 faster than Q4_1, at the cost of serving
            weights that differ from the trained-on ones by Q8_0's rounding).
        log_dir: Where the processes write their logs (default: the cache folder).
        start_timeout: Seconds a process may take to load its model.
        tuned_weights: How a fine-tuned model or checkpoint is served: ``"adapter"`` (its GGUF
            LoRA adapter applied per request to the shared base: the trained weights exactly,
            one process for a base and all its tuned models) or ``"merged"`` (base + adapter
            merged into a GGUF of its own, written beside the adapter by the job's worker (or
            on first use), served by
            a process of its own: as fast as the base, within Q8_0 rounding of base + adapter,
            one process and one KV cache per tuned model in use).
        max_merged: Merged models served at once with ``tuned_weights="merged"`` (the least
            recently used one's process stops, once idle, when another is needed).
    """

    name = "llama.cpp"

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        default_max_tokens: int = 512,
        slots: int = 8,
        max_context: int = 8192,
        max_adapters: int = 8,
        kv_cache_mib: int | None = None,
        threads: int | None = None,
        base_type: str = "same",
        log_dir: Path | None = None,
        start_timeout: float = 120.0,
        tuned_weights: str = "adapter",
        max_merged: int = 2,
    ) -> None:
        if slots < 1 or max_adapters < 1 or max_merged < 1:
            raise ConfigurationError(
                "slots, max_adapters and max_merged must be at least 1", param="slots"
            )
        if tuned_weights not in TUNED_WEIGHTS:
            raise ConfigurationError(
                f"tuned_weights is {tuned_weights!r}; use {' or '.join(TUNED_WEIGHTS)}",
                param="tuned_weights",
            )
        self.registry = registry
        self.default_max_tokens = default_max_tokens
        self.slots = slots
        self.max_context = max_context
        self.max_adapters = max_adapters
        if kv_cache_mib is None:
            kv_cache_mib = _environment_number(LLAMA_KV_CACHE_ENV, 0)
        self.kv_cache_mib = 2048 if kv_cache_mib is None else kv_cache_mib
        self.threads = threads
        self.base_type = base_type
        self.log_dir = log_dir or registry.cache_dir / "logs"
        self.start_timeout = start_timeout
        self.tuned_weights = tuned_weights
        self.max_merged = max_merged
        self._bases: dict[str, _Base] = {}
        # Merged tuned models by adapter folder, least recently used first.
        self._merged: OrderedDict[Path, _Base] = OrderedDict()
        self._bases_lock = threading.Lock()
        self._reasons: dict[str, str | None] = {}
        self._closed = False
        self._adapter_lock = threading.Lock()
        import httpx

        # No kept-alive connections: the server may close one right after a stream ends, and
        # a request sent on it would fail (a fresh loopback connection costs far less).
        self.http = httpx.Client(
            timeout=httpx.Timeout(30.0, read=None),
            limits=httpx.Limits(max_keepalive_connections=0),
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"LlamaCppEngine(bases={sorted(self._bases)})"

    # -- which models ------------------------------------------------------------------------

    def unsupported_reason(self, model: ModelRef) -> str | None:
        """Why this engine does not serve ``model``, or ``None`` when it does (cached per base)."""
        try:
            base = self.registry.resolve(model.base)
        except ConfigurationError as exc:
            return str(exc)
        if base not in self._reasons:
            self._reasons[base] = self._base_reason(self.registry.source(base))
        reason = self._reasons[base]
        if reason is None and model.adapter_path is not None:
            return adapter_unsupported_reason(Path(model.adapter_path))
        return reason

    def _base_reason(self, source: ModelSource) -> str | None:
        return base_unsupported_reason(self.registry, source)

    def serves(self, model: ModelRef) -> bool:
        """Whether llama.cpp serves ``model`` (its base and adapter have a GGUF form)."""
        return self.unsupported_reason(model) is None

    # -- bases and processes -----------------------------------------------------------------

    def _base(self, name: str) -> _Base:
        canonical = self.registry.resolve(name)
        with self._bases_lock:
            base = self._bases.get(canonical)
            if base is None:
                base = self._prepare(canonical)
                self._bases[canonical] = base
            return base

    def base_gguf(self, name: str) -> Path:
        """The GGUF file this engine serves for a base model (see ``served_base_gguf``)."""
        return served_base_gguf(self.registry, name, base_type=self.base_type)

    def _prepare(self, name: str) -> _Base:
        reason = self._base_reason(self.registry.source(name))
        if reason is not None:
            raise LocalBackendError(f"llama.cpp does not serve {name}: {reason}")
        gguf = self.base_gguf(name)
        header = GgufHeader.read(gguf)
        layout = BaseLayout.from_header(header)
        arch = layout.architecture
        trained = int(header.metadata.get(f"{arch}.context_length", 2048))
        head_dim = int(header.metadata[f"{arch}.embedding_length"]) // layout.n_head
        key = int(header.metadata.get(f"{arch}.attention.key_length", head_dim))
        value = int(header.metadata.get(f"{arch}.attention.value_length", head_dim))
        kv_token_bytes = int(header.metadata[f"{arch}.block_count"]) * layout.n_head_kv
        kv_token_bytes *= (key + value) * 2
        renderer = ChatRenderer(self.registry.tokenizer(name))
        return _Base(name, gguf, layout, renderer, min(trained, self.max_context), kv_token_bytes)

    def _start(self, base: _Base, adapters: Sequence[Path]) -> EngineProcess:
        base.starts += 1
        # A cache per slot, each as long as a request may be, when they fit in kv_cache_mib:
        # a sequence then attends over its own cache alone, where one shared cache makes each
        # of the batch attend over the others' cells too (masked, yet not free: bench/serve.py
        # measures both layouts). Else one cache of 2,048 tokens a slot, shared, so a request
        # may still use its whole context.
        per_slot = self.slots * base.context
        unified = per_slot * base.kv_token_bytes > self.kv_cache_mib * 2**20
        context = max(base.context, min(2048, base.context) * self.slots) if unified else per_slot
        stem = base.label or Path(base.name).stem
        process = EngineProcess(
            base.gguf,
            adapters,
            slots=self.slots,
            context=context,
            threads=self.threads or _threads(),
            log_path=self.log_dir / f"llama-cpp-{stem}-{base.starts}.log",
            unified=unified,
        )
        try:
            process.wait_ready(self.start_timeout)
        except BaseException:
            process.stop()
            raise
        return process

    def _adapter_gguf(self, base: _Base, adapter: Path) -> Path:
        """The adapter's GGUF file, written now when it is missing or older than the adapter."""
        with self._adapter_lock:
            try:
                return write_adapter_gguf(adapter, base.layout)
            except UnsupportedModelError as exc:
                raise ConfigurationError(
                    f"the adapter in {str(adapter)!r} cannot be served by llama.cpp: {exc}",
                    param="model",
                ) from exc
            except OSError as exc:
                raise LocalBackendError(
                    f"cannot write the GGUF adapter of {str(adapter)!r}: {exc}"
                ) from exc

    def _acquire(self, base: _Base, adapter: Path | None) -> EngineProcess:
        """A running process that holds ``adapter``, counted in use until ``_release``."""
        with base.lock:
            process = base.process
            if adapter is not None:
                base.recent[adapter] = None
                base.recent.move_to_end(adapter)
                while len(base.recent) > 4 * self.max_adapters:
                    base.recent.popitem(last=False)
            if self._holds(process, adapter):
                assert process is not None
                process.inflight += 1
                return process
        with base.restart_lock:
            with base.lock:
                process = base.process
                if self._holds(process, adapter):
                    assert process is not None
                    process.inflight += 1
                    return process
                if self._closed:
                    raise LocalBackendError("the llama.cpp engine is closed")
                wanted = [p for p in reversed(base.recent) if p.is_dir()][: self.max_adapters]
            files = [self._adapter_gguf(base, path) for path in wanted]
            new = self._start(base, files)
            # The process knows adapters by their folders: requests name folders.
            new.adapter_ids = {path: index for index, path in enumerate(wanted)}
            with base.lock:
                old, base.process = base.process, new
                new.inflight += 1
                new.retired = base.evicted
                stop_old = old is not None and self._retire(old)
            if stop_old and old is not None:
                old.stop()
            return new

    @staticmethod
    def _holds(process: EngineProcess | None, adapter: Path | None) -> bool:
        if process is None or not process.alive:
            return False
        return adapter is None or adapter in process.adapter_ids

    @staticmethod
    def _retire(process: EngineProcess) -> bool:
        """Mark a replaced process; return whether it can be stopped now (nothing in flight)."""
        process.retired = True
        return process.inflight == 0

    def _release(self, base: _Base, process: EngineProcess) -> None:
        with base.lock:
            process.inflight -= 1
            done = process.retired and process.inflight == 0
        if done:
            logger.debug("stopping the replaced llama.cpp engine %s", process)
            process.stop()

    def processes(self) -> list[EngineProcess]:
        """The running processes, one per base model (and per merged tuned model) in use."""
        return [b.process for b in self._all_bases() if b.process is not None and b.process.alive]

    def _all_bases(self) -> list[_Base]:
        with self._bases_lock:
            return [*self._bases.values(), *self._merged.values()]

    # -- requests ----------------------------------------------------------------------------

    def _request(
        self,
        model: ModelRef,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        stop: str | Sequence[str] | None,
        seed: int | None,
        n: int,
    ) -> tuple[_Base, Path | None, list[int], DecodeParams]:
        base = self._base(model.base)
        try:
            prompt = base.renderer.render_prompt(normalize_messages(messages, tools))
        except MessageFormatError as exc:
            raise ConfigurationError(str(exc), param="messages") from exc
        params = sampling_params(
            context=base.context,
            n_prompt=len(prompt),
            default_max_tokens=self.default_max_tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            n=n,
        )
        adapter = Path(model.adapter_path).resolve() if model.adapter_path is not None else None
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise ConfigurationError(
                f"no adapter in {str(adapter)!r}: the folder has no adapter_config.json",
                param="model",
            )
        if adapter is not None and self.tuned_weights == "merged":
            return self._merged_base(base, adapter), None, prompt, params
        return base, adapter, prompt, params

    def _merged_base(self, base: _Base, adapter: Path) -> _Base:
        """The tuned model as a model of its own: base + adapter in one GGUF, its own process."""
        with self._bases_lock:
            merged = self._merged.get(adapter)
            if merged is not None:
                self._merged.move_to_end(adapter)
                return merged
        gguf = self._merged_gguf(base, adapter)
        with self._bases_lock:
            merged = self._merged.get(adapter)
            if merged is None:
                # Its process's log is named after the base and the adapter's folder.
                digest = hashlib.sha256(str(adapter).encode()).hexdigest()[:8]
                label = f"{Path(base.name).stem}+{digest}"
                merged = _Base(
                    base.name,
                    gguf,
                    base.layout,
                    base.renderer,
                    base.context,
                    base.kv_token_bytes,
                    label,
                )
                self._merged[adapter] = merged
            self._merged.move_to_end(adapter)
            evicted = [
                self._merged.popitem(last=False)[1]
                for _ in range(len(self._merged) - self.max_merged)
            ]
        for old in evicted:
            with old.lock:
                old.evicted = True
                process, old.process = old.process, None
                stop = process is not None and self._retire(process)
            if stop and process is not None:
                process.stop()  # else its last request stops it (``_release``)
        return merged

    def _merged_gguf(self, base: _Base, adapter: Path) -> Path:
        """``adapter/merged.gguf``, written now when it is missing or older than the adapter."""
        with self._adapter_lock:
            try:
                return write_merged_gguf(adapter, base.gguf)
            except UnsupportedModelError as exc:
                raise ConfigurationError(
                    f"the adapter in {str(adapter)!r} cannot be merged for llama.cpp: {exc}",
                    param="model",
                ) from exc
            except OSError as exc:
                raise LocalBackendError(f"cannot write {adapter / 'merged.gguf'}: {exc}") from exc

    @staticmethod
    def _body(
        process: EngineProcess,
        adapter: Path | None,
        prompt: list[int],
        params: DecodeParams,
        index: int,
        stream: bool,
        cache_prompt: bool,
    ) -> dict[str, Any]:
        lora = [
            {"id": i, "scale": 1.0 if path == adapter else 0.0}
            for path, i in process.adapter_ids.items()
        ]
        return {
            "prompt": prompt,
            "n_predict": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            # OpenAI's sampling is temperature and top_p alone: llama.cpp's other samplers off.
            # Greedy keeps the one likeliest token either way; top_k 1 says so, and spares
            # llama.cpp's samplers a pass over the whole vocabulary at each token.
            "top_k": 1 if params.temperature == 0 else 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "stop": list(params.stop),
            "seed": (params.seed * 131 + index) % _SEED_SPAN,
            "lora": lora,
            "stream": stream,
            # The longest prefix a slot holds (a shared system prompt, the last turn's
            # history) is not evaluated again, as OpenAI's prompt caching, except for a seeded
            # request: the rest of a cached prompt is evaluated in other batch shapes, whose
            # arithmetic differs, and a seed promises the same answer run after run.
            "cache_prompt": cache_prompt,
            "return_tokens": False,
        }

    def _post(self, process: EngineProcess, body: Mapping[str, Any]) -> Any:
        import httpx

        try:
            response = self.http.post(
                process.url + "/completion",
                json=dict(body),
                headers={"Authorization": f"Bearer {process.key}"},
            )
        except httpx.HTTPError as exc:
            raise LocalBackendError(
                f"the llama.cpp engine did not answer ({exc}); see {process.log_path}"
            ) from exc
        if response.status_code != 200:
            raise _refusal(response, process)
        return response.json()

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
        """Generate a chat completion (``Generator.chat``'s arguments and errors)."""
        base, adapter, prompt, params = self._request(
            model, messages, tools, max_tokens, temperature, top_p, stop, seed, n
        )
        process = self._acquire(base, adapter)
        try:
            bodies = [
                self._body(process, adapter, prompt, params, i, False, seed is None)
                for i in range(n)
            ]
            if n == 1:
                answers = [self._post(process, bodies[0])]
            else:
                answers = _in_parallel([lambda b=b: self._post(process, b) for b in bodies])
        finally:
            self._release(base, process)
        choices = [
            ChatChoice(
                i,
                str(answer.get("content", "")),
                _FINISH.get(str(answer.get("stop_type")), "length"),
                int(answer.get("tokens_predicted", 0)),
            )
            for i, answer in enumerate(answers)
        ]
        return ChatResult(
            choices, len(prompt), sum(c.completion_tokens for c in choices), base.name
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
    ) -> LlamaCppStream:
        """Start a chat completion; its deltas come as llama.cpp generates them."""
        base, adapter, prompt, params = self._request(
            model, messages, tools, max_tokens, temperature, top_p, stop, seed, n
        )
        process = self._acquire(base, adapter)
        bodies = [
            self._body(process, adapter, prompt, params, i, True, seed is None) for i in range(n)
        ]
        return LlamaCppStream(self, base, process, bodies, len(prompt))

    def close(self) -> None:
        """Stop every process."""
        self._closed = True
        for base in self._all_bases():
            with base.restart_lock, base.lock:
                process, base.process = base.process, None
            if process is not None:
                process.stop()
        self.http.close()


def _refusal(response: Any, process: EngineProcess) -> Exception:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = str(error.get("message") or response.text[:300])
    if response.status_code == 400:
        param = "messages" if "context" in message else "model"
        return ConfigurationError(f"llama.cpp refused the request: {message}", param=param)
    return LocalBackendError(
        f"the llama.cpp engine failed ({response.status_code}: {message}); see {process.log_path}"
    )


def _in_parallel(calls: Sequence[Any]) -> list[Any]:
    """Run calls in threads (llama.cpp batches them); return their results in order."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class LlamaCppStream:
    """The deltas of a chat completion streamed from llama.cpp (``ChatDeltas``).

    Each choice is read from its own ``/completion`` stream in a thread; iterating gives the
    deltas as they arrive, each choice's last with its finish reason. Closing stops reading,
    and llama.cpp stops generating a request whose connection is closed.
    """

    def __init__(
        self,
        engine: LlamaCppEngine,
        base: _Base,
        process: EngineProcess,
        bodies: Sequence[Mapping[str, Any]],
        prompt_tokens: int,
    ) -> None:
        self._engine = engine
        self._base = base
        self._process = process
        self.base_model = base.name
        self.prompt_tokens = prompt_tokens
        self.choice_tokens = [0] * len(bodies)
        self._events: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._remaining = len(bodies)
        self._released = False
        self._release_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read, args=(i, body), daemon=True)
            for i, body in enumerate(bodies)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def completion_tokens(self) -> int:
        """Tokens generated over all choices (complete once iteration has ended)."""
        return sum(self.choice_tokens)

    def _read(self, index: int, body: Mapping[str, Any]) -> None:
        import httpx

        process = self._process
        try:
            with self._engine.http.stream(
                "POST",
                process.url + "/completion",
                json=dict(body),
                headers={"Authorization": f"Bearer {process.key}"},
            ) as response:
                if response.status_code != 200:
                    response.read()
                    self._events.put(_refusal(response, process))
                    return
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line.startswith("data: "):
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        self._events.put(_refusal_chunk(chunk, process))
                        return
                    text = str(chunk.get("content", ""))
                    if chunk.get("stop"):
                        finish = _FINISH.get(str(chunk.get("stop_type")), "length")
                        tokens = int(chunk.get("tokens_predicted", 0))
                        self._events.put((index, text, finish, tokens))
                        return
                    if text:
                        self._events.put((index, text, None, 0))
            self._events.put(
                LocalBackendError(
                    f"the llama.cpp engine ended a stream early; see {process.log_path}"
                )
            )
        except httpx.HTTPError as exc:
            if not self._stop.is_set():
                self._events.put(
                    LocalBackendError(
                        f"the llama.cpp engine did not answer ({exc}); see {process.log_path}"
                    )
                )

    def __iter__(self) -> Iterator[ChatDelta]:
        try:
            while self._remaining:
                event = self._events.get()
                if isinstance(event, BaseException):
                    raise event
                index, text, finish, tokens = event
                if finish is not None:
                    self._remaining -= 1
                    self.choice_tokens[index] = tokens
                yield ChatDelta(index, text, finish)
        finally:
            self.close()

    def __del__(self) -> None:
        # A stream dropped unread (a client gone before its response started) must still give
        # its process back, or a replaced process would never be stopped.
        self.close()

    def close(self) -> None:
        """Stop reading (llama.cpp cancels a request whose connection closes)."""
        self._stop.set()
        with self._release_lock:
            if self._released:
                return
            self._released = True
        self._engine._release(self._base, self._process)  # the engine's own stream


def _refusal_chunk(chunk: Mapping[str, Any], process: EngineProcess) -> Exception:
    error = chunk.get("error") or {}
    message = str(error.get("message") if isinstance(error, dict) else error)
    return LocalBackendError(f"the llama.cpp engine failed: {message}; see {process.log_path}")
