"""The user cage and the site view as plans (SPEC §4.1, §4.2, §4.3).

Pure: every fact about the machine (which homes exist, which entries the
home has, where the cgroup is) comes in as an argument. Operations are
applied in order by native/holder: clones first (while everything is still
visible), then the read-only system, masks, private mounts, and the site's
own paths put back.
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass, field

from siteiso.plan.ops import Op, op
from siteiso.plan.sites import SiteInput, inside, site_paths

# Always hidden below every home, in every mode (§4.2).
ALWAYS_HIDDEN = (".cagefs", ".ssh", ".my.cnf", ".pgpass", "mail", "etc", "ssl",
                 ".cpanel", ".htpasswds", "logs", "access-logs")
HIDDEN_PREFIXES = ("backup-",)
# Per-site writable areas in private mode, kept in site storage.
CACHES = (".cache", ".composer", ".wp-cli")

# siteiso's own state, sockets and configuration, and the panels' lists of
# every account: never visible in a view.
SYSTEM_HIDDEN_DIRS = ("/var/lib/siteiso", "/etc/siteiso",
                      "/etc/cagefs", "/opt/cpvendor", "/var/cpanel/userdata",
                      "/usr/libexec/siteiso/wrappers")
SYSTEM_HIDDEN_FILES = ("/etc/userdatadomains", "/etc/trueuserdomains")

# Programs that start work elsewhere (§4.3): masked in site views.
SITE_MASKED_PROGRAMS = (
    "/usr/bin/crontab", "/usr/bin/at", "/usr/bin/batch", "/usr/bin/atq",
    "/usr/bin/atrm", "/usr/bin/systemd-run", "/usr/bin/busctl",
    "/usr/bin/dbus-send", "/usr/local/bin/cagefsctl-user",
    "/usr/local/bin/selectorctl", "/usr/local/sbin/cagefsctl",
    "/usr/local/sbin/siteiso", "/usr/local/bin/siteiso",
)
SITE_MASKED_DIRS = ("/opt/siteiso", "/var/spool/cron", "/var/spool/at",
                    "/run/dbus", "/etc/apache2", "/etc/httpd")

PHP_SESSION_DIRS = ("/var/lib/php/sessions",)


# ---- per-domain PHP (SPEC §5) ----------------------------------------------
# The site's ini scan directory (root's, siteiso.service.php) is shown
# read-only at PHP_INI_DIR, in the /run/siteiso tmpfs of the view; the
# selected build's programs are attached read-only over the system's.
PHP_INI_DIR = "/run/siteiso/php"
PHP_SLOT = 220          # the ini dir; the programs take the slots after it


@dataclass(frozen=True)
class PhpView:
    ini_dir: str                                  # root-owned, real path
    binaries: tuple[tuple[str, str], ...] = ()    # (build's program, system's)


def _php_ops(c: CageInput, php: PhpView | None) -> tuple[list[Op], list[Op]]:
    """Clones and attaches of a site's PHP; none without /run/siteiso (the
    ini dir needs the view's tmpfs there)."""
    if php is None or "/run/siteiso" not in c.existing:
        return [], []
    clones = [op("clone", PHP_SLOT, php.ini_dir, "sys", "dir")]
    attaches = [op("attach", PHP_SLOT, PHP_INI_DIR, "ro")]
    for i, (src, dst) in enumerate(php.binaries, PHP_SLOT + 1):
        clones.append(op("clone", i, src, "sys", "file"))
        attaches.append(op("attach", i, dst, "ro"))
    return clones, attaches


# The local MTA's queues and logs stay writable (by the MTA's own setuid or
# setgid programs; their modes keep sites out): mail() must keep working.
MTA_WRITABLE = ("/var/spool/exim4", "/var/log/exim4", "/var/spool/postfix",
                "/var/spool/mqueue", "/var/spool/clientmqueue")


@dataclass(frozen=True)
class Storage:
    """Per-site (or per-cage) writable dirs, already created by root."""
    tmp: str
    var_tmp: str
    shm: str
    sessions: str
    cache: str = ""


@dataclass(frozen=True)
class Entry:
    """One entry of a directory of the home, as the engine saw it (lstat)."""
    name: str
    kind: str           # dir | file | link | other
    link: str = ""      # a symlink's text


