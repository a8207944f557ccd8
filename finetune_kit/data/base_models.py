"""One table of fine-tunable base models: encodings, token limits, prices, shutdown dates.

Every entry names its source and the date its facts were read ("as of"), and every price or date
that does not come from an official page is marked with how far it can be trusted:
``"official"``, ``"3p"`` (a third-party page, usually several agreeing) or ``"recall"`` (an older
official figure that could not be re-checked). Preflight widens its cost range accordingly.

Lookups accept the names people actually have in hand: dated snapshots
(``gpt-4o-mini-2024-07-18``), undated aliases (``gpt-4o-mini``), fine-tuned models
(``ft:gpt-4o-mini-2024-07-18:org:suffix:abc123``, resolved to their base), and Azure names
(``gpt-35-turbo-0125``, ``gpt-4.1-2025-04-14.ft-0123456789abcdef0123456789abcdef``).

Example:
    >>> from finetune_kit.data.base_models import get_model_info
    >>> info = get_model_info("ft:gpt-4o-mini-2024-07-18:acme:support:7p4lURel")
    >>> info.name, info.encoding, info.max_example_tokens
    ('gpt-4o-mini-2024-07-18', 'o200k_base', 65536)
    >>> get_model_info("my-own-model") is None
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Literal

from .._lazy import renamed_names

__all__ = [
    "MODEL_TABLE",
    "Confidence",
    "DataFormat",
    "MethodName",
    "ModelInfo",
    "get_model_info",
    "resolve_model_name",
]

Confidence = Literal["official", "3p", "recall"]
"""How far a figure can be trusted: an official page, third-party pages, or an unverified memory."""

MethodName = Literal["supervised", "dpo", "reinforcement"]
"""A fine-tuning method, as the API names it: the one name for it in the package (what a model
supports, what an example kind trains, what ``jobs.create`` is asked)."""

DataFormat = Literal["chat", "completion"]
"""What a model reads: chat messages, or the legacy prompt/completion pairs."""

_REFERENCE = "reference/openai-finetuning-api.md"
_AS_OF = date(2026, 8, 21)


@dataclass(frozen=True)
class ModelInfo:
    """What finetune_kit knows about one fine-tunable base model.

    Attributes:
        name: The canonical dated snapshot, e.g. ``gpt-4o-mini-2024-07-18``.
        aliases: Other names that mean this snapshot (the undated alias, Azure spellings).
        encoding: The tiktoken encoding its tokens are counted with.
        max_example_tokens: The longest training example, in tokens; longer ones are truncated.
        methods: The fine-tuning methods it supports.
        data_format: ``"chat"`` (messages) or ``"completion"`` (legacy prompt/completion).
        training_price_per_1m: USD per 1M trained tokens (supervised and DPO), when known.
        training_price_per_hour: USD per hour of training (reinforcement fine-tuning), when known.
        training_price_confidence: How far the training price can be trusted.
        input_price_per_1m: USD per 1M input tokens when calling the fine-tuned model.
        cached_input_price_per_1m: USD per 1M cached input tokens when calling it.
        output_price_per_1m: USD per 1M output tokens when calling it.
        inference_price_confidence: How far the inference prices can be trusted.
        max_images_per_example: Images allowed per example on OpenAI; ``None`` when the model
            takes no images.
        azure_max_images_per_example: The same limit on Azure OpenAI, when it differs.
        shutdown_date: The day the snapshot and every fine-tune built on it stop working.
        shutdown_confidence: How far the shutdown date can be trusted.
        shutdown_as_of: The date of the shutdown date's source, which can be newer than the
            rest of the entry.
        shutdown_source: Where the shutdown date comes from (each date keeps its own source).
        source: Where the facts come from.
        as_of: The day the facts were read (for the shutdown date, see ``shutdown_as_of``).
        notes: Anything else a user should know.

    Example:
        >>> info = get_model_info("gpt-4.1-nano")
        >>> info.max_example_tokens, info.training_price_per_1m, info.training_price_confidence
        (32768, 1.5, 'recall')
    """

    name: str
    encoding: str
    max_example_tokens: int | None
    methods: tuple[MethodName, ...]
    source: str
    as_of: date
    aliases: tuple[str, ...] = ()
    data_format: DataFormat = "chat"
    training_price_per_1m: float | None = None
    training_price_per_hour: float | None = None
    training_price_confidence: Confidence | None = None
    input_price_per_1m: float | None = None
    cached_input_price_per_1m: float | None = None
    output_price_per_1m: float | None = None
    inference_price_confidence: Confidence | None = None
    max_images_per_example: int | None = None
    azure_max_images_per_example: int | None = None
    shutdown_date: date | None = None
    shutdown_confidence: Confidence | None = None
    shutdown_as_of: date | None = None
    shutdown_source: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def supports_images(self) -> bool:
        """Whether examples for this model may contain images (vision fine-tuning)."""
        return self.max_images_per_example is not None or (
            self.azure_max_images_per_example is not None
        )


_SHUTDOWN_2027 = date(2027, 1, 14)
_SHUTDOWN_2026 = date(2026, 10, 23)
# The shutdown dates, each checked again against OpenAI's deprecations page
# (developers.openai.com/api/docs/deprecations), whose own text could only be read in copies.
# The 2027-01-14 shutdowns were announced there on 2026-10-14.
_DEPRECATIONS = "developers.openai.com/api/docs/deprecations"
_SHUTDOWN_2027_AS_OF = date(2026, 10, 27)
_SHUTDOWN_2027_SOURCE = (
    f"{_DEPRECATIONS}, the notice of 2026-10-14 (the gpt-4o, gpt-4o-mini, gpt-4.1 and "
    "gpt-4.1-mini snapshots, gpt-4o-2024-11-20 among them, and every fine-tune built on them), "
    "as copied by dev.to/max_bob (checked against GET /v1/models' shutdown_date on 2026-10-27) "
    "and dev.to/importstatic (the page as of 2026-10-15); codersera.com agrees"
)
_SHUTDOWN_2026_AS_OF = date(2026, 10, 15)
_SHUTDOWN_2026_SOURCE = (
    f"{_DEPRECATIONS} as of 2026-10-15, as summarised by dev.to/importstatic (o4-mini, "
    "gpt-4.1-nano and their snapshots); aihola.com agrees for gpt-4.1-nano"
)
_SHUTDOWN_2026_OFFICIAL_AS_OF = date(2026, 4, 23)
_SHUTDOWN_2026_OFFICIAL_SOURCE = (
    f"{_DEPRECATIONS}, the notice '2026-04-22: Legacy GPT model snapshots' (gpt-3.5-turbo-0125 "
    "and gpt-4-0613 with their aliases), read verbatim in the page's change history "
    "(spybara.com, 2026-04-22 to 2026-04-23)"
)
_SHUTDOWN_LEGACY_SOURCE = (
    f"{_REFERENCE} §11 (the legacy gpt-3.5-turbo row, [3p]); the copies of {_DEPRECATIONS} "
    "checked name only gpt-3.5-turbo-0125 of the gpt-3.5-turbo snapshots, so not re-checked"
)
_SRC_LIMITS = f"{_REFERENCE} §7.8 (Azure fine-tune-models table, OpenAI guide)"
_SRC_PRICES = f"{_REFERENCE} §11 (prices; each shutdown date has its own source)"
_SRC = f"{_SRC_LIMITS}; {_SRC_PRICES}"

MODEL_TABLE: tuple[ModelInfo, ...] = (
    ModelInfo(
        name="gpt-4o-mini-2024-07-18",
        aliases=("gpt-4o-mini",),
        encoding="o200k_base",
        max_example_tokens=65_536,
        methods=("supervised", "dpo"),
        training_price_per_1m=3.00,
        training_price_confidence="3p",
        input_price_per_1m=0.30,
        cached_input_price_per_1m=0.15,
        output_price_per_1m=1.20,
        inference_price_confidence="3p",
        shutdown_date=_SHUTDOWN_2027,
        shutdown_confidence="3p",
        shutdown_as_of=_SHUTDOWN_2027_AS_OF,
        shutdown_source=_SHUTDOWN_2027_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
    ),
    ModelInfo(
        name="gpt-4o-2024-08-06",
        aliases=("gpt-4o",),
        encoding="o200k_base",
        max_example_tokens=65_536,
        methods=("supervised", "dpo"),
        training_price_per_1m=25.00,
        training_price_confidence="3p",
        input_price_per_1m=3.75,
        cached_input_price_per_1m=1.875,
        output_price_per_1m=15.00,
        inference_price_confidence="3p",
        max_images_per_example=10,
        azure_max_images_per_example=64,
        shutdown_date=_SHUTDOWN_2027,
        shutdown_confidence="3p",
        shutdown_as_of=_SHUTDOWN_2027_AS_OF,
        shutdown_source=_SHUTDOWN_2027_SOURCE,
        source=f"{_SRC}; {_REFERENCE} §7.4 (vision)",
        as_of=_AS_OF,
        notes=("The vision fine-tuning model on OpenAI: at most 10 images per example there.",),
    ),
    ModelInfo(
        name="gpt-4.1-2025-04-14",
        aliases=("gpt-4.1",),
        encoding="o200k_base",
        max_example_tokens=65_536,
        methods=("supervised", "dpo"),
        training_price_per_1m=25.00,
        training_price_confidence="recall",
        input_price_per_1m=3.00,
        cached_input_price_per_1m=0.75,
        output_price_per_1m=12.00,
        inference_price_confidence="3p",
        azure_max_images_per_example=64,
        shutdown_date=_SHUTDOWN_2027,
        shutdown_confidence="3p",
        shutdown_as_of=_SHUTDOWN_2027_AS_OF,
        shutdown_source=_SHUTDOWN_2027_SOURCE,
        source=f"{_SRC}; {_REFERENCE} §7.4, §10.2 (vision on Azure only)",
        as_of=_AS_OF,
        notes=("Vision fine-tuning only on Azure OpenAI (up to 64 images per example).",),
    ),
    ModelInfo(
        name="gpt-4.1-mini-2025-04-14",
        aliases=("gpt-4.1-mini",),
        encoding="o200k_base",
        max_example_tokens=65_536,
        methods=("supervised", "dpo"),
        training_price_per_1m=5.00,
        training_price_confidence="recall",
        input_price_per_1m=0.80,
        cached_input_price_per_1m=0.20,
        output_price_per_1m=3.20,
        inference_price_confidence="3p",
        shutdown_date=_SHUTDOWN_2027,
        shutdown_confidence="3p",
        shutdown_as_of=_SHUTDOWN_2027_AS_OF,
        shutdown_source=_SHUTDOWN_2027_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
    ),
    ModelInfo(
        name="gpt-4.1-nano-2025-04-14",
        aliases=("gpt-4.1-nano",),
        encoding="o200k_base",
        max_example_tokens=32_768,
        methods=("supervised", "dpo"),
        training_price_per_1m=1.50,
        training_price_confidence="recall",
        input_price_per_1m=0.20,
        cached_input_price_per_1m=0.05,
        output_price_per_1m=0.80,
        inference_price_confidence="recall",
        shutdown_date=_SHUTDOWN_2026,
        shutdown_confidence="3p",
        shutdown_as_of=_SHUTDOWN_2026_AS_OF,
        shutdown_source=_SHUTDOWN_2026_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
    ),
    ModelInfo(
        name="o4-mini-2025-04-16",
        aliases=("o4-mini",),
        encoding="o200k_base",
        max_example_tokens=65_536,
        methods=("reinforcement",),
        training_price_per_hour=100.00,
        training_price_confidence="official",
        input_price_per_1m=4.00,
        cached_input_price_per_1m=1.00,
        output_price_per_1m=16.00,
        inference_price_confidence="recall",
        shutdown_date=_SHUTDOWN_2026,
        shutdown_confidence="3p",
        shutdown_as_of=_SHUTDOWN_2026_AS_OF,
        shutdown_source=_SHUTDOWN_2026_SOURCE,
        source=f"{_SRC}; help.openai.com article 11323177 (RFT billing)",
        as_of=_AS_OF,
        notes=(
            "Reinforcement fine-tuning only, billed per hour of training plus grader tokens, "
            "so no per-token cost is estimated.",
        ),
    ),
    ModelInfo(
        name="gpt-5-2025-08-07",
        aliases=("gpt-5",),
        encoding="o200k_base",
        max_example_tokens=None,
        methods=("reinforcement",),
        source=f"{_REFERENCE} §10.2, §7.6 (Azure RFT, private preview)",
        as_of=_AS_OF,
        notes=("Azure OpenAI only, reinforcement fine-tuning in private preview.",),
    ),
    ModelInfo(
        name="gpt-3.5-turbo-0125",
        aliases=("gpt-3.5-turbo", "gpt-35-turbo", "gpt-35-turbo-0125"),
        encoding="cl100k_base",
        max_example_tokens=16_385,
        methods=("supervised",),
        training_price_per_1m=8.00,
        training_price_confidence="3p",
        input_price_per_1m=3.00,
        output_price_per_1m=6.00,
        inference_price_confidence="recall",
        shutdown_date=_SHUTDOWN_2026,
        shutdown_confidence="official",
        shutdown_as_of=_SHUTDOWN_2026_OFFICIAL_AS_OF,
        shutdown_source=_SHUTDOWN_2026_OFFICIAL_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
    ),
    ModelInfo(
        name="gpt-3.5-turbo-1106",
        aliases=("gpt-35-turbo-1106",),
        encoding="cl100k_base",
        max_example_tokens=16_385,
        methods=("supervised",),
        training_price_per_1m=8.00,
        training_price_confidence="3p",
        input_price_per_1m=3.00,
        output_price_per_1m=6.00,
        inference_price_confidence="recall",
        shutdown_date=_SHUTDOWN_2026,
        shutdown_confidence="recall",
        shutdown_as_of=_SHUTDOWN_2026_AS_OF,
        shutdown_source=_SHUTDOWN_LEGACY_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
    ),
    ModelInfo(
        name="gpt-3.5-turbo-0613",
        aliases=("gpt-35-turbo-0613",),
        encoding="cl100k_base",
        max_example_tokens=4_096,
        methods=("supervised",),
        training_price_per_1m=8.00,
        training_price_confidence="3p",
        input_price_per_1m=3.00,
        output_price_per_1m=6.00,
        inference_price_confidence="recall",
        shutdown_date=_SHUTDOWN_2026,
        shutdown_confidence="recall",
        shutdown_as_of=_SHUTDOWN_2026_AS_OF,
        shutdown_source=_SHUTDOWN_LEGACY_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
    ),
    ModelInfo(
        name="gpt-4-0613",
        aliases=("gpt-4",),
        encoding="cl100k_base",
        max_example_tokens=8_192,
        methods=("supervised",),
        shutdown_date=_SHUTDOWN_2026,
        shutdown_confidence="official",
        shutdown_as_of=_SHUTDOWN_2026_OFFICIAL_AS_OF,
        shutdown_source=_SHUTDOWN_2026_OFFICIAL_SOURCE,
        source=_SRC,
        as_of=_AS_OF,
        notes=("Limited access; token limit from memory of older docs [recall]; no price.",),
    ),
    ModelInfo(
        name="davinci-002",
        encoding="cl100k_base",
        max_example_tokens=None,
        methods=("supervised",),
        data_format="completion",
        training_price_per_1m=6.00,
        training_price_confidence="recall",
        input_price_per_1m=12.00,
        output_price_per_1m=12.00,
        inference_price_confidence="recall",
        source=f"{_REFERENCE} §11, §7.7 (legacy completions)",
        as_of=_AS_OF,
        notes=("Legacy completions model: examples are {prompt, completion} objects.",),
    ),
    ModelInfo(
        name="babbage-002",
        encoding="cl100k_base",
        max_example_tokens=None,
        methods=("supervised",),
        data_format="completion",
        training_price_per_1m=0.40,
        training_price_confidence="recall",
        input_price_per_1m=1.60,
        output_price_per_1m=1.60,
        inference_price_confidence="recall",
        source=f"{_REFERENCE} §11, §7.7 (legacy completions)",
        as_of=_AS_OF,
        notes=("Legacy completions model: examples are {prompt, completion} objects.",),
    ),
)

_BY_NAME: dict[str, ModelInfo] = {}
for _info in MODEL_TABLE:
    for _key in (_info.name, *_info.aliases):
        _BY_NAME[_key.lower()] = _info
del _info, _key

# A snapshot suffix: "-2024-07-18" (OpenAI) or "-0125" (the gpt-3.5 and Azure style).
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
# Azure fine-tuned models: "<base>.ft-<32 hex>", optionally with a suffix after the hex.
_AZURE_FT = re.compile(r"^(?P<base>.+?)\.ft-[0-9a-f]{8,}(?:[-_.].*)?$", re.IGNORECASE)


def resolve_model_name(name: str) -> str:
    """Strip what a fine-tuned model name adds, leaving the base model name as written.

    ``ft:gpt-4o-mini-2024-07-18:org:suffix:id`` (and its checkpoints, which add
    ``:ckpt-step-N``) becomes ``gpt-4o-mini-2024-07-18``; Azure's
    ``gpt-4.1-2025-04-14.ft-<hex>`` becomes ``gpt-4.1-2025-04-14``. Other names come back
    stripped of surrounding whitespace.

    Args:
        name: Any model name.

    Returns:
        The base model name.
    """
    name = name.strip()
    if name.startswith("ft:"):
        parts = name.split(":")
        if len(parts) > 1 and parts[1]:
            name = parts[1]
    match = _AZURE_FT.match(name)
    if match:
        name = match.group("base")
    return name


def get_model_info(name: str | None) -> ModelInfo | None:
    """Look a model up in the table.

    Accepts dated snapshots, undated aliases, ``ft:`` names and Azure names (see the module
    docstring). A snapshot the table does not list falls back to its family's entry
    (``gpt-4o-mini-2025-01-01`` reads as ``gpt-4o-mini``), since a family shares its encoding
    and limits.

    Args:
        name: The model name; ``None`` gives ``None``.

    Returns:
        The entry, or ``None`` for a model the table does not know.
    """
    if not name:
        return None
    base = resolve_model_name(name).lower()
    info = _BY_NAME.get(base)
    if info is None:
        family = _SNAPSHOT_SUFFIX.sub("", base)
        if family != base:
            info = _BY_NAME.get(family)
    return info


if not TYPE_CHECKING:  # old names stay importable (with a warning) but unseen by type checkers
    __getattr__ = renamed_names(__name__, {"TrainingMethod": "MethodName"})
