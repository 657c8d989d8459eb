"""Per-domain PHP (SPEC §5): the installed builds, their extensions, each
isolated site's settings and the ini scan directory root writes for it.

Builds come from the panel's `php` script when it has one, else from what is
installed, first found wins per version:

- /opt/alt/phpXY (CloudLinux): usr/bin/php, usr/bin/php-cgi,
  usr/sbin/php-fpm; shared objects in usr/lib64/php/modules; ini files
  enabled in etc/php.d, more available in etc/php.d.all.
- /opt/cpanel/ea-phpXY (EasyApache): the same under root/, enabled ini files
  in root/etc/php.d.
- Debian: /usr/bin/phpX.Y, /usr/bin/php-cgiX.Y, /usr/sbin/php-fpmX.Y; shared
  objects in /usr/lib/php/<module API>; enabled ini files in
  /etc/php/X.Y/cli/conf.d, more in /etc/php/X.Y/mods-available.

An extension is what an ini file of the build loads (`extension=`,
`zend_extension=`) or a shared object in its extension directory. The
"enabled" ini files are the build's defaults; one of them that loads nothing
carries settings of the build itself (kept for every site).

A site's settings (Site.php, kept in State.php_kept across disable):

    {"version": "8.2", "extensions": {"8.2": ["curl", "mbstring"]}}

extensions per version, so switching back finds the old set. A site without
settings of its own runs the panel's per-domain version if the panel has
one, else "the user's": without CloudLinux's per-user selector that is the
system's default PHP (the build /usr/bin/php resolves to; the highest
version when none does) with the extensions its default scan directory
enables. cagefsctl records them at enable (initial_settings()).

Root writes each site's ini scan directory under /var/lib/siteiso/php/<token>/
as <version>-<hash of the content>/ (0755, files 0644): a change is a new
directory, so the view is rebuilt on it and the site's running PHP (and a
retired view still in use) keeps the one it started with. Every path read
for a build (binaries, shared objects, ini files) must be root's, in
directories no one else can write, or it is ignored.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from siteiso import panels, paths
from siteiso.accounts import Account
from siteiso.config import Config
from siteiso.errors import PanelError, SiteisoError
from siteiso.panels.base import DomainRecord, Panel, PhpVersion, php_version_of
from siteiso.plan.view import PHP_INI_DIR, PHP_SLOT, PhpView
from siteiso.service import layout
from siteiso.state import Site, State
from siteiso.views.index import Holder

log = logging.getLogger("siteiso.php")

PHP_LIB = f"{paths.LIB}/php"
# Where a site view shows its ini scan directory (the index records it, the
# entry sets PHP_INI_SCAN_DIR from it).
INI_IN_VIEW = PHP_INI_DIR
# The system's programs a view replaces with the site's build (their real
# targets): kind -> candidates; the handler's php-cgi and php-fpm are added
# from the distribution layout.
SYSTEM_PROGRAMS = {"php": ("/usr/bin/php", "/usr/local/bin/php"),
                   "php-cgi": ("/usr/bin/php-cgi",), "php-fpm": ()}
DEFAULT_PRIORITY = 20
MAX_INI = 256 * 1024
# Debian keeps shared objects per Zend module API number.
DEBIAN_API = {"7.0": "20151012", "7.1": "20160303", "7.2": "20170718",
              "7.3": "20180731", "7.4": "20190902", "8.0": "20200930",
              "8.1": "20210902", "8.2": "20220829", "8.3": "20230831",
              "8.4": "20240924"}
# Extensions that do not load without others: enabling one enables these.
NEEDS = {"pdo_mysql": ("pdo", "mysqlnd"), "pdo_sqlite": ("pdo",),
         "pdo_pgsql": ("pdo",), "mysqli": ("mysqlnd",), "xsl": ("dom",)}

_EXT_LINE = re.compile(r"^\s*(zend_extension|extension)\s*=\s*(.*?)\s*$")
_PRIORITY = re.compile(r"^\s*[;#]\s*priority\s*=\s*(\d{1,3})\s*$")
_PREFIX = re.compile(r"^(\d{1,3})-")
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# A shared object's path is written into an ini file: nothing PHP's ini
# syntax would read as more than a path.
_SO_PATH = re.compile(r"^/[A-Za-z0-9_./+@-]{1,1000}$")
_ALT = re.compile(r"^(?:alt-)?php(\d)(\d{1,2})$")
_EA = re.compile(r"^ea-php(\d)(\d{1,2})$")
_DEBIAN = re.compile(r"^php(\d\.\d{1,2})$")

Trust = Callable[[str], bool]


class PhpError(SiteisoError):
    """A PHP version or extension that does not exist, or cannot be used."""


# ---- what is installed --------------------------------------------------------

@dataclass(frozen=True)
class Extension:
    name: str
    so: str                         # absolute path of the shared object
    zend: bool                      # zend_extension= rather than extension=
    priority: int                   # load order
    settings: tuple[str, ...] = ()  # the other lines of its ini file


@dataclass(frozen=True)
class Build:
    version: str                    # "8.2"
    identifier: str                 # "alt-php82", "ea-php82", "php8.2"
    php: str                        # real paths
    php_cgi: str | None
    php_fpm: str | None
    ext_dir: str
    enabled_dirs: tuple[str, ...]   # ini files enabled by default
    more_dirs: tuple[str, ...] = ()  # ini files of extensions not enabled
    base_ini: str | None = None     # a settings file the panel names
    extensions: dict[str, Extension] = field(default_factory=dict, compare=False)
    defaults: tuple[str, ...] = ()  # extensions the enabled dirs load
    settings: tuple[str, ...] = ()  # the build's own settings lines

    def line(self) -> str:
        """`selectorctl --list` and `--user-current`: version, build, binary."""
        return f"{self.version}\t{self.identifier}\t{self.php_cgi or self.php}"


def trusted(path: str) -> bool:
    """Is every component of the real path root's and writable by root only?"""
    real = os.path.realpath(path)
    parts = [p for p in real.split("/") if p]
    walk = "/"
    for i in range(len(parts) + 1):
        if i:
            walk = os.path.join(walk, parts[i - 1])
        try:
            st = os.lstat(walk)
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode):
            return False
    return True


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _real_file(path: str | None, trust: Trust) -> str | None:
    if not path:
        return None
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        return None
    if not trust(real):
        log.warning("ignoring %s: not root's, or in a directory others can write",
                    path)
        return None
    return real


