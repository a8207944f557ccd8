"""Loading models without third-party noise on the user's terminal.

transformers draws a "Loading weights" progress bar for every model it loads, and peft reads a
property transformers has deprecated (``is_gradient_checkpointing``), which warns on every
adapter. The local backend loads models in its server and workers, where neither says anything
a user can act on, and where a bar in the middle of ``finetune-kit quickstart``'s own output
only confuses.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

__all__ = ["quiet_loading"]

_filter_lock = threading.Lock()
_filter_installed = False


def _ignore_peft_deprecation() -> None:
    """Install, once per process, a filter for that one deprecation warning.

    Permanent rather than ``warnings.catch_warnings()``, which swaps the process's filters and
    is not safe while the server's other threads load adapters or warn; the filter matches the
    message and transformers' module only, so no other warning is hidden.
    """
    global _filter_installed
    with _filter_lock:
        if not _filter_installed:
            warnings.filterwarnings(
                "ignore",
                message=r".*is_gradient_checkpointing.*",
                category=FutureWarning,
                module=r"transformers\.",
            )
            _filter_installed = True


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No transformers progress bar within the block, and no peft deprecation warning from now on.

    The progress bar setting is restored afterwards, so a user's own loads keep theirs.
    """
    from transformers.utils import logging as transformers_logging

    _ignore_peft_deprecation()
    was_enabled = transformers_logging.is_progress_bar_enabled()
    # The two ignores: transformers leaves these functions unannotated.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