@dataclass(frozen=True)
class CageInput:
    user: str
    uid: int
    gid: int
    home: str
    hosting_homes: tuple[str, ...]   # every hosting account's home
    home_entries: tuple[str, ...]    # names directly under the home (for masks)
    passwd: str                      # generated, root-owned files
    group: str
    cgroup: str                      # the cage's or site's cgroup directory
    storage: Storage
    existing: frozenset[str] = field(default=frozenset())  # system paths present
    # System paths that are symlinks, with their (root-owned) real targets:
    # a mask goes on the real file, never on a link.
    real: tuple[tuple[str, str], ...] = ()
    # home = ro | shared: the entries of the home and of every directory that
    # holds a hidden path below the top level (listing_dirs), by directory.
    listings: tuple[tuple[str, tuple[Entry, ...]], ...] = ()
    # The probe verdict (siteiso.platform "proc_hidepid"): procfs options per
    # mount. Without them the cage, in the host's PID namespace, would share
    # the host's /proc superblock, and hidepid would reconfigure it.
    proc_hidepid: bool = True
    # The host's php-fpm pools the account runs or may connect to, outside
    # every view (siteiso.service.pools): (path, dir|file) to cover in its
    # site views, so that a site's PHP cannot have them run code outside.
    fpm_masks: tuple[tuple[str, str], ...] = ()


@functools.lru_cache(maxsize=4)
def _mask_roots(homes: tuple[str, ...]) -> tuple[str, ...]:
    """The directories to cover with tmpfs so that no other home exists.
    The same for every view of a converge (remembered: with 1000 accounts
    recomputing it per plan was a fifth of a --remount-all)."""
    roots = sorted({posixpath.dirname(h) for h in homes if h.count("/") >= 2})
    return tuple(r for r in roots if r not in ("/", ""))


def _hidden_in_home(c: CageInput, extra: tuple[str, ...] = ()) -> list[str]:
    return _hidden_paths(c.home, c.home_entries, extra)


def _hidden_paths(home: str, entries: tuple[str, ...],
                  extra: tuple[str, ...]) -> list[str]:
    """The always-hidden paths of a home: the built-in names, backups, and
    the configured (home-relative, possibly nested) paths."""
    names = set(ALWAYS_HIDDEN)
    names |= {e for e in entries if e.startswith(HIDDEN_PREFIXES)}
    paths = {posixpath.join(home, n) for n in names}
    for rel in extra:
        p = posixpath.normpath(posixpath.join(home, rel))
        if inside(p, home) and p != home:
            paths.add(p)
    return sorted(paths)


def reserved_path(home: str, path: str, hidden: tuple[str, ...]) -> str | None:
    """The path below home that holds path (or is it) and that no site may
    own: what every view hides (ALWAYS_HIDDEN, backups, the configured
    hidden paths) and what the owner's own login and tools run or read
    (RUN_BY_OWNER, read-only in every view). None when path is free."""
    if not inside(path, home) or path == home:
        return None
    top = path[len(home.rstrip("/")) + 1:].split("/")[0]
    candidates = _hidden_paths(home, (top,), hidden)
    if top in RUN_BY_OWNER:
        candidates.append(posixpath.join(home, top))
    return next((c for c in candidates if inside(path, c)), None)


def listing_dirs(home: str, hidden: tuple[str, ...]) -> list[str]:
    """The directories a ro/shared view needs listed (CageInput.listings):
    the home, and each directory on the way to a configured hidden path
    below the top level."""
    out = {home}
    for h in _hidden_paths(home, (), hidden):
        out |= set(_between(h, home))
    return sorted(out, key=lambda p: (p.count("/"), p))


def _between(path: str, top: str) -> list[str]:
    """The directories strictly between top and path, innermost first."""
    out = []
    p = posixpath.dirname(path)
    while p != top and inside(p, top):
        out.append(p)
        p = posixpath.dirname(p)
    return out


def _plain(text: str) -> bool:
    """A name a plan can carry: no control character, and valid UTF-8 (a
    name read from a hostile home may hold any byte; os.fsdecode keeps the
    others as surrogates)."""
    return bool(text) and not _UNPLAIN.search(text)


_UNPLAIN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _mkdirs(path: str, below: str) -> list[Op]:
    """mkdir every component of path beneath `below` (a tmpfs we made)."""
    return [op("mkdir", path, "0711")] if inside(path, below) and path != below else []


def _header(c: CageInput, pidns: bool) -> list[Op]:
    # A site's /proc is of its own PID namespace: hidepid stays (SPEC §9).
    hidepid = pidns or c.proc_hidepid
    return [op("version", 1), op("uid", c.uid, c.gid), op("home", c.home),
            op("cgroup", c.cgroup), op("pidns", "yes" if pidns else "no"),
            op("proc", "hidepid=invisible" if hidepid else "-")]


