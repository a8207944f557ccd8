"""The data layer: training records, dataset builders, JSONL, preflight, tokens and prices.

Owns what a training file is before it goes anywhere: the records (``records``: chat, tool
calls, preference pairs, reinforcement examples), ``Dataset`` and its builders (``dataset``,
``builders/``), JSONL read and written with line numbers (``jsonl``), preflight (``validation``
and the rules it applies: ``rules``, ``issues``, ``report``, ``fixes``), token counting
(``tokens``, ``model_tokenizer``) and the table of OpenAI's base models (``base_models``: token
limits, prices, shutdown dates).

May import: ``finetune_kit.errors`` and ``finetune_kit._lazy``, nothing else of finetune_kit.
Nothing in this package talks to a network (a backend's own tokenizer is handed to preflight as
a ``ModelTokenizer``). Its public names are importable from here; they are imported on first
use, so preflight's worker processes load only what they need.
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .base_models import MODEL_TABLE as MODEL_TABLE
    from .base_models import ModelInfo as ModelInfo
    from .base_models import get_model_info as get_model_info
    from .base_models import resolve_model_name as resolve_model_name
    from .builders.base import BuilderOptions as BuilderOptions
    from .builders.base import BuilderRegistry as BuilderRegistry
    from .builders.base import DatasetBuilder as DatasetBuilder
    from .builders.base import available_builders as available_builders
    from .builders.base import build_dataset as build_dataset
    from .builders.base import get_builder as get_builder
    from .builders.base import register_builder as register_builder
    from .builders.base import unregister_builder as unregister_builder
    from .builders.builtin import ConversationBuilder as ConversationBuilder
    from .builders.builtin import PreferenceBuilder as PreferenceBuilder
    from .builders.builtin import QABuilder as QABuilder
    from .builders.builtin import ToolCallBuilder as ToolCallBuilder
    from .builders.template import TemplateBuilder as TemplateBuilder
    from .dataset import Dataset as Dataset
    from .dataset import concat as concat
    from .dataset import example_key as example_key
    from .fixes import Change as Change
    from .fixes import FixResult as FixResult
    from .fixes import autofix as autofix
    from .issues import RULES as RULES
    from .issues import Issue as Issue
    from .jsonl import iter_lines as iter_lines
    from .jsonl import read_jsonl as read_jsonl
    from .jsonl import write_jsonl as write_jsonl
    from .records import AssistantMessage as AssistantMessage
    from .records import ChatExample as ChatExample
    from .records import DeveloperMessage as DeveloperMessage
    from .records import ExampleKind as ExampleKind
    from .records import FunctionCall as FunctionCall
    from .records import FunctionDefinition as FunctionDefinition
    from .records import ImagePart as ImagePart
    from .records import ImageURL as ImageURL
    from .records import PreferenceExample as PreferenceExample
    from .records import PreferenceInput as PreferenceInput
    from .records import ReinforcementExample as ReinforcementExample
    from .records import SystemMessage as SystemMessage
    from .records import TextPart as TextPart
    from .records import Tool as Tool
    from .records import ToolCall as ToolCall
    from .records import ToolMessage as ToolMessage
    from .records import TrainingExample as TrainingExample
    from .records import UserMessage as UserMessage
    from .records import detect_kind as detect_kind
    from .records import parse_example as parse_example
    from .records import parse_message as parse_message
    from .report import CostEstimate as CostEstimate
    from .report import PreflightReport as PreflightReport
    from .tokens import TokenCounter as TokenCounter
    from .tokens import count_example_tokens as count_example_tokens
    from .tokens import count_tokens as count_tokens
    from .tokens import encoding_for_model as encoding_for_model
    from .tokens import get_encoding as get_encoding
    from .validation import auto_epochs as auto_epochs
    from .validation import preflight as preflight

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
