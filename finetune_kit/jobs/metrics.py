r"""Training metrics of a fine-tuning job: typed points, series, DataFrames and loss curves.

Metrics reach a client two ways: ``metrics`` events while the job runs (their ``data`` is a
free-form object), and the result file (a CSV, purpose ``fine-tune-results``) once it is done.
Both become :class:`MetricPoint` objects; keys this module does not know are kept in
``MetricPoint.extra``, so a new metric never breaks parsing. Column names differ between
providers (``train_accuracy`` on older OpenAI files, ``validation_mean_token_accuracy`` on
Azure), so known aliases are mapped to one name.

OpenAI serves the result file base64-encoded; :func:`decode_result_file` undoes that when the
payload does not start with the CSV header.

Examples:
    >>> series = parse_result_csv("step,train_loss,valid_loss\n1,2.5,\n2,2.0,2.2\n")
    >>> series.steps, series.train_loss, series.valid_loss
    ([1, 2], [2.5, 2.0], [None, 2.2])
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pydantic import BaseModel, ConfigDict, Field

from ..errors import DataError, MissingDependencyError

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

__all__ = [
    "METRIC_ALIASES",
    "MetricPoint",
    "MetricSeries",
    "decode_result_file",
    "parse_result_csv",
    "point_from_event",
]

METRIC_ALIASES: Mapping[str, str] = {
    "train_accuracy": "train_mean_token_accuracy",
    "valid_accuracy": "valid_mean_token_accuracy",
    "validation_loss": "valid_loss",
    "validation_mean_token_accuracy": "valid_mean_token_accuracy",
    "full_validation_loss": "full_valid_loss",
    "full_validation_mean_token_accuracy": "full_valid_mean_token_accuracy",
}
"""Column or key names used by some providers, mapped to the names :class:`MetricPoint` uses."""

_FLOAT_FIELDS = (
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
    "epoch",
)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


def _loose(value: Any) -> Any:
    """An extra value as found, with numeric strings read as numbers (CSV cells are strings)."""
    if isinstance(value, str):
        number = _number(value)
        if number is not None:
            return int(number) if number.is_integer() and "." not in value else number
        return value if value.strip() else None
    return value


class MetricPoint(BaseModel):
    """The metrics of one training step.

    Attributes:
        step: The training step (1-based on OpenAI and the local backend).
        train_loss: Training loss at this step.
        train_mean_token_accuracy: Share of training tokens predicted right.
        valid_loss: Validation loss, at validation steps only.
        valid_mean_token_accuracy: Validation token accuracy, at validation steps only.
        full_valid_loss: Loss on the whole validation file (at epoch ends).
        full_valid_mean_token_accuracy: Token accuracy on the whole validation file.
        total_steps: The job's step count, when the source says it.
        epoch: The epoch, when the source says it.
        created_at: Unix time of the event the point came from, if any.
        extra: Every other key of the source, kept as found (numbers read as numbers).

    Examples:
        >>> point = MetricPoint.from_data({"step": 3, "train_loss": 1.25, "reward": 0.5})
        >>> point.step, point.train_loss, point.extra
        (3, 1.25, {'reward': 0.5})
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    total_steps: int | None = None
    epoch: float | None = None
    created_at: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, created_at: int | None = None) -> MetricPoint:
        """Build a point from a metrics event's ``data`` or a result-file row.

        Args:
            data: The key/value pairs; ``step`` is required, the rest optional.
            created_at: Unix time of the event, when the point comes from one.

        Returns:
            The point.

        Raises:
            DataError: ``step`` is missing or not a number.
        """
        step = _number(data.get("step"))
        if step is None:
            raise DataError(f"a metrics record needs a numeric 'step'; got {data.get('step')!r}")
        fields: dict[str, Any] = {"step": int(step), "created_at": created_at}
        extra: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = METRIC_ALIASES.get(raw_key, raw_key)
            if key == "step":
                continue
            if key in _FLOAT_FIELDS:
                fields[key] = _number(value)
            elif key == "total_steps":
                total = _number(value)
                fields[key] = int(total) if total is not None else None
            else:
                loose = _loose(value)
                if loose is not None:
                    extra[raw_key] = loose
        fields["extra"] = extra
        return cls(**fields)

    def get(self, name: str) -> Any:
        """A metric by name, known or extra (``None`` when absent).

        Args:
            name: ``train_loss``, an alias such as ``train_accuracy``, or an extra key.

        Returns:
            The value, or ``None``.
        """
        key = METRIC_ALIASES.get(name, name)
        if key in type(self).model_fields and key != "extra":
            return getattr(self, key)
        return self.extra.get(name)


