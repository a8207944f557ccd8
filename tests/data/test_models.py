"""The model table and its name lookups."""

from __future__ import annotations

from datetime import date

import pytest

from finetune_kit.data.models import MODEL_TABLE, get_model_info, resolve_model_name
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
    # Each date as of its source (reference §0): a summary of the deprecations page of
    # 2026-10-15 for 2026-10-23, undated pages read with the reference for 2027-01-14.
    assert (nano.shutdown_as_of, o4.shutdown_as_of) == (date(2026, 10, 15), date(2026, 10, 15))
    assert mini.shutdown_as_of == mini.as_of == date(2026, 8, 21)
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
