"""siteisod's php-fpm supervision (SPEC §7): a site's master that dies is
started again at once, not at the next converge.

Each running master (named by its record in /run/siteiso/fpm) is held by a
pidfd the daemon's selector waits on: no polling, no wake-ups while the
masters run. When one exits, the record is read again after a short pause:
gone means a command stopped the master on purpose (disable, a handler
switch); a live master named there means a command already replaced it.
Otherwise the owner's views are regenerated under the state lock, which
starts every master that should run and does not — the same code path as
`cagefsctl --remount`, so a site disabled meanwhile is never restarted.

A master that keeps dying (a broken php.ini, a full disk) is restarted with
a growing delay instead of in a tight loop.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import time
from dataclasses import dataclass, field

from siteiso.service import fpm

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.5       # let a command that stops or replaces a master finish
CRASH_WINDOW = 60.0        # deaths counted over this many seconds ...
CRASH_BUDGET = 3           # ... before the restarts slow down
MAX_BACKOFF = 300.0

_USER_OF_CGROUP = re.compile(r"/user-(\d+)/site-[A-Za-z0-9_-]+(/|$)")


@dataclass
class _Watched:
    token: str
    pid: int
    starttime: int
    cgroup: str


@dataclass
class FpmSupervisor:
    """Which masters are watched (pidfd → master) and which died recently."""

    watched: dict[int, _Watched] = field(default_factory=dict)
    deaths: dict[str, list[float]] = field(default_factory=dict)
    # token → (when to look again, cgroup of the master that died)
    due: dict[str, tuple[float, str]] = field(default_factory=dict)

    def rescan(self) -> tuple[list[int], list[int]]:
        """Watch every master the records name; returns (pidfds to add to
        the selector, pidfds no longer watched: the caller unregisters, then
        closes them). A recorded master found dead is handled as if it had
        just exited."""
        records = _records()
        by_token = {w.token: fd for fd, w in self.watched.items()}
        added: list[int] = []
        removed: list[int] = []
        for token, fd in by_token.items():
            w = self.watched[fd]
            m = records.get(token)
            if m is None or (m.pid, m.starttime) != (w.pid, w.starttime):
                removed.append(fd)
        for fd in removed:
            del self.watched[fd]
        watching = {w.token for w in self.watched.values()}
        for token, m in records.items():
            if token in watching:
                continue
            pidfd = _pidfd(m)
            if pidfd is None:
                if token not in self.due:
                    self._died(token, m.cgroup)
                continue
            self.watched[pidfd] = _Watched(token, m.pid, m.starttime, m.cgroup)
            added.append(pidfd)
        return added, removed

    def exited(self, fd: int) -> None:
        """The master behind fd is gone: look again once things settle. The
        caller unregisters and closes fd."""
        w = self.watched.pop(fd, None)
        if w is not None:
            self._died(w.token, w.cgroup)

    def _died(self, token: str, cgroup: str) -> None:
        now = time.monotonic()
        recent = [t for t in self.deaths.get(token, []) if now - t < CRASH_WINDOW]
        recent.append(now)
        self.deaths[token] = recent
        delay = SETTLE_SECONDS
        if len(recent) > CRASH_BUDGET:
            delay = min(MAX_BACKOFF, 2.0 ** (len(recent) - CRASH_BUDGET) * 5)
            log.warning("php-fpm of site %s keeps exiting (%d times in %.0f s); "
                        "next start in %.0f s", token, len(recent), CRASH_WINDOW, delay)
        self.due[token] = (now + delay, cgroup)

    def next_deadline(self) -> float | None:
        return min((t for t, _ in self.due.values()), default=None)

    def take_due(self) -> set[str]:
        """Owners whose views must be regenerated now: a master is missing
        and no command stopped or replaced it."""
        now = time.monotonic()
        users: set[str] = set()
        for token, (when, cgroup) in list(self.due.items()):
            if when > now:
                continue
            del self.due[token]
            m = fpm.read_record(token)
            if m is None:
                continue            # stopped on purpose: disable, handler switch
            if m.alive():
                continue            # already replaced; the rescan watches it
            user = _owner(cgroup or m.cgroup)
            if user is not None:
                log.info("php-fpm of site %s exited; starting it again", token)
                users.add(user)
        return users


def _records() -> dict[str, fpm.Master]:
    out: dict[str, fpm.Master] = {}
    try:
        names = os.listdir(fpm.FPM_DIR)
    except FileNotFoundError:
        return out
    for name in names:
        token, dot, ext = name.rpartition(".")
        if not dot or ext != "pid":
            continue
        try:
            m = fpm.read_record(token)
        except Exception:   # a name that is not a token: not ours
            continue
        if m is not None:
            out[token] = m
    return out


def _pidfd(m: fpm.Master) -> int | None:
    """A pidfd for the recorded master, if that process still runs."""
    try:
        fd = os.pidfd_open(m.pid)
    except (ProcessLookupError, OSError):
        return None
    if not m.alive():       # the pid was reused before we opened it
        os.close(fd)
        return None
    return fd


def _owner(cgroup: str) -> str | None:
    found = _USER_OF_CGROUP.search(cgroup)
    if not found:
        return None
    try:
        return pwd.getpwuid(int(found.group(1))).pw_name
    except KeyError:
        return None
