"""Kernel feature probes (SPEC §9): probe what the kernel does, never its version.

Each probe makes the call siteiso will make, in a way that changes nothing:
the calls that need a child (setns, clone3, seccomp, mounts) run in a
throwaway one, and mount probes only inside that child's private mount
namespace. A missing feature either has a fallback (used, and shown by
`siteiso doctor`) or is required: then enable refuses with
errors.KernelUnsupported, naming every such feature.

SITEISO_FORCE_MISSING=name,name (tests) makes the named probes report
missing without running them, and the Python code with a fallback take it
(forced_missing, available). The fallbacks in the C programs are forced
the way an old kernel shows them: tests/tools/nosys answers their system
calls with ENOSYS.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from siteiso.errors import KernelUnsupported

try:
    from siteiso import sysapi

    _NATIVE_ERROR: str | None = None
except ImportError as e:
    # doctor still lists every probe when the native module is not built.
    _NATIVE_ERROR = f"native module not built: {e}"

FORCE_ENV = "SITEISO_FORCE_MISSING"


@dataclass(frozen=True)
class Probe:
    name: str
    ok: bool
    detail: str
    # What siteiso does instead when the feature is missing; None when it
    # has no safe substitute (required) or nothing depends on it (info).
    fallback: str | None
    required: bool


# name -> (fallback when missing, required). Order is the doctor's order.
FALLBACKS: dict[str, tuple[str | None, bool]] = {
    "openat2": (None, True),
    "pidfd_open": (None, True),
    "pidfd_getfd": (None, True),
    "setns_pidfd": (None, True),
    "new_mount_api": (None, True),
    # A per-mount remount walk would race with mounts the host adds to a
    # view (views are slaves of the host): no safe substitute.
    "mount_setattr": (None, True),
    "close_range": ("the entry closes inherited descriptors one by one", False),
    "clone_into_cgroup": (
        "fork, then the child joins the site's cgroup (cgroup.procs) before exec",
        False,
    ),
    # Without per-mount procfs options a hidepid mount would reconfigure the
    # host's /proc. Sites do not need it: each has its own PID namespace and
    # /proc. Only the user cage loses it.
    "proc_hidepid": (
        "the user cage shows /proc as the host does (no hidepid); each site "
        "still sees only its own processes (private PID namespace)",
        False,
    ),
    # Where no cgroup2 is mounted (hybrid and v1 hosts) siteiso mounts one
    # itself (the probe says so and passes). Only a kernel without cgroup2
    # (< 4.5, older than any supported distribution) fails it: the holder,
    # CLONE_INTO_CGROUP and the freezer all need a v2 hierarchy, and a v1
    # one cannot contain a site, so there is no fallback.
    "cgroup2": (None, True),
    "cgroup_kill": (
        "freeze the site's cgroup, SIGKILL every member, thaw; repeat until empty",
        False,
    ),
    "seccomp_filter": (None, True),
    # Informational: sites are denied user namespaces by the seccomp filter
    # whatever this says.
    "unprivileged_userns": (None, False),
}

NAMES = tuple(FALLBACKS)


def _forced() -> set[str]:
    return {n.strip() for n in os.environ.get(FORCE_ENV, "").split(",") if n.strip()}


def forced_missing(name: str) -> bool:
    """True when SITEISO_FORCE_MISSING names the feature: code with a
    fallback takes it even though the kernel has the feature, so tests
    exercise the fallback on a new kernel. Read by siteiso's own (root)
    processes; the setuid entry never reads the environment for this."""
    return name in _forced()


_AVAILABLE: dict[str, bool] = {}


def available(name: str) -> bool:
    """Whether one feature works here, for code that chooses its fallback.
    Probed once per process (the kernel does not change under it); a forced
    name is missing whatever the kernel has."""
    if forced_missing(name):
        return False
    if name not in _AVAILABLE:
        _AVAILABLE[name] = _run(name, set(), _Run()).ok
    return _AVAILABLE[name]


def _why(err: int) -> str:
    name = errno.errorcode.get(err, str(err))
    return f"{name}: {os.strerror(err)}"


def _root() -> bool:
    return os.geteuid() == 0


# ---- file-based facts ------------------------------------------------------


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of this mount namespace."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) >= 5 and len(rfields) >= 3:
                point = _unescape(fields[4])
                out.append((point, rfields[0], rfields[2]))
    return out


def cgroup2_mount() -> str | None:
    """Where cgroup2 is mounted here (the shortest such path), if anywhere."""
    points = sorted((p for p, fstype, _ in _mounts() if fstype == "cgroup2"), key=len)
    return points[0] if points else None


def own_cgroup_dir(mount: str) -> str | None:
    """This process's cgroup v2 directory under mount, if it can be found."""
    rel = None
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            if line.startswith("0::"):
                rel = line[3:].strip() or "/"
    if rel is None:
        return None
    path = os.path.normpath(mount + "/" + rel)
    # A mount of another cgroup namespace's root may not show our cgroup.
    return path if os.path.isdir(path) else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


