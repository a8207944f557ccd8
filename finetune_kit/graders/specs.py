"""Grader definitions: strict models of OpenAI's grader objects (openai-python ``types/graders``).

Each model mirrors the SDK's shape field for field, and, like every user-input model in
finetune_kit, refuses unknown keys: a typo is an error naming the key, never silently ignored.
:func:`parse_grader` reads a dict (what users write and what the API routes receive) into one
of them; ``finetune_kit.graders.validate_grader`` additionally checks what the shapes cannot
(templates, formulas, python source) by compiling the grader.

One departure from the SDK's typing, after OpenAI's own guide: a multi grader's ``graders`` is
a map of names to graders (``{"accuracy": {...}, "style": {...}}``), which its
``calculate_output`` refers to by name. The SDK types it as a single grader, but every example
OpenAI and Azure publish sends the map.

Examples:
    >>> spec = parse_grader({"type": "string_check", "name": "exact", "operation": "eq",
    ...                      "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
    >>> spec.type, spec.operation
    ('string_check', 'eq')
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..errors import GraderValidationError

__all__ = [
    "EVALUATION_METRICS",
    "AudioData",
    "ContentPart",
    "GraderMessage",
    "GraderSpec",
    "InputAudio",
    "InputImage",
    "InputText",
    "LabelModelGrader",
    "MultiGrader",
    "OutputText",
    "PromptCacheBreakpoint",
    "PythonGrader",
    "SamplingParams",
    "ScoreModelGrader",
    "StringCheckGrader",
    "SubGraderSpec",
    "TextSimilarityGrader",
    "parse_grader",
]

EvaluationMetric: TypeAlias = Literal[
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
]
EVALUATION_METRICS: tuple[str, ...] = get_args(EvaluationMetric)
"""Every ``evaluation_metric`` OpenAI defines (``cosine`` is refused locally: it needs an
embeddings model)."""


class _Spec(BaseModel):
    # Input: strict (no coercion, unknown keys refused) and immutable once validated.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The definition as JSON-ready data, with only the keys that were given."""
        return self.model_dump(mode="json", exclude_unset=True)


class StringCheckGrader(_Spec):
    """Compares ``input`` with ``reference``: reward 1 or 0.

    ``eq`` and ``ne`` test equality (case-sensitive); ``like`` tests that the input contains
    the reference (case-sensitive), ``ilike`` the same ignoring case. Both fields may hold
    templates.
    """

    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(_Spec):
    """Scores ``input`` against ``reference`` with a text-similarity metric, from 0 to 1."""

    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: EvaluationMetric


class PythonGrader(_Spec):
    """Runs ``grade(sample, item) -> float`` from ``source`` in a sandboxed process.

    ``image_tag`` names OpenAI's runtime image; locally the grader runs with the server's own
    Python and packages, whatever the tag.
    """

    type: Literal["python"]
    name: str
    source: str
    image_tag: str | None = None


class PromptCacheBreakpoint(_Spec):
    """A prompt-cache breakpoint on an ``input_text`` part (accepted, has no effect locally)."""

    mode: Literal["explicit"]
    ttl: Literal["30m", "12h"] | None = None


class InputText(_Spec):
    """A text part of a model grader's message; may hold templates."""

    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class OutputText(_Spec):
    """A text part written by a model (for ``assistant`` messages); may hold templates."""

    type: Literal["output_text"]
    text: str


class InputImage(_Spec):
    """An image part: a URL or a ``data:`` URL; ``image_url`` may hold templates."""

    type: Literal["input_image"]
    image_url: str
    detail: Literal["high", "low", "auto"] | None = None


class AudioData(_Spec):
    """Base64 audio of an ``input_audio`` part."""

    data: str
    format: Literal["mp3", "wav"]


class InputAudio(_Spec):
    """An audio part of a model grader's message."""

    type: Literal["input_audio"]
    input_audio: AudioData


ContentPart: TypeAlias = Annotated[
    InputText | OutputText | InputImage | InputAudio, Field(discriminator="type")
]


