"""Builders: the registry (by instance, by decorator, by real entry points) and the base class."""

from __future__ import annotations

import importlib
import textwrap
import uuid
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from finetune_kit.data.builders import (
    ENTRY_POINT_GROUP,
    BuilderOptions,
    BuilderRegistry,
    DatasetBuilder,
    available_builders,
    build_dataset,
    get_builder,
    register_builder,
    unregister_builder,
)
from finetune_kit.data.builders.builtin import (
    ConversationBuilder,
    PreferenceBuilder,
    QABuilder,
    ToolCallBuilder,
)
from finetune_kit.data.builders.template import TemplateBuilder
from finetune_kit.data.dataset import Dataset
from finetune_kit.data.records import ChatExample, TrainingExample
from finetune_kit.errors import BuilderError, ConfigurationError, ExampleValidationError


class ReverseBuilder(DatasetBuilder["ReverseBuilder.Options", ChatExample]):
    """A user's builder: answers are the questions reversed."""

    name = "test_reverse"

    class Options(BuilderOptions):
        system: str | None = None
        repeat: int = 1

    def examples(self, source: Iterable[str], options: Options) -> Iterator[ChatExample]:
        for text in source:
            answer = text[::-1] * options.repeat
            yield ChatExample.single_turn(text, answer, system=options.system)


def chats(dataset: Dataset[Any]) -> list[ChatExample]:
    """The examples of a dataset built by name (typed as any kind), checked to be chats."""
    examples = list(dataset)
    assert all(isinstance(ex, ChatExample) for ex in examples)
    return examples


def answers(dataset: Dataset[Any]) -> list[Any]:
    return [ex.messages[-1].content for ex in chats(dataset)]


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by the test, removed afterwards so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        unregister_builder(name)


def test_a_builder_registered_by_instance_is_found_by_name(registered: list[str]) -> None:
    register_builder(ReverseBuilder())
    registered.append("test_reverse")
    assert "test_reverse" in available_builders()
    assert isinstance(get_builder("test_reverse"), ReverseBuilder)
    dataset = build_dataset("test_reverse", ["abc", "xy"], system="Reverse it.", repeat=2)
    assert answers(dataset) == ["cbacba", "yxyx"]
    assert chats(dataset)[0].messages[0].content == "Reverse it."


def test_registering_a_name_twice_is_an_error_unless_replacing(registered: list[str]) -> None:
    register_builder(ReverseBuilder())
    registered.append("test_reverse")
    with pytest.raises(BuilderError, match=r"already registered.*replace=True"):
        register_builder(ReverseBuilder())

    class Other(ReverseBuilder):
        def examples(
            self, source: Iterable[str], options: ReverseBuilder.Options
        ) -> Iterator[ChatExample]:
            for text in source:
                yield ChatExample.single_turn(text, text.upper())

    register_builder(Other(), replace=True)
    assert answers(build_dataset("test_reverse", ["ab"]))[0] == "AB"


def test_a_builtin_name_is_taken_too() -> None:
    class MyQA(ReverseBuilder):
        name = "qa"

    with pytest.raises(
        BuilderError, match=r"'qa' is already registered \(entry point finetune_kit"
    ):
        register_builder(MyQA())


def test_register_builder_works_as_a_decorator(registered: list[str]) -> None:
    @register_builder
    class Upper(DatasetBuilder[BuilderOptions, ChatExample]):
        name = "test_upper"

        def examples(self, source: Iterable[str], options: BuilderOptions) -> Iterator[ChatExample]:
            for text in source:
                yield ChatExample.single_turn(text, text.upper())

    registered.append("test_upper")
    assert isinstance(Upper, type)
    assert answers(build_dataset("test_upper", ["hi"]))[0] == "HI"

    @register_builder(replace=True)
    class Lower(Upper):
        name = "test_upper"

        def examples(self, source: Iterable[str], options: BuilderOptions) -> Iterator[ChatExample]:
            for text in source:
                yield ChatExample.single_turn(text, text.lower())

    assert answers(build_dataset("test_upper", ["Hi"]))[0] == "hi"


