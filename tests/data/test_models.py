"""The model table and its name lookups."""

from __future__ import annotations

from datetime import date

import pytest

from finetune_kit.data.base_models import MODEL_TABLE, get_model_info, resolve_model_name
from finetune_kit.data.tokens import ENCODING_SHA256

HEX32 = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
        ("gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
        ("GPT-4o-Mini", "gpt-4o-mini-2024-07-18"),
        ("ft:gpt-4o-mini-2024-07-18:my-org:support:7p4lURel", "gpt-4o-mini-2024-07-18"),
        ("ft:gpt-4o-mini:openai::7p4lURel", "gpt-4o-mini-2024-07-18"),
        (
            "ft:gpt-4o-mini-2024-07-18:my-org:custom:96olL566:ckpt-step-2000",
            "gpt-4o-mini-2024-07-18",
        ),
        ("gpt-35-turbo-0125", "gpt-3.5-turbo-0125"),
        ("gpt-35-turbo", "gpt-3.5-turbo-0125"),
        ("gpt-3.5-turbo-1106", "gpt-3.5-turbo-1106"),
        (f"gpt-4.1-2025-04-14.ft-{HEX32}", "gpt-4.1-2025-04-14"),
        (f"gpt-4o-mini-2024-07-18.ft-{HEX32}-support", "gpt-4o-mini-2024-07-18"),
        (f"gpt-35-turbo-0125.ft-{HEX32}", "gpt-3.5-turbo-0125"),
        ("o4-mini", "o4-mini-2025-04-16"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano-2025-04-14"),
        ("gpt-4o-mini-2025-09-30", "gpt-4o-mini-2024-07-18"),  # unknown snapshot: its family
    ],
)
def test_lookups(name: str, base: str) -> None:
    info = get_model_info(name)
    assert info is not None
    assert info.name == base


@pytest.mark.parametrize(
    "name", [None, "", "my-own-model", "gpt-4-turbo-2024-04-09", f"ftchkpt-{HEX32}", "ft:"]
)
def test_unknown_models_give_none(name: str | None) -> None:
    assert get_model_info(name) is None


def test_resolve_keeps_plain_names() -> None:
    assert resolve_model_name("  gpt-4o  ") == "gpt-4o"


def test_limits_prices_and_dates_from_the_reference() -> None:
    mini = get_model_info("gpt-4o-mini")
    nano = get_model_info("gpt-4.1-nano")
    legacy = get_model_info("gpt-3.5-turbo-0613")
    o4 = get_model_info("o4-mini")
    vision = get_model_info("gpt-4o")
    assert mini
    assert nano
    assert legacy
    assert o4
    assert vision
    assert (mini.max_example_tokens, nano.max_example_tokens, legacy.max_example_tokens) == (
        65_536,
        32_768,
        4_096,
    )
    assert mini.training_price_per_1m == 3.0
    assert mini.shutdown_date == date(2027, 1, 14)
    assert nano.shutdown_date == date(2026, 10, 23)
    assert o4.methods == ("reinforcement",)
    assert o4.training_price_per_1m is None
    assert o4.training_price_per_hour == 100.0
    assert vision.max_images_per_example == 10
    assert vision.azure_max_images_per_example == 64
    assert not mini.supports_images
    assert vision.supports_images


def test_every_entry_is_sourced_and_consistent() -> None:
    names = [key for info in MODEL_TABLE for key in (info.name, *info.aliases)]
    assert len(names) == len(set(names))
    for info in MODEL_TABLE:
        assert info.source
        assert info.as_of <= date.today()
        assert info.encoding in ENCODING_SHA256
        assert info.methods
        if info.training_price_per_1m is not None or info.training_price_per_hour is not None:
            assert info.training_price_confidence in ("official", "3p", "recall")
        if info.input_price_per_1m is not None:
            assert info.inference_price_confidence in ("official", "3p", "recall")
        if info.shutdown_date is not None:
            assert info.shutdown_confidence in ("official", "3p", "recall")
            assert info.shutdown_as_of is not None
            assert info.shutdown_as_of < info.shutdown_date
        assert get_model_info(info.name) is info


# OpenAI's shutdown dates, each checked again against the deprecations page (issue 10, item 21)
# with its confidence and the date of its source. The 2027-01-14 shutdowns were announced on
# 2026-10-14, so no source of that date can be older.
ANNOUNCED_2027 = date(2026, 10, 14)
SHUTDOWNS = {
    "gpt-4o-2024-08-06": (date(2027, 1, 14), "3p", date(2026, 10, 27)),
    "gpt-4o-mini-2024-07-18": (date(2027, 1, 14), "3p", date(2026, 10, 27)),
    "gpt-4.1-2025-04-14": (date(2027, 1, 14), "3p", date(2026, 10, 27)),
    "gpt-4.1-mini-2025-04-14": (date(2027, 1, 14), "3p", date(2026, 10, 27)),
    "gpt-4.1-nano-2025-04-14": (date(2026, 10, 23), "3p", date(2026, 10, 15)),
    "o4-mini-2025-04-16": (date(2026, 10, 23), "3p", date(2026, 10, 15)),
    "gpt-3.5-turbo-0125": (date(2026, 10, 23), "official", date(2026, 4, 23)),
    "gpt-4-0613": (date(2026, 10, 23), "official", date(2026, 4, 23)),
    "gpt-3.5-turbo-1106": (date(2026, 10, 23), "recall", date(2026, 10, 15)),
    "gpt-3.5-turbo-0613": (date(2026, 10, 23), "recall", date(2026, 10, 15)),
}


def test_each_shutdown_date_keeps_its_source_and_as_of() -> None:
    dated = {info.name: info for info in MODEL_TABLE if info.shutdown_date is not None}
    assert set(dated) == set(SHUTDOWNS)
    for name, (day, confidence, as_of) in SHUTDOWNS.items():
        info = dated[name]
        assert (info.shutdown_date, info.shutdown_confidence, info.shutdown_as_of) == (
            day,
            confidence,
            as_of,
        ), name
        assert info.shutdown_source, name
        assert info.shutdown_source != info.source, name
        if day == date(2027, 1, 14):
            assert info.shutdown_as_of is not None
            assert info.shutdown_as_of >= ANNOUNCED_2027, name
    for info in MODEL_TABLE:
        if info.shutdown_date is None:
            assert (info.shutdown_confidence, info.shutdown_as_of, info.shutdown_source) == (
                None,
                None,
                None,
            ), info.name


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4o-2024-11-20",  # not in the table: read as its family, which shuts down the same day
        "gpt-4o",
        "ft:gpt-4o-mini-2024-07-18:acme:x:abc123",
        f"gpt-4.1-mini-2025-04-14.ft-{HEX32}",
    ],
)
def test_fine_tunes_and_other_snapshots_share_their_base_models_date(name: str) -> None:
    info = get_model_info(name)
    assert info is not None
    assert info.shutdown_date == date(2027, 1, 14)


@pytest.mark.parametrize("name", ["o4-mini", "gpt-4.1-nano", "ft:gpt-4.1-nano-2025-04-14:o:x:y"])
def test_the_2026_retirements(name: str) -> None:
    info = get_model_info(name)
    assert info is not None
    assert info.shutdown_date == date(2026, 10, 23)
