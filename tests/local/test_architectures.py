"""Real architectures, offline: small random models built from the configs of Qwen2.5, Qwen3,
Llama 3.2, Gemma 3, Mistral and SmolLM2 (two layers, a small hidden size, the families' own
context lengths, rope settings and sliding windows), each with an offline tokenizer carrying its
family's special tokens and chat template (tests/local/chat_templates). Each is trained and
served over the real HTTP API, and the engine's packed forward pass is checked against the
model's own forward pass, example by example."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import torch

from finetune_kit.local import LocalBackend
from finetune_kit.local.engine.chat_format import (
    CHATML_TEMPLATE,
    ChatRenderer,
    MessageFormatError,
    normalize_messages,
)
from finetune_kit.local.engine.families import end_of_turn_ids, family_for, lora_target_modules
from finetune_kit.local.engine.objectives import PackedScorer
from finetune_kit.local.engine.registry import ModelRegistry
from finetune_kit.local.engine.training_data import SupervisedExample
from finetune_kit.local.engine.types import LoraSettings
from tests.fixtures.local_backend import wait_for_job, write_jsonl

TEMPLATES = Path(__file__).parent / "chat_templates"
SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "initializer_range": 0.2,
}
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Family:
    """How to build one family's small model and tokenizer."""

    name: str
    template: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    end_of_turn: str
    config: Callable[[dict[str, Any]], Any]
    context: int


def _qwen2(ids: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**SMALL, **ids, max_position_embeddings=32768, tie_word_embeddings=True)


def _qwen3(ids: dict[str, Any]) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(**SMALL, **ids, max_position_embeddings=40960, tie_word_embeddings=True)


def _llama32(ids: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        **SMALL,
        **ids,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
    )


def _gemma3(ids: dict[str, Any]) -> Any:
    from transformers import Gemma3TextConfig

    # A window of 16 tokens (Gemma 3 1B's is 512): the conversations here are longer, so the
    # sliding layers really slide.
    return Gemma3TextConfig(
        **SMALL,
        **ids,
        max_position_embeddings=32768,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        query_pre_attn_scalar=16,
    )


def _mistral(ids: dict[str, Any]) -> Any:
    from transformers import MistralConfig

    return MistralConfig(
        **SMALL, **ids, max_position_embeddings=32768, sliding_window=None, rope_theta=1e6
    )


def _smollm2(ids: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**SMALL, **ids, max_position_embeddings=8192, tie_word_embeddings=True)


CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
FAMILIES = [
    Family(
        "qwen2.5", "qwen2.5", CHATML, None, "<|im_end|>", "<|endoftext|>", "<|im_end|>", _qwen2,
        32768,
    ),
    Family(
        "qwen3", "qwen3", (*CHATML, "<think>", "</think>"), None, "<|im_end|>", "<|endoftext|>",
        "<|im_end|>", _qwen3, 40960,
    ),
    Family(
        "llama3.2",
        "llama3.2",
        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
         "<|eot_id|>", "<|eom_id|>"),
        "<|begin_of_text|>", "<|end_of_text|>", "<|end_of_text|>", "<|eot_id|>", _llama32, 131072,
    ),
    Family(
        "gemma3", "gemma3", ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        "<bos>", "<eos>", "<pad>", "<end_of_turn>", _gemma3, 32768,
    ),
    Family(
        "mistral", "mistral", ("<unk>", "<s>", "</s>", "[INST]", "[/INST]"), "<s>", "</s>", "<unk>",
        "</s>", _mistral, 32768,
    ),
    Family(
        "smollm2", "chatml", CHATML, "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|im_end|>",
        _smollm2, 8192,
    ),
]  # fmt: skip


def _byte_alphabet() -> list[str]:
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def build_tokenizer(family: Family) -> Any:
    """A byte-level tokenizer with the family's special tokens and chat template, offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(family.specials)}
    for char in _byte_alphabet():
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        additional_special_tokens=list(family.specials),
        model_max_length=family.context,
    )
    if family.template == "chatml":
        tokenizer.chat_template = CHATML_TEMPLATE
    else:
        tokenizer.chat_template = (TEMPLATES / f"{family.template}.jinja").read_text()
    return tokenizer


def build_model(family: Family, folder: Path) -> Path:
    """Save the family's small random model and its tokenizer into ``folder``."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = build_tokenizer(family)
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = family.config(ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = AutoModelForCausalLM.from_config(config)
    # As many released configs do: the generation config knows end-of-text only.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def examples(n: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "You answer in one short line."},
                {"role": "user", "content": f"What is item {i}?"},
                {"role": "assistant", "content": f"Item {i} is a small thing."},
                {"role": "user", "content": "And after it?"},
                {"role": "assistant", "content": f"Item {i + 1} follows."},
            ]
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("architectures")
    return {f.name: build_model(f, root / f.name) for f in FAMILIES}


@pytest.fixture(scope="module")
def backend(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalBackend]:
    root = next(iter(models.values())).parent
    data = tmp_path_factory.mktemp("architectures-data")
    with LocalBackend(
        data, default_model="tiny-random", model_dirs=[root], default_max_tokens=12
    ) as running:
        yield running


