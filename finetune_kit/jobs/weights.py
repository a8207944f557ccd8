"""A tuned model's weights, downloaded from a backend that offers them.

Only finetune_kit's local backend does, through an extension route of its own
(``GET /v1/models/{model}/weights/{format}``, docs/local-models.md): OpenAI and Azure OpenAI keep
a fine-tuned model's weights to themselves, and asking them is refused here, before any request,
with a message that says so. The forms (``WEIGHT_FORMATS``):

- ``adapter``: the LoRA adapter, a peft folder;
- ``hf``: a merged Hugging Face folder (safetensors, tokenizer, chat template);
- ``gguf``: ``base.gguf`` + ``adapter.gguf`` (what the local backend computes, exactly),
  ``merged.gguf``, and Ollama ``Modelfile``s for both.

Each form arrives as a tar archive of one folder, written into ``folder/<format>/``.

Example:
    >>> weights_refusal("https://api.openai.com/v1/")
    'OpenAI does not offer the weights of fine-tuned models; only the local backend does'
    >>> weights_refusal("http://127.0.0.1:8000/v1") is None
    True
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from ..errors import ConfigurationError

__all__ = [
    "WEIGHT_FORMATS",
    "adownload_weights",
    "check_weights_request",
    "download_weights",
    "weights_refusal",
]

WEIGHT_FORMATS = ("adapter", "hf", "gguf")
"""The forms a tuned model's weights are offered in by the local backend."""

_CHUNK = 1 << 20


def weights_refusal(base_url: str) -> str | None:
    """Why a backend at ``base_url`` offers no model weights, or ``None`` when it may.

    OpenAI and Azure OpenAI are known not to; any other server is asked (and a server without
    the route answers 404, which ``download_weights`` explains).
    """
    host = (urlsplit(str(base_url)).hostname or "").lower()
    if host == "api.openai.com":
        return "OpenAI does not offer the weights of fine-tuned models; only the local backend does"
    if host.endswith(
        (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
    ):
        return (
            "Azure OpenAI does not offer the weights of fine-tuned models; only the local "
            "backend does"
        )
    return None


def check_weights_request(base_url: str, formats: Sequence[str]) -> list[str]:
    """The formats asked for, checked before any request; refuses OpenAI and Azure OpenAI.

    Raises:
        ConfigurationError: An unknown or empty format list, or a backend that offers no
            weights (``param="weights"``).

    Example:
        >>> check_weights_request("http://127.0.0.1:8000/v1", ["gguf", "adapter", "gguf"])
        ['gguf', 'adapter']
    """
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in WEIGHT_FORMATS]
    if unknown or not wanted:
        what = (
            f"unknown weights format {', '.join(map(repr, unknown))}"
            if unknown
            else "no weights format"
        )
        raise ConfigurationError(
            f"{what}: use one or more of {', '.join(WEIGHT_FORMATS)}", param="weights"
        )
    refusal = weights_refusal(str(base_url))
    if refusal is not None:
        raise ConfigurationError(
            f"{refusal}: export the job without weights (its files, results and events)",
            param="weights",
        )
    return wanted


def _url(client: Any, model: str, format_name: str) -> str:
    base = str(client.base_url).rstrip("/")
    return f"{base}/models/{quote(model, safe=':')}/weights/{format_name}"


def _headers(client: Any) -> dict[str, str]:
    key = getattr(client, "api_key", None)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _refused(status: int, text: str, model: str, format_name: str) -> ConfigurationError:
    """A 4xx answer, as an error that says what to do."""
    import json

    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") if isinstance(error, dict) else None
    if status == 404 and not message:
        return ConfigurationError(
            "this server does not offer model weights: GET /v1/models/{model}/weights is an "
            "extension of finetune_kit's local backend",
            param="weights",
        )
    return ConfigurationError(
        f"the server refused the {format_name} weights of {model}: {message or text[:300]}",
        param=str(error.get("param") or "weights") if isinstance(error, dict) else "weights",
    )