def test_a_builder_needs_a_name() -> None:
    class Nameless(DatasetBuilder[BuilderOptions]):
        def examples(self, source: Any, options: BuilderOptions) -> Iterator[ChatExample]:
            yield from ()

    with pytest.raises(BuilderError, match="needs a class attribute 'name'"):
        register_builder(Nameless())


def test_an_unknown_builder_lists_the_known_ones() -> None:
    with pytest.raises(BuilderError) as info:
        get_builder("templat")
    message = str(info.value)
    assert "did you mean 'template'?" in message
    assert "qa" in message
    assert "conversations" in message


def test_the_builtins_come_through_entry_points() -> None:
    declared = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    expected: dict[str, type[DatasetBuilder[Any, Any]]] = {
        "qa": QABuilder,
        "template": TemplateBuilder,
        "conversations": ConversationBuilder,
        "tool_calls": ToolCallBuilder,
        "preferences": PreferenceBuilder,
    }
    for name, cls in expected.items():
        assert declared[name] == f"{cls.__module__}:{cls.__qualname__}"
        # A fresh registry knows them only by reading the entry points.
        assert type(BuilderRegistry().get(name)) is cls
        assert cls.name == name


# Options are strict: a typo in an option name is an error that names the option.


def test_an_unknown_option_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_dataset("qa", [("q", "a")], systme="Be brief.")
    assert info.value.param == "systme"
    assert "builder 'qa' has no option 'systme'; did you mean 'system'?" in str(info.value)


def test_an_option_of_the_wrong_type_is_named() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_dataset("qa", [("q", "a")], system=3)
    assert info.value.param == "system"


@pytest.mark.parametrize(
    ("builder", "option", "value", "expected"),
    [
        ("tool_calls", "parallel_tool_calls", "yes", "bool | None"),
        ("tool_calls", "parallel_tool_calls", 1, "bool | None"),
        ("test_reverse", "repeat", "2", "int"),
        ("test_reverse", "repeat", 2.0, "int"),
        ("conversations", "train_on", "first", "Literal['all', 'last']"),
    ],
)
def test_an_option_value_is_not_converted_from_another_type(
    registered: list[str], builder: str, option: str, value: Any, expected: str
) -> None:
    register_builder(ReverseBuilder())
    registered.append("test_reverse")
    with pytest.raises(ConfigurationError) as info:
        build_dataset(builder, [], **{option: value})
    assert info.value.param == option
    message = str(info.value)
    assert f"builder {builder!r}, option {option!r}" in message
    assert f"not the {type(value).__name__} {value!r}" in message
    assert f"pass a {expected}" in message


class ScaleBuilder(DatasetBuilder["ScaleBuilder.Options", ChatExample]):
    """A user's builder with a float option: answers are the factor times the length."""

    name = "test_scale"

    class Options(BuilderOptions):
        factor: float = 1.0

    def examples(self, source: Iterable[str], options: Options) -> Iterator[ChatExample]:
        for text in source:
            yield ChatExample.single_turn(text, str(options.factor * len(text)))


def test_an_option_takes_an_int_for_a_float_and_dicts_for_records(registered: list[str]) -> None:
    register_builder(ScaleBuilder())
    registered.append("test_scale")
    assert answers(build_dataset("test_scale", ["ab"], factor=2)) == ["4.0"]
    tool = {"type": "function", "function": {"name": "get_weather"}}
    options = ToolCallBuilder().parse_options(tools=[tool], parallel_tool_calls=False)
    assert options.tools is not None
    assert options.tools[0].to_dict() == tool


def test_a_missing_required_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match="needs the option 'assistant'") as info:
        build_dataset("template", [{"q": "x"}], user="{q}")
    assert info.value.param == "assistant"


# What builders yield.