def _system(c: CageInput, extra_dirs: tuple[str, ...] = (),
            extra_files: tuple[str, ...] = (),
            run_dirs: tuple[str, ...] = ()) -> list[Op]:
    ops = [op("ro", "/")]
    real = dict(c.real)
    if "/run/siteiso" in c.existing:
        # Hidden, except the index (root-only, 0700) that the setuid entry
        # reads to re-enter the same site from inside it. The directory is
        # bound, not the file: Python replaces the file by rename.
        ops += [op("clone", 230, "/run/siteiso/index", "sys", "dir"),
                op("tmpfs", "/run/siteiso", "0711", 0, 0, "rw"),
                op("mkdir", "/run/siteiso/index", "0700"),
                *(op("mkdir", d, "0755") for d in run_dirs),   # PHP_INI_DIR
                op("ro", "/run/siteiso"),
                op("attach", 230, "/run/siteiso/index", "ro")]
    for d in (*SYSTEM_HIDDEN_DIRS, *extra_dirs):
        if d in c.existing:
            ops.append(op("mask", real.get(d, d), "dir"))
    for f in (*SYSTEM_HIDDEN_FILES, *extra_files):
        if f in c.existing:
            ops.append(op("mask", real.get(f, f), "file"))
    ops += [op("mask", f"/run/user/{c.uid}", "dir")] \
        if f"/run/user/{c.uid}" in c.existing else []
    # Cloned before / turns read-only (a clone keeps its source's flags).
    mta = [real.get(d, d) for d in MTA_WRITABLE if d in c.existing]
    clones = [op("clone", 240 + i, d, "sys", "dir") for i, d in enumerate(mta)]
    ops += [op("attach", 240 + i, d, "rw") for i, d in enumerate(mta)]
    return clones + ops


def _private_tmp(c: CageInput, slot0: int) -> tuple[list[Op], list[Op]]:
    pairs = [(c.storage.tmp, "/tmp"), (c.storage.var_tmp, "/var/tmp"),
             (c.storage.shm, "/dev/shm")]
    pairs += [(c.storage.sessions, d) for d in PHP_SESSION_DIRS if d in c.existing]
    clones, attaches = [], []
    for i, (src, dst) in enumerate(pairs):
        clones.append(op("clone", slot0 + i, src, "user", "dir"))
        attaches.append(op("attach", slot0 + i, dst, "rw"))
    return clones, attaches


def _identity_files(c: CageInput, slot0: int) -> tuple[list[Op], list[Op]]:
    clones = [op("clone", slot0, c.passwd, "sys", "file"),
              op("clone", slot0 + 1, c.group, "sys", "file")]
    attaches = [op("attach", slot0, "/etc/passwd", "ro"),
                op("attach", slot0 + 1, "/etc/group", "ro")]
    return clones, attaches


def cage_plan(c: CageInput) -> list[Op]:
    """The user cage: system read-only, own home, private tmp, no other home."""
    ops = _header(c, pidns=False)
    ops.append(op("clone", 0, c.home, "user", "dir"))
    tmp_clones, tmp_attach = _private_tmp(c, 1)
    id_clones, id_attach = _identity_files(c, 10)
    ops += tmp_clones + id_clones + _system(c)
    roots = _mask_roots(c.hosting_homes)
    ops += _covered(c, roots, [])
    ops.append(op("attach", 0, c.home, "rw"))
    ops += [op("mask", p, "dir") for p in _hidden_in_home(c)
            if posixpath.basename(p) == ".cagefs"]
    return ops + tmp_attach + id_attach


def _covered(c: CageInput, roots: tuple[str, ...], private_home: list[str],
             made: list[Op] | None = None) -> list[Op]:
    """Cover the homes' parents (and, for a private site, the home) with
    tmpfs, make the directories the view needs, then make the tmpfs
    read-only before anything is attached on it (so attached trees stay
    writable)."""
    # The host's own mounts there are let go first (no hidden copy of another
    # home's file system stays under the cover, nothing is kept busy by it).
    ops = [op("detach", r) for r in roots]
    ops += [op("tmpfs", r, "0755", 0, 0, "rw") for r in roots]
    ops += [m for r in roots for m in _mkdirs(c.home, r)]
    if private_home:
        ops.append(op("tmpfs", c.home, "0711", 0, 0, "rw"))
        ops += [m for p in private_home for m in _mkdirs(p, c.home)]
    ops += made or []
    ops += [op("ro", r) for r in roots]
    ops += [op("ro", c.home)] if private_home or made else []
    return ops


