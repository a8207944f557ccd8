"""score_model and label_model, compiled: render the messages, ask the judge, read its JSON."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .base import CompiledGrader, GradeContext, Outcome
from .model import GraderModelReply, GraderModelRequest
from .specs import (
    GraderMessage,
    InputAudio,
    InputImage,
    InputText,
    LabelModelGrader,
    OutputText,
    ScoreModelGrader,
)
from .templates import Template, TemplateVariableError

__all__ = ["LabelModel", "ScoreModel", "parse_judge_json"]

_STEPS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
        "required": ["description", "conclusion"],
        "additionalProperties": False,
    },
}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _schema(name: str, result: dict[str, Any]) -> dict[str, Any]:
    # The answer shape OpenAI's guide gives for score_model: reasoning steps, then the result.
    return {
        "name": name,
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"steps": _STEPS, "result": result},
            "required": ["steps", "result"],
            "additionalProperties": False,
        },
    }


def parse_judge_json(text: str) -> dict[str, Any] | None:
    """Read a judge's answer: a JSON object, also inside a code fence or surrounded by prose.

    Returns:
        The object, or None when there is none.
    """
    candidates = [text.strip()]
    fenced = _FENCE.match(candidates[0])
    if fenced:
        candidates.append(fenced.group(1))
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


class _RenderedPart:
    def __init__(self, part: Any, grader: str, field: str) -> None:
        self.part = part
        self.template: Template | None = None
        if isinstance(part, str):
            self.template = Template.parse(part, grader=grader, field=field)
        elif isinstance(part, (InputText, OutputText)):
            self.template = Template.parse(part.text, grader=grader, field=f"{field}.text")
        elif isinstance(part, InputImage):
            self.template = Template.parse(
                part.image_url, grader=grader, field=f"{field}.image_url"
            )

    def render(self, context: GradeContext) -> dict[str, Any]:
        part = self.part
        if isinstance(part, InputImage):
            assert self.template is not None
            image: dict[str, Any] = {"url": context.render(self.template)}
            if part.detail is not None:
                image["detail"] = part.detail
            return {"type": "image_url", "image_url": image}
        if isinstance(part, InputAudio):
            audio = part.input_audio
            return {
                "type": "input_audio",
                "input_audio": {"data": audio.data, "format": audio.format},
            }
        assert self.template is not None
        return {"type": "text", "text": context.render(self.template)}


class _Message:
    def __init__(self, message: GraderMessage, grader: str, field: str) -> None:
        self.role = message.role
        content = message.content
        if isinstance(content, list):
            self.parts = [
                _RenderedPart(part, grader, f"{field}[{i}]") for i, part in enumerate(content)
            ]
        else:
            self.parts = [_RenderedPart(content, grader, field)]

    def render(self, context: GradeContext) -> dict[str, Any]:
        rendered = [part.render(context) for part in self.parts]
        if all(part["type"] == "text" for part in rendered):
            # Text only: one string, which every chat server takes for every role.
            return {"role": self.role, "content": "\n".join(p["text"] for p in rendered)}
        return {"role": self.role, "content": rendered}


class _ModelGrader(CompiledGrader):
    spec: ScoreModelGrader | LabelModelGrader

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._messages = [
            _Message(message, spec.name, f"input[{i}].content")
            for i, message in enumerate(spec.input)
        ]

    @property
    def needs_model(self) -> bool:
        return True

    def _schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def _read(self, answer: dict[str, Any], outcome: Outcome) -> Outcome:
        raise NotImplementedError

    def grade(self, context: GradeContext) -> Outcome:
        try:
            messages = [message.render(context) for message in self._messages]
        except TemplateVariableError as exc:
            return Outcome.missing_variable(exc)
        assert context.model is not None
        request = GraderModelRequest(
            model=self.spec.model,
            messages=messages,
            sampling_params=getattr(self.spec, "sampling_params", None),
            json_schema=self._schema(),
        )
        try:
            reply = context.model.complete(request)
        except Exception as exc:  # any failure of the judge is a server error
            return Outcome.failed(
                model_grader_server_error=True,
                model_grader_server_error_details=f"{type(exc).__name__}: {exc}",
            )
        outcome = self._usage(reply)
        if reply.refusal:
            outcome.errors = outcome.errors.model_copy(
                update={
                    "model_grader_refusal_error": True,
                    "model_grader_refusal_error_details": reply.refusal,
                }
            )
            return outcome
        answer = parse_judge_json(reply.text)
        if answer is None:
            number = _number(reply.text.strip())
            answer = {"result": number} if number is not None else None
        if answer is None:
            return self._parse_error(outcome, f"the answer is not JSON: {reply.text[:200]!r}")
        return self._read(answer, outcome)

    def _usage(self, reply: GraderModelReply) -> Outcome:
        name = reply.model or self.spec.model
        usage = {name: reply.usage} if reply.usage is not None else {}
        return Outcome(0.0, usage=usage, sampled_model_name=name)

    @staticmethod
    def _parse_error(outcome: Outcome, details: str) -> Outcome:
        outcome.errors = outcome.errors.model_copy(
            update={"model_grader_parse_error": True, "model_grader_parse_error_details": details}
        )
        outcome.reward = 0.0
        return outcome


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class ScoreModel(_ModelGrader):
    """The judge answers ``{"steps": [...], "result": <number>}``.

    The reward is ``result`` clipped to ``range``.
    """

    spec: ScoreModelGrader

    def _schema(self) -> dict[str, Any]:
        return _schema("score_model_grader", {"type": "number"})

    def _read(self, answer: dict[str, Any], outcome: Outcome) -> Outcome:
        raw = answer.get("result")
        number = _number(raw)
        if number is None:
            return self._parse_error(outcome, f"the answer's result is {raw!r:.100}, not a number")
        low, high = self.spec.score_range
        outcome.reward = min(high, max(low, number))
        outcome.scores = {"result": number}
        return outcome


class LabelModel(_ModelGrader):
    """The judge answers ``{"steps": [...], "result": <one of labels>}``.

    The reward is 1 when the label is one of ``passing_labels``, else 0.
    """

    spec: LabelModelGrader

    def _schema(self) -> dict[str, Any]:
        return _schema("label_model_grader", {"type": "string", "enum": list(self.spec.labels)})

    def _read(self, answer: dict[str, Any], outcome: Outcome) -> Outcome:
        label = answer.get("result")
        if not isinstance(label, str) or label not in self.spec.labels:
            return self._parse_error(
                outcome,
                f"the answer's result is {label!r:.100}, not one of the labels {self.spec.labels}",
            )
        outcome.reward = 1.0 if label in self.spec.passing_labels else 0.0
        outcome.scores = {"result": label}
        return outcome
