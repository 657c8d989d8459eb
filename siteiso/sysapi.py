"""Typed wrappers over siteiso._sys, and descriptor-based path resolution.

Everything under a home is controlled by its user (SPEC §4.4). Root never
checks a path string and then reuses it: it opens from the home's
descriptor with openat2 and checks owner and type on what it opened.
Three entry points do that here:

- open_beneath: one relative path, no symlink anywhere on it.
- resolve_docroot: a panel's docroot, following symlinks once as long as
  they stay inside the home; returns the canonical path and a descriptor.
- ensure_dir_beneath: create per-site storage as root, never following a
  symlink, handing each new directory to the user by descriptor.

Every descriptor returned here is close-on-exec and belongs to the caller.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Literal

from siteiso._sys import ffi as _ffi
from siteiso._sys import lib as _lib
from siteiso.errors import UnsafePath

# Kernel ABI (include/uapi/linux/openat2.h); tests compare them with the headers.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# How root walks a user's home: stay beneath it, no symlink, no /proc magic
# link, no mount crossing.
RESOLVE_HOME = (
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
)

O_PATH = os.O_PATH
AT_FDCWD = -100
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000
CLOSE_RANGE_CLOEXEC = 1 << 2
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000

# The kernel's own limit on symlinks in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40

# openat2 says EAGAIN when a rename or mount raced a ".." step under
# RESOLVE_BENEATH; trying again is the documented answer.
_EAGAIN_TRIES = 8

Want = Literal["dir", "file"]


def _fspath(path: str | bytes) -> bytes:
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ValueError(f"embedded null byte in path {path!r}")
    return raw


def _check(ret: int, path: str | bytes | None = None) -> int:
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret), path)
    return ret


# ---- thin wrappers: OSError with errno and path ------------------------


def openat2(
    dirfd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0
) -> int:
    """openat2(2). O_CLOEXEC is always added, as os.open does."""
    raw = _fspath(path)
    flags |= os.O_CLOEXEC
    for _ in range(_EAGAIN_TRIES):
        ret = _lib.siteiso_openat2(dirfd, raw, flags, mode, resolve)
        if ret != -errno.EAGAIN:
            break
    return _check(ret, path)


def open_tree(dirfd: int, path: str | bytes, flags: int) -> int:
    """open_tree(2). OPEN_TREE_CLOEXEC is always added."""
    return _check(
        _lib.siteiso_open_tree(dirfd, _fspath(path), flags | OPEN_TREE_CLOEXEC), path
    )


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """close_range(2); OSError(ENOSYS) where the kernel lacks it."""
    _check(_lib.siteiso_close_range(first, last, flags))


def close_fds_from(first: int) -> None:
    """Close every descriptor >= first: close_range, else one by one."""
    ret = _lib.siteiso_close_range(first, 0xFFFFFFFF, 0)
    if ret == 0:
        return
    if ret not in (-errno.ENOSYS, -errno.EPERM):
        _check(ret)
    # Fallback (platform probe close_range): list our own fds, then close.
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.close(fd)
            except OSError as e:
                # The listing's own descriptor is gone by now.
                if e.errno != errno.EBADF:
                    raise


def pidfd_open(pid: int, flags: int = 0) -> int:
    return _check(_lib.siteiso_pidfd_open(pid, flags), f"pid {pid}")


def pidfd_getfd(pidfd: int, targetfd: int, flags: int = 0) -> int:
    return _check(_lib.siteiso_pidfd_getfd(pidfd, targetfd, flags))


# ---- probes: 0 when the feature works, else a positive errno -------------
# Each runs in a throwaway child (see native/sys_build.py).

NOT_TRIED = int(_lib.SITEISO_NOT_TRIED)
SHARED_SUPERBLOCK = int(_lib.SITEISO_SHARED_SB)
MOUNTNS_STEPS = ("unshare", "fsmount", "move_mount", "open_tree", "setattr", "proc")


def _probe_result(ret: int) -> int:
    return -ret if ret < 0 else ret


def probe_setns_pidfd() -> int:
    return _probe_result(_lib.siteiso_probe_setns_pidfd())


def probe_clone3(cgroup_fd: int = -1) -> int:
    return _probe_result(_lib.siteiso_probe_clone3(cgroup_fd))


def probe_seccomp_filter() -> int:
    return _probe_result(_lib.siteiso_probe_seccomp_filter())


def seccomp_action_avail(action: int) -> int:
    return _probe_result(_lib.siteiso_seccomp_action_avail(action))


def probe_mountns(target: str) -> dict[str, int]:
    """Mount probes in a child with a private mount namespace.

    Maps each of MOUNTNS_STEPS to 0 (works), a positive errno, NOT_TRIED,
    or for "proc" SHARED_SUPERBLOCK. Raises OSError if the child failed.
    """
    results = _ffi.new("int[]", int(_lib.SITEISO_MP_N))
    _check(_lib.siteiso_probe_mountns(_fspath(target), results, _lib.SITEISO_MP_N))
    order = (
        _lib.SITEISO_MP_UNSHARE,
        _lib.SITEISO_MP_FSMOUNT,
        _lib.SITEISO_MP_MOVE_MOUNT,
        _lib.SITEISO_MP_OPEN_TREE,
        _lib.SITEISO_MP_SETATTR,
        _lib.SITEISO_MP_PROC,
    )
    return {
        name: _probe_result(int(results[i]))
        for name, i in zip(MOUNTNS_STEPS, order, strict=True)
    }


# ---- descriptions for messages (never used to decide anything) ----------


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "an unknown kind of file"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _fd_path(fd: int) -> str:
    """Where a descriptor points, for messages only."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