# ---- home = ro | shared: a read-only skeleton of the home (§4.2) ------------
# The home's top level (and each directory on the way to a nested hidden path)
# is a read-only tmpfs of the user's, where every entry the engine listed and
# no rule hides is bound (ro or rw per mode) and every symlink recreated: an
# entry made later, hidden or not, does not exist in the view until the next
# rebuild, and no site can make one there (EROFS: fails closed). The home is
# cloned whole once, attached at STAGE (always hidden, never an entry), each
# entry cloned from there and bound, then STAGE is let go of: one descriptor
# at a time, however many entries the home has.
# Limitation: an entry is bound by what it is when the view is built: one the
# owner renames to a hidden name stays visible under its old name in views
# built before, until they are rebuilt; one that vanishes between the listing
# and the build fails that build (the user's old views stay; the next
# converge retries).
STAGE = ".cagefs"
STAGE_SLOT = 250
ENTRY_SLOT = 251


# Top-level entries of a home that code outside every site runs or reads as
# instructions: the owner's shell and login start-up files, ~/bin and the
# user's program and config trees, mail delivery filters (which may pipe to
# programs). "A site never writes anything that code outside that site
# executes" (SPEC §4.2): read-only in every view, `home = shared` included.
RUN_BY_OWNER = frozenset({
    ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
    ".zshrc", ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".cshrc",
    ".tcshrc", ".login", ".logout", ".kshrc", ".inputrc", ".config", ".local",
    "bin", ".forward", ".procmailrc", ".mailfilter", ".qmail", ".muttrc",
    ".gitconfig", ".vimrc", ".emacs", ".npmrc", ".pip", ".pydistutils.cfg",
    ".wp-cli", ".composer", ".drush", ".ssh", ".gnupg", ".cagefs",
})


def _skeleton(c: CageInput, hidden: list[str], keep_out: list[str],
              mode: str) -> tuple[list[Op], list[Op], set[str]]:
    """(ops made while the home's tmpfs is writable, ops binding the entries
    once it is read-only, the mount points made)."""
    listings = dict(c.listings)
    hide = set(hidden)
    holders = {d for h in hidden for d in _between(h, c.home)}
    made = [op("tmpfs", c.home, "0750", c.uid, c.gid, "rw")]
    binds: list[tuple[str, str, str]] = []
    mounted = {c.home}

    def fill(d: str) -> None:
        for e in listings.get(d, ()):
            path = posixpath.join(d, e.name)
            if path in hide or not _plain(e.name) or "/" in e.name or \
                    (d == c.home and e.name.startswith(HIDDEN_PREFIXES)):
                continue
            if e.kind == "dir" and path in holders and path in listings and \
                    not any(inside(path, k) for k in keep_out):
                made.extend([op("mkdir", path, "0755"),
                             op("tmpfs", path, "0750", c.uid, c.gid, "rw")])
                mounted.add(path)
                fill(path)
            elif e.kind in ("dir", "file"):
                made.append(op("mkdir", path, "0755") if e.kind == "dir"
                            else op("touch", path, "0644"))
                binds.append((path, e.kind, "ro" if d == c.home and
                              e.name in RUN_BY_OWNER else mode))
                mounted.add(path)
            elif e.kind == "link" and _plain(e.link):
                made.append(op("symlink", path, e.link))

    fill(c.home)
    stage = posixpath.join(c.home, STAGE)
    made.append(op("mkdir", stage, "0700"))
    bound = [op("attach", STAGE_SLOT, stage, "rw")]
    for path, kind, how in binds:
        bound += [op("clone", ENTRY_SLOT, stage + path[len(c.home):], "sys", kind),
                  op("attach", ENTRY_SLOT, path, how)]
    bound.append(op("detach", stage))
    return made, bound, mounted


def _web_paths(c: CageInput, site: SiteInput, mounted: list[str]) -> list[Op]:
    """The docroot as the web server names it, where a symlink on the way
    makes that another path (the engine resolved it to this docroot): in a
    private view, a symlink there to the docroot, in the view's own tmpfs, so
    the handler's paths exist. Never where a tree of the user's is attached."""
    ops: list[Op] = []
    done: list[str] = []
    for p in site.configured:
        if p == site.docroot or p == c.home or not inside(p, c.home) or \
                any(inside(p, d) or inside(d, p) for d in (*mounted, *done)):
            continue
        ops += _mkdirs(posixpath.dirname(p), c.home)
        ops.append(op("symlink", p, site.docroot))
        done.append(p)
    return ops


