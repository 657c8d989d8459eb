"""Converging views on the recorded state (SPEC §4.5).

For every affected user: make per-site storage (through descriptors, as
root, in a hostile home), generate the filtered passwd/group, build a plan
per site and for the user cage, start a holder for each plan that changed,
swap the index atomically, then deal with the old holders: a change that
only reveals retires the old view (its processes finish in it), a change
that hides kills it (and with it every process of that view), a site that is
no longer isolated has its processes ended and its cgroup removed.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import importlib
import logging
import os
import posixpath
import pwd
import signal
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from siteiso import accounts, panels, paths, platform, sysapi
from siteiso.accounts import Account
from siteiso.config import Config
from siteiso.errors import EngineError, SiteisoError, UnsafePath
from siteiso.names import quote, validate_docroot
from siteiso.plan import CageInput, SiteInput, cage_plan, render, site_plan
from siteiso.plan.sites import inside, site_paths
from siteiso.plan.view import MTA_WRITABLE, Storage, listing_dirs, reserved_path
from siteiso.procs import lifecycle
from siteiso.service import cron, layout, php, pools
from siteiso.state import Site, State, fault
from siteiso.textfile import text_lines
from siteiso.views import homes, index, web
from siteiso.views.index import Holder

log = logging.getLogger("siteiso")

CGROUP_FALLBACK = "/run/siteiso/cgroup"
SITE_STORAGE = ("tmp", "var-tmp", "shm", "sessions", "cache", "cache/cache",
                "cache/composer", "cache/wp-cli")
CAGE_STORAGE = ("tmp", "var-tmp", "shm", "sessions")
SYSTEM_PATHS_PROBED = (
    "/var/lib/siteiso", "/run/siteiso", "/etc/siteiso", "/etc/cagefs",
    "/opt/cpvendor", "/var/cpanel/userdata", "/usr/libexec/siteiso/wrappers",
    "/etc/userdatadomains", "/etc/trueuserdomains", "/opt/siteiso",
    "/var/spool/cron", "/var/spool/at", "/run/dbus", "/etc/apache2", "/etc/httpd",
    "/etc/php", "/var/lib/php/sessions", "/usr/bin/crontab", "/usr/bin/at",
    "/usr/bin/batch", "/usr/bin/atq", "/usr/bin/atrm", "/usr/bin/systemd-run",
    "/usr/bin/busctl", "/usr/bin/dbus-send", "/usr/local/bin/cagefsctl-user",
    "/usr/local/bin/selectorctl", "/usr/local/sbin/cagefsctl",
    "/usr/local/sbin/siteiso", "/usr/local/bin/siteiso", "/dev/pts",
    *MTA_WRITABLE,
)


def resolve_docroot(acct: Account, docroot: str, hidden: tuple[str, ...]) -> str:
    """The canonical docroot (or site path), resolved through descriptors
    inside the home; refused where it would give a site a path every view
    keeps from sites (`hidden`: the configured hidden paths)."""
    validate_docroot(docroot, acct.home)
    real, fd = sysapi.resolve_docroot(acct.home, docroot, acct.uid)
    os.close(fd)
    # What the symlinks led to is the user's choice too: it must be as clean
    # as a docroot given as data, and fit in a quoted Apache directive.
    try:
        validate_docroot(real, acct.home)
    except SiteisoError as e:
        raise UnsafePath(f"refusing docroot {quote(docroot)}: it resolves to "
                         f"{quote(real)}: {e.message}") from e
    if any(c in real for c in '"\\'):
        raise UnsafePath(f"refusing docroot {quote(docroot)}: it resolves to "
                         f"{quote(real)}, which holds a quote or backslash")
    reserved = reserved_path(acct.home, real, hidden)
    if reserved is not None:
        raise UnsafePath(f"refusing docroot {quote(docroot)}: it lies in "
                         f"{quote(reserved)}, which every site view keeps hidden "
                         "or read-only")
    return real


# ---- cgroups ---------------------------------------------------------------

def cgroup_base(cfg: Config) -> str:
    root = lifecycle.cgroup_root(cfg.cgroup_root)
    if root is None:
        os.makedirs(CGROUP_FALLBACK, mode=0o755, exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup2", "none", CGROUP_FALLBACK],
                       check=True)
        root = CGROUP_FALLBACK
    return f"{root}/siteiso.slice"


def user_cgroup(cfg: Config, uid: int) -> str:
    return f"{cgroup_base(cfg)}/user-{uid}"


# ---- storage and identity files --------------------------------------------

def _storage(acct: Account, rel: str, subdirs: tuple[str, ...]) -> None:
    """Create ~/.cagefs/<rel>/<subdir> as root without following anything."""
    home_fd = os.open(acct.home, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(home_fd)
        if st.st_uid != acct.uid:
            raise EngineError(f"refusing home {acct.home}: not owned by {acct.name}")
        # The base once, then each subdirectory from its descriptor (not the
        # whole path again from the home for each one).
        base = sysapi.ensure_dir_beneath(home_fd, rel, acct.uid, acct.gid, 0o700)
        try:
            for sub in subdirs:
                os.close(sysapi.ensure_dir_beneath(base, sub, acct.uid, acct.gid,
                                                   0o700))
        finally:
            os.close(base)
    finally:
        os.close(home_fd)


@dataclass(frozen=True)
class HostFacts:
    """What every user's plans read from the machine, read once per converge
    (not once per user: at a thousand accounts that is a million lookups)."""
    hosting: tuple[Account, ...]
    passwd: tuple[pwd.struct_passwd, ...]
    groups: tuple[grp.struct_group, ...]
    existing: frozenset[str]
    real: tuple[tuple[str, str], ...]
    # Each domain's docroot as the panel (and the web server) names it.
    web: tuple[tuple[str, str], ...] = ()
    # Per-mount procfs options (hidepid for the user cage's /proc).
    proc_hidepid: bool = True
    # The host's own php-fpm pools (hidden in site views: siteiso.service.pools).
    fpm_pools: tuple[pools.Pool, ...] = ()

    @functools.cached_property
    def identities(self) -> _Identities:
        """The views' passwd and group, worked out once for this snapshot."""
        return _Identities(self)

    @classmethod
    def read(cls, cfg: Config) -> HostFacts:
        return cls(tuple(accounts.hosting_accounts(cfg)), tuple(pwd.getpwall()),
                   tuple(grp.getgrall()), _existing(), _real(), _panel_docroots(cfg),
                   platform.available("proc_hidepid"),
                   pools.read(layout.detect().fpm_pools)[0])


