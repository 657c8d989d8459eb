"""siteiso's recorded state and how it changes safely.

The truth is /var/lib/siteiso/state.json: mode, flag, user lists, sites
with their names, tokens and settings. It changes only under the lock in
/var/lib/siteiso/lock and only by write-temp, fsync, rename, fsync-dir, so a
reader (or a crash) sees the old or the new document, never a mix.

Everything else (the CageFS-compatible flag and mode directories, views,
processes, services) is a side effect re-driven from this document by every
command, so a command killed at any point is repaired by the next one.

Fault points: SITEISO_FAULT=<name> kills the command with SIGKILL when it
reaches the point of that name; tests walk every name in FAULT_POINTS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace

from siteiso import paths
from siteiso.errors import SiteisoError

FAULT_POINTS = (
    "locked",            # lock taken, nothing written
    "state-temp",        # temp file written and fsynced, not yet renamed
    "state-renamed",     # new state in place, directory not yet fsynced
    "state-written",     # state durable, no side effect yet
    "mirrors-written",   # flag/mode/list mirrors re-driven
    "holder-started",    # a new view's holder runs, the index does not name it yet
    "views-converged",   # views, processes and services re-driven
)


def fault(name: str) -> None:
    """Die here, abruptly, when the tests ask for it."""
    if os.environ.get("SITEISO_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


KEPT_FOR = "kept_for"


@dataclass
class Site:
    token: str
    owner: str
    uid: int
    docroot: str          # canonical real path
    names: list[str]
    home: str = ""        # per-site home mode; "" = the configured default
    php: dict[str, object] = field(default_factory=dict)


@dataclass
class State:
    flag: bool = False
    mode: str = ""                     # "" (not initialized), allow_all, deny_all
    denied: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    sites: dict[str, Site] = field(default_factory=dict)
    # Per-domain PHP settings kept across disable (§5): domain → settings,
    # with the account they were kept for (KEPT_FOR): a name that moves to
    # another account does not bring its old owner's choices.
    php_kept: dict[str, dict[str, object]] = field(default_factory=dict)

    def keep_php(self, name: str, site: Site) -> None:
        self.php_kept[name] = {**site.php, KEPT_FOR: site.owner}

    def kept_php(self, name: str, owner: str) -> dict[str, object]:
        kept = self.php_kept.get(name, {})
        if kept.get(KEPT_FOR) != owner:
            return {}
        return {k: v for k, v in kept.items() if k != KEPT_FOR}

    def forget_kept(self, owner: str) -> None:
        self.php_kept = {n: k for n, k in self.php_kept.items()
                         if k.get(KEPT_FOR) != owner}

    def rename_kept(self, old: str, new: str) -> None:
        """A renamed account keeps its settings."""
        for kept in self.php_kept.values():
            if kept.get(KEPT_FOR) == old:
                kept[KEPT_FOR] = new

    def allowed_user(self, user: str) -> bool:
        if not self.flag:
            return False
        if self.mode == "allow_all":
            return user not in self.denied
        if self.mode == "deny_all":
            return user in self.allowed
        return False

    def site_of(self, name: str) -> Site | None:
        for site in self.sites.values():
            if name in site.names:
                return site
        return None

    def site_by_docroot(self, owner: str, docroot: str) -> Site | None:
        for site in self.sites.values():
            if site.owner == owner and site.docroot == docroot:
                return site
        return None

    def sites_of(self, user: str) -> list[Site]:
        by_owner = self.__dict__.get("_by_owner")
        if by_owner is not None:
            return list(by_owner.get(user, ()))
        return sorted((s for s in self.sites.values() if s.owner == user),
                      key=lambda s: s.docroot)

    def for_reading(self) -> State:
        """A copy that is only read (a converge of every user): sites_of
        answers from an index made once instead of a scan of every site per
        call. Never change it."""
        copy = replace(self)
        by_owner: dict[str, list[Site]] = {}
        for site in sorted(self.sites.values(), key=lambda s: s.docroot):
            by_owner.setdefault(site.owner, []).append(site)
        copy.__dict__["_by_owner"] = by_owner
        return copy

    def to_json(self) -> str:
        # What asdict gives, without its deep copy (a third of a remount's
        # save at a thousand accounts): json.dumps copies nothing.
        doc: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["sites"] = {t: {f.name: getattr(site, f.name) for f in fields(site)}
                        for t, site in self.sites.items()}
        doc["version"] = 1
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> State:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("unknown state version")
        sites = {t: Site(**s) for t, s in doc.get("sites", {}).items()}
        return cls(flag=bool(doc.get("flag")), mode=str(doc.get("mode", "")),
                   denied=list(doc.get("denied", [])),
                   allowed=list(doc.get("allowed", [])), sites=sites,
                   php_kept=dict(doc.get("php_kept", {})))


def ensure_lib() -> None:
    """/var/lib/siteiso, root's only (siteisod watches the state in it)."""
    os.makedirs(paths.LIB, mode=0o700, exist_ok=True)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """The one lock every state change is made under."""
    ensure_lib()
    fd = os.open(paths.LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fault("locked")
        yield
    finally:
        os.close(fd)


def load() -> State:
    try:
        return State.from_json(recorded())
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise SiteisoError(f"cannot read {paths.STATE}: {e} (restore it from a "
                           "backup or remove it to start over)") from e


def _import_mirrors() -> State:
    """No state yet: adopt what CageFS-compatible tooling left on disk."""
    st = State(flag=os.path.exists(paths.FLAG))
    if os.path.isdir(paths.MODE_ALLOW_ALL):
        st.mode = "allow_all"
    elif os.path.isdir(paths.MODE_DENY_ALL):
        st.mode = "deny_all"
    st.denied = _list_dir(paths.USERS_DENIED)
    st.allowed = _list_dir(paths.USERS_ALLOWED)
    return st


def _list_dir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def recorded() -> str:
    """The recorded document as it is on disk (none yet: the state `load`
    adopts from the mirrors, as a document)."""
    try:
        with open(paths.STATE, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return _import_mirrors().to_json()


def save(st: State) -> str:
    """Atomically replace the recorded state (caller holds the lock);
    returns the document written."""
    ensure_lib()
    text = st.to_json()
    tmp = f"{paths.STATE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                 | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fault("state-temp")
    os.rename(tmp, paths.STATE)
    fault("state-renamed")
    dfd = os.open(paths.LIB, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    fault("state-written")
    return text
