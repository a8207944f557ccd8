"""Text-similarity metrics, each from the library made for it, loaded on first use.

============  =======================================================================
metric        computed by
============  =======================================================================
fuzzy_match   rapidfuzz ``fuzz.WRatio`` with ``utils.default_process`` (lowercase, no
              punctuation), / 100: the scorer OpenAI's own python-grader example uses
bleu          sacrebleu ``sentence_bleu`` (13a tokenizer, exponential smoothing,
              effective order), / 100
gleu          nltk ``sentence_gleu``, words from nltk's ``NLTKWordTokenizer``
meteor        nltk ``meteor_score`` on the same words, with WordNet synonyms when nltk
              finds WordNet on this machine, exact and stem matches only otherwise
rouge_1..5,   rouge-score ``RougeScorer`` F-measure, without stemming, words split by a
rouge_l       Unicode tokenizer (rouge-score's own keeps only a-z and 0-9)
============  =======================================================================

Every score is clipped to [0, 1] (sacrebleu's 100.00000000000004 becomes 1.0). Nothing is
downloaded, ever: WordNet is used when ``nltk.data.find`` finds it (``NLTK_DATA``,
``~/nltk_data``, ``<venv>/nltk_data``, ``/usr/share/nltk_data``...).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingDependencyError

__all__ = ["METRICS", "MetricScore", "check_installed", "load_metric", "wordnet_available"]

logger = logging.getLogger("finetune_kit")

METRICS = (
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
)
"""The metrics computed locally (OpenAI's list less ``cosine``)."""


@dataclass(frozen=True)
class MetricScore:
    """A metric's value and what else is worth reporting in ``metadata.scores``."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


Metric = Callable[[str, str], MetricScore]

_lock = threading.RLock()
_loaded: dict[str, Metric] = {}
_wordnet: list[Any] = []  # [reader or None] once looked up


def load_metric(name: str) -> Metric:
    """The scorer for ``name``, ``(input, reference) -> MetricScore``, loaded once per process.

    Raises:
        MissingDependencyError: The library for it is not installed.
        KeyError: ``name`` is not a local metric.
    """
    metric = _loaded.get(name)
    if metric is not None:
        return metric
    with _lock:
        metric = _loaded.get(name)
        if metric is None:
            metric = _BUILDERS[name](name)
            _loaded[name] = metric
    return metric


_MODULES = {
    "fuzzy_match": ("rapidfuzz", "rapidfuzz"),
    "bleu": ("sacrebleu", "sacrebleu"),
    "gleu": ("nltk", "nltk"),
    "meteor": ("nltk", "nltk"),
}


def check_installed(name: str) -> None:
    """Raise ``MissingDependencyError`` now if ``name``'s library is not installed."""
    import importlib.util

    module, package = _MODULES.get(name, ("rouge_score", "rouge-score"))
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"the {name} metric needs {package}: pip install 'finetune-kit[graders]'",
            package=package,
            extra="graders",
        )


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"text_similarity graders need {package}: pip install 'finetune-kit[graders]'",
            package=package,
            extra="graders",
        ) from exc