def _panel_docroots(cfg: Config) -> tuple[tuple[str, str], ...]:
    try:
        return tuple((n, r.docroot) for n, r in panels.get_panel(cfg).domains().items())
    except (SiteisoError, OSError) as e:
        log.warning("cannot read the panel's docroots: %s", e)
        return ()


class _Identities:
    """What the views' passwd and group are made of, worked out once per
    converge (per user it was a pass over every account: quadratic). A
    user's view lists no hosting account but those of its own uid."""

    def __init__(self, host: HostFacts) -> None:
        self.host = host
        self.names_of: dict[int, set[str]] = {}     # hosting uid -> its names
        self.uids_of_gid: dict[int, set[int]] = {}  # hosting gid -> their uids
        for a in host.hosting:
            self.names_of.setdefault(a.uid, set()).add(a.name)
            self.uids_of_gid.setdefault(a.gid, set()).add(a.uid)
        self.hosting = {a.name for a in host.hosting}
        # Groups by whether a hosting account has their gid; the gids only
        # one hosting uid has.
        self.system_groups: list[tuple[int, grp.struct_group]] = []
        self.hosting_groups: dict[int, list[tuple[int, grp.struct_group]]] = {}
        for i, g in enumerate(host.groups):
            if g.gr_gid in self.uids_of_gid:
                self.hosting_groups.setdefault(g.gr_gid, []).append((i, g))
            else:
                self.system_groups.append((i, g))
        self.gids_only_of: dict[int, list[int]] = {}
        for hg, uids in self.uids_of_gid.items():
            if len(uids) == 1:
                self.gids_only_of.setdefault(next(iter(uids)), []).append(hg)
        # (position, line) of every non-hosting passwd entry; hosting ones by uid.
        self.passwd: list[tuple[int, str]] = []
        self.own_passwd: dict[int, list[tuple[int, str]]] = {}
        for i, p in enumerate(host.passwd):
            line = ":".join((p.pw_name, "x", str(p.pw_uid), str(p.pw_gid), p.pw_gecos,
                             p.pw_dir, p.pw_shell))
            if p.pw_name in self.hosting:
                self.own_passwd.setdefault(p.pw_uid, []).append((i, line))
            else:
                self.passwd.append((i, line))

    def passwd_for(self, uid: int) -> list[str]:
        own = self.own_passwd.get(uid, [])
        return [line for _, line in sorted([*self.passwd, *own])]

    def group_for(self, uid: int, gid: int) -> list[str]:
        """Every group but those of other hosting accounts (a group whose
        gid is another hosting account's, unless it is this user's own)."""
        mine = self.names_of.get(uid, set())
        own = list(self.hosting_groups.get(gid, []))
        own += [(i, g) for hg in self.gids_only_of.get(uid, ()) if hg != gid
                for i, g in self.hosting_groups.get(hg, [])]
        out = []
        for _, g in sorted([*self.system_groups, *own], key=lambda x: x[0]):
            members = ",".join(m for m in g.gr_mem
                               if m in mine or m not in self.hosting)
            out.append(f"{g.gr_name}:x:{g.gr_gid}:{members}")
        return out