# -- the engine, architecture by architecture ---------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_registry_loads_each_family_with_its_facts(
    family: Family, models: dict[str, Path]
) -> None:
    model, tokenizer = ModelRegistry(default_model="tiny-random").load(
        str(models[family.name]), shared=False
    )
    assert family_for(model.config) is not None
    targets = lora_target_modules(
        model, LoraSettings().target_modules, LoraSettings().target_modules
    )
    assert targets == ALL_PROJECTIONS
    # Generation stops at the end of a turn, even though the saved config named end-of-text.
    end_of_turn = tokenizer.convert_tokens_to_ids(family.end_of_turn)
    stops = model.generation_config.eos_token_id
    assert end_of_turn in (stops if isinstance(stops, list) else [stops])
    assert end_of_turn in end_of_turn_ids(tokenizer, model.config)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_answers_and_their_end_of_turn_are_what_trains(
    family: Family, models: dict[str, Path]
) -> None:
    _, tokenizer = ModelRegistry(default_model="tiny-random").load(str(models[family.name]))
    renderer = ChatRenderer(tokenizer)
    messages = normalize_messages(examples(1)[0]["messages"])
    rendered = renderer.render_training(messages, [True, True])
    trained = renderer.decode(
        [t for t, keep in zip(rendered.input_ids, rendered.trained, strict=True) if keep]
    )
    assert "Item 0 is a small thing." in trained
    assert "Item 1 follows." in trained
    assert trained.count(family.end_of_turn) == 2
    for prompt_text in ("What is item 0?", "And after it?", "You answer"):
        assert prompt_text not in trained


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_packed_forward_pass_equals_the_models_own(
    family: Family, models: dict[str, Path]
) -> None:
    from peft import LoraConfig, get_peft_model

    model, tokenizer = ModelRegistry(default_model="tiny-random").load(
        str(models[family.name]), shared=False
    )
    renderer = ChatRenderer(tokenizer)
    items = []
    for index, example in enumerate(examples(3)):
        messages = normalize_messages(example["messages"][: 3 + 2 * (index % 2)])
        rendered = renderer.render_training(
            messages, [True] * sum(m["role"] == "assistant" for m in messages)
        )
        targets = [p for p in range(len(rendered.input_ids) - 1) if rendered.trained[p + 1]]
        items.append(
            SupervisedExample(line=index, input_ids=rendered.input_ids, targets=targets, n_tokens=0)
        )
    assert max(len(i.input_ids) for i in items) > 40  # longer than Gemma's 16-token window
    expected = []
    with torch.no_grad():
        for item in items:
            logits = model(input_ids=torch.tensor([item.input_ids])).logits[0].float()
            for p in item.targets:
                target = torch.tensor(item.input_ids[p + 1])
                expected.append(float(torch.nn.functional.cross_entropy(logits[p], target)))
        peft_model = get_peft_model(model, LoraConfig(target_modules=["q_proj"]))
        nll, _, _ = PackedScorer(peft_model, bfloat16=False).token_nll(items)
    assert nll.tolist() == pytest.approx(expected, abs=2e-4)


def test_gemma_refuses_a_conversation_its_template_refuses_naming_the_template() -> None:
    tokenizer = build_tokenizer(next(f for f in FAMILIES if f.name == "gemma3"))
    renderer = ChatRenderer(tokenizer)
    with pytest.raises(MessageFormatError) as caught:
        renderer.render_prompt([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert "chat template refuses" in str(caught.value)
    assert "alternate" in str(caught.value)


# -- trained and served over HTTP --------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_trains_and_serves_over_the_api(
    family: Family, models: dict[str, Path], backend: LocalBackend, tmp_path: Path
) -> None:
    base = str(models[family.name])
    with backend.client() as client:
        path = write_jsonl(tmp_path / "train.jsonl", examples(10))
        training = client.files.create(file=path, purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(
            model=base,
            training_file=training,
            method={
                "type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}},
            },
        )
        done = wait_for_job(client, job.id, timeout=180)
        assert done.status == "succeeded", done.error
        assert done.fine_tuned_model is not None
        assert done.trained_tokens
        raw = client.fine_tuning.jobs.with_raw_response.list_events(job.id, limit=100)
        messages = [e["message"] for e in json.loads(raw.text)["data"]]
        assert any(m.startswith("Training on cpu") for m in messages)

        # The adapter went on every projection of this architecture.
        adapter_dir = next(backend.data_dir.rglob(f"{job.id}/adapter"))
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        assert sorted(config["target_modules"]) == sorted(ALL_PROJECTIONS)

        conversation = [
            {"role": "system", "content": "You answer in one short line."},
            {"role": "user", "content": "What is item 3?"},
        ]
        answer = client.chat.completions.create(
            model=done.fine_tuned_model, messages=conversation, max_tokens=6, temperature=0
        )
        streamed = client.chat.completions.create(
            model=done.fine_tuned_model,
            messages=conversation,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(streamed)
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert isinstance(choice.message.content, str)
    # The prompt was rendered with the family's own template.
    tokenizer = build_tokenizer(family)
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False).input_ids)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_a_conversation_gemmas_template_refuses_is_a_400(
    models: dict[str, Path], backend: LocalBackend
) -> None:
    with backend.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=str(models["gemma3"]),
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            max_tokens=2,
        )
    assert "alternate" in caught.value.message