def _clip(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def _fuzzy(_name: str) -> Metric:
    rapidfuzz = _require("rapidfuzz", "rapidfuzz")
    wratio = rapidfuzz.fuzz.WRatio
    process = rapidfuzz.utils.default_process

    def score(text: str, reference: str) -> MetricScore:
        return MetricScore(_clip(wratio(text, reference, processor=process) / 100.0))

    return score


def _bleu(_name: str) -> Metric:
    metrics = _require("sacrebleu.metrics", "sacrebleu")
    bleu = metrics.BLEU(effective_order=True)

    def score(text: str, reference: str) -> MetricScore:
        return MetricScore(_clip(bleu.sentence_score(text, [reference]).score / 100.0))

    return score


def _words() -> Callable[[str], list[str]]:
    tokenize = _require("nltk.tokenize", "nltk")
    # NLTKWordTokenizer needs no downloaded data (word_tokenize needs punkt_tab).
    tokenizer = tokenize.NLTKWordTokenizer()
    words: Callable[[str], list[str]] = tokenizer.tokenize  # nltk is untyped: Any, annotated here
    return words


def _gleu(_name: str) -> Metric:
    words = _words()
    gleu = _require("nltk.translate.gleu_score", "nltk").sentence_gleu

    def score(text: str, reference: str) -> MetricScore:
        hypothesis, ref = words(text), words(reference)
        if not hypothesis or not ref:
            return MetricScore(0.0)
        return MetricScore(_clip(gleu([ref], hypothesis)))

    return score


class _NoSynonyms:
    """Stands in for WordNet: METEOR then matches exact words and stems only."""

    def synsets(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


def wordnet_available() -> bool:
    """True when nltk finds WordNet on this machine (looked up once; nothing is downloaded)."""
    return _load_wordnet() is not None


def _load_wordnet() -> Any:
    if _wordnet:
        return _wordnet[0]
    with _lock:
        if not _wordnet:
            _wordnet.append(_find_wordnet())
    return _wordnet[0]


def _find_wordnet() -> Any:
    data = _require("nltk.data", "nltk")
    root = None
    # The places nltk's own corpus loader looks, zipped or not; find() never downloads.
    for resource in ("corpora/wordnet.zip/wordnet/", "corpora/wordnet"):
        try:
            root = data.find(resource)
            break
        except LookupError:
            continue
    if root is None:
        logger.debug("METEOR: WordNet not found by nltk; synonyms are not matched")
        return None
    reader = _require("nltk.corpus.reader.wordnet", "nltk")

    class _WordNet(reader.WordNetCorpusReader):  # type: ignore[misc, name-defined]  # untyped nltk
        # Mapping WordNet 3.0 onto itself is most of the load time and only serves the
        # multilingual data, which METEOR does not use.
        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():
        # "The multilingual functions are not available": the OMW data is not wanted here.
        warnings.simplefilter("ignore", UserWarning)
        try:
            wordnet = _WordNet(root, None)
        except (OSError, ValueError, LookupError, AssertionError) as exc:
            logger.warning("METEOR: WordNet at %s cannot be read (%s); not using it", root, exc)
            return None
    logger.debug("METEOR: WordNet found at %s", root)
    return wordnet


def _meteor(_name: str) -> Metric:
    words = _words()
    meteor = _require("nltk.translate.meteor_score", "nltk").meteor_score
    wordnet = _load_wordnet()
    synonyms = wordnet if wordnet is not None else _NoSynonyms()
    details = {"wordnet": wordnet is not None}

    def score(text: str, reference: str) -> MetricScore:
        hypothesis, ref = words(text), words(reference)
        if not hypothesis or not ref:
            return MetricScore(0.0, dict(details))
        return MetricScore(_clip(meteor([ref], hypothesis, wordnet=synonyms)), dict(details))

    return score


class _UnicodeWords:
    """rouge-score's tokenizer, for every script: lowercase, runs of letters and digits."""

    _WORD = re.compile(r"[^\W_]+")

    def tokenize(self, text: str) -> list[str]:
        return self._WORD.findall(text.lower())


def _rouge(name: str) -> Metric:
    rouge_scorer = _require("rouge_score.rouge_scorer", "rouge-score")
    kind = "rougeL" if name == "rouge_l" else f"rouge{name[-1]}"
    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=False, tokenizer=_UnicodeWords())

    def score(text: str, reference: str) -> MetricScore:
        result = scorer.score(target=reference, prediction=text)[kind]
        return MetricScore(
            _clip(result.fmeasure),
            {"precision": float(result.precision), "recall": float(result.recall)},
        )

    return score


_BUILDERS: dict[str, Callable[[str], Metric]] = {
    "fuzzy_match": _fuzzy,
    "bleu": _bleu,
    "gleu": _gleu,
    "meteor": _meteor,
    **{f"rouge_{n}": _rouge for n in ("1", "2", "3", "4", "5", "l")},
}
