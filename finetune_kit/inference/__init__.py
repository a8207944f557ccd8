"""Using a model: chat with it, compare it with its base side by side, evaluate it.

Owns ``client`` (``InferenceClient`` and its async twin: requests, concurrency, retries),
``replies`` (``ChatReply``, ``ReplyToolCall`` and ``ChatClient``, the protocol anything that
asks a model follows), ``comparison`` (``Comparison``: base and tuned answers side by side),
``evaluation`` (cases, reports, paired statistics), ``scorers`` (how an answer is graded,
OpenAI's graders included as ``GraderScorer``), ``grading`` (what a grader sees of an
evaluation: the reply as ``sample``, the example as ``item``, and ``ChatGraderModel``, a judge
asked through a ``ChatClient``) and ``judge`` (``ModelJudge``: a model as grader). One way
only: ``client`` imports ``scorers`` to resolve them, ``scorers`` imports ``grading``,
``judge`` imports ``client`` to wrap an ``openai`` client; scorers see a client only as a
``ChatClient``.

May import: ``finetune_kit.data``, ``finetune_kit.graders`` (OpenAI's graders, run here
without a server), ``finetune_kit.jobs`` (a checkpoint record names a model),
``finetune_kit.errors`` and the shared infrastructure; never the session, the local backend or
the CLI. A new scorer is a ``Scorer`` subclass (in ``scorers``, or its own module here when it
needs a client, as ``judge`` does), exported below and from ``finetune_kit``.
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .client import DEFAULT_CONCURRENCY as DEFAULT_CONCURRENCY
    from .client import AsyncInferenceClient as AsyncInferenceClient
    from .client import InferenceClient as InferenceClient
    from .client import model_name as model_name
    from .comparison import Comparison as Comparison
    from .comparison import ComparisonRow as ComparisonRow
    from .evaluation import EvalCase as EvalCase
    from .evaluation import EvaluationReport as EvaluationReport
    from .evaluation import ExampleResult as ExampleResult
    from .evaluation import PairedEvaluationReport as PairedEvaluationReport
    from .evaluation import ScoreDifference as ScoreDifference
    from .evaluation import bootstrap_mean_ci as bootstrap_mean_ci
    from .grading import ChatGraderModel as ChatGraderModel
    from .judge import DEFAULT_JUDGE_PROMPT as DEFAULT_JUDGE_PROMPT
    from .judge import ModelJudge as ModelJudge
    from .judge import parse_judge_score as parse_judge_score
    from .replies import ChatClient as ChatClient
    from .replies import ChatReply as ChatReply
    from .replies import ReplyToolCall as ReplyToolCall
    from .scorers import CallableScorer as CallableScorer
    from .scorers import Contains as Contains
    from .scorers import ExactMatch as ExactMatch
    from .scorers import GraderLike as GraderLike
    from .scorers import GraderScorer as GraderScorer
    from .scorers import RegexMatch as RegexMatch
    from .scorers import Scorer as Scorer
    from .scorers import ScorerLike as ScorerLike
    from .scorers import ToolCallMatch as ToolCallMatch
    from .scorers import ValidJSON as ValidJSON
    from .scorers import resolve_scorers as resolve_scorers

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
