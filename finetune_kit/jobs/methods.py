"""Typed fine-tuning methods and their hyperparameters, checked before anything is sent.

A job trains with one method: ``supervised`` (SFT), ``dpo`` (preference pairs) or
``reinforcement`` (RFT, with a grader). Each has a strict model here whose hyperparameters are
checked against the API's ranges, so a typo or an out-of-range value fails on your machine with
the parameter named, not minutes later as a failed job. Every hyperparameter defaults to
``"auto"`` (the API chooses); values left unset are not sent.

| hyperparameter | methods | range |
|---|---|---|
| ``n_epochs`` | all | integer 1-50 |
| ``batch_size`` | all | integer 1-256 |
| ``learning_rate_multiplier`` | all | number > 0 |
| ``beta`` | dpo | number in (0, 2] |
| ``compute_multiplier`` | reinforcement | number in (0.00001, 10] |
| ``eval_interval`` / ``eval_samples`` | reinforcement | integer >= 1 |
| ``reasoning_effort`` | reinforcement | ``default``, ``low``, ``medium``, ``high`` |

Examples:
    >>> method = SupervisedMethod(hyperparameters=SupervisedHyperparameters(n_epochs=3))
    >>> method.to_param()
    {'type': 'supervised', 'supervised': {'hyperparameters': {'n_epochs': 3}}}
    >>> make_method("dpo", beta=0.1).to_param()
    {'type': 'dpo', 'dpo': {'hyperparameters': {'beta': 0.1}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ..data.base_models import MethodName
from ..errors import ConfigurationError

__all__ = [
    "DpoHyperparameters",
    "DpoMethod",
    "FineTuningMethod",
    "MethodName",
    "ReinforcementHyperparameters",
    "ReinforcementMethod",
    "SupervisedHyperparameters",
    "SupervisedMethod",
    "make_method",
]

Auto = Literal["auto"]

GRADER_TYPES = frozenset(
    {"string_check", "text_similarity", "python", "score_model", "label_model", "multi"}
)
"""Grader ``type`` values the API documents for reinforcement fine-tuning."""


def _int_in(name: str, value: Any, low: int, high: int | None) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer or 'auto', got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bounds} (or 'auto'), got {value}")
    return value


def _float_in(
    name: str, value: Any, low: float, high: float | None, *, low_open: bool = True
) -> Any:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number or 'auto', got {value!r}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if too_low or (high is not None and number > high):
        left = "(" if low_open else "["
        bounds = f"{left}{low:g}, {high:g}]" if high is not None else f"> {low:g}"
        raise ValueError(f"{name} must be in {bounds} (or 'auto'), got {value}")
    return number


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SupervisedHyperparameters(_Strict):
    """Hyperparameters of supervised fine-tuning (SFT).

    Attributes:
        n_epochs: Passes over the training file, 1-50.
        batch_size: Examples per step, 1-256.
        learning_rate_multiplier: Scales the base learning rate; > 0.

    Examples:
        >>> SupervisedHyperparameters(n_epochs=2, batch_size=4).to_param()
        {'n_epochs': 2, 'batch_size': 4}
    """

    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"

    @field_validator("n_epochs", mode="before")
    @classmethod
    def _check_epochs(cls, value: Any) -> Any:
        return _int_in("n_epochs", value, 1, 50)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _check_batch(cls, value: Any) -> Any:
        return _int_in("batch_size", value, 1, 256)

    @field_validator("learning_rate_multiplier", mode="before")
    @classmethod
    def _check_lr(cls, value: Any) -> Any:
        return _float_in("learning_rate_multiplier", value, 0.0, None)

    def to_param(self) -> dict[str, Any]:
        """The hyperparameters as the API expects them: only the ones set.

        Returns:
            A dict for ``method.<type>.hyperparameters``.
        """
        return self.model_dump(exclude_unset=True)


class DpoHyperparameters(SupervisedHyperparameters):
    """Hyperparameters of direct preference optimisation (DPO).

    Attributes:
        beta: Weight of the penalty keeping the model near the reference, in (0, 2].
    """

    beta: float | Auto = "auto"

    @field_validator("beta", mode="before")
    @classmethod
    def _check_beta(cls, value: Any) -> Any:
        return _float_in("beta", value, 0.0, 2.0)


class ReinforcementHyperparameters(SupervisedHyperparameters):
    """Hyperparameters of reinforcement fine-tuning (RFT).

    Attributes:
        compute_multiplier: Scales the compute spent on exploration, in (0.00001, 10].
        eval_interval: Training steps between evaluations, >= 1.
        eval_samples: Samples per evaluation, >= 1.
        reasoning_effort: ``default``, ``low``, ``medium`` or ``high``.
    """

    compute_multiplier: float | Auto = "auto"
    eval_interval: int | Auto = "auto"
    eval_samples: int | Auto = "auto"
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"

    @field_validator("compute_multiplier", mode="before")
    @classmethod
    def _check_compute(cls, value: Any) -> Any:
        return _float_in("compute_multiplier", value, 0.00001, 10.0)

    @field_validator("eval_interval", "eval_samples", mode="before")
    @classmethod
    def _check_eval(cls, value: Any, info: Any) -> Any:
        return _int_in(info.field_name, value, 1, None)


class SupervisedMethod(_Strict):
    """Supervised fine-tuning on chat examples.

    Examples:
        >>> SupervisedMethod().to_param()
        {'type': 'supervised', 'supervised': {'hyperparameters': {}}}
    """

    type: Literal["supervised"] = "supervised"
    hyperparameters: SupervisedHyperparameters = Field(default_factory=SupervisedHyperparameters)

    def to_param(self) -> dict[str, Any]:
        """The ``method`` argument of ``jobs.create``.

        Returns:
            ``{"type": "supervised", "supervised": {"hyperparameters": {...}}}``.
        """
        return {"type": self.type, self.type: {"hyperparameters": self.hyperparameters.to_param()}}


class DpoMethod(_Strict):
    """Direct preference optimisation on preference pairs.

    Examples:
        >>> DpoMethod(hyperparameters=DpoHyperparameters(beta=0.2)).to_param()["dpo"]
        {'hyperparameters': {'beta': 0.2}}
    """

    type: Literal["dpo"] = "dpo"
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)

    def to_param(self) -> dict[str, Any]:
        """The ``method`` argument of ``jobs.create``.

        Returns:
            ``{"type": "dpo", "dpo": {"hyperparameters": {...}}}``.
        """
        return {"type": self.type, self.type: {"hyperparameters": self.hyperparameters.to_param()}}


class ReinforcementMethod(_Strict):
    """Reinforcement fine-tuning: a grader scores the model's answers.

    Attributes:
        grader: The grader object as the API documents it (``{"type": "string_check", ...}``).
        hyperparameters: The RFT hyperparameters.

    Examples:
        >>> grader = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
        ...           "reference": "{{item.answer}}", "operation": "eq"}
        >>> ReinforcementMethod(grader=grader).to_param()["reinforcement"]["grader"]["type"]
        'string_check'
    """

    type: Literal["reinforcement"] = "reinforcement"
    grader: dict[str, Any]
    hyperparameters: ReinforcementHyperparameters = Field(
        default_factory=ReinforcementHyperparameters
    )

    @field_validator("grader")
    @classmethod
    def _check_grader(cls, value: dict[str, Any]) -> dict[str, Any]:
        kind = value.get("type")
        if kind not in GRADER_TYPES:
            raise ValueError(
                f"grader type must be one of {sorted(GRADER_TYPES)}, got {kind!r}: pass a grader "
                "object such as {'type': 'string_check', 'name': ..., 'input': ..., "
                "'reference': ..., 'operation': 'eq'}"
            )
        return value

    def to_param(self) -> dict[str, Any]:
        """The ``method`` argument of ``jobs.create``.

        Returns:
            ``{"type": "reinforcement", "reinforcement": {"grader": ..., "hyperparameters": ...}}``.
        """
        return {
            "type": self.type,
            self.type: {"grader": self.grader, "hyperparameters": self.hyperparameters.to_param()},
        }


FineTuningMethod = Annotated[
    SupervisedMethod | DpoMethod | ReinforcementMethod, Field(discriminator="type")
]
"""Any of the three methods (a discriminated union on ``type``)."""

_METHOD_ADAPTER: TypeAdapter[SupervisedMethod | DpoMethod | ReinforcementMethod] = TypeAdapter(
    FineTuningMethod
)


def _configuration_error(exc: ValidationError, prefix: str, *, skip: int = 0) -> ConfigurationError:
    first = exc.errors()[0]
    parts = first["loc"][skip:]
    location = ".".join(str(part) for part in parts if not isinstance(part, int))
    param = f"{prefix}.{location}" if location else prefix
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown parameter {location.rsplit('.', 1)[-1]!r}: check its spelling"
    elif first["type"] == "missing":
        message = f"{location} is required"
    return ConfigurationError(f"{param}: {message}", param=param)


def make_method(
    method: SupervisedMethod | DpoMethod | ReinforcementMethod | Mapping[str, Any] | MethodName,
    /,
    **hyperparameters: Any,
) -> SupervisedMethod | DpoMethod | ReinforcementMethod:
    """Build a checked method from a model, the API's dict form, or a name plus hyperparameters.

    Args:
        method: A method model; a dict such as ``{"type": "dpo", "dpo": {"hyperparameters": ...}}``;
            or a method name.
        **hyperparameters: Hyperparameters to set (merged over the ones already given), plus
            ``grader=`` for ``reinforcement``.

    Returns:
        The method model.

    Raises:
        ConfigurationError: A value is out of range, unknown or missing; ``param`` names it
            (``method.hyperparameters.n_epochs``).

    Examples:
        >>> try:
        ...     make_method("supervised", n_epochs=0)
        ... except ConfigurationError as exc:
        ...     print(exc)
        method.hyperparameters.n_epochs: n_epochs must be in 1..50 (or 'auto'), got 0
    """
    if isinstance(method, (SupervisedMethod, DpoMethod, ReinforcementMethod)):
        if not hyperparameters:
            return method
        data: dict[str, Any] = method.model_dump(exclude_unset=True)
        data["type"] = method.type
    elif isinstance(method, str):
        data = {"type": method}
    elif isinstance(method, Mapping):
        kind = method.get("type")
        nested = method.get(kind) if isinstance(kind, str) else None
        extra_keys = set(method) - {"type", kind}
        if extra_keys:
            raise ConfigurationError(
                f"method: unknown key(s) {sorted(extra_keys)}; expected "
                f"{{'type': {kind!r}, {kind!r}: {{'hyperparameters': ...}}}}",
                param="method",
            )
        data = {"type": kind, **(dict(nested) if isinstance(nested, Mapping) else {})}
    else:
        raise ConfigurationError(
            f"method must be a method object, a dict or a name, got {type(method).__name__}",
            param="method",
        )
    if data.get("type") not in ("supervised", "dpo", "reinforcement"):
        raise ConfigurationError(
            "method: type must be 'supervised', 'dpo' or 'reinforcement', "
            f"got {data.get('type')!r}",
            param="method.type",
        )
    grader = hyperparameters.pop("grader", None)
    if grader is not None:
        data["grader"] = grader
    if hyperparameters:
        merged = dict(data.get("hyperparameters") or {})
        merged.update(hyperparameters)
        data["hyperparameters"] = merged
    try:
        return _METHOD_ADAPTER.validate_python(data)
    except ValidationError as exc:
        # The first location part is the union's branch ("supervised"): noise to a user.
        raise _configuration_error(exc, "method", skip=1) from exc