class _Shown:
    """A path for messages, worked out only when a message needs it (the
    path of a descriptor costs a readlink; a remount of every user makes
    tens of thousands of directories and says nothing)."""

    def __init__(self, fd: int, rel: str) -> None:
        self.fd, self.rel = fd, rel

    def __str__(self) -> str:
        return _join(_fd_path(self.fd), self.rel)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _join(base: str, rel: str) -> str:
    rel = rel.strip("/")
    if not rel or rel == ".":
        return base
    return base.rstrip("/") + "/" + rel


def _expected(want: Want, uid: int) -> str:
    what = "a directory" if want == "dir" else "a regular file"
    return f"expected {what} owned by {_user_name(uid)}"


def _diagnose(home_fd: int, relpath: str, shown: str) -> str:
    """Say which component of relpath stops a RESOLVE_HOME lookup."""
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    cur = home_fd
    done: list[str] = []
    with ExitStack() as stack:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = "it" if last else _join(shown, "/".join([*done, part]))
            try:
                fd = openat2(cur, part, O_PATH | os.O_NOFOLLOW, resolve=RESOLVE_HOME)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return f"{where} does not exist"
                if e.errno == errno.EXDEV:
                    if part == "..":
                        return f"{where} leads out of {_fd_path(home_fd)}"
                    return f"{where} is a mount point"
                return f"{where}: {os.strerror(e.errno or 0)}"
            stack.callback(os.close, fd)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                return f"{where} is a symlink"
            if not last and not stat.S_ISDIR(st.st_mode):
                return f"{where} is {_kind(st.st_mode)}, not a directory"
            done.append(part)
            cur = fd
    return "it changed while being checked"


# ---- open_beneath ---------------------------------------------------------


def _reopen(fd: int, want: Want, flags: int) -> int:
    """A descriptor with real access flags on the object fd already pins."""
    if flags & (os.O_CREAT | os.O_TRUNC | os.O_EXCL):
        raise ValueError("open_beneath opens existing objects only")
    flags = (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC
    if want == "dir":
        return os.open(".", flags | os.O_DIRECTORY, dir_fd=fd)
    # The magic link names the inode fd holds, not a path to resolve again.
    return os.open(f"/proc/self/fd/{fd}", flags)


def open_beneath(
    home_fd: int, relpath: str, *, want: Want, uid: int, flags: int = O_PATH
) -> int:
    """Open relpath beneath home_fd, no symlinks; check owner and type.

    Returns a descriptor (O_PATH unless flags say otherwise); raises
    UnsafePath naming the path and what is wrong.
    """
    shown = _join(_fd_path(home_fd), relpath)
    try:
        fd = openat2(home_fd, relpath, O_PATH, resolve=RESOLVE_HOME)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EXDEV, errno.ENOENT, errno.ENOTDIR):
            problem = _diagnose(home_fd, relpath, _fd_path(home_fd))
        else:
            problem = os.strerror(e.errno or 0)
        raise UnsafePath(f"refusing {shown}: {problem} ({_expected(want, uid)})") from e

    try:
        st = os.fstat(fd)
        is_dir = stat.S_ISDIR(st.st_mode)
        if (want == "dir") != is_dir or not (is_dir or stat.S_ISREG(st.st_mode)):
            raise UnsafePath(
                f"refusing {shown}: it is {_kind(st.st_mode)} ({_expected(want, uid)})"
            )
        if st.st_uid != uid:
            raise UnsafePath(
                f"refusing {shown}: it is owned by {_user_name(st.st_uid)} "
                f"({_expected(want, uid)})"
            )
        if flags & O_PATH:
            return fd
        reopened = _reopen(fd, want, flags)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return reopened


# ---- resolve_docroot -----------------------------------------------------


def _clean_abs(path: str, what: str) -> list[str]:
    """Components of an absolute path given as data; refuses "..", NUL."""
    if not path.startswith("/"):
        raise UnsafePath(f"refusing {what} {path}: not an absolute path")
    if "\0" in path:
        raise UnsafePath(f"refusing {what} {path!r}: it contains a NUL byte")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"refusing {what} {path}: it contains '..'")
    return parts