def _dirs(*candidates: str) -> tuple[str, ...]:
    return tuple(d for d in candidates if os.path.isdir(d))


def _first_dir(*candidates: str) -> str:
    return next((d for d in candidates if os.path.isdir(d)), candidates[0])


def _alt(root: str, trust: Trust) -> list[Build]:
    out = []
    for d in sorted(glob.glob(f"{root}/opt/alt/php*")):
        m = _ALT.match(os.path.basename(d))
        if not m:
            continue
        b = _make(f"{m.group(1)}.{m.group(2)}", f"alt-php{m.group(1)}{m.group(2)}",
                  f"{d}/usr/bin", f"{d}/usr/sbin/php-fpm",
                  _first_dir(f"{d}/usr/lib64/php/modules", f"{d}/usr/lib/php/modules"),
                  _dirs(f"{d}/etc/php.d"), _dirs(f"{d}/etc/php.d.all"), None, trust)
        out += [b] if b else []
    return out


def _ea(root: str, trust: Trust) -> list[Build]:
    out = []
    for d in sorted(glob.glob(f"{root}/opt/cpanel/ea-php*")):
        m = _EA.match(os.path.basename(d))
        if not m:
            continue
        r = f"{d}/root"
        b = _make(f"{m.group(1)}.{m.group(2)}", os.path.basename(d),
                  f"{r}/usr/bin", f"{r}/usr/sbin/php-fpm",
                  _first_dir(f"{r}/usr/lib64/php/modules", f"{r}/usr/lib/php/modules"),
                  _dirs(f"{r}/etc/php.d"), (), None, trust)
        out += [b] if b else []
    return out


