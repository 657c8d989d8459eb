"""The host's own php-fpm pools (the panel's, or the admin's), as data.

A pool that runs as a hosting account outside every view, on a socket the
account may connect to, is a way out of a site view: the site's PHP (same
uid) connects and has the pool run a script of its choice, as the account,
outside the view (SPEC §4.3 "no way around"). siteiso does not manage
these pools; it reads their files to hide their sockets in the account's
site views (siteiso.plan.view) and to let `siteiso doctor` name the pools
it cannot hide (TCP listeners, sockets in homes).

The files are root's (/etc, /opt), but their values are data: a `listen`
path may point into a home or through symlinks. Nothing here opens a path
a pool names, and only system paths outside the homes are resolved.
"""

from __future__ import annotations

import glob
import grp
import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from siteiso.textfile import text_lines

MAX_FILE = 1 << 20
# Where a site view needs its own content: a directory above one of these is
# never covered, whatever a pool puts in it.
_NEEDED = ("/run/siteiso", "/run/user", "/run/mysqld", "/run/postgresql",
           "/var/lib/php/sessions", "/var/spool", "/var/log", "/var/lib/mysql",
           "/dev", "/tmp", "/var/tmp", "/etc", "/usr/bin", "/usr/lib", "/usr/sbin",
           "/usr/share")
# Private in every view: a socket there is not the host's.
_PRIVATE = ("/tmp", "/var/tmp", "/dev/shm")
# A pool's directory may be covered as a whole only below these.
_DIR_MASK_ROOTS = ("/run", "/var", "/opt", "/usr/local", "/srv")


@dataclass(frozen=True)
class Pool:
    file: str
    name: str
    user: str
    group: str
    listen: str
    owner: str        # listen.owner (default: user)
    sock_group: str   # listen.group (default: group)
    mode: int         # listen.mode (default 0660)
    acl_users: tuple[str, ...]
    acl_groups: tuple[str, ...]

    @property
    def unix(self) -> bool:
        return self.listen.startswith("/")


@dataclass(frozen=True)
class Mask:
    path: str
    kind: str         # "dir": the pool's own directory; "file": the socket only


def _clean(value: str) -> str:
    v = value.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        v = v[1:-1]
    return v


def parse(text: str, file: str) -> list[Pool]:
    """Pools of one php-fpm configuration file; [global] is skipped. A line
    that is not `key = value` is ignored (php-fpm would refuse the file, a
    reason to report it, not to crash)."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text_lines(text):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].strip(), {}))
            continue
        key, eq, value = line.partition("=")
        if eq and sections:
            sections[-1][1][key.strip().lower()] = _clean(value.split(" ;", 1)[0])
    return [_pool(name, kv, file) for name, kv in sections if name.lower() != "global"]


def _pool(name: str, kv: dict[str, str], file: str) -> Pool:
    def get(key: str, default: str = "") -> str:
        return kv.get(key, default).replace("$pool", name)
    user = get("user")
    group = get("group", user)
    try:
        mode = int(get("listen.mode", "0660"), 8)
    except ValueError:
        mode = 0o660
    return Pool(file=file, name=name, user=user, group=group, listen=get("listen"),
                owner=get("listen.owner", user), sock_group=get("listen.group", group),
                mode=mode, acl_users=_names(get("listen.acl_users")),
                acl_groups=_names(get("listen.acl_groups")))


def _names(value: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _read_root_file(path: str) -> str | None:
    """The text of a regular root-owned file, reached without a final
    symlink; None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_size > MAX_FILE:
            return None
        return os.read(fd, MAX_FILE).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def read(patterns: Iterable[str]) -> tuple[tuple[Pool, ...], tuple[str, ...]]:
    """Every pool of the files matching the layout's patterns, and the files
    skipped (not regular, not root's, too large, unreadable)."""
    pools: list[Pool] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if path in seen:
                continue
            seen.add(path)
            text = _read_root_file(path)
            if text is None:
                skipped.append(path)
                continue
            pools += parse(text, path)
    return tuple(pools), tuple(skipped)


# ---- who can use a pool ----------------------------------------------------------


def _is(who: str, name: str, ident: int) -> bool:
    return who == name or who == str(ident)


def reachable_by(pool: Pool, name: str, uid: int, groups: dict[str, int]) -> bool:
    """Whether the account (name, uid, its groups by name → gid) runs the
    pool or may connect to its socket, by the pool's own settings."""
    if _is(pool.user, name, uid) or _is(pool.owner, name, uid):
        return True
    if any(_is(u, name, uid) for u in pool.acl_users):
        return True
    if pool.mode & 0o002:
        return True
    for g in (pool.sock_group, *pool.acl_groups):
        if g in groups or (g.isdigit() and int(g) in groups.values()):
            return True
    return False


