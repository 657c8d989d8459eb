"""The web server tier (SPEC §8): handler wrappers and vhost includes.

For each isolated site siteiso writes, as root and through descriptors in
the user's (hostile) home:

- `~/.cagefs/wrappers/<token>/php-cgi` and `php-fcgi`: user-owned wrappers
  for suexec (suexec insists the program belongs to the vhost's user); they
  run the setuid entry in handler mode, which takes the site from the
  token, checks DOCUMENT_ROOT and the script against the index, and runs
  php-cgi in the site's view. `~/.cagefs` is hidden in every view, so no
  site can see or change a wrapper.
- an include per domain for the vhost (`<include_dir>/<domain>.conf`):
  suexec user, the handler, the home closed, the docroot reopened (under
  each name the web server uses for it), and for a site nested in another's
  docroot `AllowOverride None` on the parent directories so the parent's
  .htaccess does not apply to it. Symlinks: with mod_siteiso loaded
  (native/mod_siteiso.c) `Options SymLinksIfOwnerMatch`, so .htaccess
  rewrites work, and the module's guard refuses any handler but the site's
  own and any file that resolves outside the docroot or into a nested
  sibling; without the module `Options None` (owner checks cannot separate
  sites of one owner; rewrites are refused). It is root's alone (0600):
  with handler = fpm it names the site's php-fpm socket, a secret
  (siteiso.service.fpm).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import subprocess
import time
from collections.abc import Sequence

from siteiso import paths, sysapi
from siteiso.accounts import Account
from siteiso.errors import EngineError
from siteiso.plan.sites import inside
from siteiso.service.layout import Layout

log = logging.getLogger(__name__)

WRAPPERS = ".cagefs/wrappers"
HANDLERS = ("cgi", "fcgid", "fpm")
# What .htaccess files of an isolated site may use: directives by name
# only (AllowOverride None). No override class at all: a class admits every
# directive a module declares for "any class" (OR_ALL), and mod_lua declares
# all of its own so: with mod_lua loaded, `AllowOverride AuthConfig` lets a
# site's .htaccess run Lua inside the web server (LuaHookFixups), as the
# web server's user, outside every view. No Options (that would turn
# FollowSymLinks back on), nothing that picks a handler (Action, SetHandler,
# AddHandler, FcgidWrapper, ProxyFCGI*) or sets the environment.
ALLOW_OVERRIDE_LIST = (
    # FileInfo: rewrites, redirects, headers, types.
    "RewriteEngine", "RewriteBase", "RewriteCond", "RewriteRule", "RewriteOptions",
    "Redirect", "RedirectMatch", "RedirectPermanent", "RedirectTemp",
    "ErrorDocument", "DirectoryIndex", "Header", "ExpiresActive", "ExpiresByType",
    "ExpiresDefault", "AddType", "AddDefaultCharset", "AddCharset", "AddEncoding",
    "AddLanguage", "DefaultLanguage", "FileETag",
    # AuthConfig: password protection.
    "AuthType", "AuthName", "AuthUserFile", "AuthGroupFile", "AuthBasicProvider",
    "Require", "Satisfy", "<RequireAll", "<RequireAny", "<RequireNone",
    # Limit: host-based access, the 2.2 way.
    "Order", "Allow", "Deny", "<Limit", "<LimitExcept",
    # Indexes: listings' look (listings themselves need Options Indexes).
    "IndexOptions", "IndexIgnore", "HeaderName", "ReadmeName", "DirectorySlash",
    # Sections whose content is checked against this same list.
    "<IfModule", "<IfDefine", "<Files", "<FilesMatch", "<If", "<ElseIf", "<Else",
)
# php-fpm obeys these FastCGI parameters as ini settings, admin ones
# included (and keeps them in the worker for later requests): whatever sets
# them in the request's environment (a RewriteRule [E=] flag) is dropped
# right before the request goes to the site's master. (UnsetEnv would not
# do: it only removes what SetEnv set in configuration.)
FPM_DROPPED_PARAMS = ("PHP_VALUE", "PHP_ADMIN_VALUE")
# The type the CGI handler's Action is keyed on.
CGI_TYPE = "application/x-httpd-php"


def wrapper_dir(acct: Account, token: str) -> str:
    return f"{acct.home}/{WRAPPERS}/{token}"


def _wrapper_text(token: str, php_cgi: str) -> str:
    return ("#!/bin/sh\n"
            "# siteiso: runs PHP in this site's view (written by root; "
            "changes are overwritten)\n"
            f"exec {paths.ENTRY} handler {token} {php_cgi} \"$@\"\n")


def write_wrappers(acct: Account, token: str, layout: Layout) -> None:
    """Create the site's wrappers as root without following anything."""
    home_fd = sysapi.open_home(acct.home, acct.uid)
    try:
        for rel, mode in ((".cagefs", 0o711), (WRAPPERS, 0o711),
                          (f"{WRAPPERS}/{token}", 0o755)):
            fd = sysapi.ensure_dir_beneath(home_fd, rel, acct.uid, acct.gid, mode)
            # suexec refuses a directory writable by others; the web server
            # must be able to reach the wrapper.
            os.chmod(f"/proc/self/fd/{fd}", mode)
            last = fd
            if rel != f"{WRAPPERS}/{token}":
                os.close(fd)
        try:
            for name in ("php-cgi", "php-fcgi"):
                _write_file(last, name, _wrapper_text(token, layout.php_cgi),
                            acct.uid, acct.gid)
        finally:
            os.close(last)
    finally:
        os.close(home_fd)