# ---- the probes ------------------------------------------------------------
# Each returns (ok, detail).

Result = tuple[bool, str]


@dataclass
class _Run:
    """One probe_all(): the mount namespace child runs once for three probes."""

    mountns: dict[str, int] | str | None = field(default=None)

    def mount_results(self) -> dict[str, int] | str:
        """The child's results, or why it could not run."""
        if self.mountns is None:
            try:
                self.mountns = sysapi.probe_mountns(_mount_target())
            except OSError as e:
                self.mountns = f"probe child failed: {_why(e.errno or 0)}"
        res = self.mountns
        if isinstance(res, str) or res["unshare"] == 0:
            return res
        err = res["unshare"]
        if not _root():
            return f"not probed: needs root ({_why(err)})"
        return f"cannot make a private mount namespace to probe in ({_why(err)})"


def probe_openat2(run: _Run) -> Result:
    try:
        fd = sysapi.openat2(
            sysapi.AT_FDCWD,
            "/",
            os.O_PATH | os.O_DIRECTORY,
            resolve=sysapi.RESOLVE_NO_SYMLINKS,
        )
    except OSError as e:
        return False, f"openat2: {_why(e.errno or 0)}"
    try:
        # The home walk's resolve flags, beneath "/".
        os.close(sysapi.openat2(fd, ".", os.O_PATH, resolve=sysapi.RESOLVE_HOME))
    except OSError as e:
        return (
            False,
            f"RESOLVE_BENEATH|NO_SYMLINKS|NO_MAGICLINKS|NO_XDEV: {_why(e.errno or 0)}",
        )
    finally:
        os.close(fd)
    return True, "RESOLVE_BENEATH, NO_SYMLINKS, NO_MAGICLINKS, NO_XDEV accepted"


def probe_pidfd_open(run: _Run) -> Result:
    try:
        os.close(sysapi.pidfd_open(os.getpid()))
    except OSError as e:
        return False, _why(e.errno or 0)
    return True, "pidfd of this process opened"


def probe_pidfd_getfd(run: _Run) -> Result:
    try:
        pidfd = sysapi.pidfd_open(os.getpid())
    except OSError as e:
        return False, f"no pidfd to try it with ({_why(e.errno or 0)})"
    try:
        os.close(sysapi.pidfd_getfd(pidfd, pidfd))
    except OSError as e:
        return False, _why(e.errno or 0)
    finally:
        os.close(pidfd)
    return True, "duplicated a descriptor of this process through its pidfd"


def probe_setns_pidfd(run: _Run) -> Result:
    err = sysapi.probe_setns_pidfd()
    if err == 0:
        return True, "joined a namespace through a pidfd (throwaway child)"
    if err == errno.EPERM and not _root():
        return True, "pidfd accepted; joining needs root (not probed further)"
    if err == errno.EINVAL:
        return False, "setns() does not accept a pidfd (EINVAL)"
    return False, _why(err)