class MetricSeries(Sequence[MetricPoint]):
    """The metric points of a job, ordered by step, at most one per step.

    A later point for a step already present is merged into it (non-empty values win), so
    validation metrics that arrive separately from the training loss of the same step end up
    on one point.

    Args:
        points: The points, in any order.

    Examples:
        >>> series = MetricSeries(
        ...     [MetricPoint(step=2, train_loss=1.0), MetricPoint(step=1, train_loss=2.0)]
        ... )
        >>> [p.step for p in series], series.last.train_loss
        ([1, 2], 1.0)
    """

    def __init__(self, points: Iterable[MetricPoint] = ()) -> None:
        self._by_step: dict[int, MetricPoint] = {}
        for point in points:
            self.add(point)

    def add(self, point: MetricPoint) -> None:
        """Add a point, merging it into the point of the same step if there is one.

        Args:
            point: The point.
        """
        current = self._by_step.get(point.step)
        if current is None:
            self._by_step[point.step] = point
            return
        merged = current.model_dump()
        for key, value in point.model_dump().items():
            if key == "extra":
                merged["extra"] = {**current.extra, **point.extra}
            elif value is not None:
                merged[key] = value
        self._by_step[point.step] = MetricPoint(**merged)

    @property
    def points(self) -> list[MetricPoint]:
        """The points, ordered by step."""
        return [self._by_step[step] for step in sorted(self._by_step)]

    @overload
    def __getitem__(self, index: int) -> MetricPoint: ...

    @overload
    def __getitem__(self, index: slice) -> list[MetricPoint]: ...

    def __getitem__(self, index: int | slice) -> MetricPoint | list[MetricPoint]:
        return self.points[index]

    def __len__(self) -> int:
        return len(self._by_step)

    def __iter__(self) -> Iterator[MetricPoint]:
        return iter(self.points)

    def __repr__(self) -> str:
        return f"MetricSeries({len(self)} points)"

    @property
    def last(self) -> MetricPoint | None:
        """The point of the highest step, or ``None`` when empty."""
        return self._by_step[max(self._by_step)] if self._by_step else None

    @property
    def steps(self) -> list[int]:
        """The steps, ascending."""
        return sorted(self._by_step)

    def column(self, name: str) -> list[Any]:
        """One metric as a list aligned with :attr:`steps` (``None`` where a step lacks it).

        Args:
            name: A field name, an alias, or an extra key.

        Returns:
            The values.
        """
        return [point.get(name) for point in self.points]

    @property
    def train_loss(self) -> list[float | None]:
        """Training loss per step."""
        return self.column("train_loss")

    @property
    def valid_loss(self) -> list[float | None]:
        """Validation loss per step (``None`` where the step was not validated)."""
        return self.column("valid_loss")

    @property
    def train_mean_token_accuracy(self) -> list[float | None]:
        """Training token accuracy per step."""
        return self.column("train_mean_token_accuracy")

    def to_records(self) -> list[dict[str, Any]]:
        """The points as flat dicts (extra keys inlined), one per step.

        Returns:
            The rows, ordered by step; known columns first.
        """
        rows = []
        for point in self.points:
            row = point.model_dump(exclude={"extra"})
            row.update(point.extra)
            rows.append(row)
        return rows

    def to_dataframe(self) -> pandas.DataFrame:
        """The points as a pandas DataFrame indexed by step (needs the ``pandas`` extra).

        Returns:
            One row per step, one column per metric; columns that are empty everywhere dropped.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise MissingDependencyError(
                "MetricSeries.to_dataframe needs pandas: pip install 'finetune-kit[pandas]'",
                package="pandas",
                extra="pandas",
            ) from exc
        # Annotated so the result stays typed where pandas-stubs does not apply (Python 3.10).
        result: pandas.DataFrame
        frame = pd.DataFrame.from_records(self.to_records())
        if frame.empty:
            result = pd.DataFrame(index=pd.Index([], name="step"))
        else:
            result = frame.set_index("step").dropna(axis="columns", how="all")
        return result

    def plot_loss(self, path: str | Path | None = None, *, title: str | None = None) -> Figure:
        """Draw the loss curves (training, validation, full validation) with matplotlib.

        Uses matplotlib's object API (no pyplot), so it changes no global backend and works
        without a display. In a notebook the figure shows inline when it ends a cell (it has a
        PNG representation of its own, so no ``%matplotlib inline`` is needed).

        Args:
            path: Where to save the figure as PNG, if anywhere.
            title: The figure's title.

        Returns:
            The matplotlib ``Figure``.

        Raises:
            MissingDependencyError: matplotlib is not installed (extra ``plot``).
            DataError: There is no loss to draw.
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise MissingDependencyError(
                "MetricSeries.plot_loss needs matplotlib: pip install 'finetune-kit[plot]'",
                package="matplotlib",
                extra="plot",
            ) from exc
        curves = [
            ("train_loss", "training loss", "-"),
            ("valid_loss", "validation loss", "o"),
            ("full_valid_loss", "full validation loss", "s--"),
        ]
        figure = _inline_figure_class(Figure)(figsize=(7, 4), dpi=100)
        axes = figure.add_subplot()
        drawn = 0
        for name, label, style in curves:
            pairs = [(p.step, p.get(name)) for p in self.points if p.get(name) is not None]
            if pairs:
                xs, ys = zip(*pairs, strict=True)
                axes.plot(xs, ys, style, label=label, markersize=4)
                drawn += 1
        if not drawn:
            raise DataError("no loss values to plot: the series has no train or validation loss")
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(True, alpha=0.3)
        axes.legend()
        if title:
            axes.set_title(title)
        figure.tight_layout()
        if path is not None:
            figure.savefig(Path(path), format="png")
        return figure

    @classmethod
    def from_events(cls, events: Iterable[Any]) -> MetricSeries:
        """Collect the points of ``metrics`` events (objects or dicts with ``type`` and ``data``).

        Args:
            events: Job events in any order.

        Returns:
            The series.
        """
        series = cls()
        for event in events:
            point = point_from_event(event)
            if point is not None:
                series.add(point)
        return series


