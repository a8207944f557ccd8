"""Every model name the server knows: base models, aliases, fine-tuned models and checkpoints.

The registry knows base models and OpenAI aliases; the store knows the models jobs created.
``ModelCatalog`` answers for both, with OpenAI's errors: an unknown model is a 404
``model_not_found`` for chat and a 400 ``model_not_available`` for fine-tuning.

Example:
    >>> import tempfile, pathlib
    >>> from finetune_kit.local.engine.registry import ModelRegistry
    >>> from finetune_kit.local.store import Store
    >>> with tempfile.TemporaryDirectory() as d:
    ...     store = Store(pathlib.Path(d))
    ...     catalog = ModelCatalog(store, ModelRegistry(default_model="tiny-random"))
    ...     print(catalog.base_for_training("gpt-3.5-turbo").base_model)
    ...     store.close()
    tiny-random
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigurationError
from ..api_errors import InvalidRequestError, NotFoundError
from ..engine.registry import ModelRegistry
from ..store import Store

__all__ = ["ChatTarget", "ModelCatalog", "TrainingBase"]

logger = logging.getLogger("finetune_kit.local.catalog")

# A fixed "created" time for base models and aliases: they have no creation date of their own.
_BASE_CREATED = 1_700_000_000


@dataclass(frozen=True)
class TrainingBase:
    """What a fine-tuning job's ``model`` stands for.

    Attributes:
        model: The model to report on the job (alias resolved).
        base_model: The canonical base model.
        init_adapter: The adapter to start from, for a fine-tuned model; else ``None``.
    """

    model: str
    base_model: str
    init_adapter: Path | None


@dataclass(frozen=True)
class ChatTarget:
    """What a chat request's ``model`` stands for.

    Attributes:
        name: The name to report in the response.
        base_model: The canonical base model.
        adapter_path: The LoRA adapter to apply, or ``None`` for the base model itself.
    """

    name: str
    base_model: str
    adapter_path: Path | None


class ModelCatalog:
    """Looks model names up across the registry and the store.

    Args:
        store: The server's store.
        registry: The model registry.
    """

    def __init__(self, store: Store, registry: ModelRegistry) -> None:
        self.store = store
        self.registry = registry

    def base_for_training(self, name: str) -> TrainingBase:
        """Return what a fine-tuning job on ``name`` trains.

        A fine-tuned model or checkpoint continues from its adapter (continued fine-tuning,
        or DPO on top of a supervised model).

        Args:
            name: The job's ``model``.

        Returns:
            The model to report, the canonical base model and the adapter to start from.

        Raises:
            InvalidRequestError: ``model_not_available`` when the name is unknown.
        """
        if name.startswith("ft:"):
            target = self._fine_tuned(name)
            if target is None:
                raise InvalidRequestError(
                    f"Model {name} is not available for fine-tuning or does not exist.",
                    param="model",
                    code="model_not_available",
                )
            return TrainingBase(name, target.base_model, target.adapter_path)
        try:
            base = self.registry.resolve_request(name)
        except ConfigurationError as exc:
            raise InvalidRequestError(
                f"Model {name} is not available for fine-tuning or does not exist: {exc}",
                param="model",
                code="model_not_available",
            ) from exc
        return TrainingBase(base, base, None)

    def _fine_tuned(self, name: str) -> ChatTarget | None:
        model = self.store.models.get_model(name)
        if model is not None:
            return ChatTarget(name, model.base_model, Path(model.adapter_path))
        checkpoint = self.store.models.get_checkpoint_by_model(name)
        if checkpoint is not None and Path(checkpoint.path).exists():
            return ChatTarget(name, checkpoint.base_model, Path(checkpoint.path))
        return None

    def chat_target(self, name: str) -> ChatTarget:
        """Return what a chat request's ``model`` stands for.

        Raises:
            NotFoundError: ``model_not_found`` when no model has this name.
        """
        target = self._fine_tuned(name)
        if target is not None:
            return target
        if not name.startswith("ft:"):
            try:
                base = self.registry.resolve_request(name)
            except ConfigurationError:
                pass
            else:
                return ChatTarget(base, base, None)
        raise self._not_found(name)

    def list_models(self) -> list[dict[str, Any]]:
        """Return OpenAI ``Model`` objects: base models, aliases, fine-tuned models, checkpoints."""
        names = [*self.registry.base_models(), *sorted(self.registry.aliases)]
        out = [self._base(name) for name in dict.fromkeys(names)]
        out.extend(m.to_api() for m in self.store.models.list_models())
        checkpoints, _ = self.store.models.list_checkpoints()
        out.extend(c.to_model_api() for c in sorted(checkpoints, key=lambda c: c.created_at))
        return out

    def retrieve(self, name: str) -> dict[str, Any]:
        """Return the OpenAI ``Model`` object of one name.

        Raises:
            NotFoundError: ``model_not_found``.
        """
        model = self.store.models.get_model(name)
        if model is not None:
            return model.to_api()
        checkpoint = self.store.models.get_checkpoint_by_model(name)
        if checkpoint is not None and Path(checkpoint.path).exists():
            return checkpoint.to_model_api()
        if not name.startswith("ft:"):
            try:
                self.registry.resolve_request(name)
            except ConfigurationError:
                pass
            else:
                return self._base(name)
        raise self._not_found(name)

    def delete(self, name: str) -> dict[str, Any]:
        """Delete a fine-tuned model and its adapter files; return OpenAI's ``ModelDeleted``.

        When a job that has not ended continues from the model, the files are left on disk (that
        job needs them, and nothing removes them afterwards: delete the folder by hand once it
        ended); the job's checkpoints (models of their own) stay either way.

        Raises:
            NotFoundError: No fine-tuned model has this name.
            InvalidRequestError: The name is a base model or a checkpoint.
        """
        record = self.store.models.get_model(name)
        if record is not None and self.store.models.delete_model(name):
            self._remove_adapter(name, Path(record.adapter_path))
            return {"id": name, "object": "model", "deleted": True}
        if self.store.models.get_checkpoint_by_model(name) is not None:
            raise InvalidRequestError(
                f"{name} is a checkpoint; delete the fine-tuned model of its job instead.",
                param="model",
            )
        try:
            self.registry.resolve_request(name)
        except ConfigurationError:
            raise self._not_found(name) from None
        raise InvalidRequestError(
            f"{name} is a base model and cannot be deleted; only fine-tuned models can.",
            param="model",
        )

    def _remove_adapter(self, name: str, adapter: Path) -> None:
        users = self.store.jobs.unfinished_from_adapter(str(adapter))
        if users:
            logger.info("kept the adapter of deleted model %s: %s train from it", name, users)
            return
        if not adapter.resolve().is_relative_to(self.store.data_dir.resolve()):
            # Only what the server wrote is the server's to remove.
            logger.warning("did not remove %s: it is outside the data folder", adapter)
            return
        shutil.rmtree(adapter, ignore_errors=True)
        logger.debug("removed the adapter of deleted model %s (%s)", name, adapter)

    @staticmethod
    def _base(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": _BASE_CREATED, "owned_by": "system"}

    @staticmethod
    def _not_found(name: str) -> NotFoundError:
        return NotFoundError(
            f"The model `{name}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