def _mount_target() -> str:
    # A directory that exists everywhere; the child mounts on it only inside
    # its own private mount namespace.
    st = os.lstat("/tmp") if os.path.lexists("/tmp") else None
    return "/tmp" if st is not None and stat.S_ISDIR(st.st_mode) else "/"


def probe_new_mount_api(run: _Run) -> Result:
    res = run.mount_results()
    if isinstance(res, str):
        return False, res
    for step, what in (
        ("fsmount", "fsopen/fsconfig/fsmount"),
        ("move_mount", "move_mount"),
        ("open_tree", "open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)"),
    ):
        err = res[step]
        if err == sysapi.NOT_TRIED:
            return False, f"{what}: not tried (an earlier step failed)"
        if err:
            return False, f"{what}: {_why(err)}"
    return True, "fsopen, fsmount, move_mount, open_tree work (throwaway mount ns)"


def probe_mount_setattr(run: _Run) -> Result:
    res = run.mount_results()
    if isinstance(res, str):
        return False, res
    err = res["setattr"]
    if err == sysapi.NOT_TRIED:
        return False, "not tried: open_tree failed"
    if err:
        return False, _why(err)
    return True, "recursive read-only set on a detached tree (throwaway mount ns)"


def probe_proc_hidepid(run: _Run) -> Result:
    res = run.mount_results()
    if isinstance(res, str):
        return False, res
    err = res["proc"]
    if err == sysapi.SHARED_SUPERBLOCK:
        return False, "a new /proc mount shares the host's superblock"
    if err == errno.EINVAL:
        return False, "hidepid=invisible rejected: procfs options are not per mount"
    if err:
        return False, _why(err)
    return True, "fresh /proc with hidepid=invisible, own superblock (throwaway ns)"


def probe_close_range(run: _Run) -> Result:
    try:
        # Closes nothing: no descriptor has the highest number.
        sysapi.close_range(0xFFFFFFFF, 0xFFFFFFFF)
    except OSError as e:
        return False, _why(e.errno or 0)
    try:
        sysapi.close_range(0xFFFFFFFF, 0xFFFFFFFF, sysapi.CLOSE_RANGE_CLOEXEC)
    except OSError:
        return True, "works (without CLOSE_RANGE_CLOEXEC)"
    return True, "works, with CLOSE_RANGE_CLOEXEC"


def probe_clone_into_cgroup(run: _Run) -> Result:
    err = sysapi.probe_clone3()
    if err:
        return False, f"clone3: {_why(err)}"
    mount = cgroup2_mount()
    if mount is None:
        return False, "clone3 works; no cgroup2 mounted to clone into"
    target = own_cgroup_dir(mount)
    if target is None:
        return False, f"clone3 works; this process's cgroup is not visible in {mount}"
    try:
        cgfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        return False, f"cannot open {target}: {_why(e.errno or 0)}"
    try:
        # Into our own cgroup: the child lands where a fork would have.
        err = sysapi.probe_clone3(cgfd)
    finally:
        os.close(cgfd)
    if err == 0:
        return True, f"clone3(CLONE_INTO_CGROUP) into {target}"
    if err == errno.EBUSY:
        return True, f"flag accepted; {target} has controllers enabled (EBUSY)"
    if err in (errno.EACCES, errno.EPERM) and not _root():
        return False, f"not probed: needs root ({_why(err)})"
    if err in (errno.EINVAL, errno.E2BIG):
        return False, f"CLONE_INTO_CGROUP not supported ({_why(err)})"
    return False, _why(err)