def _debian_ext_dir(root: str, version: str, php: str) -> str:
    api = DEBIAN_API.get(version)
    if api and os.path.isdir(f"{root}/usr/lib/php/{api}"):
        return f"{root}/usr/lib/php/{api}"
    # A version newer than the table: ask the binary (no ini files read).
    try:
        r = subprocess.run([php, "-n", "-r", "echo PHP_EXTENSION_DIR;"],
                           capture_output=True, text=True, timeout=10, env={})
        if r.returncode == 0 and r.stdout.startswith("/"):
            return f"{root}{r.stdout.strip()}" if root else r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return f"{root}/usr/lib/php/{api or 'unknown'}"


def _debian(root: str, trust: Trust) -> list[Build]:
    out = []
    for php in sorted(glob.glob(f"{root}/usr/bin/php[0-9]*")):
        m = _DEBIAN.match(os.path.basename(php))
        if not m:
            continue
        v = m.group(1)
        if _real_file(php, trust) is None:
            continue     # checked before _debian_ext_dir may run it
        etc = f"{root}/etc/php/{v}"
        b = _make(v, f"php{v}", f"{root}/usr/bin", f"{root}/usr/sbin/php-fpm{v}",
                  _debian_ext_dir(root, v, php),
                  _dirs(f"{etc}/cli/conf.d") or _dirs(f"{etc}/cgi/conf.d"),
                  _dirs(f"{etc}/mods-available"), None, trust,
                  names=(f"php{v}", f"php-cgi{v}"))
        out += [b] if b else []
    return out


def _make(version: str, identifier: str, bindir: str, fpm: str, ext_dir: str,
          enabled: tuple[str, ...], more: tuple[str, ...], base_ini: str | None,
          trust: Trust, names: tuple[str, str] = ("php", "php-cgi"),
          php: str | None = None) -> Build | None:
    php_real = _real_file(php or f"{bindir}/{names[0]}", trust)
    if php_real is None:
        return None
    b = Build(version, identifier, php_real,
              _real_file(f"{bindir}/{names[1]}", trust),
              _real_file(fpm, trust), ext_dir, enabled, more,
              _real_file(base_ini, trust))
    return _with_extensions(b, trust)


def _from_panel(v: PhpVersion, trust: Trust) -> Build | None:
    d = v.dir
    bindir = f"{d}/usr/bin" if d else ""
    php = v.bin or (f"{bindir}/php" if d else None)
    if php is None:
        log.warning("panel PHP %s names no binary: ignored", v.identifier)
        return None
    more: tuple[str, ...] = ()
    if d and os.path.isdir(f"{d}/root/etc"):     # EasyApache's layout
        enabled = _dirs(f"{d}/root/etc/php.d")
        fpm = f"{d}/root/usr/sbin/php-fpm"
    else:
        enabled = _dirs(f"{d}/etc/php.d") if d else ()
        more = _dirs(f"{d}/etc/php.d.all") if d else ()
        fpm = f"{d}/usr/sbin/php-fpm" if d else ""
    ext_dir = v.modules_dir or (f"{d}/usr/lib64/php/modules" if d else "")
    b = _make(v.version, v.identifier, os.path.dirname(php), fpm, ext_dir, enabled,
              more, v.ini, trust, php=php)
    if b is None:
        log.warning("panel PHP %s: %s is not installed (or not root's): ignored",
                    v.identifier, php)
    return b


def discover(panel_versions: list[PhpVersion] | None, root: str = "",
             trust: Trust = trusted) -> dict[str, Build]:
    """The PHP builds by version: the panel's answer when it gives one, else
    /opt/alt, /opt/cpanel and Debian's, first found wins. `root` prefixes every
    path (tests lay out fake trees)."""
    if panel_versions is not None:
        builds = [b for v in panel_versions
                  if (b := _from_panel(v, trust)) is not None]
    else:
        builds = _alt(root, trust) + _ea(root, trust) + _debian(root, trust)
    out: dict[str, Build] = {}
    for b in builds:
        out.setdefault(b.version, b)
    return dict(sorted(out.items(), key=lambda kv: version_key(kv[0])))


