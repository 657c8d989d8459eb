"""`siteiso doctor`: every platform probe, and what an admin should check."""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess

from siteiso import accounts, config, panels, paths, platform
from siteiso.service import apache, layout, pools, vhosts
from siteiso.state import State, load

Row = tuple[str, str, str, bool]     # (status, name, detail, fatal)


def _include_checks(st: State, lay: layout.Layout) -> list[Row]:
    """Does every vhost that answers an isolated site's name load that
    site's include? Where one does not, the site is served outside its view
    (fatal). One include a vhost serves all the names it answers."""
    if not st.sites:
        return [("ok", "web-includes", "no isolated site", False)]
    try:
        listing = _ctl(lay, "-S").stdout
        dump = _ctl(lay, "-t", "-D", "DUMP_INCLUDES").stdout
    except (OSError, subprocess.TimeoutExpired):
        return [("MISSING", "web-includes", "Apache's control program "
                 f"{lay.apache_ctl} was not found", True)]
    hosts = vhosts.parse_vhosts(listing)
    included = vhosts.parse_includes(dump)
    rows: list[Row] = []
    for site in st.sites.values():
        for name in site.names:
            incs = lay.includes_for(site.owner, name)
            if not any(os.path.exists(i) for i in incs):
                rows.append(("MISSING", "web-include", (
                    f"{name}: {incs[0]} was not written (cagefsctl --remount "
                    f"{site.owner} writes it again)"), True))
                continue
            serving = [v for v in hosts if v.answers(name)]
            if not serving:
                rows.append(("WARNING", "web-include", (
                    f"{name}: no vhost names it (Apache's default vhost answers "
                    "it, not the site)"), False))
            for v in serving:
                files = vhosts.included_by(v, hosts, included)
                mine = [f for f in files if vhosts.include_token(f) == site.token]
                if mine:
                    rows.append(("ok", "web-include", f"{name}: {mine[0]}", False))
                    continue
                inc = incs[-1] if v.port == 443 else incs[0]
                others = [f for f in files if vhosts.include_token(f)]
                why = (f"; it loads {others[0]}, another isolated site's (one "
                       "include a vhost: its ServerName's site)" if others else "")
                rows.append(("MISSING", "web-include", (
                    f"{name}: the vhost at {v.where} answers it without its "
                    f"site's include, so the site is served outside its view{why}: "
                    f"add `IncludeOptional {inc}` to the {name} vhost (then "
                    "apachectl graceful)"), True))
    return rows


def _ctl(lay: layout.Layout, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([lay.apache_ctl, *args], capture_output=True, text=True,
                          timeout=30)


def _apache_rows(st: State, cfg: config.Config, lay: layout.Layout,
                 mods: str | None) -> list[Row]:
    """Apache must accept its configuration, and have what the configured
    handler's includes use. Fatal only while a site is isolated."""
    if mods is None:
        return [("MISSING" if st.sites else "note", "web-server",
                 f"{lay.apache_ctl} was not found", bool(st.sites))]
    bad = apache.config_error(lay)
    if bad is not None:
        return [("FAIL", "web-config", f"Apache's configuration test fails: {bad} "
                 "(a reload keeps the old configuration, a restart fails: "
                 "isolated sites' includes are not in effect)", bool(st.sites))]
    rows: list[Row] = [("ok", "web-config", "Apache accepts its configuration",
                        False)]
    need = {"cgi": ("suexec", "actions", "cgid|cgi"), "fcgid": ("suexec", "fcgid"),
            "fpm": ("proxy_fcgi",)}.get(cfg.handler, ())
    loaded = {m.strip().split()[0] for m in mods.splitlines() if "_module" in m}
    missing = [alt.split("|")[0] for alt in need
               if not any(f"{m}_module" in loaded for m in alt.split("|"))]
    if missing:
        rows.append(("MISSING", "web-modules", (
            f"handler {cfg.handler} needs Apache's {', '.join(missing)} "
            f"module(s): without them an isolated site's PHP fails or runs "
            f"outside its view (a2enmod {' '.join(missing)}, then a full "
            "apachectl restart)"), bool(st.sites)))
    else:
        rows.append(("ok", "web-modules", f"what handler {cfg.handler} needs is "
                     "loaded", False))
    if "suexec" in need:
        rows.append(_suexec_row(st, cfg, lay))
    return rows


def _suexec_row(st: State, cfg: config.Config, lay: layout.Layout) -> Row:
    """suexec runs only programs below its docroot: the sites' wrappers live
    in the homes. Debian's suexec-custom reads it from a file; the pristine
    build has /var/www compiled in."""
    homes = sorted({os.path.dirname(a.home.rstrip("/")) or "/"
                    for a in _owners(st, cfg)})
    root = None
    if lay.suexec_docroot_file and os.path.realpath(lay.suexec).endswith("-custom"):
        try:
            with open(lay.suexec_docroot_file, encoding="utf-8") as f:
                root = f.readline().strip()
        except OSError:
            root = None
    elif lay.name == "debian":
        root = "/var/www"
    if root is None or not homes:
        return ("ok", "suexec", "docroot not checked here", False)
    outside = [h for h in homes if not (h + "/").startswith(root.rstrip("/") + "/")]
    if outside:
        fix = (f"update-alternatives --set suexec {lay.suexec}-custom and put "
               f"{outside[0]} on the first line of {lay.suexec_docroot_file}"
               if lay.suexec_docroot_file else "a suexec built for the homes")
        return ("MISSING", "suexec", (
            f"its docroot is {root}, so it refuses the sites' wrappers under "
            f"{', '.join(outside)} (every isolated PHP request fails): {fix}"),
            bool(st.sites))
    return ("ok", "suexec", f"docroot {root} holds the homes", False)


def _owners(st: State, cfg: config.Config) -> list[accounts.Account]:
    out = []
    for owner in sorted({s.owner for s in st.sites.values()}):
        try:
            out.append(accounts.lookup(owner, cfg))
        except Exception:  # noqa: BLE001 - doctor reports, never fails early
            continue
    return out


def _panel_row(cfg: config.Config) -> Row:
    """Which panel siteiso reads, and how many domains it gives."""
    try:
        panel = panels.get_panel(cfg)
        n = len(panel.domains())
    except Exception as e:  # noqa: BLE001 - doctor reports, never fails early
        return ("WARNING", "panel", f"cannot read the panel: {e}", False)
    if not n:
        return ("WARNING", "panel", f"{panel.name}: no domains (enable answers "
                "'Please specify existing domain name'; see the README's first "
                "steps)", False)
    return ("ok", "panel", f"{panel.name}: {n} domain(s)", False)


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
        return _ctl(lay, "-M").stdout
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
    lay = layout.detect()
    mods = _apache_modules(lay)
    try:
        st = load()
    except Exception as e:  # noqa: BLE001 - doctor reports, never fails early
        print(f"MISSING state  {e}")
        return 1
    web = _apache_rows(st, cfg, lay, mods)
    if mods is not None and not any(r[0] == "FAIL" for r in web):
        # What Apache lists is only whole when it accepts its configuration.
        web += [*_include_checks(st, lay), *_guard_rows(mods), *_lua_rows(mods)]
    rows = [*platform.doctor_rows(), _landlock_row(), _daemon_row(),
            _panel_row(cfg), *web, *_database_warnings(), *_pool_rows()]
    for line in platform.format_rows(rows):
        print(line)
    fatal = [r for r in rows if r[3]]
    if fatal:
        print(f"siteiso doctor: {len(fatal)} problem(s) keep isolation from working")
        return 1
    return 0