def _same_file(dir_fd: int, name: str, data: bytes, uid: int, gid: int) -> bool:
    """The wrapper is already what it must be (a plain file of the user's,
    0755, one link, this text): a remount of every user rewrites none."""
    try:
        # Nothing mounted there is opened (a user's FUSE file could hang root).
        fd = sysapi.openat2(dir_fd, name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                            | os.O_NOCTTY, resolve=sysapi.RESOLVE_HOME)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_uid, st.st_gid) != (uid, gid) \
                or stat.S_IMODE(st.st_mode) != 0o755 or st.st_nlink != 1 \
                or st.st_size != len(data):
            return False
        return os.read(fd, len(data) + 1) == data
    finally:
        os.close(fd)


def _write_file(dir_fd: int, name: str, text: str, uid: int, gid: int) -> None:
    if _same_file(dir_fd, name, text.encode(), uid, gid):
        return
    tmp = f".{name}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o755, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def remove_wrappers(acct: Account, token: str) -> None:
    home_fd = sysapi.open_home(acct.home, acct.uid)
    try:
        try:
            fd = sysapi.open_beneath(home_fd, f"{WRAPPERS}/{token}", want="dir",
                                     uid=acct.uid)
        except Exception:  # noqa: BLE001 - nothing (safe) to remove
            return
        try:
            for name in ("php-cgi", "php-fcgi", ".php-cgi.new", ".php-fcgi.new"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)
        parent = sysapi.open_beneath(home_fd, WRAPPERS, want="dir", uid=acct.uid)
        try:
            with contextlib.suppress(OSError):
                os.rmdir(token, dir_fd=parent)
        finally:
            os.close(parent)
    finally:
        os.close(home_fd)