def _extract(archive: Path, folder: Path, format_name: str) -> Path:
    """Unpack the archive's one folder into ``folder/<format>`` (replacing an older copy)."""
    target = folder / format_name
    staging = Path(tempfile.mkdtemp(prefix=f".{format_name}-", dir=folder))
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if (
                    member.name.startswith("/")
                    or ".." in parts
                    or not (member.isfile() or member.isdir())
                ):
                    raise ConfigurationError(
                        f"the {format_name} archive holds an unsafe entry {member.name!r}",
                        param="weights",
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # Python < 3.10.12: the entries were checked above
                tar.extractall(staging)  # checked member by member
        unpacked = staging / format_name
        if not unpacked.is_dir():
            raise ConfigurationError(
                f"the {format_name} archive holds no {format_name}/ folder", param="weights"
            )
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _download_one(client: Any, model: str, format_name: str, folder: Path) -> Path:
    import httpx

    archive = folder / f".{format_name}.tar.part"
    try:
        with httpx.stream(
            "GET",
            _url(client, model, format_name),
            headers=_headers(client),
            timeout=httpx.Timeout(30.0, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                if response.status_code in (408, 409, 429) or response.status_code >= 500:
                    response.raise_for_status()  # the retry policy judges it
                raise _refused(response.status_code, response.text, model, format_name)
            with open(archive, "wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
        return _extract(archive, folder, format_name)
    finally:
        archive.unlink(missing_ok=True)


async def _adownload_one(client: Any, model: str, format_name: str, folder: Path) -> Path:
    import asyncio

    import httpx

    archive = folder / f".{format_name}.tar.part"
    try:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as http,
            http.stream(
                "GET", _url(client, model, format_name), headers=_headers(client)
            ) as response,
        ):
            if response.status_code >= 400:
                await response.aread()
                if response.status_code in (408, 409, 429) or response.status_code >= 500:
                    response.raise_for_status()
                raise _refused(response.status_code, response.text, model, format_name)
            with open(archive, "wb") as out:
                async for chunk in response.aiter_bytes(_CHUNK):
                    out.write(chunk)
        return await asyncio.to_thread(_extract, archive, folder, format_name)
    finally:
        archive.unlink(missing_ok=True)


def download_weights(
    client: Any,
    model: str,
    folder: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("adapter",),
    policy: RetryPolicy | None = None,
) -> dict[str, Path]:
    """Download a fine-tuned model's (or checkpoint's) weights into ``folder/<format>/``.

    Args:
        client: An ``openai.OpenAI`` client of the local backend.
        model: The fine-tuned model or checkpoint.
        folder: Where to write (created when missing).
        formats: Any of ``WEIGHT_FORMATS``.
        policy: The retry policy (connection errors, 429 and 5xx are retried).

    Returns:
        ``{format: folder}`` for each form written.

    Raises:
        ConfigurationError: OpenAI or Azure OpenAI (no weights are offered), an unknown
            format, or the server's refusal (a base model, a form the model has not).

    Example:
        ```python
        from finetune_kit.jobs.weights import download_weights

        paths = download_weights(client, "ft:gpt-4o-mini:local::abc", "out", formats=["gguf"])
        # out/gguf/base.gguf, adapter.gguf, merged.gguf, Modelfile, Modelfile.adapter
        ```
    """
    wanted = check_weights_request(str(client.base_url), formats)
    policy = policy or DEFAULT_RETRY_POLICY
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return {f: policy.call(_download_one, client, model, f, out) for f in wanted}


async def adownload_weights(
    client: Any,
    model: str,
    folder: str | os.PathLike[str],
    *,
    formats: Sequence[str] = ("adapter",),
    policy: RetryPolicy | None = None,
) -> dict[str, Path]:
    """The async twin of :func:`download_weights` (an ``openai.AsyncOpenAI`` client)."""
    wanted = check_weights_request(str(client.base_url), formats)
    policy = policy or DEFAULT_RETRY_POLICY
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return {f: await policy.acall(_adownload_one, client, model, f, out) for f in wanted}
