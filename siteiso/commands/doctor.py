"""`siteiso doctor`: every platform probe, and what an admin should check."""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess

from siteiso import accounts, config, platform
from siteiso.service import layout, pools
from siteiso.state import load


def _include_checks() -> list[str]:
    """Is each isolated site's vhost include really loaded by Apache?"""
    lay = layout.detect()
    try:
        st = load()
    except Exception as e:  # noqa: BLE001 - doctor reports, never fails early
        return [f"MISSING state: {e}"]
    if not st.sites:
        return ["ok      web-includes  no isolated site"]
    try:
        dump = subprocess.run(["apache2ctl" if lay.name == "debian" else "apachectl",
                               "-t", "-D", "DUMP_INCLUDES"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ["MISSING web-includes  Apache control program not found"]
    lines = []
    for site in st.sites.values():
        for name in site.names:
            for inc in lay.includes_for(site.owner, name):
                state = "ok     " if inc in dump else "MISSING"
                lines.append(f"{state} web-include   {name}: {inc}")
    return lines


def _database_warnings() -> list[str]:
    """Databases that trust the uid give every site the account's data."""
    out = []
    for path in glob.glob("/etc/mysql/**/*.cnf", recursive=True):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if "unix_socket" in f.read():
                    out.append(f"WARNING database      {path} mentions unix_socket "
                               "auth: every site of an account reaches its databases")
        except OSError:
            continue
    for path in glob.glob("/etc/postgresql/*/main/pg_hba.conf"):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split()[-1:] == ["peer"] and not line.startswith("#"):
                    out.append(f"WARNING database      {path}: peer auth lets every "
                               "site of an account use its databases")
                    break
    if os.path.isdir("/var/lib/mysql") and not out:
        out.append("note    database      MariaDB/MySQL present: accounts using "
                   "unix_socket auth share their databases with all their sites")
    return out


def _pool_lines() -> list[str]:
    """The host's own php-fpm pools that run as a hosting account and that
    site views cannot hide (siteiso.service.pools)."""
    try:
        cfg = config.load()
        found, skipped = pools.read(layout.detect().fpm_pools)
        accts = [(a.name, a.uid, a.home) for a in accounts.hosting_accounts(cfg)]
        lines = [f"WARNING fpm-pool      {p}" for p in pools.problems(found, accts)]
    except Exception as e:  # noqa: BLE001 - doctor reports, never fails early
        return [f"WARNING fpm-pool      cannot read the php-fpm pools: {e}"]
    lines += [f"WARNING fpm-pool      {f}: skipped (not a regular root-owned file)"
              for f in skipped]
    mine = [p for p in found if any(pools.runs_as(p, n, u) for n, u, _ in accts)]
    if mine and len(lines) == len(skipped):
        lines.append(f"ok      fpm-pool      {len(mine)} pool(s) of hosting accounts, "
                     "hidden in their site views")
    return lines


def _apache_modules(lay: layout.Layout) -> str | None:
    """What `apachectl -M` lists (None: Apache's control program is missing)."""
    try:
        return subprocess.run([lay.apache_ctl, "-M"], capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def _guard_line(mods: str | None) -> list[str]:
    """Without mod_siteiso, isolated sites are served with `Options None`:
    no symlink escapes, but mod_rewrite refuses every .htaccess RewriteRule
    (WordPress permalinks answer 403)."""
    if mods is None:
        return []
    if "siteiso_module" in mods:
        return ["ok      web-guard     mod_siteiso is loaded: isolated sites keep "
                ".htaccess rewrites; each request's handler and resolved file "
                "are checked"]
    return ["WARNING web-guard     mod_siteiso is not loaded: isolated sites are "
            "served with Options None, so their .htaccess RewriteRules answer 403 "
            "(siteiso install puts the module in place; a2enmod siteiso on "
            "Debian)"]


def _lua_line(mods: str | None) -> list[str]:
    """mod_lua lets .htaccess files with any override class run Lua inside
    the web server (isolated sites' includes grant no class)."""
    if mods is None or "lua_module" not in mods:
        return []
    return ["WARNING web-lua       mod_lua is loaded: the .htaccess of any "
            "directory with an AllowOverride class (non-isolated sites) can "
            "run Lua inside the web server, as its user"]


def _landlock_line() -> str:
    """Abstract unix sockets are scoped per site only with Landlock ABI 6."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(VERSION)
    if abi >= 6:
        return (f"ok      landlock_scope  ABI {abi}: a site cannot reach abstract "
                "unix sockets outside it")
    return (f"MISSING landlock_scope  ABI {max(abi, 0)} (< 6): sites can connect to "
            "each other's abstract unix sockets (no fallback; filesystem sockets "
            "stay isolated)")


def doctor() -> int:
    cfg = config.load()
    note = " (shared files are not isolated)" if cfg.home_mode == "shared" else ""
    print(f"siteiso doctor: layout {layout.detect().name}, home mode "
          f"{cfg.home_mode}{note}")
    for line in platform.doctor_lines():
        print(line)
    print(_landlock_line())
    for line in _include_checks():
        print(line)
    for line in _database_warnings():
        print(line)
    mods = _apache_modules(layout.detect())
    for line in _pool_lines() + _guard_line(mods) + _lua_line(mods):
        print(line)
    return 0