def include_text(acct: Account, token: str, docroot: str, handler: str,
                 all_docroots: list[str], layout: Layout,
                 fpm_socket: str = "", configured: Sequence[str] = ()) -> str:
    """The vhost include of one isolated domain.

    `configured` are the docroot as the web server names it where a symlink
    on the way makes that another path (the engine resolved each to
    `docroot`): Apache matches <Directory> against the path it walks, so the
    docroot's sections are repeated for each. With mod_siteiso loaded the
    docroot allows symlinks (mod_rewrite needs that) and the module's guard
    checks every request's handler and resolved file; without it the include
    keeps `Options None` (no .htaccess rewrites, fails closed)."""
    wdir = wrapper_dir(acct, token)
    roots = [docroot, *(c for c in configured if c != docroot)]
    nested = sorted({d for d in all_docroots if d != docroot and inside(d, docroot)})
    lines = [
        f"{include_mark(token)}; generated, do not edit.",
        "<IfModule mod_suexec.c>",
        f"    SuexecUserGroup {acct.name} {acct.name}",
        "</IfModule>",
    ]
    # The handlers the guard lets this vhost use (and where from).
    allowed: list[tuple[str, str]] = []
    if handler == "cgi":
        lines += [
            f'ScriptAlias /.siteiso-php/ "{wdir}/"',
            f"AddHandler {CGI_TYPE} .php",
            f"Action {CGI_TYPE} /.siteiso-php/php-cgi",
        ]
        allowed = [(CGI_TYPE, ""), ("cgi-script", wdir)]
    elif handler == "fcgid":
        lines.append("<IfModule mod_fcgid.c>")
        for root in roots:
            lines += [
                f'    <Directory "{root}">',
                "        AddHandler fcgid-script .php",
                f'        FcgidWrapper "{wdir}/php-fcgi" .php',
                '        <FilesMatch "\\.php$">',
                "            Options +ExecCGI",
                "        </FilesMatch>",
                "    </Directory>",
            ]
        lines.append("</IfModule>")
        allowed = [("fcgid-script", "")]
    elif handler == "fpm":
        target = f"proxy:unix:{fpm_socket}|fcgi://siteiso-{token}/"
        lines += [
            '<FilesMatch "\\.php$">',
            f'    SetHandler "{target}"',
            "</FilesMatch>",
            "<IfModule mod_proxy_fcgi.c>",
            *(f'    ProxyFCGISetEnvIf "true" !{p}' for p in FPM_DROPPED_PARAMS),
            "</IfModule>",
        ]
        allowed = [(target, "")]
    # The whole home is closed to this vhost (the panel's own handler and
    # CGI directories, app roots with their .htaccess, everything not the
    # docroot); the docroot is opened again without CGI and with .htaccess
    # limited to directives that cannot change the options. Symlinks: only
    # under the guard (which resolves every file); the home needs them too
    # where the docroot's configured path passes through a link.
    home_links = ["    <IfModule mod_siteiso.c>",
                  "        Options SymLinksIfOwnerMatch",
                  "    </IfModule>"]
    lines += [
        f'<Directory "{acct.home}">',
        "    Options None",
        *(home_links if len(roots) > 1 else []),
        "    AllowOverride None",
        "    Require all denied",
        "</Directory>",
    ]
    for root in roots:
        lines += [
            f'<Directory "{root}">',
            "    Options None",
            *home_links,
            "    AllowOverride None",
            f"    AllowOverrideList {' '.join(ALLOW_OVERRIDE_LIST)}",
            "    Require all granted",
            "</Directory>",
        ]
    if handler == "cgi":
        lines += [f'<Directory "{wdir}">', "    Options +ExecCGI",
                  "    Require all granted", "</Directory>"]
    # A sibling nested in this docroot is not served through this vhost,
    # under any of the docroot's names.
    for root in roots:
        for n in nested:
            lines += [f'<Directory "{root}{n[len(docroot):]}">',
                      "    AllowOverride None", "    Require all denied",
                      "</Directory>"]
    # Limitation: the guard refuses every file outside the docroot, aliases
    # the admin points elsewhere (/icons/) included; and .htaccess tests
    # (RewriteCond -f/-d/-s, <If -f>) still tell whether a sibling's path
    # exists, as the web server's user sees it.
    lines += [
        "<IfModule mod_siteiso.c>",
        f'    SiteisoSite "{docroot}"',
        *(f'    SiteisoHandler "{h}"' + (f' "{d}"' if d else "") for h, d in allowed),
        *(f'    SiteisoDeny "{n}"' for n in nested),
        "</IfModule>",
    ]
    return "\n".join(lines) + "\n"


