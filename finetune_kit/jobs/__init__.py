"""Fine-tuning jobs: create once, follow, wait, cancel, pause, resume, read the results.

Owns ``manager`` (``JobManager`` and its async twin: the create-once decisions, outcomes,
results), ``following`` (the pure follow logic: polling, event tailing, ``FollowOptions``) and
``watcher`` (its sync and async drivers, the progress bar, the Ctrl-C note), ``views`` (events,
status changes, checkpoint records, what a job names a file by), ``methods`` and ``options``
(the method models and the other create parameters, checked before anything is sent),
``metrics`` (metric series from events and result files), ``lifecycle`` (model shutdown
dates, OpenAI's wind-down, exporting a job) and ``weights`` (a tuned model's weights, from the
local backend, the one backend that offers them).

May import: ``finetune_kit.data``, ``finetune_kit.files`` (an upload's view),
``finetune_kit.azure`` (its suffix limit), ``finetune_kit.errors`` and the shared
infrastructure; never the session, the local backend or the CLI.
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .following import FollowOptions as FollowOptions
    from .lifecycle import SHUTDOWN_WARNING_DAYS as SHUTDOWN_WARNING_DAYS
    from .lifecycle import acheck_shutdown as acheck_shutdown
    from .lifecycle import aexport_job as aexport_job
    from .lifecycle import check_shutdown as check_shutdown
    from .lifecycle import export_job as export_job
    from .manager import IDEMPOTENCY_METADATA_KEY as IDEMPOTENCY_METADATA_KEY
    from .manager import AsyncJobManager as AsyncJobManager
    from .manager import JobManager as JobManager
    from .methods import DpoHyperparameters as DpoHyperparameters
    from .methods import DpoMethod as DpoMethod
    from .methods import FineTuningMethod as FineTuningMethod
    from .methods import ReinforcementHyperparameters as ReinforcementHyperparameters
    from .methods import ReinforcementMethod as ReinforcementMethod
    from .methods import SupervisedHyperparameters as SupervisedHyperparameters
    from .methods import SupervisedMethod as SupervisedMethod
    from .methods import make_method as make_method
    from .metrics import MetricPoint as MetricPoint
    from .metrics import MetricSeries as MetricSeries
    from .options import WandbIntegration as WandbIntegration
    from .options import check_suffix as check_suffix
    from .views import KNOWN_STATUSES as KNOWN_STATUSES
    from .views import TERMINAL_STATUSES as TERMINAL_STATUSES
    from .views import CheckpointRecord as CheckpointRecord
    from .views import JobEvent as JobEvent
    from .views import JobUpdate as JobUpdate
    from .views import StatusChange as StatusChange
    from .watcher import AsyncJobWatcher as AsyncJobWatcher
    from .watcher import JobWatcher as JobWatcher
    from .watcher import interruption_noted as interruption_noted
    from .weights import WEIGHT_FORMATS as WEIGHT_FORMATS
    from .weights import adownload_weights as adownload_weights
    from .weights import check_weights_request as check_weights_request
    from .weights import download_weights as download_weights

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
