"""The facade: ``FineTuneSession``, the whole workflow in one object, resumable after a restart.

Owns ``facade`` (``FineTuneSession`` and its async twin: which backend, which model, what to
create or carry on; every decision taken once, by step generators the twins drive), ``state``
(``SessionState``: what was created remotely, saved atomically as JSON, never a secret) and
``backend_tokenizer`` (``BackendTokenizer``: preflight's token counts from the local backend's
own model, over HTTP).

May import: the services (``finetune_kit.files``, ``jobs``, ``inference``, ``azure``),
``finetune_kit.data``, ``finetune_kit.errors``, the shared infrastructure and ``backends``;
and ``finetune_kit.local``, only to start an in-process backend. Nothing below it imports it;
the CLI and the quickstart use it.
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .backend_tokenizer import BackendTokenizer as BackendTokenizer
    from .facade import DEFAULT_STATE_PATH as DEFAULT_STATE_PATH
    from .facade import AsyncFineTuneSession as AsyncFineTuneSession
    from .facade import FineTuneSession as FineTuneSession
    from .state import STATE_VERSION as STATE_VERSION
    from .state import SessionState as SessionState

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
