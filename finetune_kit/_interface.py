"""Who is reading a message: Python code, or someone at the ``finetune-kit`` command line.

An error says how to fix what went wrong. In Python that is an argument (``force=True``,
``restart=True``) or a call; at the command line it is a flag (``--force``, ``--restart``) or a
command, with the global options (``--backend``, ``--base-url``, ``--state``...) it needs to reach
the same session. The CLI runs its command inside :func:`running_command`; messages are built
with :func:`say` and :func:`command`, so each reader sees their own words.

Examples:
    >>> say("pass force=True", "pass --force")
    'pass force=True'
    >>> with running_command("finetune-kit --state run.json"):
    ...     say("pass force=True", "pass --force"), command("events --follow")
    ('pass --force', 'finetune-kit --state run.json events --follow')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["command", "in_command", "running_command", "say"]

_PREFIX: ContextVar[str | None] = ContextVar("finetune_kit_command", default=None)


@contextlib.contextmanager
def running_command(prefix: str) -> Iterator[None]:
    """Build messages for the command line while the block runs.

    Args:
        prefix: The command and the global options that reach the same session, such as
            ``finetune-kit --backend local --state run.json``.
    """
    token = _PREFIX.set(prefix)
    try:
        yield
    finally:
        _PREFIX.reset(token)


def in_command() -> bool:
    """Whether the ``finetune-kit`` command is running."""
    return _PREFIX.get() is not None


def say(python: str, cli: str) -> str:
    """The Python wording, or the command line's when the ``finetune-kit`` command runs.

    Args:
        python: What to tell a Python caller (``"pass restart=True"``).
        cli: What to tell someone at the command line (``"pass --restart"``).
    """
    return python if _PREFIX.get() is None else cli


def command(rest: str) -> str:
    """A ``finetune-kit`` command with the global options of the one running.

    Args:
        rest: The subcommand and its arguments (``"cancel ftjob-abc"``).

    Returns:
        The whole command, such as ``finetune-kit --state run.json cancel ftjob-abc``
        (``finetune-kit cancel ftjob-abc`` outside the command line).
    """
    return f"{_PREFIX.get() or 'finetune-kit'} {rest}"