def _pins(masks: list[str], mounted: set[str], home: str) -> list[Op]:
    """Every directory between a mask in the home and the nearest mount point
    above it becomes a mount point itself (a mount point cannot be renamed or
    removed: EBUSY), so no site can move a masked path's parents and make the
    next view mask its own decoy instead."""
    pins = set()
    for m in masks:
        for d in _between(m, home):
            if d in mounted:
                break
            pins.add(d)
    return [op("pin", d) for d in sorted(pins, key=lambda p: (p.count("/"), p))]


def site_plan(c: CageInput, site: SiteInput, sites: list[SiteInput],
              php: PhpView | None = None) -> list[Op]:
    """The site view: the cage narrowed to the site's own paths (§4.2)."""
    ops = _header(c, pidns=True)
    private = site.home_mode == "private"
    owned = site_paths(site, c.home, sites)
    foreign = [p for s in sites if s.token != site.token
               for p in site_paths(s, c.home, sites)]
    hidden = _hidden_in_home(c, site.hidden)
    mounts: list[tuple[str, str, str]] = []   # (source, target, rw|ro)
    mounts += [(p, p, "rw") for p in owned]
    if private:
        for entry in site.shared:
            rel, _, flag = entry.partition(":")
            path = posixpath.normpath(posixpath.join(c.home, rel))
            if inside(path, c.home) and path != c.home and \
                    not any(inside(path, f) or inside(f, path) for f in foreign):
                mounts.append((path, path, "rw" if flag == "rw" else "ro"))
        if c.storage.cache:
            mounts += [(f"{c.storage.cache}/{n.lstrip('.')}", f"{c.home}/{n}", "rw")
                       for n in CACHES]
    clones = [op("clone", i, src, "user", "dir")
              for i, (src, _, _) in enumerate(mounts)]
    attaches = [op("attach", i, dst, mode)
                for i, (_, dst, mode) in enumerate(mounts)]
    tmp_clones, tmp_attach = _private_tmp(c, 200)
    id_clones, id_attach = _identity_files(c, 210)
    php_clones, php_attach = _php_ops(c, php)
    # ro | shared: the whole home, cloned while it is visible, for the skeleton.
    home_clone = [] if private else [op("clone", STAGE_SLOT, c.home, "user", "dir")]
    ops += clones + home_clone + tmp_clones + id_clones + php_clones
    ops += _system(c, SITE_MASKED_DIRS, SITE_MASKED_PROGRAMS,
                   (PHP_INI_DIR,) if php_clones else ())
    ops += [op("mask", path, kind) for path, kind in c.fpm_masks]
    # A devpts of its own: the owner's terminals do not exist in a site.
    ops += [op("devpts", "/dev/pts")] if "/dev/pts" in c.existing else []
    roots = _mask_roots(c.hosting_homes)
    dsts = [dst for _, dst, _ in mounts]
    skeleton: set[str] = set()
    if private:
        ops += _covered(c, roots, dsts, _web_paths(c, site, dsts))
        mounted = {c.home}
    else:
        made, bound, mounted = _skeleton(c, hidden, owned + foreign,
                                         "ro" if site.home_mode == "ro" else "rw")
        ops += _covered(c, roots, [], made) + bound
        # A hidden entry of the skeleton's directories is never bound: no mask.
        skeleton = {o.args[0] for o in made if o.kind == "tmpfs"}
    # Siblings nested in what this site sees: present, empty, read-only.
    visible = owned if private else [c.home]
    nested = sorted(f for f in set(foreign)
                    if any(inside(f, v) and f != v for v in visible))
    # ro | shared, a site nested in a sibling's path: that path is covered
    # like a private home, with only the way to this site's own paths.
    covers = [f for f in nested if any(inside(p, f) and p != f for p in owned)]
    masks = [(f, "dir") for f in nested if f not in covers]
    masks += [(h, "file" if h.endswith((".my.cnf", ".pgpass")) else "dir")
              for h in hidden if any(inside(h, v) for v in visible)
              and posixpath.dirname(h) not in skeleton]
    mounted |= {*dsts, *covers, *(m for m, _ in masks)}
    ops += _pins(covers, mounted, c.home)
    for f in covers:
        ops += [op("tmpfs", f, "0711", 0, 0, "rw"),
                *(m for p in owned for m in _mkdirs(p, f)), op("ro", f)]
    ops += attaches
    ops += _pins([m for m, _ in masks], mounted, c.home)
    ops += [op("mask", m, kind) for m, kind in masks]
    return ops + tmp_attach + id_attach + php_attach