def _identity(acct: Account, host: HostFacts) -> tuple[str, str]:
    """passwd and group without the other hosting accounts (files written
    only when they change: views bind them)."""
    d = f"{paths.VIEWS}/{acct.uid}"
    os.makedirs(d, mode=0o755, exist_ok=True)
    out = []
    for name, lines in (("passwd", host.identities.passwd_for(acct.uid)),
                        ("group", host.identities.group_for(acct.uid, acct.gid))):
        path = f"{d}/{name}"
        text = "\n".join(lines) + "\n"
        if _read(path) != text:
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        out.append(path)
    return out[0], out[1]


def _existing() -> frozenset[str]:
    return frozenset(p for p in SYSTEM_PATHS_PROBED if os.path.lexists(p))


def _real() -> tuple[tuple[str, str], ...]:
    return tuple((p, os.path.realpath(p)) for p in SYSTEM_PATHS_PROBED
                 if os.path.islink(p))


def _home_entries(acct: Account) -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(acct.home)))
    except OSError:
        return ()


def site_inputs(st: State, acct: Account, cfg: Config,
                web: dict[str, str] | None = None) -> list[SiteInput]:
    out = []
    sites = st.sites_of(acct.name)
    docroots = [s.docroot for s in sites]
    for s in sites:
        extra = _sites_d_paths(s, acct, cfg.hidden, docroots)
        out.append(SiteInput(token=s.token, docroot=s.docroot, names=tuple(s.names),
                             extra_paths=tuple(extra),
                             home_mode=s.home or cfg.home_mode, shared=cfg.shared,
                             hidden=cfg.hidden))
    if not web:
        return out
    return [replace(s, configured=_configured(acct, s, web, [
        p for o in out if o.token != s.token for p in site_paths(o, acct.home, out)]))
        for s in out]


def _configured(acct: Account, site: SiteInput, web: dict[str, str],
                others: list[str]) -> tuple[str, ...]:
    """The site's docroot as the web server names it, where a symlink on the
    way makes that another path: checked as strictly as at enable, and kept
    only while it still resolves to the recorded docroot and does not pass
    through another site's tree (whose site could re-point it); else the
    entry refuses requests naming it (fails closed)."""
    out: list[str] = []
    for name in site.names:
        given = web.get(name)
        try:
            path = validate_docroot(given, acct.home) if given else site.docroot
            if path == site.docroot or path in out:
                continue
            if any(c in path for c in '"\\'):
                raise UnsafePath(f"refusing docroot {quote(path)}: it holds a quote "
                                 "or backslash")
            if any(inside(path, q) for q in others):
                raise UnsafePath(f"refusing docroot {quote(path)}: it passes through "
                                 "another isolated site's tree")
            _check_alias_links(acct, path)
            real = resolve_docroot(acct, path, site.hidden)
        except SiteisoError as e:
            log.warning("site %s: %s", name, e.message)
            continue
        if real != site.docroot:
            moved = (f"the panel now gives its docroot as {path}" if path == real
                     else f"its docroot {path} now leads to {real}")
            log.warning("site %s: %s, not %s: requests naming %s are refused until "
                        "cagefsctl --site-isolation-regenerate %s", name, moved,
                        site.docroot, path, acct.name)
            continue
        out.append(path)
    return tuple(out[:index.MAX_ALIASES])