def _read_include(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _put_include(path: str, text: str) -> None:
    """Write an include, readable by root only.

    Root only: with handler = fpm it names the site's php-fpm socket, whose
    path is the capability to run code in the site's view (siteiso.service.
    fpm). Apache reads its configuration as root."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, path)


LEGACY_MARK = "# siteiso: this site is isolated;"


def include_mark(token: str) -> str:
    """The first line of a site's include: whose it is."""
    return f"# siteiso: site {token} is isolated"


class IncludeJournal:
    """The includes a converge writes and removes, each read once, and
    kept so that they can be taken back: when Apache rejects the
    configuration they make, they are put back as they were at once (not
    by a later converge, which a hostile home could fail), so one site's bad
    include never keeps every later reload from working."""

    def __init__(self) -> None:
        self.before: list[tuple[str, str | None]] = []   # path, old text (None: absent)

    def __enter__(self) -> IncludeJournal:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Whatever stopped the change (Apache's refusal included), the
        # includes on disk stay the ones the sites' records name.
        if exc_type is not None:
            self.undo()

    def reload(self, layout: Layout) -> None:
        """Reload Apache for the changes, if any (raises if it rejects them)."""
        if self.before:
            reload(layout)

    def write(self, path: str, text: str) -> bool:
        """The site's include at path; True when it changed."""
        old = _read_include(path)
        if old == text:
            os.chmod(path, 0o600)
            return False
        self.before.append((path, old))
        _put_include(path, text)
        return True

    def remove(self, path: str, token: str) -> bool:
        """Remove the site's include at path, and only its: a name that
        moved to another account's site has that site's include there now.
        Includes written before they named their site carry LEGACY_MARK:
        the site's own record lists the path, so it is this site's."""
        old = _read_include(path)
        if old is None or not old.startswith((include_mark(token) + ";", LEGACY_MARK)):
            return False
        self.before.append((path, old))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True

    def undo(self) -> None:
        for path, text in reversed(self.before):
            if text is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                _put_include(path, text)
        self.before = []


def config_error(layout: Layout) -> str | None:
    """None when Apache accepts its configuration, else its first complaint."""
    try:
        r = subprocess.run([layout.apache_ctl, "-t"], capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{layout.apache_ctl} -t did not run: {e}"
    if r.returncode == 0:
        return None
    said = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
    if not said:
        return f"{layout.apache_ctl} -t exited {r.returncode}"
    # "AH00526: Syntax error on line N of F:" is followed by what is wrong.
    return " ".join(said[:2]) if said[0].endswith(":") else said[0]


def reload(layout: Layout) -> None:
    """Graceful reload when Apache runs here; nothing when it does not.

    Returns once the new generation has started, and reloads are serialized
    host-wide: a graceful restart that reaches Apache while the previous one
    is still starting mod_cgid's daemon leaves the old socket behind, the new
    daemon fails to bind, and every CGI request of the server gets 503 until
    the next restart. Back-to-back admin commands must not cause that."""
    master = _apache_master()
    if master is None:
        return
    # Apache keeps running its old configuration when the new one fails:
    # the includes just written would not be in effect (sites served
    # outside their views while recorded as isolated).
    bad = config_error(layout)
    if bad is not None:
        raise EngineError(f"Apache's configuration test fails ({bad}): it keeps "
                          "its old configuration, so this change cannot take "
                          "effect; fix it (apachectl -t) and run the command again")
    ctl = layout.apache_ctl
    os.makedirs(paths.RUN, mode=0o755, exist_ok=True)
    fd = os.open(f"{paths.RUN}/apache-reload.lock", os.O_RDWR | os.O_CREAT
                 | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        since = _ticks_now()
        subprocess.run([ctl, "-k", "graceful"], check=False, capture_output=True,
                       timeout=60)
        _wait_new_generation(master, since, RELOAD_WAIT)
    finally:
        os.close(fd)


RELOAD_WAIT = 30.0
_PIDFILES = ("/run/apache2/apache2.pid", "/run/httpd/httpd.pid",
             "/var/run/apache2/apache2.pid")


def _apache_master() -> int | None:
    for p in _PIDFILES:
        try:
            with open(p, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if os.path.exists(f"/proc/{pid}"):
            return pid
    return None


def _ticks_now() -> int:
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _wait_new_generation(master: int, since: int, timeout: float) -> None:
    """Until the master has a child started after `since` (clock ticks since
    boot): the new configuration is loaded and its helper daemons forked.
    Then a short settle for those daemons to bind their sockets."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{master}/task/{master}/children", encoding="ascii") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            return  # the master is gone (or the kernel lacks the list)
        for pid in children:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    start = int(f.read().rsplit(b")", 1)[1].split()[19])
            except (OSError, IndexError, ValueError):
                continue
            if start >= since:
                time.sleep(0.2)
                return
        time.sleep(0.05)
    log.warning("Apache did not finish its graceful restart within %.0f s",
                timeout)