def probe_cgroup2(run: _Run) -> Result:
    mount = cgroup2_mount()
    v1 = sorted({p for p, fstype, _ in _mounts() if fstype == "cgroup"})
    layout = "hybrid, v1 hierarchies too" if v1 else "unified"
    if mount is not None:
        ctrl = _read(os.path.join(mount, "cgroup.controllers")) or "none"
        return True, f"mounted at {mount} ({layout}; controllers: {ctrl})"
    # Mounting cgroup2 anywhere, even in a child's namespace, makes the v2
    # hierarchy visible host-wide; /proc/filesystems is enough to know.
    filesystems = _read("/proc/filesystems") or ""
    if any(line.split()[-1:] == ["cgroup2"] for line in filesystems.splitlines()):
        return True, "not mounted; the kernel offers cgroup2 (siteiso mounts it)"
    return False, "cgroup2 is not in /proc/filesystems"


def _non_root_cgroups(mount: str) -> list[str]:
    """Candidate directories below the cgroup2 root, own cgroup first."""
    found = []
    own = own_cgroup_dir(mount)
    if own is not None and own != os.path.normpath(mount):
        found.append(own)
    try:
        with os.scandir(mount) as it:
            found += [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        pass
    return found


def _kernel_has_symbol(symbol: str) -> bool:
    try:
        with open("/proc/kallsyms", encoding="ascii", errors="replace") as f:
            return any(line.rstrip("\n").endswith(" " + symbol) for line in f)
    except OSError:
        return False


def probe_cgroup_kill(run: _Run) -> Result:
    mount = cgroup2_mount()
    if mount is None:
        return False, "no cgroup2 mounted here to look for cgroup.kill"
    for cg in _non_root_cgroups(mount):
        if os.path.exists(os.path.join(cg, "cgroup.kill")):
            return True, f"{cg}/cgroup.kill exists"
        if os.path.exists(os.path.join(cg, "cgroup.procs")):
            freeze = os.path.exists(os.path.join(cg, "cgroup.freeze"))
            return False, f"{cg} has no cgroup.kill (cgroup.freeze: " + (
                "yes)" if freeze else "no)"
            )
    # The root cgroup never has the file, and creating a cgroup to look
    # would change the host: ask the kernel's symbol table instead.
    if _kernel_has_symbol("cgroup_kill_write"):
        return True, (
            "no cgroup below the root to look at; the kernel has cgroup.kill "
            "(symbol cgroup_kill_write)"
        )
    return False, "no cgroup below the root to look at; cannot tell"


def probe_seccomp_filter(run: _Run) -> Result:
    err = sysapi.probe_seccomp_filter()
    if err:
        return False, f"installing a filter: {_why(err)}"
    # The actions the entry's filter returns.
    for name, value in (
        ("SECCOMP_RET_ERRNO", sysapi.SECCOMP_RET_ERRNO),
        ("SECCOMP_RET_KILL_PROCESS", sysapi.SECCOMP_RET_KILL_PROCESS),
    ):
        err = sysapi.seccomp_action_avail(value)
        if err:
            return False, f"{name}: {_why(err)}"
    return True, "filter installs (throwaway child); RET_ERRNO, RET_KILL_PROCESS"


def probe_unprivileged_userns(run: _Run) -> Result:
    facts = []
    allowed = True
    for path, key, off in (
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "unprivileged_userns_clone",
            "0",
        ),
        ("/proc/sys/user/max_user_namespaces", "max_user_namespaces", "0"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "apparmor_restrict_unprivileged_userns",
            "1",
        ),
    ):
        value = _read(path)
        if value is not None:
            facts.append(f"{key}={value}")
            if value == off:
                allowed = False
    state = "allowed" if allowed else "restricted"
    return True, (
        f"{state} ({', '.join(facts) or 'no sysctl'}); "
        "site processes cannot create them either way (seccomp)"
    )


PROBES: dict[str, Callable[[_Run], Result]] = {
    "openat2": probe_openat2,
    "pidfd_open": probe_pidfd_open,
    "pidfd_getfd": probe_pidfd_getfd,
    "setns_pidfd": probe_setns_pidfd,
    "new_mount_api": probe_new_mount_api,
    "mount_setattr": probe_mount_setattr,
    "close_range": probe_close_range,
    "clone_into_cgroup": probe_clone_into_cgroup,
    "proc_hidepid": probe_proc_hidepid,
    "cgroup2": probe_cgroup2,
    "cgroup_kill": probe_cgroup_kill,
    "seccomp_filter": probe_seccomp_filter,
    "unprivileged_userns": probe_unprivileged_userns,
}