def _check_alias_links(acct: Account, path: str) -> None:
    """Every symlink on the way to a docroot alias must be an entry of the
    home's top level (read-only in every view) or lie outside the home: a
    link in a directory some view can write (a site's tree, a shared entry)
    could be re-pointed by a site to its own code, which the entry would
    then run in the aliased site's view."""
    home = acct.home.rstrip("/")
    rel = path[len(home) + 1:] if inside(path, home) and path != home else ""
    parts = [p for p in rel.split("/") if p]
    for i in range(1, len(parts)):      # links below the top level
        p = posixpath.join(home, *parts[:i + 1])
        try:
            if stat.S_ISLNK(os.lstat(p).st_mode):
                raise UnsafePath(f"refusing docroot {quote(path)}: the symlink "
                                 f"{quote(p)} lies in a directory a site can write")
        except FileNotFoundError:
            return


def _listings(acct: Account, cfg: Config, inputs: list[SiteInput]) -> homes.Listings:
    """ro | shared views bind the home's entries one by one (plan.view)."""
    if all(s.home_mode == "private" for s in inputs):
        return ()
    return homes.listings(acct.home, acct.uid, listing_dirs(acct.home, cfg.hidden))


def sites_d_paths(site: Site, acct: Account, hidden: tuple[str, ...],
                  docroots: list[str]) -> tuple[list[str], list[str]]:
    """Admin-added site paths: /etc/siteiso/sites.d/<domain>.conf, one a
    line; and why each refused line was left out. A path must resolve in
    the owner's home like a docroot, and must not be, hold or lie in another
    site's docroot (`docroots`: all the owner's), which would hand that
    site's files to this one; a site nested in another's docroot may add
    paths there, as its docroot is."""
    out: list[str] = []
    problems: list[str] = []
    for name in site.names:
        conf = f"{paths.SITES_D}/{name}.conf"
        try:
            with open(conf, encoding="utf-8") as f:
                lines = text_lines(f.read())
        except FileNotFoundError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                path = resolve_docroot(acct, line, hidden)
            except SiteisoError as e:
                problems.append(f"{conf}: skipping {quote(line)}: {e.message}")
                continue
            held = [d for d in docroots if d != site.docroot and inside(d, path)]
            if held:
                problems.append(f"{conf}: skipping {quote(line)}: it holds "
                                f"{held[0]}, the docroot of another site")
                continue
            # Inside another site's docroot is that site's, unless the site
            # itself is nested there (as a nested docroot may be).
            within = [d for d in docroots if d != site.docroot and inside(path, d)
                      and not inside(site.docroot, d)]
            if within:
                problems.append(f"{conf}: skipping {quote(line)}: it lies in "
                                f"{within[0]}, the docroot of another site")
                continue
            out.append(path)
    return out, problems


def _sites_d_paths(site: Site, acct: Account, hidden: tuple[str, ...],
                   docroots: list[str]) -> list[str]:
    found, problems = sites_d_paths(site, acct, hidden, docroots)
    for line in problems:        # a bad admin path is skipped, logged
        log.warning("%s", line)
    return found


# ---- holders -----------------------------------------------------------------

@dataclass(frozen=True)
class Build:
    """A view to build, and what its index record will say."""
    text: str
    kind: str
    token: str
    docroot: str = "-"
    names: str = "-"
    ini_dir: str = "-"
    aliases: tuple[str, ...] = ()


# Builds in flight at once: a build is mostly the kernel's work in a fresh
# process, so a few more than the CPUs keep them busy.
BUILD_PARALLEL = (os.cpu_count() or 2) + 2
# One batch in the background at a time (converge keeps two users in flight).
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="siteiso-build")


def start_holders(builds: list[Build]) -> list[Holder]:
    """Build every view at once (siteiso._core, one batch) and return their
    holders in order. All or nothing: when one fails, the holders that did
    start are ended (no index names them) and the first error is raised."""
    if not builds:
        return []
    core = importlib.import_module("siteiso._core")
    try:
        plans = [b.text.encode() for b in builds]
    except UnicodeEncodeError as e:
        raise EngineError(f"refusing a plan that is not valid UTF-8: {e}") from e
    results = core.build_views(paths.HOLDER, plans, BUILD_PARALLEL, 60.0)
    fault("holder-started")
    errors = [err for pid, err in results if pid <= 0]
    if errors:
        for pid, _ in results:
            if pid > 0:
                with contextlib.suppress(OSError):   # already failing: best effort
                    _sigkill(pid)
        raise EngineError(errors[0])
    return [Holder(b.kind, b.token, pid, index.starttime(pid),
                   index.ns_inode(pid, "pid"), index.ns_inode(pid, "mnt"),
                   b.docroot, b.names, b.ini_dir, b.aliases)
            for b, (pid, _) in zip(builds, results, strict=True)]


