"""Landlock through ctypes: deny a process every file but a list, and all TCP (Linux >= 5.13).

Used by the python-grader sandbox (``_sandbox.py``), inside the sandboxed process, before the
untrusted code runs. Landlock is an unprivileged Linux security module: once a process restricts
itself, it and everything it starts (``exec`` included) can only reach the paths it allowed, and
from ABI 4 on no TCP port, from ABI 6 on no process outside its domain by signal and no abstract
Unix socket. Only the standard library is used: this runs in a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterable

__all__ = ["LandlockResult", "abi_version", "restrict"]

# The Landlock syscalls have the same numbers on every architecture that has the generic table.
_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446), "arm64": (444, 445, 446)}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

_EXECUTE = 1 << 0
_WRITE_FILE = 1 << 1
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_REFER = 1 << 13
_TRUNCATE = 1 << 14
_IOCTL_DEV = 1 << 15
_NET_ALL = 0b11  # BIND_TCP | CONNECT_TCP: handled with no rule, so every port is denied
_SCOPE_ALL = 0b11  # ABSTRACT_UNIX_SOCKET | SIGNAL


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class LandlockResult:
    """What :func:`restrict` enforced."""

    def __init__(self, abi: int, network: bool, scopes: bool) -> None:
        self.abi = abi
        self.network = network
        self.scopes = scopes


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unavailable here."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None or not hasattr(os, "O_PATH"):
        return 0
    version = int(
        _libc().syscall(
            numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
        )
    )
    return max(version, 0)


def restrict(read_paths: Iterable[str], write_paths: Iterable[str]) -> LandlockResult:
    """Restrict this process (and all it starts) to reading ``read_paths``, writing ``write_paths``.

    Paths that do not exist are skipped. Sets ``no_new_privs`` (required by Landlock).

    Args:
        read_paths: Files and folders to allow reading and executing (folders recursively).
        write_paths: Folders to allow everything in.

    Returns:
        The ABI used and whether network and scope restrictions were applied.

    Raises:
        OSError: Landlock is unavailable or refused a step.
    """
    abi = abi_version()
    if abi < 1:
        raise OSError(38, "Landlock is not available on this kernel")
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    libc = _libc()
    fs_all = (1 << 13) - 1
    if abi >= 2:
        fs_all |= _REFER
    if abi >= 3:
        fs_all |= _TRUNCATE
    if abi >= 5:
        fs_all |= _IOCTL_DEV
    network = abi >= 4
    scopes = abi >= 6
    attr = _RulesetAttr(fs_all, _NET_ALL if network else 0, _SCOPE_ALL if scopes else 0)
    # Older kernels reject a struct larger than the one they know.
    size = 24 if scopes else 16 if network else 8
    ruleset = int(
        libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    )
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        read = _EXECUTE | _READ_FILE | _READ_DIR
        file_rights = _EXECUTE | _WRITE_FILE | _READ_FILE | (_TRUNCATE if abi >= 3 else 0)
        # REFER (linking or renaming across folders) is left out even where writing is allowed.
        write = fs_all & ~_REFER
        for paths, rights in ((read_paths, read), (write_paths, write)):
            for path in paths:
                _add_rule(libc, add_rule, ruleset, path, rights, file_rights)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(restrict_self, ruleset, ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return LandlockResult(abi, network, scopes)


def _add_rule(
    libc: ctypes.CDLL, add_rule: int, ruleset: int, path: str, rights: int, file_rights: int
) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        allowed = rights if os.path.isdir(path) else rights & file_rights
        beneath = _PathBeneath(allowed, fd)
        if (
            libc.syscall(
                add_rule, ruleset, _RULE_PATH_BENEATH, ctypes.byref(beneath), ctypes.c_uint32(0)
            )
            != 0
        ):
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(fd)
