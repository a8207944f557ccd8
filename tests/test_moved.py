"""Every module path that moved still imports, for one release, as the very same module.

The old path gives the new module object (one class, one module state) and warns once with a
DeprecationWarning that names the new path and points at the line that imported it; the names
a user imported from the old path are the same objects as from the new one. Renamed names
inside a module likewise still resolve, with a warning naming the new name.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings

import pytest

import finetune_kit
from finetune_kit._lazy import MOVED_MODULES, MovedModuleFinder, install_moved_modules

TOP_LEVEL_MOVES = sorted(
    (old, new) for old, new in MOVED_MODULES.items() if not old.startswith("finetune_kit.local.")
)


def _forget(name: str) -> None:
    # The alias, not the module: the new path stays imported, as in a real program.
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in vars(package):
        delattr(package, child)


@pytest.mark.parametrize(("old", "new"), TOP_LEVEL_MOVES)
def test_an_old_path_imports_the_new_module_with_a_deprecation_warning(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} moved to {new}")) as caught:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert sys.modules[old] is module
    assert module.__name__ == new
    assert module.__spec__ is not None
    assert module.__spec__.name == new
    # The warning points at the importing line, so a user sees where to change the import.
    assert {w.filename for w in caught} == {__file__}
    # Every name the new module offers is the same object under the old path.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in getattr(module, "__all__", ()):
            assert getattr(sys.modules[old], name) is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize(("old", "new"), TOP_LEVEL_MOVES)
def test_an_old_path_warns_once_and_then_is_plain_sys_modules(old: str, new: str) -> None:
    _forget(old)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        importlib.import_module(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert importlib.import_module(old) is importlib.import_module(new)


def test_new_paths_import_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for new in sorted(set(MOVED_MODULES.values())):
            importlib.import_module(new)


def test_the_hook_is_installed_once_first_by_the_package() -> None:
    finders = [f for f in sys.meta_path if isinstance(f, MovedModuleFinder)]
    assert len(finders) == 1
    assert install_moved_modules() is finders[0]
    assert sys.meta_path.index(finders[0]) < sys.meta_path.index(
        next(f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder")
    )


RENAMED_NAMES = [
    ("finetune_kit.data.base_models", "TrainingMethod", "MethodName"),
    ("finetune_kit.data.rules", "ExampleKind", "LineKind"),
    ("finetune_kit.data.rules", "detect_kind", "detect_line_kind"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED_NAMES)
def test_a_renamed_name_still_resolves_with_a_warning(module: str, old: str, new: str) -> None:
    imported = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{module}.{old} is now {module}.{new}")):
        value = getattr(imported, old)
    assert value is getattr(imported, new)
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        _ = imported.Nonexistent


# Every name the modules that moved, or became packages, exported before (their __all__).
OLD_MODULE_NAMES = {
    "finetune_kit._render": [
        "dataframe",
        "escape_controls",
        "format_float",
        "format_signed",
        "html_table",
        "shorten",
        "text_table",
    ],
    "finetune_kit._upload_parts": [
        "ContentDigest",
        "FILE_PURPOSES",
        "FILE_SIZE_LIMIT",
        "FileWindow",
        "PART_SIZE_LIMIT",
        "PartSpec",
        "ProgressCounter",
        "SequentialDigest",
        "UPLOAD_SIZE_LIMIT",
        "UploadCache",
        "check_purpose",
        "check_size",
        "default_cache_path",
        "digest_bytes",
        "digest_file",
        "file_identity",
        "plan_parts",
        "remote_filename",
        "sha_tag",
        "token_filename",
    ],
    "finetune_kit._watch": [
        "Emit",
        "EventTail",
        "FetchEvents",
        "FetchJob",
        "FollowOptions",
        "Sleep",
        "WatchAction",
        "follow_steps",
        "resume_instructions",
    ],
    "finetune_kit.azure_deploy": [
        "ARM_MANAGEMENT_URL",
        "AsyncAzureDeployer",
        "AzureDeployer",
        "DEFAULT_ARM_API_VERSION",
        "DEVELOPER_TIER_API_VERSION",
    ],
    "finetune_kit.azure_deployment": [
        "AzureDeployment",
        "DeploymentModel",
        "DeploymentProperties",
        "DeploymentSku",
        "FAILED_STATES",
        "SUCCEEDED_STATE",
    ],
    "finetune_kit.backend_tokenizer": ["BackendTokenizer"],
    "finetune_kit.data.builders_builtin": [
        "ConversationBuilder",
        "PreferenceBuilder",
        "QABuilder",
        "ToolCallBuilder",
    ],
    "finetune_kit.data.builders_rows": [
        "Row",
        "RowFormat",
        "is_missing",
        "iter_rows",
        "require_mapping",
    ],
    "finetune_kit.data.builders_template": ["TemplateBuilder", "template_columns"],
    "finetune_kit.data.models": [
        "Confidence",
        "DataFormat",
        "MODEL_TABLE",
        "ModelInfo",
        "TrainingMethod",
        "get_model_info",
        "resolve_model_name",
    ],
    "finetune_kit.evaluation": [
        "EvalCase",
        "EvaluationReport",
        "ExampleResult",
        "PairedEvaluationReport",
        "ScoreDifference",
        "bootstrap_mean_ci",
        "message_text",
        "to_eval_cases",
    ],
    "finetune_kit.job_options": [
        "MAX_SEED",
        "METADATA_MAX_PAIRS",
        "OPENAI_SUFFIX_MAX_LENGTH",
        "Provider",
        "WandbIntegration",
        "check_metadata",
        "check_seed",
        "check_suffix",
        "detect_provider",
        "sanitize_suffix",
        "suffix_max_length",
    ],
    "finetune_kit.lifecycle": [
        "OPENAI_NEW_JOBS_END",
        "SHUTDOWN_WARNING_DAYS",
        "acheck_shutdown",
        "aexport_job",
        "check_new_jobs_allowed",
        "check_shutdown",
        "export_job",
    ],
    "finetune_kit.methods": [
        "DpoHyperparameters",
        "DpoMethod",
        "FineTuningMethod",
        "MethodName",
        "ReinforcementHyperparameters",
        "ReinforcementMethod",
        "SupervisedHyperparameters",
        "SupervisedMethod",
        "make_method",
    ],
    "finetune_kit.metrics": [
        "METRIC_ALIASES",
        "MetricPoint",
        "MetricSeries",
        "decode_result_file",
        "parse_result_csv",
        "point_from_event",
    ],
    "finetune_kit.replies": ["ChatReply", "ReplyToolCall"],
    "finetune_kit.scorers": [
        "CallableScorer",
        "Contains",
        "DEFAULT_JUDGE_PROMPT",
        "ExactMatch",
        "ModelJudge",
        "RegexMatch",
        "Scorer",
        "ScorerLike",
        "ToolCallMatch",
        "ValidJSON",
        "parse_judge_score",
        "resolve_scorers",
    ],
    "finetune_kit.state": ["CheckpointRecord", "STATE_VERSION", "SessionState"],
    "finetune_kit.views": [
        "JobEvent",
        "JobUpdate",
        "KNOWN_STATUSES",
        "StatusChange",
        "TERMINAL_STATUSES",
        "UploadedFile",
    ],
    "finetune_kit.watcher": ["AsyncJobWatcher", "JobWatcher"],
    "finetune_kit.azure": ["AZURE_SUFFIX_MAX_LENGTH", "azure_openai_client"],
    "finetune_kit.files": ["AsyncFileUploader", "FileUploader"],
    "finetune_kit.inference": [
        "AsyncInferenceClient",
        "Comparison",
        "ComparisonRow",
        "DEFAULT_CONCURRENCY",
        "InferenceClient",
        "model_name",
    ],
    "finetune_kit.jobs": ["AsyncJobManager", "IDEMPOTENCY_METADATA_KEY", "JobManager"],
    "finetune_kit.session": ["AsyncFineTuneSession", "FineTuneSession"],
    "finetune_kit.data.builders": [
        "BuilderOptions",
        "BuilderRegistry",
        "DatasetBuilder",
        "ENTRY_POINT_GROUP",
        "available_builders",
        "build_dataset",
        "get_builder",
        "register_builder",
        "unregister_builder",
    ],
    "finetune_kit.data.rules": [
        "CheckConfig",
        "ExampleChecker",
        "ExampleFacts",
        "ExampleKind",
        "SPECIAL_TOKENS",
        "detect_kind",
        "find_lone_surrogates",
        "find_special_tokens",
        "json_type",
    ],
}


@pytest.mark.parametrize(("module", "names"), sorted(OLD_MODULE_NAMES.items()))
def test_every_name_an_old_module_exported_is_still_there(module: str, names: list[str]) -> None:
    with warnings.catch_warnings():
        # A moved path and a renamed name warn: the tests above check how.
        warnings.simplefilter("ignore", DeprecationWarning)
        imported = importlib.import_module(module)
        for name in names:
            value = getattr(imported, name)
            if name in finetune_kit.__all__:
                assert value is getattr(finetune_kit, name), (module, name)
