"""Find, end and contain a site's processes (SPEC §8 "Restart", §9 cgroups).

Policy lives here; siteiso._procscan only reads /proc. Every signal goes
through a pidfd, and the process behind the pidfd is confirmed while the
pidfd is already open (its start time, or its cgroup), so a recycled pid is
never signalled. A process is only ever found here to be restarted, never to
be granted anything.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import re
import resource
import select
import signal
import time
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from siteiso import platform
from siteiso.errors import EngineError, SiteisoError

log = logging.getLogger(__name__)

# How long processes get after SIGKILL before they count as survivors. Only a
# process stuck in uninterruptible sleep (a hung NFS mount) needs it all.
KILL_WAIT = 2.0
# Descriptors kept free for everything else while pidfds are open.
FD_RESERVE = 64
MOUNTINFO = "/proc/self/mountinfo"
_LOGIN_SCOPE = re.compile(r"(^|/)session-[^/]*\.scope(/|$)")


@dataclass(frozen=True)
class SiteMatch:
    """What marks a process, started before isolation, as one site's.

    Built by the caller from the site's record: `docroot` and `paths` (app
    root, admin-added site paths) match the cwd; `docroot` also matches
    DOCUMENT_ROOT; `fpm_pools` are the panel's pool names for its domains.
    `other_paths` are the user's other sites' paths: a cwd inside a sibling
    nested in this site is the sibling's (longest prefix wins). `mntns` is a
    view whose processes are all the site's; `exclude_mntns` are views of
    other sites, never touched.
    """

    docroot: str
    paths: tuple[str, ...] = ()
    fpm_pools: tuple[str, ...] = ()
    other_paths: tuple[str, ...] = ()
    mntns: int = 0
    exclude_mntns: tuple[int, ...] = ()


@dataclass(frozen=True)
class Result:
    """ended: processes that were found and are gone; survivors: pids that
    outlived SIGKILL and the wait after it."""

    ended: int
    survivors: list[int] = field(default_factory=list)


def _procscan() -> types.ModuleType:
    try:
        return importlib.import_module("siteiso._procscan")
    except ImportError as e:
        raise EngineError(
            f"siteiso._procscan is not built ({e}): run "
            "'python setup.py build_ext --inplace' or reinstall siteiso"
        ) from e


# ------------------------------------------------------------------ finding


def find_site_processes(uid: int, site: SiteMatch) -> list[tuple[int, int]]:
    """(pid, starttime) of the site's processes that were started outside
    its view, minus the user's login sessions (SSH, a terminal): the spec
    never ends those."""
    paths = (site.docroot, *site.paths)
    try:
        found = _procscan().scan(
            uid,
            mntns=site.mntns,
            cwd_prefixes=tuple(os.fsencode(p) for p in paths),
            docroots=(os.fsencode(site.docroot),),
            fpm_pools=tuple(os.fsencode(p) for p in site.fpm_pools),
            exclude_mntns=tuple(site.exclude_mntns),
            cwd_excludes=tuple(os.fsencode(p) for p in site.other_paths),
        )
    except OSError as e:
        raise EngineError(f"cannot scan /proc: {e.strerror}") from e
    return [(pid, start) for pid, start in found if not _is_login(pid, start)]


def _read_proc(path: str) -> bytes:
    # os.open/os.read: a buffered file object costs more than the read.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _is_login(pid: int, start: int) -> bool:
    """True for a login session's process, and for one that is gone or
    whose pid now names another process (nothing left to end).

    Login sessions are told by their systemd-logind scope (session-N.scope:
    a web server's children cannot move there) and, on hosts without
    logind, by a controlling terminal.
    Limitation: without logind a process that takes a terminal of its own
    is left running; it keeps only what it already had before isolation.
    """
    try:
        fields = _read_proc(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
        cgroups = _read_proc(f"/proc/{pid}/cgroup").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    # fields[0] is field 3 of stat: tty_nr is field 7, starttime field 22.
    if len(fields) < 20 or int(fields[19]) != start:
        return True
    if int(fields[4]) != 0:
        return True
    return any(
        _LOGIN_SCOPE.search(line.split(":", 2)[-1]) for line in cgroups.splitlines()
    )


# ------------------------------------------------------------------ signals


def _open_confirmed(pid: int, start: int) -> int | None:
    """A pidfd for pid when that pid still names the process that had this
    start time, else None.

    The pidfd pins one process; the start time is then read by pid, and the
    process behind the pidfd is checked to be alive after that read: alive
    means it held the pid all along, so the start time read was its own.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        if _procscan().starttime(pid) != start:
            os.close(fd)
            return None
        signal.pidfd_send_signal(fd, 0)
    except ProcessLookupError:
        os.close(fd)
        return None
    except PermissionError:
        # Not ours to signal; it will show up as a survivor.
        pass
    return fd


def _signal_all(live: dict[int, int], sig: int) -> int:
    """Send sig through every pidfd in live (fd -> pid); drop the ones whose
    process is already gone and return how many that were."""
    gone = 0
    for fd, pid in list(live.items()):
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            del live[fd]
            gone += 1
        except PermissionError:
            log.warning("cannot send signal %d to process %d: not permitted", sig, pid)
    return gone


def _wait(live: dict[int, int], timeout: float) -> int:
    """Wait until every pidfd in live is readable (its process exited) or
    timeout passes; drop the exited ones and return how many."""
    if not live:
        return 0
    poller = select.poll()
    for fd in live:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + max(timeout, 0.0)
    gone = 0
    while live:
        left_ms = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
        for fd, _events in poller.poll(left_ms):
            poller.unregister(fd)
            del live[fd]
            gone += 1
        if left_ms == 0:
            break
    return gone


def _fd_budget(wanted: int) -> int:
    """How many pidfds may be open at once; raises the soft RLIMIT_NOFILE
    towards the hard one first when that is too small."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    if soft - in_use - FD_RESERVE < wanted and soft != hard:
        target = in_use + wanted + FD_RESERVE
        if hard != resource.RLIM_INFINITY:
            target = min(target, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return max(1, soft - in_use - FD_RESERVE)


def _batches(
    items: Sequence[tuple[int, int]], size: int
) -> Iterator[Sequence[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def terminate(
    procs: Sequence[tuple[int, int]], grace: float, *, kill_wait: float = KILL_WAIT
) -> Result:
    """End (pid, starttime) processes: SIGTERM, up to `grace` seconds,
    SIGKILL, up to `kill_wait` seconds. A pid whose start time changed is
    another process now and is left alone; it counts neither way.

    Limitation: beyond the descriptor limit the processes are ended in
    batches, each with its own grace period.
    """
    ended = 0
    survivors: list[int] = []
    for batch in _batches(list(procs), _fd_budget(len(procs))):
        with contextlib.ExitStack() as stack:
            live: dict[int, int] = {}
            for pid, start in batch:
                fd = _open_confirmed(pid, start)
                if fd is not None:
                    stack.callback(os.close, fd)
                    live[fd] = pid
            ended += _signal_all(live, signal.SIGTERM)
            ended += _wait(live, grace)
            if live:
                ended += _signal_all(live, signal.SIGKILL)
                ended += _wait(live, kill_wait)
            survivors.extend(live.values())
    if survivors:
        log.warning(
            "ended %d processes; %d survived SIGKILL: %s",
            ended,
            len(survivors),
            " ".join(map(str, sorted(survivors))),
        )
    elif ended:
        log.info("ended %d processes", ended)
    return Result(ended, sorted(survivors))


# ------------------------------------------------------------------ cgroups


@dataclass(frozen=True)
class _Mount:
    root: str
    mountpoint: str
    fstype: str
    superopts: frozenset[str]


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts(mountinfo: str = MOUNTINFO) -> list[_Mount]:
    out = []
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise EngineError(f"cannot read {mountinfo}: {e.strerror}") from e
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        out.append(
            _Mount(
                root=_unescape(fields[3]),
                mountpoint=_unescape(fields[4]),
                fstype=tail[0],
                superopts=frozenset(tail[2].split(",")),
            )
        )
    return out


def cgroup_root(cfg_value: str, mountinfo: str = MOUNTINFO) -> str | None:
    """Where siteiso's cgroup tree lives: the configured path, else the
    first cgroup2 mount (pure v2: /sys/fs/cgroup; hybrid: e.g.
    /sys/fs/cgroup/unified), else None: the caller mounts one."""
    if cfg_value:
        if not os.path.isabs(cfg_value):
            raise SiteisoError(
                f"bad value cgroup_root = {cfg_value!r}: not an absolute path"
            )
        return os.path.normpath(cfg_value)
    for m in _mounts(mountinfo):
        if m.fstype == "cgroup2":
            return m.mountpoint
    return None


def ensure_cgroup(path: str) -> None:
    """Create the cgroup at path and any missing parents."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise EngineError(f"cannot create cgroup {path}: {e.strerror}") from e


def remove_cgroup_tree(path: str) -> None:
    """rmdir path and every cgroup below it, deepest first. A part that is
    already gone is fine; one that still holds processes is an error."""
    try:
        children = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    except OSError as e:
        raise EngineError(f"cannot list cgroup {path}: {e.strerror}") from e
    for child in children:
        remove_cgroup_tree(child)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        hint = " (processes are still in it)" if e.errno == errno.EBUSY else ""
        raise EngineError(f"cannot remove cgroup {path}: {e.strerror}{hint}") from e


def _walk_cgroups(path: str) -> Iterator[str]:
    yield path
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_cgroups(entry.path)


def cgroup_pids(path: str) -> list[int]:
    """Every pid in the cgroup at path and below it; [] when it is gone."""
    pids: list[int] = []
    for cg in _walk_cgroups(path):
        try:
            with open(os.path.join(cg, "cgroup.procs"), encoding="ascii") as f:
                pids.extend(int(line) for line in f if line.strip())
        except FileNotFoundError:
            continue
    return pids


@dataclass(frozen=True)
class _Hierarchy:
    """How /proc/<pid>/cgroup names the cgroup at a path: the line's
    hierarchy (v2: "0" with no controllers) and the path within it."""

    v2: bool
    controllers: frozenset[str]
    relpath: str

    def holds(self, cgroup_file: Iterable[str]) -> bool:
        for line in cgroup_file:
            hid, ctrl, cpath = line.rstrip("\n").split(":", 2)
            if self.v2 != (hid == "0" and ctrl == ""):
                continue
            if not self.v2 and not set(ctrl.split(",")) <= self.controllers:
                continue
            if _under(cpath, self.relpath):
                return True
        return False


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _hierarchy(path: str) -> _Hierarchy:
    path = os.path.realpath(path)
    best: _Mount | None = None
    for m in _mounts():
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        deeper = best is None or len(m.mountpoint) > len(best.mountpoint)
        if deeper and _under(path, m.mountpoint):
            best = m
    if best is None:
        raise EngineError(f"cannot use {path} as a cgroup: not on a cgroup file system")
    below = os.path.relpath(path, best.mountpoint)
    rel = os.path.normpath(os.path.join(best.root, "" if below == "." else below))
    return _Hierarchy(best.fstype == "cgroup2", best.superopts, rel)


def _open_member(pid: int, hier: _Hierarchy) -> int | None:
    """A pidfd for pid when that process is (still) in the cgroup, else
    None; checked the same way as _open_confirmed, by cgroup not start time."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            member = hier.holds(f)
        if member:
            signal.pidfd_send_signal(fd, 0)
            return fd
    except (ProcessLookupError, FileNotFoundError):
        pass
    except PermissionError:
        return fd
    os.close(fd)
    return None


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as e:
        raise EngineError(f"cannot write {value!r} to {path}: {e.strerror}") from e


def _events_wait(path: str, key: str, want: str, timeout: float) -> bool:
    """Wait until cgroup.events says `key want` (kernfs wakes POLLPRI on
    every change); False when the cgroup is gone or on timeout."""
    events = os.path.join(path, "cgroup.events")
    try:
        fd = os.open(events, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return key == "populated" and want == "0"
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        deadline = time.monotonic() + timeout
        while True:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 4096).decode("ascii", "replace")
            if f"\n{key} {want}\n" in f"\n{text}":
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(int(left * 1000) + 1)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV):
            return key == "populated" and want == "0"
        raise
    finally:
        os.close(fd)


def _kill_members(path: str, hier: _Hierarchy) -> None:
    with contextlib.ExitStack() as stack:
        live = {}
        for pid in cgroup_pids(path):
            fd = _open_member(pid, hier)
            if fd is not None:
                stack.callback(os.close, fd)
                live[fd] = pid
        _signal_all(live, signal.SIGKILL)


def _kill_method(path: str) -> str:
    """How to end what is left: "kill" (cgroup.kill, Linux 5.14), "freeze"
    (freeze, kill each, thaw; 5.2) or "signal" (kill rounds: v1).
    SITEISO_FORCE_MISSING=cgroup_kill takes the freeze path on a kernel
    that has cgroup.kill (SPEC §9: every fallback is tested)."""
    has_kill = os.path.exists(os.path.join(path, "cgroup.kill"))
    if has_kill and not platform.forced_missing("cgroup_kill"):
        return "kill"
    if os.path.exists(os.path.join(path, "cgroup.freeze")):
        return "freeze"
    return "signal"


def _finish(path: str, hier: _Hierarchy, kill_wait: float) -> None:
    """SIGKILL everything still in the subtree, including what was forked
    during the grace period."""
    method = _kill_method(path)
    if method == "kill":
        _write(os.path.join(path, "cgroup.kill"), "1")
    elif method == "freeze":
        _freeze_and_kill(path, hier, kill_wait)
    else:
        # Limitation: without a freezer a process that forks in a tight loop
        # may outrun the rounds until kill_wait ends.
        deadline = time.monotonic() + kill_wait
        while cgroup_pids(path) and time.monotonic() < deadline:
            _kill_members(path, hier)
            time.sleep(0.02)


def _freeze_and_kill(path: str, hier: _Hierarchy, kill_wait: float) -> None:
    # Frozen tasks cannot fork; a fatal signal still ends them (v2 freezer).
    _write(os.path.join(path, "cgroup.freeze"), "1")
    try:
        _events_wait(path, "frozen", "1", kill_wait)
        _kill_members(path, hier)
    finally:
        with contextlib.suppress(EngineError):
            _write(os.path.join(path, "cgroup.freeze"), "0")


def _wait_empty(path: str, hier: _Hierarchy, timeout: float) -> bool:
    if hier.v2:
        return _events_wait(path, "populated", "0", timeout)
    deadline = time.monotonic() + timeout
    while cgroup_pids(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def kill_cgroup(path: str, grace: float, *, kill_wait: float = KILL_WAIT) -> Result:
    """End every process in the cgroup at path and below it: SIGTERM each
    through a pidfd, wait up to `grace` seconds for the subtree to empty,
    then SIGKILL all that is left (forked meanwhile included) and wait up
    to `kill_wait`. A cgroup that is gone has nothing to end. `ended`
    counts the processes that got SIGTERM and are gone; survivors are the
    pids still in the subtree."""
    if not os.path.isdir(path):
        return Result(0)
    hier = _hierarchy(path)
    signalled: set[int] = set()
    for pid in cgroup_pids(path):
        # One pidfd at a time: the wait below watches the cgroup, not them.
        fd = _open_member(pid, hier)
        if fd is None:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
            signalled.add(pid)
        except ProcessLookupError:
            signalled.add(pid)
        except PermissionError:
            log.warning("cannot send SIGTERM to process %d: not permitted", pid)
        finally:
            os.close(fd)
    if not _wait_empty(path, hier, grace):
        _finish(path, hier, kill_wait)
        _wait_empty(path, hier, kill_wait)
    survivors = sorted(cgroup_pids(path))
    ended = len(signalled - set(survivors))
    if survivors:
        log.warning(
            "cgroup %s: %d processes survived SIGKILL: %s",
            path,
            len(survivors),
            " ".join(map(str, survivors)),
        )
    elif ended:
        log.info("cgroup %s: ended %d processes", path, ended)
    return Result(ended, survivors)