def default_version(builds: dict[str, Build], root: str = "") -> str | None:
    """The system's PHP: the build /usr/bin/php resolves to, else the highest."""
    for candidate in SYSTEM_PROGRAMS["php"]:
        path = f"{root}{candidate}"
        if os.path.exists(path):
            real = os.path.realpath(path)
            for v, b in builds.items():
                if b.php == real:
                    return v
    return next(reversed(builds), None) if builds else None


# ---- ini files ----------------------------------------------------------------

def _read_ini(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(MAX_INI).splitlines()
    except OSError as e:
        log.warning("cannot read %s: %s", path, e.strerror)
        return []


def parse_ini(lines: Iterable[str]) -> tuple[list[tuple[bool, str]], list[str],
                                             int | None]:
    """(zend?, value) of each extension line, the other setting lines, and the
    `; priority=NN` Debian writes, if any."""
    exts: list[tuple[bool, str]] = []
    settings: list[str] = []
    priority = None
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line[0] in ";#":
            m = _PRIORITY.match(line)
            if m:
                priority = int(m.group(1))
            continue
        m = _EXT_LINE.match(line)
        if m:
            exts.append((m.group(1) == "zend_extension", m.group(2).strip("\"'")))
        else:
            settings.append(line)
    return exts, settings, priority


def _so_path(ext_dir: str, value: str) -> str:
    path = value if value.startswith("/") else os.path.join(ext_dir, value)
    return path if path.endswith(".so") else f"{path}.so"


def _ext_name(so: str) -> str:
    return os.path.basename(so)[:-3]


def _is_zend(so: str) -> bool:
    """A Zend extension exports zend_extension_entry (found near the start,
    in the dynamic string table)."""
    try:
        with open(so, "rb") as f:
            return b"zend_extension_entry" in f.read(4 * 1024 * 1024)
    except OSError:
        return False


def _ini_files(d: str) -> list[str]:
    try:
        return [f"{d}/{n}" for n in sorted(os.listdir(d)) if n.endswith(".ini")]
    except OSError:
        return []


def _usable(name: str, so: str, trust: Trust) -> bool:
    return bool(_NAME.match(name) and os.path.isfile(so)
                and _SO_PATH.match(os.path.realpath(so)) and trust(so))


def _with_extensions(b: Build, trust: Trust) -> Build:
    exts: dict[str, Extension] = {}
    defaults: list[str] = []
    settings: list[str] = []
    if b.base_ini:
        settings += parse_ini(_read_ini(b.base_ini))[1]
    # The enabled copy of an ini file wins over an available one.
    for d, enabled in [(d, False) for d in b.more_dirs] + \
            [(d, True) for d in b.enabled_dirs]:
        for path in _ini_files(d):
            if not trust(path):
                log.warning("ignoring %s: not root's, or in a directory others "
                            "can write", path)
                continue
            found, other, priority = parse_ini(_read_ini(path))
            if not found:
                if enabled:
                    settings += other
                continue
            m = _PREFIX.match(os.path.basename(path))
            prio = priority if priority is not None else \
                int(m.group(1)) if m else DEFAULT_PRIORITY
            for zend, value in found:
                so = _so_path(b.ext_dir, value)
                name = _ext_name(so)
                if not _usable(name, so, trust):
                    continue
                exts[name] = Extension(name, os.path.realpath(so), zend, prio,
                                       tuple(other) if len(found) == 1 else ())
                if enabled and name not in defaults:
                    defaults.append(name)
    try:
        objects = sorted(os.listdir(b.ext_dir))
    except OSError:
        objects = []
    for n in objects:
        so = f"{b.ext_dir}/{n}"
        name = n[:-3]
        if n.endswith(".so") and name not in exts and _usable(name, so, trust):
            exts[name] = Extension(name, os.path.realpath(so), _is_zend(so),
                                   DEFAULT_PRIORITY)
    return Build(**{**b.__dict__, "extensions": dict(sorted(exts.items())),
                    "defaults": tuple(sorted(defaults)),
                    "settings": tuple(settings)})


def ini_files(b: Build, enabled: Iterable[str]) -> dict[str, str]:
    """The site's ini scan directory for build b: file name -> content."""
    head = "; siteiso: generated by root for this site; changes are not kept\n"
    out: dict[str, str] = {}
    if b.settings:
        out["00-siteiso-build.ini"] = (head + f"; settings of {b.identifier}\n"
                                       + "\n".join(b.settings) + "\n")
    for name in sorted(set(enabled)):
        e = b.extensions.get(name)
        if e is None:
            continue
        key = "zend_extension" if e.zend else "extension"
        out[f"{e.priority:02d}-{name}.ini"] = (
            head + f"{key}={e.so}\n" + "".join(f"{s}\n" for s in e.settings))
    return out


def content_hash(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()[:16]


def write_ini_dir(token: str, version: str, files: dict[str, str],
                  lib: str = PHP_LIB) -> str:
    """Root's copy of a site's ini scan directory; the same content is the
    same directory (written once, then only read)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token):
        raise SiteisoError(f"refusing PHP settings for token {token!r}")
    for d in (lib, f"{lib}/{token}"):
        os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)
    final = f"{lib}/{token}/{version}-{content_hash(files)}"
    if os.path.isdir(final):
        return final
    tmp = f"{final}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp, 0o755)
    os.chmod(tmp, 0o755)
    for name, text in files.items():
        fd = os.open(f"{tmp}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
    os.rename(tmp, final)
    return final


def collect_garbage(token: str, keep: Iterable[str], lib: str = PHP_LIB) -> None:
    """Drop a site's ini directories that no view shows any more."""
    keep = set(keep)
    base = f"{lib}/{token}"
    with contextlib.suppress(FileNotFoundError):
        for n in os.listdir(base):
            if f"{base}/{n}" not in keep:
                shutil.rmtree(f"{base}/{n}", ignore_errors=True)


def prune(tokens: Iterable[str], lib: str = PHP_LIB) -> None:
    """Drop the ini directories of sites no longer isolated."""
    keep = set(tokens)
    with contextlib.suppress(FileNotFoundError):
        for n in os.listdir(lib):
            if n not in keep:
                shutil.rmtree(f"{lib}/{n}", ignore_errors=True)


# ---- a site's settings --------------------------------------------------------

def normalize_version(value: str, builds: dict[str, Build]) -> Build:
    v = php_version_of(value)
    if v is None or v not in builds:
        raise PhpError(f"PHP version {value} is not installed; installed versions: "
                       f"{', '.join(builds) or 'none'}")
    return builds[v]


def initial_settings(builds: dict[str, Build], panel_version: str | None,
                     root: str = "") -> dict[str, object]:
    """What a site gets when isolated without settings (§5)."""
    version = panel_version if panel_version in builds else None
    if panel_version and version is None:
        log.warning("the panel's PHP %s is not installed: using the default",
                    panel_version)
    version = version or default_version(builds, root)
    if version is None:
        return {}
    return {"version": version,
            "extensions": {version: list(builds[version].defaults)}}


def recorded_version(php: dict[str, object]) -> str | None:
    v = php.get("version")
    return v if isinstance(v, str) else None


def enabled(php: dict[str, object], b: Build) -> list[str]:
    """The site's extensions for build b: recorded, else the build's defaults;
    only those still installed."""
    per = php.get("extensions")
    chosen = per.get(b.version) if isinstance(per, dict) else None
    if not isinstance(chosen, list):
        chosen = list(b.defaults)
    return sorted({e for e in chosen if isinstance(e, str) and e in b.extensions})


def _with(php: dict[str, object], version: str, exts: list[str]) -> dict[str, object]:
    per = php.get("extensions")
    per = dict(per) if isinstance(per, dict) else {}
    per[version] = sorted(set(exts))
    return {**php, "extensions": per}


def set_version(php: dict[str, object], value: str,
                builds: dict[str, Build]) -> dict[str, object]:
    b = normalize_version(value, builds)
    if b.php_cgi is None:
        raise PhpError(f"PHP {b.version} ({b.identifier}) has no php-cgi: install "
                       "it first; a site needs it to serve requests")
    return _with({**php, "version": b.version}, b.version, enabled(php, b))


def _names(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v.strip().lower() for v in values if v.strip()))


def _check_names(names: list[str], b: Build) -> None:
    unknown = [n for n in names if n not in b.extensions]
    if unknown:
        raise PhpError(f"PHP {b.version} has no extension {', '.join(unknown)}; "
                       f"available: {', '.join(b.extensions) or 'none'}")


def enable_extensions(php: dict[str, object], value: str, names: Iterable[str],
                      builds: dict[str, Build]) -> dict[str, object]:
    b = normalize_version(value, builds)
    wanted = _names(names)
    _check_names(wanted, b)
    more = [d for n in wanted for d in NEEDS.get(n, ()) if d in b.extensions]
    return _with(php, b.version, enabled(php, b) + wanted + more)


def disable_extensions(php: dict[str, object], value: str, names: Iterable[str],
                       builds: dict[str, Build]) -> dict[str, object]:
    b = normalize_version(value, builds)
    unwanted = _names(names)
    _check_names(unwanted, b)
    return _with(php, b.version, [e for e in enabled(php, b) if e not in unwanted])


def effective(php: dict[str, object], builds: dict[str, Build],
              root: str = "") -> tuple[Build, list[str]] | None:
    """The build and extensions a site runs. A recorded version no longer
    installed (or without php-cgi) falls back to the default build with its
    defaults, the settings kept for when it comes back."""
    v = recorded_version(php)
    b = builds.get(v) if v else None
    if b is None or b.php_cgi is None:
        dv = default_version(builds, root)
        if dv is None:
            return None
        if v:
            log.warning("PHP %s of a site is not usable here: it runs %s", v, dv)
        b = builds[dv]
        return b, list(b.defaults)
    return b, enabled(php, b)


def binaries(b: Build, targets: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    """(the build's program, the system program it replaces in the view)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for kind, source in (("php", b.php), ("php-cgi", b.php_cgi),
                         ("php-fpm", b.php_fpm)):
        for target in targets.get(kind, []):
            if target in seen:
                continue
            seen.add(target)
            if source is None:
                log.warning("PHP %s has no %s: %s stays the system's", b.version,
                            kind, target)
            elif source != target:
                out.append((source, target))
    return tuple(out)


def system_targets(php_cgi: str, php_fpm: str,
                   trust: Trust = trusted) -> dict[str, list[str]]:
    """Real paths of the system's php, php-cgi (and the handler's) and
    php-fpm that views replace."""
    out: dict[str, list[str]] = {}
    extra = {"php-cgi": (php_cgi,), "php-fpm": (php_fpm,)}
    for kind, candidates in SYSTEM_PROGRAMS.items():
        found: list[str] = []
        for c in (*candidates, *extra.get(kind, ())):
            real = _real_file(c, trust) if c and os.path.lexists(c) else None
            if real and real not in found:
                found.append(real)
        out[kind] = found
    return out


# ---- what the engine asks for each user's views --------------------------------

_CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, object, object]] = {}
T = TypeVar("T")


def _cached(what: str, key: object, compute: Callable[[], T]) -> T:
    """compute(), kept a few seconds per `what` while `key` stays: a
    remount of every user reads the machine's PHP once, not once a user."""
    now = time.monotonic()
    hit = _cache.get(what)
    if hit is not None and hit[1] == key and now - hit[0] < _CACHE_SECONDS:
        return hit[2]  # type: ignore[return-value]
    value = compute()
    _cache[what] = (now, key, value)
    return value


def _system_targets_now(php_cgi: str, php_fpm: str) -> dict[str, list[str]]:
    return _cached("targets", (php_cgi, php_fpm),
                   lambda: system_targets(php_cgi, php_fpm))


def builds_for(panel: Panel) -> dict[str, Build]:
    """discover() with the panel's answer, or the installed builds when the
    panel has no php script (or fails: logged), cached per panel kind."""
    def read() -> dict[str, Build]:
        versions = None
        try:
            versions = panel.php_versions()
        except PanelError as e:
            log.warning("cannot read PHP versions from the panel: %s", e.message)
        return discover(versions)
    return _cached("builds", type(panel).__name__, read)


def panel_version(panel: Panel, site: Site,
                  records: dict[str, DomainRecord] | None = None) -> str | None:
    """The panel's per-domain PHP version of a site (its first name that has
    one); records: the owner's domains, when already read."""
    for name in site.names:
        try:
            rec = records.get(name) if records is not None else panel.domain(name)
        except SiteisoError as e:
            log.warning("cannot read domain %s from the panel: %s", name, e.message)
            continue
        if rec is not None and rec.php_version:
            return rec.php_version
    return None


def site_settings(st_site: Site, builds: dict[str, Build], panel: Panel,
                  records: dict[str, DomainRecord] | None = None) -> dict[str, object]:
    """A site's recorded settings, or (none recorded yet) what it gets."""
    if st_site.php:
        return dict(st_site.php)
    return initial_settings(builds, panel_version(panel, st_site, records))


def _dir_in_plan(plan_text: str) -> list[str]:
    prefix = f"clone\t{PHP_SLOT}\t"
    return [line.split("\t")[2] for line in plan_text.splitlines()
            if line.startswith(prefix)]


def prepare_user(st: State, acct: Account, cfg: Config, old: list[Holder],
                 old_plans: dict[str, str]) -> dict[str, PhpView]:
    """Settings, ini dirs and programs of a user's isolated sites, by token.

    A site whose PHP cannot be prepared runs the system's (logged): it never
    stops the rest of the views."""
    sites = st.sites_of(acct.name)
    if not sites:
        return {}
    try:
        panel = panels.get_panel(cfg)
        builds = builds_for(panel)
    except SiteisoError as e:
        log.error("PHP of %s: %s", acct.name, e.message)
        return {}
    if not builds:
        return {}
    # Sites without recorded settings follow the panel's per-domain version,
    # else the user's (one read of the panel for all of them).
    records = None
    if any(not s.php for s in sites):
        try:
            records = panel.domains(owner=acct.name)
        except SiteisoError as e:
            log.warning("cannot read the domains of %s from the panel: %s",
                        acct.name, e.message)
            records = {}
    lay = layout.detect()
    # php-fpm is replaced only where sites run it (its absence is logged).
    targets = _system_targets_now(lay.php_cgi, lay.php_fpm if cfg.handler == "fpm"
                                  else "")
    out: dict[str, PhpView] = {}
    for s in sites:
        chosen = effective(site_settings(s, builds, panel, records), builds)
        if chosen is None:
            continue
        b, exts = chosen
        try:
            d = write_ini_dir(s.token, b.version, ini_files(b, exts))
        except (OSError, SiteisoError) as e:
            log.error("PHP of site %s: cannot write its ini directory: %s",
                      ",".join(s.names), e)
            continue
        out[s.token] = PhpView(d, binaries(b, targets))
        # An ini dir stays while a view may show it: the current one, the one
        # the old plan names, and all while a retired view of the site lives.
        if not any(h.kind == "retired" and h.token == s.token and h.alive()
                   for h in old):
            collect_garbage(s.token, [d, *_dir_in_plan(old_plans.get(s.token, ""))])
    return out
