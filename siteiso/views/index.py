"""The index in /run/siteiso/index/<uid> that the setuid entry reads.

Format: native/README.md. Written by root only, atomically (temp + rename),
mode 0600, so the entry sees the old or the new set of holders.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from siteiso import paths

MAX_ALIASES = 8   # INDEX_MAX_ALIASES of native/util.h


@dataclass(frozen=True)
class Holder:
    kind: str          # site | retired | cage
    token: str         # "-" for the cage
    pid: int
    starttime: int
    pidns: int
    mntns: int
    docroot: str = "-"
    names: str = "-"
    ini_dir: str = "-"
    # The docroot as the web server names it, where a symlink on the way
    # makes that another path; the entry accepts DOCUMENT_ROOT equal to it.
    aliases: tuple[str, ...] = ()

    def line(self) -> str:
        return "\t".join(str(x) for x in (
            self.kind, self.token, self.pid, self.starttime, self.pidns,
            self.mntns, self.docroot, self.names, self.ini_dir, *self.aliases))

    def alive(self) -> bool:
        return starttime(self.pid) == self.starttime


def starttime(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat, or 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[19])


def ns_inode(pid: int | str, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def index_path(uid: int) -> str:
    return f"{paths.INDEX}/{uid}"


def read(uid: int) -> list[Holder]:
    try:
        with open(index_path(uid), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        v = line.split("\t")
        if v[0] in ("site", "retired", "cage") and len(v) >= 9:
            out.append(Holder(v[0], v[1], int(v[2]), int(v[3]), int(v[4]),
                              int(v[5]), v[6], v[7], v[8], tuple(v[9:])))
    return out


def write(uid: int, holders: list[Holder]) -> None:
    ensure_run_dirs()
    host = f"host\t{ns_inode(1, 'pid')}\t{ns_inode(1, 'mnt')}"
    text = "\n".join([host, *(h.line() for h in holders)]) + "\n"
    path = index_path(uid)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def remove(uid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(index_path(uid))


def known_uids() -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(paths.INDEX) if n.isdigit())
    except FileNotFoundError:
        return []


def ensure_run_dirs() -> None:
    for d, mode in ((paths.RUN, 0o711), (paths.INDEX, 0o700), (paths.VIEWS, 0o700)):
        os.makedirs(d, mode=mode, exist_ok=True)
        os.chmod(d, mode)
