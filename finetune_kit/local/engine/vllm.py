"""Chat through a vLLM engine: fine-tuned adapters loaded at runtime, batched on a GPU.

With ``local serve --vllm start`` (or ``--vllm http://host:port``, or ``LocalBackend(vllm=...)``,
or ``$FINETUNE_KIT_LOCAL_VLLM``), chat requests for one base model (``--vllm-model``, default the
server's default model) go to a vLLM engine instead of the built-in decoder:

- ``start``: ``VllmProcess`` runs ``vllm serve <base folder> --enable-lora ...`` on a free port
  of this machine, with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; a URL connects to an engine
  started that way elsewhere (it must see the adapters' folders at the same paths).
- ``AdapterSync`` keeps the engine's adapters equal to the store's: each fine-tuned model and
  checkpoint of that base is loaded (``POST /v1/load_lora_adapter``) once its job has written it,
  and unloaded (``POST /v1/unload_lora_adapter``) when it is deleted or pruned. A request for an
  adapter not loaded yet loads it first.
- ``VllmEngine`` is a ``serving.ChatEngine``, first in the server's ``EngineRouter``: requests
  for the vLLM-served base
  (and its adapters) become ``POST /v1/chat/completions`` with the
  messages rendered as training rendered them (``chat_format.normalize_messages``: tool
  declarations and calls written as text), so the engine applies the same chat template, and
  the answer comes back as text for the server's tool-call parsing; every other model goes to
  the next engine (the built-in decoder). ``max_tokens``, ``temperature``, ``top_p``, ``stop``,
  ``seed`` and ``n`` are passed through, usage and finish reasons mapped back.

vLLM needs a CUDA GPU and is not installed by ``scripts/install``; ``tests/local/
test_vllm_contract.py`` checks every request against a stand-in that accepts only what vLLM's
OpenAI server accepts, and ``bench/gpu.py`` measures the real engine.

Example:
    >>> adapter_name(Path("/data/jobs/ftjob-1/adapter"))
    'ftk-b626694c6d15f469'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ...errors import ConfigurationError, LocalBackendError
from .batch_decoding import FinishReason
from .chat_format import MessageFormatError, normalize_messages
from .generation import ChatChoice, ChatDelta, ChatResult, ChatStream, ModelRef
from .registry import ModelRegistry
from .tiny_model import TINY_MODEL_NAME

__all__ = [
    "VLLM_ENV",
    "AdapterSync",
    "VllmClient",
    "VllmEngine",
    "VllmProcess",
    "adapter_name",
    "vllm_setting",
]

logger = logging.getLogger("finetune_kit.local.vllm")

VLLM_ENV = "FINETUNE_KIT_LOCAL_VLLM"
"""Environment variable read when no ``vllm`` setting is given: ``start`` or a URL."""

_SEED_SPAN = 2**63


def vllm_setting(value: str | None) -> str | None:
    """The vLLM setting: ``start``, an ``http(s)://`` URL, or ``None`` (off).

    Args:
        value: The setting; ``None`` reads ``$FINETUNE_KIT_LOCAL_VLLM``; ``""`` or ``off``: off.

    Raises:
        ConfigurationError: Neither (``param="vllm"``).

    Example:
        >>> vllm_setting("http://127.0.0.1:8001/"), vllm_setting("off")
        ('http://127.0.0.1:8001', None)
    """
    raw = value if value is not None else os.environ.get(VLLM_ENV)
    text = (raw or "").strip()
    if not text or text.lower() == "off":
        return None
    if text.lower() == "start":
        return "start"
    if text.startswith(("http://", "https://")):
        return text.rstrip("/").removesuffix("/v1")
    raise ConfigurationError(
        f"vllm is {raw!r}; use 'start' (run vllm serve here) or the URL of a vLLM server "
        f"such as http://127.0.0.1:8001 (--vllm, LocalBackend(vllm=...) or ${VLLM_ENV})",
        param="vllm",
    )


def adapter_name(path: Path) -> str:
    """The name an adapter folder is loaded under in vLLM (stable for the folder)."""
    return "ftk-" + hashlib.sha1(str(path).encode()).hexdigest()[:16]


def _error_text(response: Any) -> str:
    """The message of a vLLM error answer (``{"error": {...}}`` or ``{"message": ...}``)."""
    try:
        body = response.json()
    except ValueError:
        return str(response.text)[:500]
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return json.dumps(body)[:500]


class VllmClient:
    """Talks to one vLLM OpenAI-compatible server: adapters and chat completions.

    Args:
        url: The server's root (``http://127.0.0.1:8001``, without ``/v1``).
        served_model: The name the base model is served under (``--served-model-name``).
        base_model: The canonical base model it serves (``ModelRegistry.resolve``'s name).
        api_key: Sent as a bearer token when the server wants one (``vllm serve --api-key``).
        timeout: Seconds to wait for an answer.
    """

    def __init__(
        self,
        url: str,
        *,
        served_model: str,
        base_model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.served_model = served_model
        self.base_model = base_model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # trust_env=False: a proxy from the environment must not stand between us and vLLM.
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, trust_env=False
        )
        self._lock = threading.Lock()
        self._loaded: set[str] = set()

    def __repr__(self) -> str:
        return f"VllmClient({self.url!r}, base_model={self.base_model!r})"

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def healthy(self) -> bool:
        """Whether ``GET /health`` answers 200."""
        import httpx

        try:
            return bool(self.http.get("/health", timeout=5).status_code == 200)
        except httpx.HTTPError:
            return False

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST JSON; return the response (any status).

        Raises:
            LocalBackendError: The server did not answer.
        """
        import httpx

        try:
            return self.http.post(path, json=dict(body))
        except httpx.HTTPError as exc:
            raise LocalBackendError(f"the vLLM server at {self.url} did not answer: {exc}") from exc

    def loaded(self) -> set[str]:
        """Names of the adapters this client loaded (and did not unload)."""
        with self._lock:
            return set(self._loaded)

    def load(self, path: Path) -> str:
        """Load an adapter folder (once); return its name in vLLM.

        Raises:
            LocalBackendError: vLLM refused it (not an adapter of this base, a rank above
                ``--max-lora-rank``...) or did not answer.
        """
        name = adapter_name(path)
        with self._lock:
            if name in self._loaded:
                return name
        response = self.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        text = _error_text(response) if response.status_code != 200 else ""
        if response.status_code != 200 and "already been loaded" not in text:
            raise LocalBackendError(
                f"the vLLM server at {self.url} could not load the adapter in {str(path)!r}: {text}"
            )
        with self._lock:
            self._loaded.add(name)
        logger.debug("vLLM loaded %s as %s", path, name)
        return name

    def unload(self, name: str) -> None:
        """Unload an adapter by name (one vLLM no longer has is fine)."""
        response = self.post("/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code not in (200, 400, 404):
            raise LocalBackendError(
                f"the vLLM server at {self.url} could not unload {name}: {_error_text(response)}"
            )
        with self._lock:
            self._loaded.discard(name)
        logger.debug("vLLM unloaded %s", name)


class AdapterSync:
    """Keeps a vLLM server's adapters equal to the fine-tuned models and checkpoints stored.

    Args:
        client: The vLLM server.
        adapters: Returns the adapter folders of the served base model that exist now
            (fine-tuned models and kept checkpoints); called from this object's thread.
        interval: Seconds between two looks.
        ready: Returns whether the server is up (a starting engine loads its model first).
    """

    def __init__(
        self,
        client: VllmClient,
        adapters: Callable[[], Iterable[Path]],
        *,
        interval: float = 0.5,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self._adapters = adapters
        self._interval = interval
        self._ready = ready or client.healthy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        """Load what is new and unload what is gone, once."""
        wanted = {adapter_name(p): p for p in self._adapters()}
        have = self.client.loaded()
        for name, path in wanted.items():
            if name not in have:
                self.client.load(path)
        for name in have - wanted.keys():
            self.client.unload(name)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if self._ready():
                    self.sync()
            except Exception:  # one failed round (a busy store, a refused adapter) is logged
                logger.exception("keeping the vLLM server's adapters in step failed")

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(
            target=self._run, name="finetune_kit-vllm-sync", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class VllmProcess:
    """``vllm serve`` for one base model on this machine, with runtime LoRA loading on.

    Args:
        model_folder: The base model's folder (a Hugging Face model folder).
        served_model: The name to serve it under.
        log_path: Where its output goes.
        max_lora_rank: The largest adapter rank it accepts (``--max-lora-rank``).
        max_loras: Adapters in one batch (``--max-loras``).
        extra_args: More ``vllm serve`` arguments (``--gpu-memory-utilization 0.5``...).
        executable: The ``vllm`` command (default: the one on ``PATH``).
    """

    def __init__(
        self,
        model_folder: Path,
        served_model: str,
        log_path: Path,
        *,
        max_lora_rank: int = 64,
        max_loras: int = 8,
        extra_args: Sequence[str] = (),
        executable: str | None = None,
    ) -> None:
        command = executable or shutil.which("vllm")
        if command is None:
            raise ConfigurationError(
                "vllm 'start' needs vLLM: pip install 'finetune-kit[vllm]' (a CUDA GPU and a "
                "torch build vLLM supports), or point --vllm at a running vLLM server's URL",
                param="vllm",
            )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            command,
            "serve",
            str(model_folder),
            "--served-model-name",
            served_model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--enable-lora",
            "--max-lora-rank",
            str(max_lora_rank),
            "--max-loras",
            str(max_loras),
            *extra_args,
        ]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115  # lives with the process
        self.log_path = log_path
        env = dict(os.environ)
        # Without it vLLM refuses /v1/load_lora_adapter and /v1/unload_lora_adapter.
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        logger.info("starting %s (log: %s)", " ".join(self.command), log_path)
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def wait_ready(self, client: VllmClient, timeout: float) -> None:
        """Wait until it answers ``/health``.

        Raises:
            LocalBackendError: It exited, or did not answer within ``timeout`` seconds; the
                message points at its log.
        """
        deadline = time.monotonic() + timeout
        while not client.healthy():
            if self.process.poll() is not None:
                raise LocalBackendError(
                    f"vllm serve exited with code {self.process.returncode} before serving; "
                    f"see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise LocalBackendError(
                    f"vllm serve did not answer within {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(1.0)

    def stop(self) -> None:
        """Stop the engine (it frees its GPU memory on exit)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def model_folder_for(registry: ModelRegistry, name: str) -> Path:
    """The folder vLLM loads a base model from (a GGUF file's dequantized copy).

    Raises:
        ConfigurationError: ``tiny-random`` (built in memory: there is no folder).
    """
    source = registry.source(name)
    if source.kind == "tiny":
        raise ConfigurationError(
            f"vLLM serves a model folder; {TINY_MODEL_NAME} is built in memory: choose a model "
            "folder or .gguf file with --vllm-model",
            param="vllm_model",
        )
    if source.kind == "hf":
        assert source.path is not None
        return source.path
    gguf = source.path if source.path is not None else registry.default_gguf_path()
    return registry.dequantized_folder(gguf, source.name)


class VllmChatStream(ChatStream):
    """The deltas of a chat completion streamed from vLLM (``ChatStream``'s interface)."""

    def __init__(self, response: Any, base_model: str, n: int) -> None:
        self._response = response
        self.base_model = base_model
        self.prompt_tokens = 0
        self.choice_tokens = [0] * n
        self._remaining = n
        self._usage: tuple[int, int] | None = None

    @property
    def completion_tokens(self) -> int:
        """Tokens generated over all choices (vLLM's count, once the stream has ended)."""
        if self._usage is not None:
            return self._usage[1]
        return sum(self.choice_tokens)

    def __iter__(self) -> Iterator[ChatDelta]:
        try:
            for line in self._response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[len("data:") :].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                usage = chunk.get("usage")
                if usage:
                    self.prompt_tokens = int(usage.get("prompt_tokens", 0))
                    self._usage = (self.prompt_tokens, int(usage.get("completion_tokens", 0)))
                for choice in chunk.get("choices") or []:
                    index = int(choice.get("index", 0))
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        self.choice_tokens[index] += 1
                    finish = _finish_reason(choice.get("finish_reason"))
                    if finish is not None:
                        self._remaining -= 1
                    if text or finish is not None:
                        yield ChatDelta(index, text, finish)
            if self._usage is not None and len(self.choice_tokens) == 1:
                self.choice_tokens[0] = self._usage[1]
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (closing the connection makes vLLM abort the request)."""
        self._response.close()


def _finish_reason(value: Any) -> FinishReason | None:
    if value is None:
        return None
    # vLLM's "abort" (the request was cancelled) and anything unknown read as a cut answer.
    return "stop" if value in ("stop", "tool_calls") else "length"


class VllmEngine:
    """A ``serving.ChatEngine`` on a vLLM server: its base model and that model's adapters.

    Args:
        registry: Resolves base model names.
        client: The vLLM server; it serves ``client.base_model``.
        ready: Waits until the server is up (a starting engine loads its model first).
        default_max_tokens: Token limit of a choice when the request gives none.
    """

    name = "vllm"

    def __init__(
        self,
        registry: ModelRegistry,
        client: VllmClient,
        *,
        ready: Callable[[], None] | None = None,
        default_max_tokens: int = 512,
    ) -> None:
        self.registry = registry
        self.client = client
        self.default_max_tokens = default_max_tokens
        self._ready = ready

    def __repr__(self) -> str:
        return f"VllmEngine({self.client.url!r}, base_model={self.client.base_model!r})"

    def serves(self, model: ModelRef) -> bool:
        """Whether ``model`` is the served base model or one of its adapters."""
        try:
            return self.registry.resolve(model.base) == self.client.base_model
        except ConfigurationError:
            return False

    def close(self) -> None:
        """Nothing to release: the service owning the client closes it."""

    def _body(
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
    ) -> dict[str, Any]:
        """The ``/v1/chat/completions`` body, after the checks the built-in path makes."""
        temperature = 1.0 if temperature is None else float(temperature)
        top_p = 1.0 if top_p is None else float(top_p)
        if not 0 <= temperature <= 2:
            raise ConfigurationError(
                f"temperature is {temperature}; use 0 to 2", param="temperature"
            )
        if not 0 < top_p <= 1:
            raise ConfigurationError(f"top_p is {top_p}; use a number in (0, 1]", param="top_p")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
            raise ConfigurationError(f"n is {n!r}; use 1 to 128", param="n")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
            raise ConfigurationError("stop takes up to 4 non-empty strings", param="stop")
        if max_tokens is None:
            max_tokens = self.default_max_tokens
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigurationError(
                f"max_tokens is {max_tokens!r}; use 1 or more", param="max_tokens"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigurationError(f"seed is {seed!r}; use an integer", param="seed")
        try:
            # Rendered as training rendered it: vLLM applies the same chat template to it.
            normalized = normalize_messages(messages, tools)
        except MessageFormatError as exc:
            raise ConfigurationError(str(exc), param="messages") from exc
        if self._ready is not None:
            self._ready()
        name = self.client.served_model
        if model.adapter_path is not None:
            adapter = Path(model.adapter_path).resolve()
            if not (adapter / "adapter_config.json").is_file():
                raise ConfigurationError(
                    f"no adapter in {str(adapter)!r}: the folder has no adapter_config.json",
                    param="model",
                )
            name = self.client.load(adapter)
        body: dict[str, Any] = {
            "model": name,
            "messages": normalized,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "n": n,
        }
        if stops:
            body["stop"] = stops
        if seed is not None:
            # vLLM takes a signed 64-bit seed; any integer folds into it.
            body["seed"] = seed % _SEED_SPAN
        return body

    def _refusal(self, response: Any) -> Exception:
        text = _error_text(response)
        if response.status_code >= 500:
            return LocalBackendError(f"the vLLM server at {self.client.url} failed: {text}")
        lowered = text.lower()
        param = "messages"
        if "max_tokens" in lowered or "in the completion" in lowered:
            # "This model's maximum context length is N tokens. However, you requested M tokens
            # (P in the messages, C in the completion)": the answer's room is what to lower.
            param = "max_tokens"
        else:
            for name in ("temperature", "top_p", "stop", "seed"):
                if name in lowered:
                    param = name
                    break
        return ConfigurationError(f"the vLLM engine refused the request: {text}", param=param)

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
        """Generate a chat completion on vLLM (see ``Generator.chat``)."""
        body = self._body(model, messages, tools, max_tokens, temperature, top_p, stop, seed, n)
        response = self.client.post("/v1/chat/completions", body)
        if response.status_code != 200:
            raise self._refusal(response)
        answer = response.json()
        usage = answer.get("usage") or {}
        choices = []
        for choice in sorted(answer.get("choices") or [], key=lambda c: int(c.get("index", 0))):
            text = (choice.get("message") or {}).get("content") or ""
            finish = _finish_reason(choice.get("finish_reason")) or "stop"
            choices.append(ChatChoice(int(choice.get("index", 0)), text, finish, 0))
        completion = int(usage.get("completion_tokens", 0))
        if len(choices) == 1:
            choices[0] = ChatChoice(0, choices[0].text, choices[0].finish_reason, completion)
        return ChatResult(
            choices, int(usage.get("prompt_tokens", 0)), completion, self.client.base_model
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
        """Start a chat completion on vLLM (see ``Generator.stream``)."""
        import httpx

        body = self._body(model, messages, tools, max_tokens, temperature, top_p, stop, seed, n)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        request = self.client.http.build_request("POST", "/v1/chat/completions", json=body)
        try:
            response = self.client.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise LocalBackendError(
                f"the vLLM server at {self.client.url} did not answer: {exc}"
            ) from exc
        if response.status_code != 200:
            response.read()
            response.close()
            raise self._refusal(response)
        return VllmChatStream(response, self.client.base_model, n)


class VllmService:
    """A server's vLLM side: the engine (started or connected) and its adapters.

    Args:
        setting: ``start`` or a URL (``vllm_setting``).
        registry: The server's model registry.
        base_model: The base model vLLM serves (a name ``registry`` resolves).
        adapters: Returns the adapter folders of that base stored now.
        log_dir: Where a started engine writes its log.
        api_key: The vLLM server's key, when it wants one.
        start_timeout: Seconds a started engine may take to load its model.
        default_max_tokens: The answer budget of a request that sets none.
    """

    def __init__(
        self,
        setting: str,
        registry: ModelRegistry,
        base_model: str,
        adapters: Callable[[], Iterable[Path]],
        *,
        log_dir: Path,
        api_key: str | None = None,
        start_timeout: float = 900.0,
        default_max_tokens: int = 512,
    ) -> None:
        canonical = registry.resolve(base_model)
        served = Path(canonical).name if os.path.isabs(canonical) else canonical
        self.process: VllmProcess | None = None
        url = setting
        if setting == "start":
            self.process = VllmProcess(
                model_folder_for(registry, canonical), served, log_dir / "vllm.log"
            )
            url = self.process.url
        self.client = VllmClient(url, served_model=served, base_model=canonical, api_key=api_key)
        self._timeout = start_timeout
        self._ready_lock = threading.Lock()
        self._is_ready = False
        self.sync = AdapterSync(self.client, adapters, ready=self._up)
        self.engine = VllmEngine(
            registry, self.client, ready=self.wait_ready, default_max_tokens=default_max_tokens
        )
        """The ``serving.ChatEngine`` the server's ``EngineRouter`` puts first."""

    def _up(self) -> bool:
        if self._is_ready:
            return True
        self._is_ready = self.client.healthy()
        return self._is_ready

    def wait_ready(self) -> None:
        """Wait for the engine (a started one loads its model first).

        Raises:
            LocalBackendError: It did not come up (the message points at its log).
        """
        if self._is_ready:
            return
        with self._ready_lock:
            if self.process is not None:
                self.process.wait_ready(self.client, self._timeout)
            elif not self.client.healthy():
                raise LocalBackendError(
                    f"the vLLM server at {self.client.url} does not answer /health; start it "
                    "with `vllm serve <model> --enable-lora` and "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
                )
            self._is_ready = True

    def start(self) -> None:
        """Start keeping the adapters in step."""
        self.sync.start()

    def stop(self) -> None:
        """Stop the adapter thread and a started engine."""
        self.sync.stop()
        self.client.close()
        if self.process is not None:
            self.process.stop()
