"""Client-side checks of methods, hyperparameters, suffix, seed, metadata and integrations."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pydantic import ValidationError

from finetune_kit.errors import ConfigurationError
from finetune_kit.jobs import JobManager
from finetune_kit.jobs.methods import (
    DpoHyperparameters,
    DpoMethod,
    ReinforcementMethod,
    SupervisedHyperparameters,
    SupervisedMethod,
    make_method,
)
from finetune_kit.jobs.options import (
    WandbIntegration,
    check_metadata,
    check_seed,
    check_suffix,
    detect_provider,
    sanitize_suffix,
)

GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("supervised", {"n_epochs": 0}, "method.hyperparameters.n_epochs"),
        ("supervised", {"n_epochs": 51}, "method.hyperparameters.n_epochs"),
        ("supervised", {"n_epochs": 2.5}, "method.hyperparameters.n_epochs"),
        ("supervised", {"n_epochs": True}, "method.hyperparameters.n_epochs"),
        ("supervised", {"batch_size": 257}, "method.hyperparameters.batch_size"),
        (
            "supervised",
            {"learning_rate_multiplier": 0},
            "method.hyperparameters.learning_rate_multiplier",
        ),
        ("supervised", {"beta": 0.1}, "method.hyperparameters.beta"),
        ("supervised", {"n_epoch": 3}, "method.hyperparameters.n_epoch"),
        ("dpo", {"beta": 0}, "method.hyperparameters.beta"),
        ("dpo", {"beta": 2.5}, "method.hyperparameters.beta"),
        (
            "reinforcement",
            {"grader": GRADER, "compute_multiplier": 11},
            "method.hyperparameters.compute_multiplier",
        ),
        (
            "reinforcement",
            {"grader": GRADER, "eval_interval": 0},
            "method.hyperparameters.eval_interval",
        ),
        (
            "reinforcement",
            {"grader": GRADER, "reasoning_effort": "max"},
            "method.hyperparameters.reasoning_effort",
        ),
        ("reinforcement", {}, "method.grader"),
        ("reinforcement", {"grader": {"type": "vibes"}}, "method.grader"),
    ],
)
def test_out_of_range_values_name_the_parameter(
    method: Any, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_method(method, **params)
    assert info.value.param == param
    assert param in str(info.value)


def test_unknown_hyperparameter_message_says_to_check_spelling() -> None:
    with pytest.raises(ConfigurationError, match="'n_epoch': check its spelling"):
        make_method("supervised", n_epoch=3)


def test_valid_methods_serialize_to_the_api_shape() -> None:
    assert make_method("supervised").to_param() == {
        "type": "supervised",
        "supervised": {"hyperparameters": {}},
    }
    assert make_method("supervised", n_epochs="auto", batch_size=8).to_param() == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": "auto", "batch_size": 8}},
    }
    assert make_method("dpo", beta=2, learning_rate_multiplier=0.5).to_param() == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"beta": 2.0, "learning_rate_multiplier": 0.5}},
    }
    rft = make_method("reinforcement", grader=GRADER, eval_samples=4, reasoning_effort="low")
    assert isinstance(rft, ReinforcementMethod)
    assert rft.to_param() == {
        "type": "reinforcement",
        "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {"eval_samples": 4, "reasoning_effort": "low"},
        },
    }


def test_api_dict_form_and_merging() -> None:
    method = make_method({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}, n_epochs=2)
    assert isinstance(method, DpoMethod)
    assert method.hyperparameters.beta == 0.1
    assert method.hyperparameters.n_epochs == 2
    model = SupervisedMethod(hyperparameters=SupervisedHyperparameters(n_epochs=3))
    assert make_method(model) is model
    merged = make_method(model, batch_size=2)
    assert merged.to_param()["supervised"]["hyperparameters"] == {"n_epochs": 3, "batch_size": 2}
    with pytest.raises(ConfigurationError, match="unknown key"):
        make_method({"type": "dpo", "supervised": {}})
    with pytest.raises(ConfigurationError) as info:
        make_method("rlhf")  # type: ignore[arg-type]  # the wrong value is the test
    assert info.value.param == "method.type"


def test_models_are_strict_on_direct_construction() -> None:
    with pytest.raises(ValidationError, match="n_epochs"):
        SupervisedHyperparameters(n_epochs=100)
    with pytest.raises(ValidationError):
        DpoHyperparameters(gamma=1)  # type: ignore[call-arg]  # an unknown key is the test


@pytest.mark.parametrize(
    ("suffix", "provider", "ok"),
    [
        ("support-bot", "openai", True),
        ("a" * 64, "openai", True),
        ("a" * 65, "openai", False),
        ("a" * 18, "azure", True),
        ("a" * 19, "azure", False),
        ("has space", "openai", False),
        ("", "openai", False),
    ],
)
def test_suffix_rules(suffix: str, provider: Any, ok: bool) -> None:
    if ok:
        assert check_suffix(suffix, provider=provider) == suffix
    else:
        with pytest.raises(ConfigurationError) as info:
            check_suffix(suffix, provider=provider)
        assert info.value.param == "suffix"


def test_suffix_error_suggests_a_fix_and_explicit_limit_wins() -> None:
    with pytest.raises(ConfigurationError, match="try 'customer-support-b'") as info:
        check_suffix("customer-support-bot-v2", provider="azure")
    assert "Azure OpenAI accepts at most 18" in str(info.value)
    with pytest.raises(ConfigurationError, match="at most 5"):
        check_suffix("abcdef", max_length=5)
    assert sanitize_suffix("!!!") == "ft"


def test_provider_detection() -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint="https://res.openai.azure.com/", api_version="2024-10-21", api_key="k"
    )
    assert detect_provider(azure) == "azure"
    v1 = openai.OpenAI(base_url="https://res.openai.azure.com/openai/v1/", api_key="k")
    assert detect_provider(v1) == "azure"
    assert detect_provider(openai.OpenAI(api_key="k")) == "openai"
    assert (
        detect_provider(openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="k")) == "local"
    )
    assert (
        detect_provider(openai.OpenAI(base_url="https://llm.example.org/v1", api_key="k"))
        == "custom"
    )


@pytest.mark.parametrize("seed", [-1, 2**31, 1.5, True, "1"])
def test_bad_seeds(seed: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_seed(seed)
    assert info.value.param == "seed"


def test_good_seeds() -> None:
    assert check_seed(0) == 0
    assert check_seed(2**31 - 1) == 2**31 - 1


def test_metadata_limits() -> None:
    assert check_metadata({"a": "b"}) == {"a": "b"}
    with pytest.raises(ConfigurationError, match="at most 15 are allowed"):
        check_metadata({str(i): "v" for i in range(16)}, reserved=1)
    check_metadata({str(i): "v" for i in range(16)})
    with pytest.raises(ConfigurationError, match="1-64 characters"):
        check_metadata({"k" * 65: "v"})
    with pytest.raises(ConfigurationError) as info:
        check_metadata({"k": "v" * 513})
    assert info.value.param == "metadata.k"
    with pytest.raises(ConfigurationError, match="must be a string"):
        check_metadata({"k": 3})  # type: ignore[dict-item]  # the wrong type is the test


def test_wandb_integration_forms() -> None:
    expected = {"type": "wandb", "wandb": {"project": "p", "entity": "team"}}
    assert WandbIntegration(project="p", entity="team").to_param() == expected
    assert WandbIntegration.coerce(expected).to_param() == expected
    assert WandbIntegration.coerce({"project": "p", "entity": "team"}).to_param() == expected
    assert WandbIntegration.coerce("p").project == "p"
    with pytest.raises(ConfigurationError, match="only 'wandb'"):
        WandbIntegration.coerce({"type": "mlflow"})
    with pytest.raises(ConfigurationError, match="project"):
        WandbIntegration.coerce({"type": "wandb", "wandb": {"name": "x"}})


@pytest.fixture
def offline_manager() -> JobManager:
    # Every check below fails before a request is made; nothing listens on this port.
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    return JobManager(client, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"batch_sise": 2}}, "hyperparameters.batch_sise"),
        ({"method": "dpo", "hyperparameters": {"beta": 3}}, "method.hyperparameters.beta"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"metadata": {"finetune_kit_key": "mine"}}, "metadata.finetune_kit_key"),
        ({"metadata": {str(i): "v" for i in range(16)}}, "metadata"),
        ({"validation_file": "file-train"}, "validation_file"),
        ({"model": " "}, "model"),
        ({"wandb": {"type": "mlflow"}}, "integrations"),
    ],
)
def test_create_checks_every_argument_before_sending(
    offline_manager: JobManager, kwargs: dict[str, Any], param: str
) -> None:
    arguments: dict[str, Any] = {"model": "gpt-4o-mini", "training_file": "file-train", **kwargs}
    with pytest.raises(ConfigurationError) as info:
        offline_manager.create(**arguments)
    assert info.value.param == param
    assert param.split(".")[-1] in str(info.value)


def test_azure_clients_get_azure_suffix_rule() -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint="https://res.openai.azure.com/", api_version="2024-10-21", api_key="k"
    )
    manager = JobManager(azure, progress=False)
    assert manager.provider == "azure"
    with pytest.raises(ConfigurationError, match="at most 18"):
        manager.create(model="gpt-4o-mini", training_file="file-1", suffix="a-much-too-long-suffix")
    relaxed = JobManager(azure, provider="openai", progress=False)
    with pytest.raises(ConfigurationError) as info:
        relaxed.create(model="m", training_file="file-1", suffix="ok-suffix", seed=2**31)
    assert info.value.param == "seed"  # the suffix passed the 64-character rule
