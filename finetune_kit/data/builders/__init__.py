"""Dataset builders: the ``DatasetBuilder`` extension point and the built-in builders.

Owns ``base`` (``DatasetBuilder``, ``BuilderOptions``, the registry fed by ``register_builder``
and the ``finetune_kit.builders`` entry points), ``builtin`` (question-answer pairs,
conversations, tool calls, preference pairs), ``template`` (rows through format strings) and
``rows`` (reading CSV/JSONL files, DataFrames, Hugging Face datasets and iterables as rows).
The built-in builders register through finetune_kit's own entry points, the door third-party
builders use: a new built-in is a class in ``builtin`` (or its own module here) plus one line
under ``[project.entry-points."finetune_kit.builders"]`` in ``pyproject.toml``.

May import: the rest of ``finetune_kit.data`` and ``finetune_kit.errors``; nothing that talks
to a network.
"""

import typing as _typing

from ... import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .base import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
    from .base import BuilderOptions as BuilderOptions
    from .base import BuilderRegistry as BuilderRegistry
    from .base import DatasetBuilder as DatasetBuilder
    from .base import available_builders as available_builders
    from .base import build_dataset as build_dataset
    from .base import get_builder as get_builder
    from .base import register_builder as register_builder
    from .base import unregister_builder as unregister_builder
    from .builtin import ConversationBuilder as ConversationBuilder
    from .builtin import PreferenceBuilder as PreferenceBuilder
    from .builtin import QABuilder as QABuilder
    from .builtin import ToolCallBuilder as ToolCallBuilder
    from .template import TemplateBuilder as TemplateBuilder
    from .template import template_columns as template_columns

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