def runs_as(pool: Pool, name: str, uid: int) -> bool:
    return _is(pool.user, name, uid)


# ---- what a site view covers -------------------------------------------------------


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _in_home(path: str, homes: Iterable[str]) -> bool:
    return any(_under(path, h) for h in homes)


def _dir_maskable(d: str) -> bool:
    """Whether covering the pool's directory leaves a site view whole: a
    php or fpm directory below /run, /var, /opt, /usr/local or /srv, above
    nothing a view needs."""
    parts = [p for p in d.split("/") if p]
    if len(parts) < 2 or not any(_under(d, r) and d != r for r in _DIR_MASK_ROOTS):
        return False
    if not any("php" in p.lower() or "fpm" in p.lower() for p in parts[1:]):
        return False
    return not any(_under(n, d) or _under(d, n) for n in _NEEDED)


def mask_for(pool: Pool, homes: Iterable[str]) -> Mask | None:
    """What hides the pool's socket in a view; None where nothing can
    (TCP) or nothing needs to (private tmp), or where it lies in a home
    (the account's own files: never resolved by root, reported by doctor)."""
    if not pool.unix or "\0" in pool.listen:
        return None
    sock = posixpath.normpath(pool.listen)
    homes = tuple(homes)
    if _in_home(sock, homes) or any(_under(sock, p) for p in _PRIVATE):
        return None
    real_dir = os.path.realpath(posixpath.dirname(sock))
    if _in_home(real_dir, homes) or any(_under(real_dir, p) for p in _PRIVATE):
        return None
    if _dir_maskable(real_dir):
        return _checked(Mask(real_dir, "dir"))
    return _checked(Mask(posixpath.join(real_dir, posixpath.basename(sock)), "file"))


def _checked(m: Mask) -> Mask | None:
    """Only a path a plan can carry: absolute, normalized, printable."""
    p = m.path
    ok = (p.startswith("/") and p != "/" and posixpath.normpath(p) == p
          and not any(ord(c) < 32 or ord(c) == 127 for c in p))
    return m if ok else None


def masks_for(pools: Iterable[Pool], name: str, uid: int, groups: dict[str, int],
              homes: Iterable[str]) -> tuple[Mask, ...]:
    """The masks of every pool the account runs or may connect to, for its
    site views: sorted, no duplicates, a file inside a masked dir dropped."""
    homes = tuple(homes)
    found = {m for p in pools if reachable_by(p, name, uid, groups)
             for m in [mask_for(p, homes)] if m is not None}
    dirs = {m.path for m in found if m.kind == "dir"}
    kept = [m for m in found
            if m.kind == "dir" or not any(_under(m.path, d) for d in dirs)]
    return tuple(sorted(kept, key=lambda m: m.path))


def problems(pools: Iterable[Pool],
             accounts: Iterable[tuple[str, int, str]]) -> list[str]:
    """What `siteiso doctor` says about pools that run as a hosting account
    (name, uid, home) and that site views cannot hide."""
    accts = list(accounts)
    homes = tuple(h for _, _, h in accts)
    out = []
    for p in pools:
        who = next((n for n, u, _ in accts if runs_as(p, n, u)), None)
        if who is None:
            continue
        where = f"pool [{p.name}] of {p.file} runs as {who}"
        if not p.listen:
            out.append(f"{where} and has no listen address")
        elif not p.unix:
            out.append(f"{where} on TCP {p.listen}: any process of the host, every "
                       "site view included, can have it run code as that account; "
                       "give it a unix socket")
        elif _in_home(posixpath.normpath(p.listen), homes):
            out.append(f"{where} on a socket in a home ({p.listen}): site views "
                       "cannot hide it; move it out of the home")
        else:
            m = mask_for(p, homes)
            if m is not None and m.kind == "file":
                out.append(f"{where} on {p.listen}, in a shared directory: site "
                           "views hide the socket only until php-fpm makes a new "
                           "one; give the pool a directory of its own "
                           "(e.g. /run/php)")
    return out


def view_masks(pools: Iterable[Pool], name: str, uid: int, gid: int,
               groups: Iterable[grp.struct_group],
               homes: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """masks_for with the account's groups taken from grp entries (primary
    gid and memberships): (path, dir|file) for CageInput.fpm_masks."""
    mine = {g.gr_name: g.gr_gid for g in groups if g.gr_gid == gid or name in g.gr_mem}
    return tuple((m.path, m.kind) for m in masks_for(pools, name, uid, mine, homes))
