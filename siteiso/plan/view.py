"""The user cage and the site view as plans (SPEC §4.1, §4.2, §4.3).

Pure: every fact about the machine (which homes exist, which entries the
home has, where the cgroup is) comes in as an argument. Operations are
applied in order by native/holder: clones first (while everything is still
visible), then the read-only system, masks, private mounts, and the site's
own paths put back.
"""

from __future__ import annotations

import posixpath
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


def _mask_roots(homes: tuple[str, ...]) -> list[str]:
    """The directories to cover with tmpfs so that no other home exists."""
    roots = sorted({posixpath.dirname(h) for h in homes if h.count("/") >= 2})
    return [r for r in roots if r not in ("/", "")]


def _hidden_in_home(c: CageInput) -> list[str]:
    names = set(ALWAYS_HIDDEN)
    names |= {e for e in c.home_entries if e.startswith(HIDDEN_PREFIXES)}
    return sorted(posixpath.join(c.home, n) for n in names)


def _mkdirs(path: str, below: str) -> list[Op]:
    """mkdir every component of path beneath `below` (a tmpfs we made)."""
    return [op("mkdir", path, "0711")] if inside(path, below) and path != below else []


def _header(c: CageInput, pidns: bool) -> list[Op]:
    return [op("version", 1), op("uid", c.uid, c.gid), op("home", c.home),
            op("cgroup", c.cgroup), op("pidns", "yes" if pidns else "no"),
            op("proc", "hidepid=invisible")]


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


def _covered(c: CageInput, roots: list[str], private_home: list[str]) -> list[Op]:
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
    ops += [op("ro", r) for r in roots]
    ops += [op("ro", c.home)] if private_home else []
    return ops


def site_plan(c: CageInput, site: SiteInput, sites: list[SiteInput],
              php: PhpView | None = None) -> list[Op]:
    """The site view: the cage narrowed to the site's own paths (§4.2)."""
    ops = _header(c, pidns=True)
    private = site.home_mode == "private"
    owned = site_paths(site, c.home, sites)
    foreign = [p for s in sites if s.token != site.token
               for p in site_paths(s, c.home, sites)]
    mounts: list[tuple[str, str, str]] = []   # (source, target, rw|ro)
    if not private:
        mounts.append((c.home, c.home, "ro" if site.home_mode == "ro" else "rw"))
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
    ops += clones + tmp_clones + id_clones + php_clones
    ops += _system(c, SITE_MASKED_DIRS, SITE_MASKED_PROGRAMS,
                   (PHP_INI_DIR,) if php_clones else ())
    # A devpts of its own: the owner's terminals do not exist in a site.
    ops += [op("devpts", "/dev/pts")] if "/dev/pts" in c.existing else []
    roots = _mask_roots(c.hosting_homes)
    ops += _covered(c, roots, [dst for _, dst, _ in mounts] if private else [])
    ops += attaches
    # Siblings nested in what this site sees: present, empty, read-only.
    visible = owned if private else [c.home]
    for f in sorted(set(foreign)):
        if any(inside(f, v) and f != v for v in visible):
            ops.append(op("mask", f, "dir"))
    for hidden in _hidden_in_home(c):
        if any(inside(hidden, v) for v in visible):
            kind = "file" if hidden.endswith((".my.cnf", ".pgpass")) else "dir"
            ops.append(op("mask", hidden, kind))
    return ops + tmp_attach + id_attach + php_attach
