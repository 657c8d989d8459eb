"""The entries of a home that a `home = ro | shared` view binds one by one
(siteiso.plan.view: the read-only skeleton of the home).

Read as root in a hostile home: through descriptors opened beneath the home
without following any symlink; a directory that cannot be opened that way
(a symlink, another owner's, gone) is not listed, and the plan then binds
nothing of it through a skeleton (a listing missing for the home itself
leaves the view's home empty: fails closed). The holder checks every entry
again when it clones it.
"""

from __future__ import annotations

import contextlib
import os
import stat

from siteiso import sysapi
from siteiso.errors import SiteisoError
from siteiso.plan.view import Entry

Listings = tuple[tuple[str, tuple[Entry, ...]], ...]


def listings(home: str, uid: int, dirs: list[str]) -> Listings:
    """The entries of each directory of dirs (the home and directories in it)."""
    try:
        home_fd = sysapi.open_home(home, uid)
    except SiteisoError:
        return ()
    out = []
    try:
        for d in dirs:
            entries = _entries(home_fd, home, d, uid)
            if entries is not None:
                out.append((d, entries))
    finally:
        os.close(home_fd)
    return tuple(out)


def _entries(home_fd: int, home: str, d: str, uid: int) -> tuple[Entry, ...] | None:
    rel = "." if d == home else d[len(home) + 1:]
    try:
        fd = sysapi.open_beneath(home_fd, rel, want="dir", uid=uid,
                                 flags=os.O_RDONLY | os.O_DIRECTORY)
    except (SiteisoError, OSError):
        return None
    try:
        out = []
        with os.scandir(fd) as it:
            for e in it:
                out.append(_entry(fd, e.name))
        return tuple(sorted(out, key=lambda x: x.name))
    except OSError:
        return None
    finally:
        os.close(fd)


def _entry(dir_fd: int, name: str) -> Entry:
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        return Entry(name, "other")
    if stat.S_ISDIR(mode):
        return Entry(name, "dir")
    if stat.S_ISREG(mode):
        return Entry(name, "file")
    if stat.S_ISLNK(mode):
        with contextlib.suppress(OSError):
            return Entry(name, "link", os.readlink(name, dir_fd=dir_fd))
    return Entry(name, "other")
