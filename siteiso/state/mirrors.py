"""The CageFS-compatible files that mirror the recorded state.

Re-driven (idempotently) from State by every command: the feature flag, the
mode directories, the per-user list directories and the registration of the
user command.
"""

from __future__ import annotations

import contextlib
import os

from siteiso import paths
from siteiso.state.store import State, fault


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rmdir_tree(path: str) -> None:
    if not os.path.isdir(path) or os.path.islink(path):
        return
    for name in os.listdir(path):
        _remove(os.path.join(path, name))
    with contextlib.suppress(FileNotFoundError, OSError):
        os.rmdir(path)


def _sync_list(path: str, users: list[str]) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
    present = set(os.listdir(path))
    for user in users:
        if user not in present:
            _touch(os.path.join(path, user))
    for stale in present - set(users):
        _remove(os.path.join(path, stale))


def apply(st: State) -> None:
    if st.flag:
        _touch(paths.FLAG)
        _touch(paths.USER_COMMAND)
    else:
        _remove(paths.FLAG)
        _remove(paths.USER_COMMAND)
    want = {"allow_all": paths.MODE_ALLOW_ALL, "deny_all": paths.MODE_DENY_ALL}
    for mode, path in want.items():
        if st.mode == mode:
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            with contextlib.suppress(FileNotFoundError, OSError):
                os.rmdir(path)
    if st.mode or st.flag:
        _sync_list(paths.USERS_DENIED, st.denied)
        _sync_list(paths.USERS_ALLOWED, st.allowed)
    else:
        _rmdir_tree(paths.USERS_DENIED)
        _rmdir_tree(paths.USERS_ALLOWED)
    fault("mirrors-written")
