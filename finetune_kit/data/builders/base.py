"""``DatasetBuilder``, the extension point that turns any source into training records.

A builder is a small class: a ``name``, a nested strict ``Options`` model, and one method,
``examples``, that yields records. Register an instance with ``register_builder`` (or use it as a
class decorator), or declare it in your package's ``finetune_kit.builders`` entry-point group;
the built-in builders are declared the same way, in finetune_kit's own ``pyproject.toml``.

Examples:
    >>> from collections.abc import Iterator, Mapping
    >>> from finetune_kit.data.builders import BuilderOptions, DatasetBuilder
    >>> from finetune_kit.data.records import ChatExample
    >>> class Glossary(DatasetBuilder["Glossary.Options"]):
    ...     name = "glossary"
    ...
    ...     class Options(BuilderOptions):
    ...         system: str = "Define the term in one sentence."
    ...
    ...     def examples(
    ...         self, source: Mapping[str, str], options: Options
    ...     ) -> Iterator[ChatExample]:
    ...         for term, meaning in source.items():
    ...             yield ChatExample.single_turn(term, meaning, system=options.system)
    >>> ds = Glossary().build({"ohm": "The unit of electrical resistance."}, system="Be brief.")
    >>> len(ds), ds[0].messages[0].content
    (1, 'Be brief.')
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, cast, overload

from pydantic import BaseModel, ConfigDict, ValidationError

# typing_extensions for TypeVar defaults (PEP 696) on Python < 3.13; pydantic requires it.
from typing_extensions import TypeVar

from ...errors import BuilderError, ConfigurationError, FinetuneKitError
from ..dataset import Dataset, paused_gc
from ..records import (
    ChatExample,
    PreferenceExample,
    ReinforcementExample,
    TrainingExample,
    parse_example,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuilderOptions",
    "BuilderRegistry",
    "DatasetBuilder",
    "available_builders",
    "build_dataset",
    "get_builder",
    "register_builder",
    "unregister_builder",
]

logger = logging.getLogger("finetune_kit.data")

ENTRY_POINT_GROUP = "finetune_kit.builders"
"""The entry-point group packages use to provide builders."""

_RECORDS = (ChatExample, PreferenceExample, ReinforcementExample)


class BuilderOptions(BaseModel):
    """Base class of a builder's ``Options``: strict, so a misspelt option is an error.

    Values are not converted either: ``"yes"`` for a ``bool`` or ``"2"`` for an ``int`` is an
    error rather than a guess (only the lossless widening of an ``int`` to a ``float`` and of a
    dict to a record is done). Text from a command line or a config file is converted by its
    reader before it is passed.

    Examples:
        >>> class Options(BuilderOptions):
        ...     system: str | None = None
        >>> Options(system="Be terse.").system
        'Be terse.'
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


OptionsT = TypeVar("OptionsT", bound=BuilderOptions)
ExampleT = TypeVar("ExampleT", bound=TrainingExample, default=TrainingExample)


