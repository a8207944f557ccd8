"""The data layer: training records, dataset builders, JSONL, preflight, tokens and prices.

Nothing in this package talks to a network. Its public names are importable from here; they are
imported on first use, so preflight's worker processes load only what they need.
"""

import typing as _typing

from .._lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; the table below is what runs
    from .builders import (
        BuilderOptions as BuilderOptions,
    )
    from .builders import (
        BuilderRegistry as BuilderRegistry,
    )
    from .builders import (
        DatasetBuilder as DatasetBuilder,
    )
    from .builders import (
        available_builders as available_builders,
    )
    from .builders import (
        build_dataset as build_dataset,
    )
    from .builders import (
        get_builder as get_builder,
    )
    from .builders import (
        register_builder as register_builder,
    )
    from .builders import (
        unregister_builder as unregister_builder,
    )
    from .builders_builtin import (
        ConversationBuilder as ConversationBuilder,
    )
    from .builders_builtin import (
        PreferenceBuilder as PreferenceBuilder,
    )
    from .builders_builtin import (
        QABuilder as QABuilder,
    )
    from .builders_builtin import (
        ToolCallBuilder as ToolCallBuilder,
    )
    from .builders_template import (
        TemplateBuilder as TemplateBuilder,
    )
    from .dataset import (
        Dataset as Dataset,
    )
    from .dataset import (
        concat as concat,
    )
    from .dataset import (
        example_key as example_key,
    )
    from .fixes import (
        Change as Change,
    )
    from .fixes import (
        FixResult as FixResult,
    )
    from .fixes import (
        autofix as autofix,
    )
    from .issues import (
        RULES as RULES,
    )
    from .issues import (
        Issue as Issue,
    )
    from .jsonl import (
        iter_lines as iter_lines,
    )
    from .jsonl import (
        read_jsonl as read_jsonl,
    )
    from .jsonl import (
        write_jsonl as write_jsonl,
    )
    from .models import (
        MODEL_TABLE as MODEL_TABLE,
    )
    from .models import (
        ModelInfo as ModelInfo,
    )
    from .models import (
        get_model_info as get_model_info,
    )
    from .models import (
        resolve_model_name as resolve_model_name,
    )
    from .records import (
        AssistantMessage as AssistantMessage,
    )
    from .records import (
        ChatExample as ChatExample,
    )
    from .records import (
        DeveloperMessage as DeveloperMessage,
    )
    from .records import (
        ExampleKind as ExampleKind,
    )
    from .records import (
        FunctionCall as FunctionCall,
    )
    from .records import (
        FunctionDefinition as FunctionDefinition,
    )
    from .records import (
        ImagePart as ImagePart,
    )
    from .records import (
        ImageURL as ImageURL,
    )
    from .records import (
        PreferenceExample as PreferenceExample,
    )
    from .records import (
        PreferenceInput as PreferenceInput,
    )
    from .records import (
        ReinforcementExample as ReinforcementExample,
    )
    from .records import (
        SystemMessage as SystemMessage,
    )
    from .records import (
        TextPart as TextPart,
    )
    from .records import (
        Tool as Tool,
    )
    from .records import (
        ToolCall as ToolCall,
    )
    from .records import (
        ToolMessage as ToolMessage,
    )
    from .records import (
        TrainingExample as TrainingExample,
    )
    from .records import (
        UserMessage as UserMessage,
    )
    from .records import (
        detect_kind as detect_kind,
    )
    from .records import (
        parse_example as parse_example,
    )
    from .records import (
        parse_message as parse_message,
    )
    from .report import (
        CostEstimate as CostEstimate,
    )
    from .report import (
        PreflightReport as PreflightReport,
    )
    from .tokens import (
        TokenCounter as TokenCounter,
    )
    from .tokens import (
        count_example_tokens as count_example_tokens,
    )
    from .tokens import (
        count_tokens as count_tokens,
    )
    from .tokens import (
        encoding_for_model as encoding_for_model,
    )
    from .tokens import (
        get_encoding as get_encoding,
    )
    from .validation import (
        auto_epochs as auto_epochs,
    )
    from .validation import (
        preflight as preflight,
    )

