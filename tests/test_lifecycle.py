from __future__ import annotations

import datetime as dt
import warnings
from typing import TYPE_CHECKING

import pytest

from finetune_kit.errors import ModelShutdownWarning
from finetune_kit.jobs.lifecycle import OPENAI_NEW_JOBS_END, check_new_jobs_allowed, check_shutdown

if TYPE_CHECKING:
    import openai


def test_warns_ahead_of_a_shutdown_and_names_the_day() -> None:
    with pytest.warns(ModelShutdownWarning, match=r"shuts down on 2027-01-14 \(54 days"):
        day = check_shutdown(
            "ft:gpt-4o-mini-2024-07-18:org:suffix:abc", today=dt.date(2026, 11, 21)
        )
    assert day == dt.date(2027, 1, 14)


def test_warns_after_a_shutdown() -> None:
    with pytest.warns(ModelShutdownWarning, match="was shut down on 2026-10-23"):
        check_shutdown("gpt-4.1-nano-2025-04-14", today=dt.date(2026, 11, 21))


def test_silent_far_ahead_and_for_unknown_models() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_shutdown("gpt-4o-mini", today=dt.date(2026, 1, 1)) == dt.date(2027, 1, 14)
        assert check_shutdown("smollm2-135m-instruct", today=dt.date(2026, 11, 21)) is None
        assert check_shutdown("gpt-4o-mini", use_table=False, today=dt.date(2026, 11, 21)) is None


def test_a_model_the_api_cannot_find_falls_back_to_the_table(client: openai.OpenAI) -> None:
    with pytest.warns(ModelShutdownWarning, match="2026-10-23"):
        day = check_shutdown("gpt-4.1-nano-2025-04-14", client=client, today=dt.date(2026, 11, 21))
    assert day == dt.date(2026, 10, 23)


def test_new_jobs_warning_only_for_openai() -> None:
    with pytest.warns(ModelShutdownWarning, match="no new fine-tuning jobs from 2027-01-06"):
        check_new_jobs_allowed("https://api.openai.com/v1", today=dt.date(2026, 11, 21))
    with pytest.warns(ModelShutdownWarning, match="since"):
        check_new_jobs_allowed("https://api.openai.com/v1", today=OPENAI_NEW_JOBS_END)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_new_jobs_allowed("https://res.openai.azure.com/openai/v1/", today=OPENAI_NEW_JOBS_END)
        check_new_jobs_allowed("http://127.0.0.1:8000/v1", today=OPENAI_NEW_JOBS_END)
        check_new_jobs_allowed("https://api.openai.com/v1", today=dt.date(2026, 1, 1))