class DatasetBuilder(ABC, Generic[OptionsT, ExampleT]):
    """Turns a source (rows, pairs, a file...) into training records.

    Subclasses set ``name``, define a nested ``Options`` model (subclass ``BuilderOptions``),
    and implement ``examples``. Users call ``build`` (or ``build_dataset`` with the registered
    name), which validates the options and collects the records into a ``Dataset``.

    The class is generic over the options model and, optionally, the kind of record it yields:
    ``DatasetBuilder["MyBuilder.Options", ChatExample]`` makes ``build`` return a
    ``Dataset[ChatExample]`` to type checkers; leave it out for ``Dataset[TrainingExample]``.

    Examples:
        >>> from collections.abc import Iterable, Iterator
        >>> from finetune_kit.data.records import ChatExample
        >>> class Echo(DatasetBuilder["Echo.Options"]):
        ...     name = "echo"
        ...
        ...     class Options(BuilderOptions):
        ...         times: int = 1
        ...
        ...     def examples(
        ...         self, source: Iterable[str], options: Options
        ...     ) -> Iterator[ChatExample]:
        ...         for text in source:
        ...             yield ChatExample.single_turn(text, " ".join([text] * options.times))
        >>> Echo().build(["hi"], times=2)[0].messages[1].content
        'hi hi'
    """

    name: ClassVar[str]
    """The name the builder is registered under."""

    Options: ClassVar[type[BuilderOptions]] = BuilderOptions
    """The strict model of the builder's options."""

    @abstractmethod
    def examples(self, source: Any, options: OptionsT) -> Iterable[ExampleT]:
        """Yield the records built from ``source``.

        Args:
            source: Whatever the builder reads (pairs, rows, a path...).
            options: The validated options.

        Yields:
            ``ChatExample``, ``PreferenceExample`` or ``ReinforcementExample`` records (JSON
            objects in the API's format are accepted too, and parsed strictly).
        """

    def parse_options(self, **options: Any) -> OptionsT:
        """Validate options against ``Options``.

        Raises:
            ConfigurationError: An option is unknown (the error names it and suggests the
                closest known one) or has a value of the wrong type.
        """
        try:
            return cast(OptionsT, self.Options.model_validate(options))
        except ValidationError as exc:
            raise _options_error(self, exc) from None

    def build(self, source: Any, /, **options: Any) -> Dataset[ExampleT]:
        """Build a ``Dataset`` from ``source``.

        Args:
            source: What the builder reads.
            **options: The builder's options (see its ``Options``).

        Raises:
            ConfigurationError: An option is unknown or invalid.
            ExampleValidationError: A row or record is invalid (names the row and field).
            BuilderError: The builder yielded something that is not a record, or failed.
        """
        parsed = self.parse_options(**options)
        records: list[Any] = []
        name = getattr(self, "name", type(self).__name__)
        try:
            with paused_gc():
                for number, item in enumerate(self.examples(source, parsed), start=1):
                    records.append(_as_record(item, number, name))
        except FinetuneKitError:
            raise
        except Exception as exc:
            raise BuilderError(
                f"builder {name!r} failed after {len(records)} example(s): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        logger.debug("builder %r built %d examples", name, len(records))
        dataset: Dataset[ExampleT] = Dataset(records)
        return dataset


def _as_record(item: Any, number: int, name: str) -> TrainingExample:
    if isinstance(item, _RECORDS):
        return item
    if isinstance(item, Mapping):
        return parse_example(item, line=number, where=f"builder {name!r}, item {number}")
    raise BuilderError(
        f"builder {name!r} yielded a {type(item).__name__} as item {number}; yield "
        "ChatExample, PreferenceExample or ReinforcementExample records"
    )


def _options_error(builder: DatasetBuilder[Any, Any], exc: ValidationError) -> ConfigurationError:
    err = exc.errors(include_url=False)[0]
    path = ".".join(str(seg) for seg in err["loc"])
    known = sorted(builder.Options.model_fields)
    name = getattr(builder, "name", type(builder).__name__)
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(path, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it"
        listing = ", ".join(known) if known else "none"
        message = f"builder {name!r} has no option {path!r}; {hint} (its options: {listing})"
    elif err["type"] == "missing":
        message = f"builder {name!r} needs the option {path!r}"
    else:
        field = builder.Options.model_fields.get(str(err["loc"][0])) if err["loc"] else None
        given = err.get("input")
        what = f"a {type(given).__name__}"
        if isinstance(given, (str, int, float)) and len(repr(given)) <= 40:
            what = f"the {type(given).__name__} {given!r}"
        reason = err["msg"][:1].lower() + err["msg"][1:]
        message = f"builder {name!r}, option {path!r}: {reason}, not {what}"
        if field is not None and len(err["loc"]) == 1:
            message += (
                f"; pass a {_type_name(field.annotation)} (a value of another type is not "
                "converted)"
            )
    return ConfigurationError(message, param=path)


def _type_name(annotation: Any) -> str:
    # Module paths make a type hard to read in a message: "list[finetune_kit.data.records.Tool]
    # | None" reads as "list[Tool] | None".
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", text)


BuilderT = TypeVar("BuilderT", bound=DatasetBuilder[Any, Any])
BuilderClassT = TypeVar("BuilderClassT", bound=type[DatasetBuilder[Any, Any]])


class BuilderRegistry:
    """Builders by name: registered instances plus those declared as entry points.

    Entry points are discovered lazily and imported only when their builder is first asked for,
    so a broken plugin cannot break the others. A name that is not found triggers a new scan,
    so a package installed while the program runs is found too.

    Args:
        group: The entry-point group to read.

    Examples:
        >>> registry = BuilderRegistry()
        >>> "qa" in registry.names()
        True
        >>> type(registry.get("qa")).__name__
        'QABuilder'
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._builders: dict[str, DatasetBuilder[Any, Any]] = {}
        self._registered: set[str] = set()
        self._entry_points: dict[str, list[EntryPoint]] | None = None
        self._lock = threading.RLock()

    def _scan(self) -> dict[str, list[EntryPoint]]:
        found: dict[str, list[EntryPoint]] = {}
        for ep in entry_points(group=self._group):
            same = found.setdefault(ep.name, [])
            # The same distribution seen twice on sys.path declares the same value: one entry.
            if all(other.value != ep.value for other in same):
                same.append(ep)
        self._entry_points = found
        logger.debug("entry points in %s: %s", self._group, sorted(found))
        return found

    def _declared(self) -> dict[str, list[EntryPoint]]:
        return self._entry_points if self._entry_points is not None else self._scan()

    def register(self, builder: DatasetBuilder[Any, Any], *, replace: bool = False) -> None:
        """Register a builder instance under its ``name``.

        Args:
            builder: The builder.
            replace: Replace a builder already registered (or declared as an entry point)
                under that name.

        Raises:
            BuilderError: The name is taken and ``replace`` is false, or the builder has no
                usable name.
        """
        if not isinstance(builder, DatasetBuilder):
            raise BuilderError(
                f"register_builder() takes a DatasetBuilder, got {type(builder).__name__}"
            )
        name = getattr(builder, "name", None)
        if not isinstance(name, str) or not name or name != name.strip() or " " in name:
            raise BuilderError(
                f"{type(builder).__name__} needs a class attribute 'name': a short string "
                f"without spaces, such as 'qa' (got {name!r})"
            )
        with self._lock:
            taken = self._where(name)
            if taken is not None and not replace:
                raise BuilderError(
                    f"a dataset builder named {name!r} is already registered ({taken}); "
                    "pass replace=True to replace it, or give yours another name"
                )
            self._builders[name] = builder
            self._registered.add(name)
        logger.debug("registered builder %r (%s)", name, type(builder).__qualname__)

    def unregister(self, name: str) -> None:
        """Remove a registered builder; one declared as an entry point comes back when asked for.

        Raises:
            BuilderError: No builder of that name was registered.
        """
        with self._lock:
            if name not in self._builders:
                raise BuilderError(f"no dataset builder named {name!r} is registered")
            del self._builders[name]
            self._registered.discard(name)

    def _where(self, name: str) -> str | None:
        if name in self._registered:
            return f"by {type(self._builders[name]).__qualname__}"
        declared = self._declared().get(name)
        if declared:
            return f"entry point {declared[0].value}"
        return None

    def get(self, name: str) -> DatasetBuilder[Any, Any]:
        """Return the builder registered or declared under ``name``.

        Raises:
            BuilderError: No builder has that name (the error lists those that exist), several
                installed packages declare it, or its entry point cannot be loaded.
        """
        with self._lock:
            builder = self._builders.get(name)
            if builder is not None:
                return builder
            candidates = self._declared().get(name) or self._scan().get(name)
            if not candidates:
                known = self.names()
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise BuilderError(
                    f"no dataset builder named {name!r}; {hint}available: "
                    f"{', '.join(known) or 'none'}. Register one with register_builder() or "
                    f"an entry point in the {self._group!r} group"
                )
            if len(candidates) > 1:
                sources = ", ".join(_describe(ep) for ep in candidates)
                raise BuilderError(
                    f"several installed packages declare a dataset builder named {name!r} "
                    f"({sources}); uninstall one, or register the one you want with "
                    "register_builder(..., replace=True)"
                )
            builder = _load(name, candidates[0])
            self._builders[name] = builder
            return builder

    def names(self) -> list[str]:
        """The names of every builder, registered or declared (entry points are not imported)."""
        with self._lock:
            return sorted(set(self._builders) | set(self._scan()))


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value} from {dist.name}" if dist is not None else ep.value


def _load(name: str, ep: EntryPoint) -> DatasetBuilder[Any, Any]:
    try:
        obj = ep.load()
    except Exception as exc:
        raise BuilderError(
            f"the dataset builder {name!r} ({_describe(ep)}) could not be imported: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    builder = obj() if isinstance(obj, type) and issubclass(obj, DatasetBuilder) else obj
    if not isinstance(builder, DatasetBuilder):
        raise BuilderError(
            f"the entry point {name!r} ({_describe(ep)}) is a {type(obj).__name__}, "
            "not a DatasetBuilder class or instance"
        )
    if getattr(builder, "name", None) != name:
        raise BuilderError(
            f"the entry point {name!r} ({_describe(ep)}) loads a builder named "
            f"{getattr(builder, 'name', None)!r}; make the entry-point name and the builder's "
            "name the same"
        )
    logger.debug("loaded builder %r from %s", name, _describe(ep))
    return builder


_registry = BuilderRegistry()


@overload
def register_builder(builder: BuilderT, *, replace: bool = False) -> BuilderT: ...
@overload
def register_builder(builder: BuilderClassT, *, replace: bool = False) -> BuilderClassT: ...
@overload
def register_builder(
    builder: None = None, *, replace: bool = False
) -> Callable[[BuilderClassT], BuilderClassT]: ...
def register_builder(builder: Any = None, *, replace: bool = False) -> Any:
    """Register a builder: pass an instance, or decorate the class.

    Decorating a class registers an instance made without arguments and returns the class.

    Args:
        builder: A builder instance or class; leave it out to get a decorator taking options.
        replace: Replace a builder already registered under the same name.

    Returns:
        What was passed (so it works as a decorator).

    Raises:
        BuilderError: The name is already taken and ``replace`` is false.

    Examples:
        >>> from collections.abc import Iterable, Iterator
        >>> from finetune_kit.data.records import ChatExample
        >>> @register_builder
        ... class Shout(DatasetBuilder[BuilderOptions]):
        ...     name = "shout"
        ...
        ...     def examples(self, source: Iterable[str], options: BuilderOptions) -> Iterator[ChatExample]:
        ...         for text in source:
        ...             yield ChatExample.single_turn(text, text.upper())
        >>> build_dataset("shout", ["hey"])[0].messages[1].content
        'HEY'
        >>> unregister_builder("shout")
    """  # noqa: E501 -- a doctest line

    def apply(target: Any) -> Any:
        instance = target() if isinstance(target, type) else target
        _registry.register(instance, replace=replace)
        return target

    if builder is None:
        return apply
    return apply(builder)


def unregister_builder(name: str) -> None:
    """Remove a builder registered with ``register_builder``.

    Raises:
        BuilderError: No builder of that name was registered.
    """
    _registry.unregister(name)


def get_builder(name: str) -> DatasetBuilder[Any, Any]:
    """Return the builder registered (or declared as an entry point) under ``name``.

    Raises:
        BuilderError: There is none; the error lists the builders that exist.

    Examples:
        >>> get_builder("qa").name
        'qa'
    """
    return _registry.get(name)


def available_builders() -> list[str]:
    """The names of all builders: built-in, registered, and declared by installed packages.

    Examples:
        >>> {"qa", "template", "conversations", "tool_calls", "preferences"} <= set(available_builders())
        True
    """  # noqa: E501 -- a doctest line
    return _registry.names()


def build_dataset(name: str, source: Any, /, **options: Any) -> Dataset[TrainingExample]:
    """Build a dataset with the builder registered under ``name``.

    Args:
        name: The builder's name, such as ``"qa"`` or ``"template"``.
        source: What the builder reads.
        **options: The builder's options.

    Raises:
        BuilderError: No builder has that name.
        ConfigurationError: An option is unknown or invalid (the error names it).
        ExampleValidationError: A row is invalid (the error names the row and the column).

    Examples:
        >>> ds = build_dataset("qa", [("Tell me about Neon", "Neon, a gas...")], system="Elle")
        >>> [m.role for m in ds[0].messages]
        ['system', 'user', 'assistant']
    """
    return get_builder(name).build(source, **options)