def _sigkill(pid: int) -> bool:
    """SIGKILL a holder through a pidfd; False when it is already gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _plan_file(uid: int, token: str) -> str:
    return f"{paths.VIEWS}/{uid}/{token}.plan"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write(path: str, text: str) -> None:
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(f"{path}.tmp", path)


def _signal_holder(h: Holder, sig: signal.Signals) -> None:
    """Signal the holder the record names, through a pidfd, if it still is
    that process (start time checked)."""
    try:
        fd = os.pidfd_open(h.pid)
    except ProcessLookupError:
        return
    try:
        if index.starttime(h.pid) == h.starttime:
            with contextlib.suppress(ProcessLookupError):   # gone meanwhile
                signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


def _kill_holder(h: Holder) -> None:
    """SIGKILL a holder: its PID namespace (every process of the view) dies."""
    _signal_holder(h, signal.SIGKILL)


def _retire_holder(h: Holder) -> None:
    """SIGUSR1: the holder leaves once the last process of its view has."""
    _signal_holder(h, signal.SIGUSR1)


def _hides(old_plan: str, new_plan: str) -> bool:
    """Does the new view hide anything the old one showed?"""
    def parts(text: str) -> tuple[set[str], set[str]]:
        shown, masked = set(), set()
        for line in text.splitlines():
            f = line.split("\t")
            if f[0] == "clone" and f[3] == "user":
                shown.add(f[2])
            elif f[0] in ("mask", "tmpfs"):
                masked.add(f[1])
        return shown, masked
    old_shown, old_masked = parts(old_plan)
    new_shown, new_masked = parts(new_plan)
    lost = {p for p in old_shown if not any(inside(p, q) for q in new_shown)}
    return bool(lost or (new_masked - old_masked))


def converge(st: State, cfg: Config, users: list[str] | None = None,
             rebuild: bool = False) -> dict[str, str]:
    """Make views, holders and the index match the recorded state, for the
    given users (None: every user with sites or with an index), and for
    every user whose views are leftovers. One user's failure never stops
    another's converge: the failures are returned, user name (or uid) →
    message, for the caller to judge."""
    index.ensure_run_dirs()
    st = st.for_reading()
    targets: dict[int, str | None] = {}
    wanted = {s.owner for s in st.sites.values()} if users is None else set(users)
    for name in wanted:
        try:
            targets[pwd.getpwnam(name).pw_uid] = name
        except KeyError:
            continue
    owners = set()
    for name in {s.owner for s in st.sites.values()}:
        with contextlib.suppress(KeyError):
            owners.add(pwd.getpwnam(name).pw_uid)
    for uid in index.known_uids():
        # Leftovers (views of users without isolated sites) go every time.
        if users is None or uid not in owners:
            targets.setdefault(uid, None)
    # Per-domain PHP: ini dirs of sites no longer isolated go.
    php.prune(st.sites)
    failures: dict[str, str] = {}
    host = HostFacts.read(cfg)
    # Two users in flight: while one user's views build (in C, without the
    # GIL), the next user's plans are made.
    in_flight: tuple[str, Iterator[None]] | None = None
    order: list[tuple[int, str | None] | None] = [*sorted(targets.items()), None]
    for item in order:
        started = None
        if item is not None:
            uid, owner = item
            steps = _converge_user_steps(st, cfg, uid, owner, rebuild, host)
            if _step(steps, owner or str(uid), failures):
                started = (owner or str(uid), steps)
        if in_flight is not None:
            _step(in_flight[1], in_flight[0], failures)
        in_flight = started
    return failures


def _step(steps: Iterator[None], who: str, failures: dict[str, str]) -> bool:
    """Run a user's converge to its next pause; False once it is over (done,
    or failed: one hostile home must not stop the others' views)."""
    try:
        next(steps)
        return True
    except StopIteration:
        return False
    except SiteisoError as e:
        log.warning("user %s: %s", who, e.message)
        failures[who] = e.message
        return False
    except Exception as e:  # a bug met in one home must not stop the others
        log.exception("user %s: unexpected error", who)
        failures[who] = f"unexpected error: {e!r}"
        return False