# Probes that read files only and work without siteiso._sys.
_FILE_PROBES = {"cgroup2", "cgroup_kill", "unprivileged_userns"}


def _run(name: str, forced: set[str], run: _Run) -> Probe:
    fallback, required = FALLBACKS[name]
    if name in forced:
        return Probe(name, False, f"forced missing by {FORCE_ENV}", fallback, required)
    if _NATIVE_ERROR is not None and name not in _FILE_PROBES:
        return Probe(name, False, _NATIVE_ERROR, fallback, required)
    try:
        ok, detail = PROBES[name](run)
    except OSError as e:
        ok, detail = False, f"probe failed: {e}"
    return Probe(name, ok, detail, fallback, required)


def probe_all() -> list[Probe]:
    """Every probe, in a fixed order; runs them all each time."""
    forced = _forced()
    run = _Run()
    return [_run(name, forced, run) for name in NAMES]


def missing_required(probes: list[Probe] | None = None) -> list[Probe]:
    probes = probe_all() if probes is None else probes
    return [p for p in probes if p.required and not p.ok]


CACHE = "/run/siteiso/probes"


def _machine_key() -> str:
    boot = _read("/proc/sys/kernel/random/boot_id") or ""
    return f"{boot.strip()} {os.uname().release}"


def require_for_enable() -> None:
    """Raise KernelUnsupported naming every missing feature with no fallback.

    The kernel does not change under a running system: the verdict is kept
    in /run/siteiso (gone at reboot) and keyed by boot id and release, so
    enable does not pay for the probes each time. A forced probe
    (SITEISO_FORCE_MISSING) always probes afresh."""
    key = _machine_key()
    forced = bool(_forced())
    if not forced:
        cached = (_read(CACHE) or "").split("\n", 1)
        if cached[0] == key:
            names = cached[1].strip() if len(cached) > 1 else ""
            if names:
                raise KernelUnsupported(f"missing: {names} (see 'siteiso doctor')")
            return
    missing = missing_required()
    names = ", ".join(p.name for p in missing)
    if not forced and os.geteuid() == 0:
        try:
            os.makedirs(os.path.dirname(CACHE), mode=0o711, exist_ok=True)
            with open(CACHE + ".tmp", "w", encoding="utf-8") as f:
                f.write(f"{key}\n{names}\n")
            os.rename(CACHE + ".tmp", CACHE)
        except OSError:
            pass
    if missing:
        raise KernelUnsupported(f"missing: {names} (see 'siteiso doctor')")


def doctor_rows() -> list[tuple[str, str, str, bool]]:
    """One row a probe: (status, name, detail, fatal); fatal when enable
    refuses without it."""
    rows = []
    for p in probe_all():
        detail = p.detail
        if not p.ok:
            if p.fallback:
                detail += f" (fallback: {p.fallback})"
            elif p.required:
                detail += " (required: enable refuses without it)"
        rows.append(("ok" if p.ok else "MISSING", p.name, detail,
                     not p.ok and p.required and not p.fallback))
    unknown = sorted(_forced() - set(NAMES))
    if unknown:
        rows.append(("note", FORCE_ENV, f"names unknown probes: {', '.join(unknown)}",
                     False))
    return rows


def format_rows(rows: list[tuple[str, str, str, bool]]) -> list[str]:
    """`status  name  detail` lines, the columns one width throughout."""
    width = max((len(r[1]) for r in rows), default=0)
    return [f"{status:<7} {name:<{width}}  {detail}"
            for status, name, detail, _ in rows]


def doctor_lines() -> list[str]:
    """One line a probe: `ok      name  detail` or `MISSING name  detail (…)`."""
    return format_rows(doctor_rows())
