"""`siteiso doctor`: every platform probe, and what an admin should check."""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess

from siteiso import accounts, config, paths, platform
from siteiso.service import layout, pools
from siteiso.state import load

Row = tuple[str, str, str, bool]     # (status, name, detail, fatal)


def _include_checks() -> list[Row]:
    """Is each isolated site's vhost include really loaded by Apache? A site
    whose include is not is served outside its view (fatal)."""
    lay = layout.detect()
    try:
        st = load()
    except Exception as e:  # noqa: BLE001 - doctor reports, never fails early
        return [("MISSING", "state", str(e), True)]
    if not st.sites:
        return [("ok", "web-includes", "no isolated site", False)]
    try:
        dump = subprocess.run([lay.apache_ctl, "-t", "-D", "DUMP_INCLUDES"],
                              capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return [("MISSING", "web-includes", "Apache's control program "
                 f"{lay.apache_ctl} was not found", True)]
    rows: list[Row] = []
    for site in st.sites.values():
        for name in site.names:
            for inc in lay.includes_for(site.owner, name):
                if inc in dump:
                    rows.append(("ok", "web-include", f"{name}: {inc}", False))
                elif os.path.exists(inc):
                    rows.append(("MISSING", "web-include", (
                        f"{name}: Apache does not load {inc}, so the site is "
                        f"served outside its view: add `IncludeOptional {inc}` to "
                        f"the {name} vhost (then apachectl graceful)"), True))
                else:
                    rows.append(("MISSING", "web-include", (
                        f"{name}: {inc} was not written (cagefsctl --remount "
                        f"{site.owner} writes it again)"), True))
    return rows


def _database_warnings() -> list[Row]:
    """Databases that trust the uid give every site the account's data."""
    out: list[Row] = []
    for path in glob.glob("/etc/mysql/**/*.cnf", recursive=True):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if "unix_socket" in f.read():
                    out.append(("WARNING", "database", f"{path} mentions unix_socket "
                                "auth: every site of an account reaches its "
                                "databases", False))
        except OSError:
            continue
    for path in glob.glob("/etc/postgresql/*/main/pg_hba.conf"):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split()[-1:] == ["peer"] and not line.startswith("#"):
                    out.append(("WARNING", "database", f"{path}: peer auth lets "
                                "every site of an account use its databases", False))
                    break
    if os.path.isdir("/var/lib/mysql") and not out:
        out.append(("note", "database", "MariaDB/MySQL present: accounts using "
                    "unix_socket auth share their databases with all their sites",
                    False))
    return out


def _pool_rows() -> list[Row]:
    """The host's own php-fpm pools that run as a hosting account and that
    site views cannot hide (siteiso.service.pools)."""
    try:
        cfg = config.load()
        found, skipped = pools.read(layout.detect().fpm_pools)
        accts = [(a.name, a.uid, a.home) for a in accounts.hosting_accounts(cfg)]
        rows: list[Row] = [("WARNING", "fpm-pool", p, False)
                           for p in pools.problems(found, accts)]
    except Exception as e:  # noqa: BLE001 - doctor reports, never fails early
        return [("WARNING", "fpm-pool", f"cannot read the php-fpm pools: {e}", False)]
    rows += [("WARNING", "fpm-pool", f"{f}: skipped (not a regular root-owned file)",
              False) for f in skipped]
    mine = [p for p in found if any(pools.runs_as(p, n, u) for n, u, _ in accts)]
    if mine and len(rows) == len(skipped):
        rows.append(("ok", "fpm-pool", f"{len(mine)} pool(s) of hosting accounts, "
                     "hidden in their site views", False))
    return rows


def _apache_modules(lay: layout.Layout) -> str | None:
    """What `apachectl -M` lists (None: Apache's control program is missing)."""
    try:
        return subprocess.run([lay.apache_ctl, "-M"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def _guard_rows(mods: str | None) -> list[Row]:
    """Without mod_siteiso, isolated sites are served with `Options None`:
    no symlink escapes, but mod_rewrite refuses every .htaccess RewriteRule
    (WordPress permalinks answer 403)."""
    if mods is None:
        return []
    if "siteiso_module" in mods:
        return [("ok", "web-guard", "mod_siteiso is loaded: isolated sites keep "
                 ".htaccess rewrites; each request's handler and resolved file "
                 "are checked", False)]
    return [("WARNING", "web-guard", "mod_siteiso is not loaded: isolated sites are "
             "served with Options None, so their .htaccess RewriteRules answer 403 "
             "(siteiso install puts the module in place; a2enmod siteiso on "
             "Debian)", False)]


def _lua_rows(mods: str | None) -> list[Row]:
    """mod_lua lets .htaccess files with any override class run Lua inside
    the web server (isolated sites' includes grant no class)."""
    if mods is None or "lua_module" not in mods:
        return []
    return [("WARNING", "web-lua", "mod_lua is loaded: the .htaccess of any "
             "directory with an AllowOverride class (non-isolated sites) can "
             "run Lua inside the web server, as its user", False)]


def _landlock_row() -> Row:
    """Abstract unix sockets are scoped per site only with Landlock ABI 6."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(VERSION)
    if abi >= 6:
        return ("ok", "landlock_scope", f"ABI {abi}: a site cannot reach abstract "
                "unix sockets outside it", False)
    return ("MISSING", "landlock_scope", f"ABI {max(abi, 0)} (< 6): sites can "
            "connect to each other's abstract unix sockets (no fallback; "
            "filesystem sockets stay isolated)", False)


def _daemon_row() -> Row:
    """siteisod serves cagefsctl-user and follows docroots and host unmounts."""
    try:
        with open(paths.PIDFILE, encoding="ascii") as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return ("WARNING", "siteisod", "not running: cagefsctl-user, the docroot "
                "monitor, host unmounts and php-fpm restarts need it (systemctl "
                "enable --now siteisod, or siteiso daemon &)", False)
    return ("ok", "siteisod", f"running (pid {pid})", False)


def doctor() -> int:
    """Print every check; exit status 1 when something keeps isolation from
    working (a required kernel feature missing, an isolated site's include
    not loaded), else 0. WARNING lines are for the admin to judge."""
    cfg = config.load()
    note = " (shared files are not isolated)" if cfg.home_mode == "shared" else ""
    print(f"siteiso doctor: layout {layout.detect().name}, home mode "
          f"{cfg.home_mode}{note}")
    mods = _apache_modules(layout.detect())
    rows = [*platform.doctor_rows(), _landlock_row(), _daemon_row(),
            *_include_checks(), *_database_warnings(), *_pool_rows(),
            *_guard_rows(mods), *_lua_rows(mods)]
    for line in platform.format_rows(rows):
        print(line)
    fatal = [r for r in rows if r[3]]
    if fatal:
        print(f"siteiso doctor: {len(fatal)} problem(s) keep isolation from working")
        return 1
    return 0