_INLINE_FIGURES: dict[type, type] = {}


def _inline_figure_class(figure: type[Figure]) -> type[Figure]:
    """The ``Figure`` class with a PNG representation, so a notebook shows it inline.

    IPython draws a bare ``Figure`` only once pyplot has set up its inline backend, which
    :meth:`MetricSeries.plot_loss` never imports (it must not change a global backend). Made on
    first use: matplotlib is an optional dependency.
    """
    cached = _INLINE_FIGURES.get(figure)
    if cached is None:

        class InlineFigure(figure):  # type: ignore[valid-type,misc]  # a class made at run time
            def _repr_png_(self) -> bytes:
                buffer = io.BytesIO()
                self.savefig(buffer, format="png")
                return buffer.getvalue()

        cached = _INLINE_FIGURES[figure] = InlineFigure
    return cached


def point_from_event(event: Any) -> MetricPoint | None:
    """The metric point an event carries, or ``None`` when it carries none.

    Args:
        event: A job event (``openai`` object, view, or dict).

    Returns:
        The point for a ``metrics`` event whose data has a step, else ``None``.
    """

    def get(key: str) -> Any:
        return event.get(key) if isinstance(event, Mapping) else getattr(event, key, None)

    data = get("data")
    if get("type") != "metrics" or not isinstance(data, Mapping) or "step" not in data:
        return None
    created_at = get("created_at")
    try:
        return MetricPoint.from_data(
            data, created_at=created_at if isinstance(created_at, int) else None
        )
    except DataError:
        return None


def decode_result_file(content: bytes | str) -> str:
    r"""The CSV text of a result file, base64-decoded when it came encoded.

    OpenAI returns the content of ``fine-tune-results`` files base64-encoded; other backends
    return the CSV itself. The payload is CSV when it starts with the ``step`` header.

    Args:
        content: The file content as downloaded.

    Returns:
        The CSV text.

    Raises:
        DataError: The content is neither CSV nor base64-encoded CSV.

    Examples:
        >>> decode_result_file(base64.b64encode(b"step,train_loss\n1,0.5\n"))
        'step,train_loss\n1,0.5\n'
    """
    raw = content.encode() if isinstance(content, str) else content
    text = raw.decode("utf-8-sig", errors="replace")
    if text.lstrip().lower().startswith("step"):
        return text
    try:
        decoded = base64.b64decode(b"".join(raw.split()), validate=True).decode("utf-8-sig")
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"the result file is neither CSV nor base64-encoded CSV (it starts with {text[:20]!r})"
        ) from exc
    if not decoded.lstrip().lower().startswith("step"):
        raise DataError(
            f"the result file decodes from base64 but is not a metrics CSV "
            f"(it starts with {decoded[:20]!r})"
        )
    return decoded


def parse_result_csv(content: bytes | str) -> MetricSeries:
    """Parse a job's result file (plain or base64 CSV) into a metric series.

    The header is read as found: known columns (and their aliases) become fields, any other
    column lands in ``extra``; empty cells are ``None``.

    Args:
        content: The result file's content.

    Returns:
        The series, one point per row that has a step.

    Raises:
        DataError: The content is not a metrics CSV, or a row's step is not a number (the
            message names the row).
    """
    text = decode_result_file(content)
    reader = csv.DictReader(io.StringIO(text))
    series = MetricSeries()
    for row_number, row in enumerate(reader, start=2):
        cleaned = {key.strip(): value for key, value in row.items() if key is not None}
        if not any((value or "").strip() for value in cleaned.values()):
            continue
        try:
            series.add(MetricPoint.from_data(cleaned))
        except DataError as exc:
            raise DataError(f"result file line {row_number}: {exc}") from exc
    return series
