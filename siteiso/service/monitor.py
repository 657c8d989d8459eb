"""What siteisod watches while sites are isolated (SPEC §7).

- MountWatch: the host's mount table (/proc/self/mountinfo signals a change
  with POLLPRI). A file system that vanished is let go by every view.
- DocrootWatch: inotify on the parents of every isolated site's docroot and
  site paths (a move, rename or delete shows there) and on the panel's
  files. Events name the users to regenerate; the daemon coalesces them. A
  queue overflow asks for a reconcile of everyone.

Both are descriptors in the daemon's selector: nothing wakes up when nothing
changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
from typing import Any

from siteiso import paths
from siteiso.errors import SiteisoError
from siteiso.plan.sites import SiteInput, site_paths
from siteiso.service import cron, fpm
from siteiso.state import State
from siteiso.views.follow import follow_unmounts, host_devices

# include/uapi/linux/inotify.h
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_ONLYDIR = 0x4000, 0x01000000
# A site path itself: only its own move or deletion (files written inside a
# docroot are the site's business and must not cost a regenerate each).
SELF_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
# Its parent: entries of that name moved, deleted, (re)made or re-permitted.
PARENT_EVENTS = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB \
    | IN_ONLYDIR
PANEL_EVENTS = IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_CREATE | IN_ONLYDIR
EVERYONE = "*"
STATE_CHANGED = "@state"
CRON_PREFIX = "cron:"      # a user's crontab was written: cron:<user>
FPM_CHANGED = "@fpm"       # a php-fpm master's record was written or removed
FPM_RECORD_EVENTS = IN_MOVED_TO | IN_DELETE | IN_ONLYDIR

# The panel's files, by directory: (directory, names that matter or None).
PANEL_FILES = ((paths.ETC, {"domains.json"}),
               ("/etc", {"userdatadomains", "trueuserdomains"}),
               (os.path.dirname(paths.INTEGRATION_INI), {"integration.ini"}))


class MountWatch:
    def __init__(self) -> None:
        self._file = open("/proc/self/mountinfo", "rb")  # noqa: SIM115 - lives with us
        self._ep = select.epoll()
        self._ep.register(self._file.fileno(), select.EPOLLPRI | select.EPOLLERR)
        self._file.read()
        self.devices = host_devices()

    @property
    def fd(self) -> int:
        return self._ep.fileno()

    def on_event(self) -> int:
        """Re-read the table; views let go of what vanished. Returns how many
        view mounts were detached."""
        self._ep.poll(0)
        self._file.seek(0)
        self._file.read()
        now = host_devices()
        vanished, self.devices = self.devices - now, now
        return follow_unmounts(vanished)

    def close(self) -> None:
        self._ep.close()
        self._file.close()


class DocrootWatch:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise SiteisoError(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        # wd → (users, names that matter in that directory or None for all)
        self._wds: dict[int, tuple[set[str], set[str] | None]] = {}
        self.watched: set[str] = set()      # the directories watched now

    def close(self) -> None:
        os.close(self.fd)

    def _add(self, path: str, mask: int) -> int:
        return int(self._libc.inotify_add_watch(self.fd, path.encode(), mask))

    def rewatch(self, st: State, homes: dict[str, str]) -> None:
        """Watch what the recorded state makes interesting; nothing when no
        site is isolated."""
        # path → [users, names that matter ("" = the directory itself; None =
        # every name), event mask]
        wanted: dict[str, list[Any]] = {}

        def want(path: str, users: set[str], name: str | None, mask: int) -> None:
            entry = wanted.setdefault(path, [set(), set(), 0])
            entry[0] |= users
            if name is None or entry[1] is None:
                entry[1] = None
            else:
                entry[1].add(name)
            entry[2] |= mask

        for owner in {s.owner for s in st.sites.values()}:
            home = homes.get(owner)
            if not home:
                continue
            inputs = [SiteInput(token=s.token, docroot=s.docroot)
                      for s in st.sites_of(owner)]
            for site in inputs:
                for p in site_paths(site, home, inputs):
                    want(p, {owner}, "", SELF_EVENTS)
                    want(os.path.dirname(p), {owner}, os.path.basename(p),
                         PARENT_EVENTS)
            want(f"{paths.CPANEL_USERDATA}/{owner}", {owner}, None, PANEL_EVENTS)
        if st.sites:
            for d, names in PANEL_FILES:
                for n in names:
                    want(d, {EVERYONE}, n, PANEL_EVENTS)
        # A crontab written by crontab(1): siteiso's SHELL line goes back in.
        if st.sites:
            want(cron.spool_dir(), {CRON_PREFIX}, None,
                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR)
        # php-fpm masters started or stopped by any command: watch them.
        if st.sites:
            if os.path.isdir(fpm.FPM_DIR):
                want(fpm.FPM_DIR, {FPM_CHANGED}, None, FPM_RECORD_EVENTS)
            else:
                want(paths.RUN, {FPM_CHANGED}, os.path.basename(fpm.FPM_DIR),
                     IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
        # Changes made by cagefsctl (not through siteisod): re-aim the watches.
        want(paths.LIB, {STATE_CHANGED}, os.path.basename(paths.STATE), PANEL_EVENTS)
        for wd in list(self._wds):
            self._libc.inotify_rm_watch(self.fd, wd)   # may be gone: fine
        self._wds.clear()
        self.watched.clear()
        for path, (users, names, mask) in wanted.items():
            wd = self._add(path, mask)
            if wd >= 0:
                self._wds[wd] = (users, names)
                self.watched.add(path)

    def on_event(self) -> set[str]:
        """Users whose views may need regenerating ({"*"}: everyone)."""
        users: set[str] = set()
        with contextlib.suppress(BlockingIOError):
            while True:
                data = os.read(self.fd, 65536)
                if not data:
                    break
                off = 0
                while off + 16 <= len(data):
                    wd, mask, _cookie, size = struct.unpack_from("iIII", data, off)
                    name = data[off + 16:off + 16 + size].rstrip(b"\0").decode(
                        errors="replace")
                    off += 16 + size
                    if mask & IN_Q_OVERFLOW:
                        users.add(EVERYONE)
                        continue
                    who, names = self._wds.get(wd, (set(), None))
                    if CRON_PREFIX in who:
                        if name and not name.startswith("."):
                            users.add(CRON_PREFIX + name)
                    elif names is None or name in names:
                        users |= who
        return users
