"""Uploading training data: once per content, checked first, in parallel parts when large.

Owns ``uploader`` (``FileUploader`` and its async twin: preflight first, reuse by sha256, the
Files API or the Uploads API in parallel parts, waiting until processed), ``parts`` (the pure
pieces: limits, digests, remote names, part plans, the upload cache) and ``views``
(``UploadedFile``, what an upload returns).

May import: ``finetune_kit.data`` (preflight), ``finetune_kit.errors`` and the shared
infrastructure (``_retry``, ``_steps``, ``_urls``); never the session, the local backend or the
CLI. Nothing here special-cases a backend.
"""

import typing as _typing

from .. import _lazy

if _typing.TYPE_CHECKING:  # the export table: read at import for __all__ and the lazy loader
    from .parts import UploadCache as UploadCache
    from .uploader import AsyncFileUploader as AsyncFileUploader
    from .uploader import FileUploader as FileUploader
    from .views import UploadedFile as UploadedFile

_EXPORTS = _lazy.export_table(__name__)
__all__ = sorted(_EXPORTS)
_lazy.serve_lazily(__name__, _EXPORTS)