class GraderMessage(_Spec):
    """One message of a model grader's ``input``; its text may hold templates."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | ContentPart | list[str | ContentPart]
    type: Literal["message"] | None = None


ReasoningEffort: TypeAlias = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class SamplingParams(_Spec):
    """How a model grader samples its judge's answer.

    ``max_completions_tokens`` is OpenAI's wire name, with the "s".
    """

    max_completions_tokens: Annotated[int, Field(ge=1)] | None = None
    reasoning_effort: ReasoningEffort | None = None
    seed: int | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None


class ScoreModelGrader(_Spec):
    """Asks ``model`` for a score; the reward is the score clipped to ``range``.

    ``range`` defaults to ``[0, 1]``; the score is clipped to it, not rescaled.
    """

    type: Literal["score_model"]
    name: str
    model: Annotated[str, Field(min_length=1)]
    input: Annotated[list[GraderMessage], Field(min_length=1)]
    range: list[float] | None = None
    sampling_params: SamplingParams | None = None

    @field_validator("range")
    @classmethod
    def _check_range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if len(value) != 2 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"must be two finite numbers, [low, high], got {value}")
            if value[0] >= value[1]:
                raise ValueError(f"{value} must have low < high")
        return value

    @property
    def score_range(self) -> tuple[float, float]:
        """``range`` as ``(low, high)``, ``(0.0, 1.0)`` when unset."""
        if self.range is None:
            return (0.0, 1.0)
        return (float(self.range[0]), float(self.range[1]))


class LabelModelGrader(_Spec):
    """Asks ``model`` to pick one of ``labels``; reward 1 when it is one of ``passing_labels``."""

    type: Literal["label_model"]
    name: str
    model: Annotated[str, Field(min_length=1)]
    input: Annotated[list[GraderMessage], Field(min_length=1)]
    labels: Annotated[list[str], Field(min_length=1)]
    passing_labels: Annotated[list[str], Field(min_length=1)]

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: list[str]) -> list[str]:
        twice = sorted({label for label in value if value.count(label) > 1})
        if twice:
            raise ValueError(f"lists {twice[0]!r} twice; each label must be unique")
        return value

    @field_validator("passing_labels")
    @classmethod
    def _check_passing_labels(cls, value: list[str], info: ValidationInfo) -> list[str]:
        labels = info.data.get("labels")
        unknown = [label for label in value if labels is not None and label not in labels]
        if unknown:
            raise ValueError(
                f"has {unknown[0]!r}, which is not in labels {labels}; passing_labels must be "
                "a subset of labels"
            )
        return value


SubGraderSpec: TypeAlias = (
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader
)
"""A grader that can sit inside a multi grader (anything but another multi grader)."""


class MultiGrader(_Spec):
    """Runs named sub-graders and combines their rewards with ``calculate_output``."""

    type: Literal["multi"]
    name: str
    calculate_output: str
    graders: Annotated[dict[str, SubGraderSpec], Field(min_length=1)]


GraderSpec: TypeAlias = SubGraderSpec | MultiGrader
"""Any grader definition."""

_SUB_GRADERS: dict[str, type[SubGraderSpec]] = {
    "string_check": StringCheckGrader,
    "text_similarity": TextSimilarityGrader,
    "python": PythonGrader,
    "score_model": ScoreModelGrader,
    "label_model": LabelModelGrader,
}
_BY_TYPE: dict[str, type[GraderSpec]] = {**_SUB_GRADERS, "multi": MultiGrader}
_SPEC_CLASSES = (*_SUB_GRADERS.values(), MultiGrader)


def parse_grader(data: Any) -> GraderSpec:
    """Read a grader definition (a dict, as JSON gives it) into its model.

    Only the shape is checked here; ``validate_grader`` also checks templates, formulas and
    python source.

    Args:
        data: The definition: a dict, one of the models above (returned as is), or an
            openai-python grader object (read through its ``to_dict()``).

    Returns:
        The grader's model.

    Raises:
        GraderValidationError: The definition has an unknown key, a missing key, a value of
            the wrong type or out of range; the message names the grader and the field.
    """
    if isinstance(data, _SPEC_CLASSES):
        return data
    to_dict = getattr(data, "to_dict", None)
    if not isinstance(data, Mapping) and callable(to_dict):
        data = to_dict()
    return _parse(data, path="", nested=False)


def _parse(data: Any, *, path: str, nested: bool) -> GraderSpec:
    name = data.get("name") if isinstance(data, Mapping) else None
    label = name if isinstance(name, str) else None
    if not isinstance(data, Mapping):
        raise _error(
            label, path, f"must be an object with a 'type', got {_json_type(data)}", "type"
        )
    kind = data.get("type")
    if kind is None:
        raise _error(label, path, "has no 'type'", "type", fix=f"set it to one of {_types()}")
    if not isinstance(kind, str) or kind not in _BY_TYPE:
        guess = _did_you_mean(str(kind), list(_BY_TYPE))
        raise _error(
            label,
            _join(path, "type"),
            f"unknown grader type {kind!r}{guess}",
            "",
            f"the types are {_types()}",
        )
    if kind == "multi":
        if nested:
            raise _error(
                label,
                _join(path, "type"),
                "a multi grader cannot be nested inside another multi grader",
                "",
                fix="list its sub-graders in the outer multi grader's graders instead",
            )
        return _parse_multi(data, path=path, name=label)
    model = _SUB_GRADERS[kind]
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise _from_pydantic(exc, data, model, path=path, name=label, kind=kind) from None


def _parse_multi(data: Mapping[str, Any], *, path: str, name: str | None) -> MultiGrader:
    graders = data.get("graders")
    built: dict[str, Any] = {}
    if isinstance(graders, Mapping):
        if isinstance(graders.get("type"), str):
            raise _error(
                name,
                _join(path, "graders"),
                "is a single grader; it must map names to graders, as in "
                '{"graders": {"accuracy": {...}, "style": {...}}}, so calculate_output can '
                "refer to them by name",
                "",
                fix='wrap it: {"graders": {"<name>": <the grader>}}',
            )
        for key, sub in graders.items():
            if not isinstance(key, str):
                raise _error(name, _join(path, "graders"), f"has a non-string key {key!r}", "")
            built[key] = _parse(sub, path=_join(path, f"graders.{key}"), nested=True)
    rest = {k: v for k, v in data.items() if k != "graders"}
    if "graders" in data:
        rest["graders"] = built if isinstance(graders, Mapping) else graders
    try:
        return MultiGrader.model_validate(rest)
    except ValidationError as exc:
        raise _from_pydantic(exc, data, MultiGrader, path=path, name=name, kind="multi") from None


def _from_pydantic(
    exc: ValidationError,
    data: Mapping[str, Any],
    model: type[_Spec],
    *,
    path: str,
    name: str | None,
    kind: str,
) -> GraderValidationError:
    errors = exc.errors(include_url=False)
    # The most useful error first: the deepest into what the user wrote (a union reports one
    # error per branch, and the deepest is the branch they meant), then an unknown key (which
    # explains the "missing" error that comes with a misspelt one).
    ranked = sorted(
        ((_data_path(e["loc"], data), e) for e in errors),
        key=lambda pair: (
            -pair[0][0].count(".") - pair[0][0].count("["),
            _RANK.get(pair[1]["type"], 9),
        ),
    )
    (field, at), first = ranked[0]
    problem = _describe(first, at, model)
    who = f"grader {name!r} ({kind})" if name else f"{kind} grader"
    full = _join(path, field)
    where = f", field {full!r}" if full else ""
    return GraderValidationError(f"{who}{where}: {problem}.", grader=name, field=full)


_RANK = {"extra_forbidden": 0, "union_tag_invalid": 1, "union_tag_not_found": 1, "missing": 2}


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[str, Any]:
    """Turn pydantic's location into the JSON path the user wrote, dropping union tags."""
    parts: list[str] = []
    at: Any = data
    for index, step in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(at, Mapping) and step in at:
            parts.append(f".{step}" if parts else str(step))
            at = at[step]
        elif isinstance(at, list) and isinstance(step, int) and step < len(at):
            parts.append(f"[{step}]")
            at = at[step]
        elif last and isinstance(step, str) and not _is_tag(step):
            parts.append(f".{step}" if parts else step)
            at = None
    return "".join(parts), at