def open_home(home: str, uid: int) -> int:
    """O_PATH descriptor of a home: reached without symlinks, owned by uid."""
    parts = _clean_abs(home, "home")
    canonical = "/" + "/".join(parts)
    try:
        fd = openat2(
            AT_FDCWD,
            canonical,
            O_PATH | os.O_DIRECTORY,
            resolve=RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        )
    except OSError as e:
        raise UnsafePath(
            f"refusing home {canonical}: {os.strerror(e.errno or 0)}"
            " (a home must be a real directory, reached without symlinks)"
        ) from e
    st = os.fstat(fd)
    if st.st_uid != uid:
        os.close(fd)
        raise UnsafePath(
            f"refusing home {canonical}: it is owned by {_user_name(st.st_uid)}"
            f" (expected {_user_name(uid)})"
        )
    return fd


class _Walk:
    """Component-by-component resolution of a docroot beneath a home."""

    def __init__(self, home: str, home_fd: int, docroot: str) -> None:
        self.home = home
        self.docroot = docroot
        # fds[i] is the directory for names[:i]; fds[0] is the home (not ours).
        self.fds: list[int] = [home_fd]
        self.names: list[str] = []
        self.links = 0

    def close(self) -> None:
        for fd in self.fds[1:]:
            os.close(fd)
        del self.fds[1:]

    def here(self, name: str | None = None) -> str:
        parts = self.names if name is None else [*self.names, name]
        return _join(self.home, "/".join(parts))

    def refuse(self, problem: str) -> UnsafePath:
        return UnsafePath(f"refusing docroot {self.docroot}: {problem}")

    def up(self, via: str) -> None:
        if not self.names:
            raise self.refuse(f"the symlink {via} leads out of the home {self.home}")
        os.close(self.fds.pop())
        self.names.pop()

    def step(self, name: str, dangling: str | None) -> str | None:
        """Enter name; returns a symlink's target instead of entering it."""
        path = self.here(name)
        try:
            fd = openat2(
                self.fds[-1], name, O_PATH | os.O_NOFOLLOW, resolve=RESOLVE_HOME
            )
        except OSError as e:
            if e.errno == errno.ENOENT and dangling:
                raise self.refuse(
                    f"the symlink {dangling} dangles ({path} does not exist)"
                ) from e
            if e.errno == errno.ENOENT:
                raise self.refuse(f"{path} does not exist") from e
            if e.errno == errno.EXDEV:
                raise self.refuse(
                    f"{path} is a mount point (docroots may not cross mounts)"
                ) from e
            raise self.refuse(f"cannot open {path}: {os.strerror(e.errno or 0)}") from e
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self.fds.append(fd)
            self.names.append(name)
            return None
        try:
            if not stat.S_ISLNK(st.st_mode):
                raise self.refuse(f"{path} is {_kind(st.st_mode)}, not a directory")
            self.links += 1
            if self.links > MAX_SYMLINKS:
                raise self.refuse(f"more than {MAX_SYMLINKS} symlinks")
            # readlinkat on the O_PATH descriptor: the link we just checked.
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)


def resolve_docroot(home: str, docroot: str, uid: int) -> tuple[str, int]:
    """Resolve a docroot inside its owner's home (SPEC §4.4, §4.6).

    Symlinks on the way are followed once, here, if their targets stay in
    the home; at most MAX_SYMLINKS. Returns the canonical path (no symlink
    on it) and an O_PATH descriptor of the directory, opened from the home
    descriptor along that path with no symlink allowed, owned by uid.
    """
    home_parts = _clean_abs(home, "home")
    home = "/" + "/".join(home_parts)
    doc_parts = _clean_abs(docroot, "docroot")
    if doc_parts[: len(home_parts)] != home_parts:
        raise UnsafePath(
            f"refusing docroot {docroot}: it is not inside the home {home}"
        )
    rel = doc_parts[len(home_parts) :]
    if not rel:
        raise UnsafePath(f"refusing docroot {docroot}: it is the home itself")

    home_fd = open_home(home, uid)
    try:
        walk = _Walk(home, home_fd, docroot)
        try:
            canonical_rel, walked = _resolve(walk, rel)
        finally:
            walk.close()

        # Open again along the canonical path with no symlink allowed: the
        # path returned and the descriptor returned name the same directory.
        fd = open_beneath(home_fd, canonical_rel, want="dir", uid=uid)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != walked:
            os.close(fd)
            raise UnsafePath(
                f"refusing docroot {docroot}: it changed while being resolved"
            )
        return _join(home, canonical_rel), fd
    finally:
        os.close(home_fd)