def converge_user(st: State, cfg: Config, uid: int, name: str | None,
                  rebuild: bool = False, host: HostFacts | None = None) -> None:
    for _ in _converge_user_steps(st, cfg, uid, name, rebuild, host):
        pass


def _converge_user_steps(st: State, cfg: Config, uid: int, name: str | None,
                         rebuild: bool = False,
                         host: HostFacts | None = None) -> Iterator[None]:
    """converge_user, pausing once while its new views build."""
    old = index.read(uid)
    old_by_token = {h.token: h for h in old if h.kind == "site"}
    retired = [h for h in old if h.kind == "retired" and h.alive()]
    old_cage = next((h for h in old if h.kind == "cage"), None)
    sites = st.sites_of(name) if name else []
    if not sites:
        for h in old:
            _end_site_processes(cfg, uid, h)
        index.remove(uid)
        lifecycle.remove_cgroup_tree(user_cgroup(cfg, uid))
        cron.write_cron_map(uid, [])
        return
    acct = accounts.lookup(name or "", cfg)
    _storage(acct, ".cagefs", CAGE_STORAGE)
    host = host or HostFacts.read(cfg)
    passwd, group = _identity(acct, host)
    hosting_homes = tuple(a.home for a in host.hosting)
    inputs = site_inputs(st, acct, cfg, dict(host.web))
    # Per-domain PHP (SPEC §5): each site's ini dir and build, for its plan.
    php_views = php.prepare_user(st, acct, cfg, old, {
        s.token: _read(_plan_file(uid, s.token)) for s in inputs})
    ucg = user_cgroup(cfg, uid)
    new: list[Holder | None] = []
    builds: list[tuple[int, Build, str]] = []   # (slot in new, build, plan file)
    to_kill: list[Holder] = []
    to_retire: list[Holder] = []
    base = dict(user=acct.name, uid=acct.uid, gid=acct.gid, home=acct.home,
                hosting_homes=hosting_homes, home_entries=_home_entries(acct),
                passwd=passwd, group=group, existing=host.existing, real=host.real,
                proc_hidepid=host.proc_hidepid,
                listings=_listings(acct, cfg, inputs),
                fpm_masks=pools.view_masks(host.fpm_pools, acct.name, acct.uid,
                                           acct.gid, host.groups, hosting_homes))

    # The user cage.
    cage_store = f"{acct.home}/.cagefs"
    cage_in = CageInput(cgroup=f"{ucg}/cage", storage=Storage(
        f"{cage_store}/tmp", f"{cage_store}/var-tmp", f"{cage_store}/shm",
        f"{cage_store}/sessions"), **base)  # type: ignore[arg-type]
    lifecycle.ensure_cgroup(cage_in.cgroup)
    text = render(cage_plan(cage_in))
    pf = _plan_file(uid, "cage")
    if old_cage and old_cage.alive() and _read(pf) == text and not rebuild:
        new.append(old_cage)
    else:
        builds.append((len(new), Build(text, "cage", "-"), pf))
        new.append(None)
        if old_cage:
            to_retire.append(old_cage)

    fresh: list[SiteInput] = []
    for s in inputs:
        _storage(acct, f".cagefs/websites/{s.token}", SITE_STORAGE)
        store = f"{acct.home}/.cagefs/websites/{s.token}"
        cin = CageInput(cgroup=f"{ucg}/site-{s.token}", storage=Storage(
            f"{store}/tmp", f"{store}/var-tmp", f"{store}/shm", f"{store}/sessions",
            f"{store}/cache"), **base)  # type: ignore[arg-type]
        lifecycle.ensure_cgroup(cin.cgroup)
        text = render(site_plan(cin, s, inputs, php_views.get(s.token)))
        ini = php.INI_IN_VIEW if s.token in php_views else "-"
        pf = _plan_file(uid, s.token)
        prev = old_by_token.get(s.token)
        names = ",".join(s.names)
        if prev and prev.alive() and _read(pf) == text and not rebuild:
            new.append(Holder("site", s.token, prev.pid, prev.starttime, prev.pidns,
                              prev.mntns, s.docroot, names, ini, s.configured))
            continue
        builds.append((len(new), Build(text, "site", s.token, s.docroot, names, ini,
                                       s.configured), pf))
        new.append(None)
        if prev is None:
            fresh.append(s)
        if prev and prev.alive():
            (to_kill if _hides(_read(pf), text) else to_retire).append(prev)

    # The user's new views, built side by side while the caller goes on.
    building = _BUILDER.submit(start_holders, [b for _, b, _ in builds])
    yield
    for (slot, _, _), holder in zip(builds, building.result(), strict=True):
        new[slot] = holder
    running = [h for h in new if h is not None]
    gone = [h for t, h in old_by_token.items() if t not in {s.token for s in inputs}]
    keep_retired = [Holder("retired", *_fields(h)) for h in (*retired, *to_retire)
                    if h.kind != "cage"]
    index.write(uid, running + keep_retired)
    # Plans are recorded once the index names their views: a build that
    # failed must never let the next converge take an old view for its new
    # plan.
    for _, b, pf in builds:
        _write(pf, b.text)
    cron.write_cron_map(acct.uid, inputs, acct.home, acct.name)
    _reap_unindexed(ucg, {h.pid for h in (*running, *keep_retired)})
    web.converge_sites(acct, inputs, cfg, gone=[h.token for h in gone])
    views = tuple(h.mntns for h in (*running, *keep_retired))
    for s in fresh:
        _restart_outside_processes(cfg, acct, s, inputs, views)
    for h in to_kill:
        _kill_holder(h)
    for h in to_retire:
        _retire_holder(h)
    for h in gone:
        _end_site_processes(cfg, uid, h)


