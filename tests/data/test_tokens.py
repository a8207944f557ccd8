"""Offline encodings and token counts: equal to tiktoken's own, counted by the documented rule."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_kit.data import tokens
from finetune_kit.data.tokens import (
    ENCODING_SHA256,
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TokenCounter,
    count_example_tokens,
    count_tokens,
    encoding_for_model,
    get_encoding,
    read_ranks,
)
from finetune_kit.errors import ConfigurationError, TokenizerFileError

ENCODINGS = Path(tokens.__file__).parent / "_encodings"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "tiktoken"


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_shipped_encodings_equal_tiktokens_own_definition(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tiktoken's own constructor, fed from its cache (named by the sha1 of the download URL),
    # so nothing is downloaded.
    from tiktoken_ext import openai_public

    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()
    cached.write_bytes(gzip.decompress((ENCODINGS / f"{name}.tiktoken.gz").read_bytes()))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    reference = getattr(openai_public, name)()
    ours = get_encoding(name)
    assert ours.name == reference["name"]
    assert ours._pat_str == reference["pat_str"]
    assert ours._special_tokens == reference["special_tokens"]
    ranks = reference["mergeable_ranks"]
    assert ours.max_token_value == max(*ranks.values(), *reference["special_tokens"].values())
    assert all(ours.decode_single_token_bytes(rank) == token for token, rank in ranks.items())


def test_encodings_pickle_by_name() -> None:
    encoding = get_encoding("o200k_base")
    data = pickle.dumps(encoding)
    assert len(data) < 200
    assert pickle.loads(data) is encoding


@pytest.mark.skipif(not SHARED.exists(), reason="the shared tiktoken folder is not present")
def test_shipped_files_are_the_shared_ones_and_hashes_match_its_readme() -> None:
    readme = (SHARED / "README.md").read_text()
    for name, digest in ENCODING_SHA256.items():
        assert (ENCODINGS / f"{name}.tiktoken.gz").read_bytes() == (
            SHARED / f"{name}.tiktoken.gz"
        ).read_bytes()
        assert digest in readme


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    good = (ENCODINGS / "cl100k_base.tiktoken.gz").read_bytes()
    damaged = tmp_path / "cl100k_base.tiktoken.gz"
    damaged.write_bytes(gzip.compress(gzip.decompress(good).replace(b" 100\n", b" 101\n", 1)))
    with pytest.raises(TokenizerFileError) as caught:
        read_ranks(damaged, ENCODING_SHA256["cl100k_base"])
    assert "damaged" in str(caught.value)
    assert caught.value.path == str(damaged)
    assert len(read_ranks(ENCODINGS / "cl100k_base.tiktoken.gz", ENCODING_SHA256["cl100k_base"]))


def test_missing_and_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TokenizerFileError, match="missing"):
        read_ranks(tmp_path / "nope.gz", "0" * 64)
    (tmp_path / "junk.gz").write_bytes(b"not gzip")
    with pytest.raises(TokenizerFileError, match="cannot be read"):
        read_ranks(tmp_path / "junk.gz", "0" * 64)


def test_unknown_encoding_name() -> None:
    with pytest.raises(ConfigurationError) as caught:
        get_encoding("p50k_base")
    assert caught.value.param == "name"


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("ft:gpt-4.1-2025-04-14:org::abc", "o200k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo-0125", "cl100k_base"),
        ("some-local-model", "o200k_base"),
        (None, "o200k_base"),
    ],
)
def test_encoding_per_model(model: str | None, encoding: str) -> None:
    assert encoding_for_model(model).name == encoding


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_counts_equal_tiktoken_for_any_text_even_when_cached(text: str) -> None:
    encoding = get_encoding("o200k_base")
    counter = TokenCounter(encoding, cache_size=4)
    expected = len(encoding.encode(text, disallowed_special=()))
    assert [counter.count_text(text) for _ in range(3)] == [expected] * 3


def test_special_tokens_count_as_text() -> None:
    encoding = get_encoding("cl100k_base")
    text = "end <|endoftext|> here"
    assert count_tokens(text, "gpt-3.5-turbo") == len(encoding.encode(text, disallowed_special=()))
    assert count_tokens(text, "gpt-3.5-turbo") > 4


def test_repeated_strings_are_remembered_and_memory_is_bounded() -> None:
    counter = TokenCounter("o200k_base", cache_size=8)
    prompt = "You are a careful assistant. " * 20
    counter.count_text(prompt)
    assert prompt not in counter._cache  # seen once: not yet worth remembering
    counter.count_text(prompt)
    assert prompt in counter._cache
    for i in range(100):
        counter.count_text(f"text number {i}")
        counter.count_text(f"text number {i}")
    assert len(counter._cache) <= 8


def test_a_shared_string_is_encoded_twice_however_often_it_repeats() -> None:
    # What docs/tokens.md says: remembered from its second sighting.
    counter = TokenCounter("o200k_base")
    encode = counter._encode
    encoded: list[str] = []

    def spy(text: str) -> list[int]:
        encoded.append(text)
        return encode(text)

    counter._encode = spy
    prompt = "You are a careful assistant."
    for i in range(50):
        example = {
            "messages": [
                {"role": "system", "content": prompt},
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        counter.count_example(example)
    assert encoded.count(prompt) == 2
    assert encoded.count("question 7") == 1


def _n(text: str, encoding: str = "o200k_base") -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def test_chat_example_follows_the_documented_rule() -> None:
    example = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Capital of France?", "name": "alice"},
            {"role": "assistant", "content": "Paris.", "weight": 0},
            {"role": "user", "content": "And Spain?"},
            {"role": "assistant", "content": "Madrid."},
        ]
    }
    expected = (
        5 * TOKENS_PER_MESSAGE
        + sum(_n(m["role"]) + _n(m["content"]) for m in example["messages"])
        + _n("alice")
        + 1
        + PRIMING_TOKENS
    )
    assert count_example_tokens(example, "gpt-4o-mini") == (expected, _n("Madrid."))


def test_tool_calls_tools_and_images() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    example = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x/b.png"}},
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": tools,
    }
    call = _n("weather") + _n('{"city": "Paris"}')
    expected = (
        4 * TOKENS_PER_MESSAGE
        + _n("user")
        + _n("What is this?")
        + IMAGE_TOKENS_LOW
        + IMAGE_TOKENS_HIGH
        + _n("assistant")
        + call
        + _n("tool")
        + _n("sunny")
        + _n("assistant")
        + _n("Sunny.")
        + _n('[{"type":"function","function":{"name":"weather","parameters":{}}}]')
        + PRIMING_TOKENS
    )
    assert count_example_tokens(example, "gpt-4o") == (expected, call + _n("Sunny."))


def test_preference_and_completion_examples() -> None:
    pair = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "What."}],
    }
    m = TOKENS_PER_MESSAGE
    expected_total = (
        m
        + _n("user")
        + _n("Hi")
        + 2 * (m + _n("assistant"))
        + _n("Hello!")
        + _n("What.")
        + PRIMING_TOKENS
    )
    assert count_example_tokens(pair) == (expected_total, _n("Hello!") + _n("What."))
    legacy = {"prompt": "2+2=", "completion": " 4"}
    assert count_example_tokens(legacy, "davinci-002") == (
        _n("2+2=", "cl100k_base") + _n(" 4", "cl100k_base"),
        _n(" 4", "cl100k_base"),
    )


def test_records_with_to_dict_are_counted() -> None:
    class Record:
        def to_dict(self) -> dict[str, object]:
            return {"messages": [{"role": "assistant", "content": "Hi"}]}

    assert count_example_tokens(Record()) == count_example_tokens(Record().to_dict())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "tool_calls",
                    "function",
                    "name",
                    "arguments",
                    "type",
                    "text",
                    "image_url",
                    "weight",
                    "tools",
                    "input",
                    "preferred_output",
                    "prompt",
                    "completion",
                    "detail",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_counting_never_raises_on_malformed_examples(value: object) -> None:
    total, assistant = count_example_tokens(value)
    assert total >= 0
    assert 0 <= assistant <= max(total, 0)


def test_tiktoken_is_never_asked_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken tried to read a remote file")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tokens, "_encodings", {})
    assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