def _resolve(walk: _Walk, rel: list[str]) -> tuple[str, tuple[int, int]]:
    # Pending names, last first. Names that come from a symlink's target
    # carry "link -> target", to name the link when it leads out or dangles.
    pending: list[tuple[str, str | None, bool]] = [
        (name, None, False) for name in reversed(rel)
    ]
    while pending:
        name, link, last = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            walk.up(link or walk.here())
            continue
        link_path = walk.here(name)
        target = walk.step(name, link if last else None)
        if target is None:
            continue
        link = f"{link_path} -> {target}"
        parts = [p for p in target.split("/") if p not in ("", ".")]
        if target.startswith("/"):
            home_parts = [p for p in walk.home.split("/") if p]
            if parts[: len(home_parts)] != home_parts:
                raise walk.refuse(
                    f"the symlink {link} leads outside the home {walk.home}"
                )
            while walk.names:
                walk.up(link)
            parts = parts[len(home_parts) :]
        pending.extend(
            (p, link, i == len(parts) - 1) for i, p in reversed(list(enumerate(parts)))
        )
    if not walk.names:
        raise walk.refuse("it resolves to the home itself")
    st = os.fstat(walk.fds[-1])
    return "/".join(walk.names), (st.st_dev, st.st_ino)


# ---- ensure_dir_beneath --------------------------------------------------


@contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _check_existing(fd: int, shown: str | _Shown, uid: int) -> None:
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        what = (
            f"it is {_kind(st.st_mode)}"
            if not stat.S_ISDIR(st.st_mode)
            else f"it is owned by {_user_name(st.st_uid)}"
        )
        raise UnsafePath(
            f"refusing {shown}: {what} (expected a directory owned by "
            f"{_user_name(uid)})"
        )


def _adopt_new(
    parent_fd: int, name: str, shown: str | _Shown, uid: int, gid: int, mode: int
) -> None:
    """Hand a directory just made to the user, by descriptor."""
    dfd = openat2(
        parent_fd,
        name,
        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
        resolve=RESOLVE_HOME,
    )
    with _closing(dfd):
        st = os.fstat(dfd)
        if st.st_uid == os.geteuid() and not os.listdir(dfd):
            os.fchown(dfd, uid, gid)
            os.fchmod(dfd, mode)
        elif st.st_uid != uid:
            # Not the empty directory we made, nor one of the user's own.
            raise UnsafePath(f"refusing {shown}: it was replaced while being created")


def ensure_dir_beneath(
    home_fd: int, relpath: str, uid: int, gid: int, mode: int
) -> int:
    """Make relpath beneath home_fd a directory tree owned by uid; return it.

    Missing components are created as root with mkdirat on descriptors,
    then given to uid:gid with the mode through a descriptor of the new
    directory. A symlink is never followed; an existing component that is
    not a directory owned by uid is refused, except that a tree already
    there whose last directory is uid's (reached without a link or a mount)
    is taken as it is: nothing is made or changed in it, and what root then
    puts there is the user's own directory's. Returns an O_PATH descriptor
    of the last directory.
    """
    if relpath.startswith("/") or "\0" in relpath:
        raise UnsafePath(f"refusing {relpath!r}: expected a relative path")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(f"refusing {relpath!r}: expected a path below the home")

    # Most of the time the tree is there: one lookup of the whole path
    # (no symlink, no mount crossed) and the last directory the user's is
    # enough. Anything else takes the walk, which makes or explains it.
    try:
        fd = openat2(home_fd, "/".join(parts), O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW,
                     resolve=RESOLVE_HOME)
    except OSError:
        pass
    else:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid:
            return fd
        os.close(fd)
    cur = home_fd
    with ExitStack() as stack:
        for i, name in enumerate(parts):
            shown = _Shown(home_fd, "/".join(parts[: i + 1]))
            fd = _open_or_make(cur, name, shown, uid, gid, mode)
            stack.callback(os.close, fd)
            cur = fd
        # The last one outlives the stack.
        return os.open(".", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cur)


def _open_or_make(
    parent_fd: int, name: str, shown: str | _Shown, uid: int, gid: int, mode: int
) -> int:
    for _ in range(3):
        try:
            fd = openat2(parent_fd, name, O_PATH | os.O_NOFOLLOW, resolve=RESOLVE_HOME)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise UnsafePath(f"refusing {shown}: it is a mount point") from e
            if e.errno != errno.ENOENT:
                raise UnsafePath(
                    f"refusing {shown}: {os.strerror(e.errno or 0)}"
                ) from e
        else:
            try:
                _check_existing(fd, shown, uid)
            except BaseException:
                os.close(fd)
                raise
            return fd

        try:
            # 0700 root-owned until handed over: nobody else can use it yet.
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            continue  # raced: look again at what is there now
        _adopt_new(parent_fd, name, shown, uid, gid, mode)
    raise UnsafePath(f"refusing {shown}: it keeps changing while being created")