class DictBuilder(DatasetBuilder[BuilderOptions]):
    name = "test_dicts"

    def examples(self, source: Iterable[Any], options: BuilderOptions) -> Iterator[Any]:
        yield from source


def test_yielded_api_objects_are_parsed_strictly() -> None:
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert DictBuilder().build([good])[0] == ChatExample.single_turn("q", "a")
    bad = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "weight": 5},
        ]
    }
    with pytest.raises(ExampleValidationError) as info:
        DictBuilder().build([good, bad])
    assert str(info.value).startswith("builder 'test_dicts', item 2: messages[1].weight")


def test_yielding_something_else_is_a_builder_error() -> None:
    with pytest.raises(BuilderError, match="yielded a str as item 1"):
        DictBuilder().build(["not a record"])


def test_a_failing_builder_is_reported_with_the_cause() -> None:
    class Failing(DatasetBuilder[BuilderOptions]):
        name = "test_failing"

        def examples(self, source: Any, options: BuilderOptions) -> Iterator[TrainingExample]:
            yield ChatExample.single_turn("q", "a")
            raise KeyError("price")

    with pytest.raises(BuilderError, match="failed after 1 example") as info:
        Failing().build(None)
    assert isinstance(info.value.__cause__, KeyError)


# Real entry-point discovery: a tiny installed distribution on a temporary sys.path entry.


def install_plugin(root: Path, entries: dict[str, str], code: str) -> str:
    """Write a module and a dist-info declaring ``entries``; return the module's name."""
    module = f"plugin_{uuid.uuid4().hex[:10]}"
    (root / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    info = root / f"{module}-1.0.dist-info"  # the name part has no "-", as the spec requires
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value.format(module=module)}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    importlib.invalidate_caches()
    return module


PLUGIN = """
    from finetune_kit.data.builders import BuilderOptions, DatasetBuilder
    from finetune_kit.data.records import ChatExample

    class EchoBuilder(DatasetBuilder[BuilderOptions]):
        name = "test_echo"

        def examples(self, source, options):
            for text in source:
                yield ChatExample.single_turn(text, text)

    class Misnamed(EchoBuilder):
        name = "something_else"

    NOT_A_BUILDER = 42
"""


def test_a_plugin_builder_is_discovered_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, {"test_echo": "{module}:EchoBuilder"}, PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    # The global registry has scanned before: a name it does not know makes it look again.
    assert answers(build_dataset("test_echo", ["hello"]))[0] == "hello"
    assert "test_echo" in available_builders()
    unregister_builder("test_echo")
    monkeypatch.undo()
    importlib.invalidate_caches()
    assert "test_echo" not in available_builders()


def test_a_broken_plugin_only_fails_when_it_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(
        tmp_path,
        {
            "test_broken": "{module}:DoesNotExist",
            "test_number": "{module}:NOT_A_BUILDER",
            "test_misnamed": "{module}:Misnamed",
        },
        PLUGIN,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = BuilderRegistry()
    assert {"test_broken", "test_number", "test_misnamed", "qa"} <= set(registry.names())
    with pytest.raises(BuilderError, match=r"'test_broken' .* could not be imported") as info:
        registry.get("test_broken")
    assert isinstance(info.value.__cause__, AttributeError)
    with pytest.raises(BuilderError, match="is a int, not a DatasetBuilder"):
        registry.get("test_number")
    with pytest.raises(BuilderError, match="loads a builder named 'something_else'"):
        registry.get("test_misnamed")
    assert type(registry.get("qa")) is QABuilder


def test_two_packages_declaring_one_name_is_an_error_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = install_plugin(tmp_path, {"test_twice": "{module}:EchoBuilder"}, PLUGIN)
    second = install_plugin(tmp_path, {"test_twice": "{module}:EchoBuilder"}, PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BuilderError, match="several installed packages") as info:
        BuilderRegistry().get("test_twice")
    assert first in str(info.value)
    assert second in str(info.value)