def _is_tag(step: str) -> bool:
    # Union branches pydantic names in a location: "str", "list[...]", "input_text",
    # "tagged-union[...]", "function-after[...]".
    return "[" in step or step in ("str", "int", "float") or step in _PART_TAGS


_PART_TAGS = {"input_text", "output_text", "input_image", "input_audio"}


def _describe(error: Any, value: Any, model: type[_Spec]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(model, loc)
        return f"unknown key {key!r}{_did_you_mean(key, known)}; remove it or fix its spelling"
    if kind == "missing":
        return "is required and missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return (
            "each content part needs a 'type' of input_text, output_text, input_image or "
            "input_audio"
        )
    if kind.endswith("_type") and loc and "content" in loc:
        return (
            "must be a string, a content part ({'type': 'input_text', 'text': ...}) or an "
            f"array of them (got {_json_type(value)})"
        )
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    shown = _json_type(value) if kind.endswith("_type") else None
    return f"{message[0].lower()}{message[1:]}" + (f" (got {shown})" if shown else "")


def _known_keys(model: type[_Spec], loc: tuple[int | str, ...]) -> list[str]:
    # The keys of the model the unknown key sits in: walk the location through nested models.
    current: type[BaseModel] = model
    for step in loc[:-1]:
        if not isinstance(step, str):
            continue
        if step in _PART_TAGS:
            current = _PART_MODELS[step]
            continue
        info = current.model_fields.get(step)
        if info is None:
            continue
        for candidate in _models_in(info.annotation):
            current = candidate
            break
    return list(current.model_fields)


_PART_MODELS: dict[str, type[BaseModel]] = {
    "input_text": InputText,
    "output_text": OutputText,
    "input_image": InputImage,
    "input_audio": InputAudio,
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _types() -> str:
    return ", ".join(_BY_TYPE)


def _join(path: str, field: str) -> str:
    if not path:
        return field
    if not field:
        return path
    return f"{path}{field}" if field.startswith("[") else f"{path}.{field}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _error(
    name: str | None, field: str, problem: str, key: str, fix: str = ""
) -> GraderValidationError:
    who = f"grader {name!r}" if name else "grader"
    full = _join(field, key) if key else field
    where = f", field {full!r}" if full else ""
    tail = f"; {fix}" if fix else ""
    return GraderValidationError(f"{who}{where}: {problem}{tail}.", grader=name, field=full)