def _restart_outside_processes(cfg: Config, acct: Account, site: SiteInput,
                               inputs: list[SiteInput], views: tuple[int, ...]) -> None:
    """A site just isolated: its PHP started before (cwd or DOCUMENT_ROOT in
    its paths, outside every view) is ended, so the handler starts fresh
    processes in the view (SPEC §8). Never another site's, never a login."""
    others = [p for o in inputs if o.token != site.token
              for p in site_paths(o, acct.home, inputs)]
    # Sites of the panel that are not isolated are sites too: a process in
    # a nested, non-isolated sibling's docroot is that sibling's.
    try:
        others += [r.docroot.rstrip("/") for r in
                   panels.get_panel(cfg).domains(owner=acct.name).values()
                   if r.docroot.rstrip("/") != site.docroot]
    except SiteisoError as e:
        log.warning("cannot read the panel to tell sites apart: %s", e.message)
    match = lifecycle.SiteMatch(
        docroot=site.docroot, paths=tuple(site_paths(site, acct.home, inputs)),
        other_paths=tuple(sorted(set(others))), exclude_mntns=views)
    procs = lifecycle.find_site_processes(acct.uid, match)
    if procs:
        result = lifecycle.terminate(procs, cfg.grace_seconds)
        log.info("site %s: %d processes started before isolation ended",
                 site.names[0] if site.names else site.token, result.ended)


def _reap_unindexed(user_cg: str, indexed: set[int]) -> None:
    """Holders no index names (a command killed between starting a holder
    and writing the index) are ended: a holder is the only root process in a
    site's or the cage's cgroup."""
    for pid in lifecycle.cgroup_pids(user_cg):
        if pid in indexed:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != 0:
                continue
        except FileNotFoundError:
            continue
        if _sigkill(pid):
            log.info("ended holder %d that no index named", pid)


def _fields(h: Holder) -> tuple[str, int, int, int, int, str, str, str,
                                tuple[str, ...]]:
    return (h.token, h.pid, h.starttime, h.pidns, h.mntns, h.docroot, h.names,
            h.ini_dir, h.aliases)


def _end_site_processes(cfg: Config, uid: int, h: Holder) -> None:
    """A site no longer isolated: end its processes, its holder, its cgroup."""
    if h.kind == "cage":
        path = f"{user_cgroup(cfg, uid)}/cage"
        _kill_holder(h)
        if os.path.isdir(path):
            lifecycle.kill_cgroup(path, 0)
        lifecycle.remove_cgroup_tree(path)
        return
    web.forget_site(uid, h)
    path = f"{user_cgroup(cfg, uid)}/site-{h.token}"
    if os.path.isdir(path):
        lifecycle.kill_cgroup(path, cfg.grace_seconds)
    _kill_holder(h)
    lifecycle.remove_cgroup_tree(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_plan_file(uid, h.token))