_EXPORTS = {
    "AssistantMessage": "finetune_kit.data.records",
    "ChatExample": "finetune_kit.data.records",
    "DeveloperMessage": "finetune_kit.data.records",
    "ExampleKind": "finetune_kit.data.records",
    "FunctionCall": "finetune_kit.data.records",
    "FunctionDefinition": "finetune_kit.data.records",
    "ImagePart": "finetune_kit.data.records",
    "ImageURL": "finetune_kit.data.records",
    "PreferenceExample": "finetune_kit.data.records",
    "PreferenceInput": "finetune_kit.data.records",
    "ReinforcementExample": "finetune_kit.data.records",
    "SystemMessage": "finetune_kit.data.records",
    "TextPart": "finetune_kit.data.records",
    "Tool": "finetune_kit.data.records",
    "ToolCall": "finetune_kit.data.records",
    "ToolMessage": "finetune_kit.data.records",
    "TrainingExample": "finetune_kit.data.records",
    "UserMessage": "finetune_kit.data.records",
    "detect_kind": "finetune_kit.data.records",
    "parse_example": "finetune_kit.data.records",
    "parse_message": "finetune_kit.data.records",
    "Dataset": "finetune_kit.data.dataset",
    "concat": "finetune_kit.data.dataset",
    "example_key": "finetune_kit.data.dataset",
    "BuilderOptions": "finetune_kit.data.builders",
    "BuilderRegistry": "finetune_kit.data.builders",
    "DatasetBuilder": "finetune_kit.data.builders",
    "available_builders": "finetune_kit.data.builders",
    "build_dataset": "finetune_kit.data.builders",
    "get_builder": "finetune_kit.data.builders",
    "register_builder": "finetune_kit.data.builders",
    "unregister_builder": "finetune_kit.data.builders",
    "ConversationBuilder": "finetune_kit.data.builders_builtin",
    "PreferenceBuilder": "finetune_kit.data.builders_builtin",
    "QABuilder": "finetune_kit.data.builders_builtin",
    "ToolCallBuilder": "finetune_kit.data.builders_builtin",
    "TemplateBuilder": "finetune_kit.data.builders_template",
    "auto_epochs": "finetune_kit.data.validation",
    "preflight": "finetune_kit.data.validation",
    "CostEstimate": "finetune_kit.data.report",
    "PreflightReport": "finetune_kit.data.report",
    "Issue": "finetune_kit.data.issues",
    "RULES": "finetune_kit.data.issues",
    "Change": "finetune_kit.data.fixes",
    "FixResult": "finetune_kit.data.fixes",
    "autofix": "finetune_kit.data.fixes",
    "MODEL_TABLE": "finetune_kit.data.models",
    "ModelInfo": "finetune_kit.data.models",
    "get_model_info": "finetune_kit.data.models",
    "resolve_model_name": "finetune_kit.data.models",
    "TokenCounter": "finetune_kit.data.tokens",
    "count_example_tokens": "finetune_kit.data.tokens",
    "count_tokens": "finetune_kit.data.tokens",
    "encoding_for_model": "finetune_kit.data.tokens",
    "get_encoding": "finetune_kit.data.tokens",
    "iter_lines": "finetune_kit.data.jsonl",
    "read_jsonl": "finetune_kit.data.jsonl",
    "write_jsonl": "finetune_kit.data.jsonl",
}

__all__ = [
    "MODEL_TABLE",
    "RULES",
    "AssistantMessage",
    "BuilderOptions",
    "BuilderRegistry",
    "Change",
    "ChatExample",
    "ConversationBuilder",
    "CostEstimate",
    "Dataset",
    "DatasetBuilder",
    "DeveloperMessage",
    "ExampleKind",
    "FixResult",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "Issue",
    "ModelInfo",
    "PreferenceBuilder",
    "PreferenceExample",
    "PreferenceInput",
    "PreflightReport",
    "QABuilder",
    "ReinforcementExample",
    "SystemMessage",
    "TemplateBuilder",
    "TextPart",
    "TokenCounter",
    "Tool",
    "ToolCall",
    "ToolCallBuilder",
    "ToolMessage",
    "TrainingExample",
    "UserMessage",
    "auto_epochs",
    "autofix",
    "available_builders",
    "build_dataset",
    "concat",
    "count_example_tokens",
    "count_tokens",
    "detect_kind",
    "encoding_for_model",
    "example_key",
    "get_builder",
    "get_encoding",
    "get_model_info",
    "iter_lines",
    "parse_example",
    "parse_message",
    "preflight",
    "read_jsonl",
    "register_builder",
    "resolve_model_name",
    "unregister_builder",
    "write_jsonl",
]

# The top-level package names these objects; this one only re-exports them.
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS, globals(), rename=False)
