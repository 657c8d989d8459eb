"""cagefsctl --site-isolation-*: the admin's commands (SPEC §2).

Every command: parse (usage errors exit 2), require root, then under the
lock: load the recorded state, check every name before changing anything,
save the new state atomically, and re-drive the side effects (mirrors,
views, processes) from it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Iterable

from siteiso import accounts, config, panels, platform
from siteiso.commands.common import (
    Parser,
    log,
    require_root,
    run_main,
    setup_logging,
    warn,
)
from siteiso.errors import (
    DomainNotFound,
    EngineError,
    NotAllowed,
    NotEnabled,
    SiteisoError,
)
from siteiso.names import normalize_domain
from siteiso.service import php
from siteiso.state import Site, State, fault, load, locked, mirrors, recorded, save
from siteiso.views import engine

# PHP handlers that spawn through their own root helpers (SPEC §8).
UNISOLATED_HANDLERS = ("lsapi", "passenger")

ACTIONS = (
    ("--site-isolation-allow-all", 0, "allow website isolation for every user"),
    ("--site-isolation-deny-all", 0,
     "deny it for every user (isolated sites are disabled)"),
    ("--site-isolation-allow", "+", "allow it for these users"),
    ("--site-isolation-deny", "+", "deny it for these users (their sites lose it)"),
    ("--site-isolation-toggle-mode", 0, "switch between allow_all and deny_all"),
    ("--site-isolation-enable", "+", "isolate these domains' websites"),
    ("--site-isolation-disable", "+", "stop isolating these domains' websites"),
    ("--site-isolation-list", "*", "list isolated domains (of these users)"),
    ("--site-isolation-regenerate", "+",
     "re-read the panel for these users and rebuild their views"),
    ("--remount", "+", "rebuild these users' views"),
    ("--remount-all", 0, "rebuild every user's views"),
)



def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cagefsctl", description="siteiso website isolation (admin)")
    group = p.add_mutually_exclusive_group(required=True)
    for flag, nargs, text in ACTIONS:
        metavar = "DOMAIN" if "able" in flag and "allow" not in flag else "USER"
        if nargs == 0:
            group.add_argument(flag, action="store_true", help=text)
        else:
            group.add_argument(flag, nargs=nargs, metavar=metavar, help=text)
    p.add_argument("--json", action="store_true", help="JSON output (list)")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug log")
    return p


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _users(names: list[str], cfg: config.Config) -> list[str]:
    """Validate every user before any change; normalized, deduplicated."""
    return _unique([accounts.lookup(n, cfg).name for n in names])


def _domains(names: list[str]) -> list[str]:
    return _unique([normalize_domain(n) for n in names])


class Admin:
    def __init__(self, cfg: config.Config) -> None:
        self.cfg = cfg
        # Users whose views the change affects; None: every user.
        self.touched: set[str] | None = None
        # Users whose views change too, though the change is not about them
        # (a stale name taken from them): their failures only warn.
        self.others: set[str] = set()
        self.warnings: list[str] = []

    def _touch(self, user: str) -> None:
        if self.touched is None:
            self.touched = set()
        self.touched.add(user)

    # ---- user gates ---------------------------------------------------

    def allow_all(self, st: State) -> str:
        st.flag = True
        st.mode = "allow_all"
        return "Website isolation was allowed for all users."

    def deny_all(self, st: State) -> str:
        # Every site is disabled; like disable, it keeps their PHP settings.
        for site in list(st.sites.values()):
            self._drop_site(st, site)
        st.allowed = []
        st.mode = "deny_all"
        st.flag = False
        return "Website isolation was denied for all users."

    def allow(self, st: State, users: list[str]) -> str:
        users = _users(users, self.cfg)
        if not st.flag:
            st.flag, st.mode = True, "deny_all"
        for u in users:
            if st.mode == "allow_all":
                if u in st.denied:
                    st.denied.remove(u)
            elif u not in st.allowed:
                st.allowed.append(u)
        return f"Website isolation was allowed for user(s): {', '.join(users)}"

    def deny(self, st: State, users: list[str]) -> str:
        users = _users(users, self.cfg)
        if not st.flag:
            raise NotEnabled()
        for u in users:
            if st.mode == "allow_all":
                if u not in st.denied:
                    st.denied.append(u)
            elif u in st.allowed:
                st.allowed.remove(u)
            for site in st.sites_of(u):
                self._drop_site(st, site)
            self._touch(u)
        return f"Website isolation was denied for user(s): {', '.join(users)}"

    def toggle_mode(self, st: State) -> str:
        if not st.mode:
            self.allow_all(st)
        else:
            st.mode = "deny_all" if st.mode == "allow_all" else "allow_all"
        return f"Website isolation user mode toggled to '{st.mode}'."

    # ---- sites ----------------------------------------------------------

    def enable(self, st: State, names: list[str]) -> str:
        domains = _domains(names)
        if not st.flag:
            raise NotEnabled()
        platform.require_for_enable()
        panel = panels.get_panel(self.cfg)
        planned: list[tuple[str, accounts.Account, str, str | None]] = []
        for d in domains:
            rec = panel.domain(d)
            if rec is None:
                raise DomainNotFound(d)
            acct = accounts.lookup(rec.owner, self.cfg)
            if not st.allowed_user(acct.name):
                raise NotAllowed(acct.name)
            docroot = engine.resolve_docroot(acct, rec.docroot, self.cfg.hidden)
            planned.append((d, acct, docroot, rec.php_version))
            if rec.php_handler in UNISOLATED_HANDLERS:
                self.warnings.append(
                    f"{d} is served by {rec.php_handler}, which siteiso cannot "
                    "isolate yet: its PHP keeps running outside the view "
                    "(cron, shell and the other handlers are isolated)")
        builds = None
        for d, acct, docroot, panel_php in planned:
            self._touch(acct.name)
            held = st.site_of(d)
            if held is not None and (held.owner, held.uid) == (acct.name, acct.uid):
                continue
            if held is not None:
                # A stale record: the panel gave the name to another account
                # since (a regenerate of the old owner failed or never ran).
                self.warnings.append(
                    f"{d} was isolated as a site of {held.owner}; the panel now "
                    f"gives it to {acct.name}: it leaves {held.owner}'s site")
                self.others.add(held.owner)
                held.names.remove(d)
                if not held.names:
                    self._drop_site(st, held)
            site = st.site_by_docroot(acct.name, docroot)
            if site is None:
                token = secrets.token_hex(8)
                settings = st.kept_php(d, acct.name)
                if not settings:
                    # §5: the panel's per-domain version if it has one, else
                    # the user's; recorded now, changed by selectorctl later.
                    if builds is None:
                        builds = php.discover(panel.php_versions())
                    settings = php.initial_settings(builds, panel_php)
                site = Site(token=token, owner=acct.name, uid=acct.uid,
                            docroot=docroot, names=[], php=settings)
                st.sites[token] = site
                log.info("site %s (%s) of %s isolated", d, docroot, acct.name)
            site.names.append(d)
            site.names.sort()
        return "Website isolation was enabled for domain(s),\n" + ",".join(domains)

    def disable(self, st: State, names: list[str]) -> str:
        domains = _domains(names)
        panel = panels.get_panel(self.cfg)
        for d in domains:
            if st.site_of(d) is None and panel.domain(d) is None:
                raise DomainNotFound(d)
        for d in domains:
            site = st.site_of(d)
            if site is None:
                continue
            self._touch(site.owner)
            site.names.remove(d)
            st.keep_php(d, site)
            if not site.names:
                self._drop_site(st, site)
            log.info("site %s of %s no longer isolated", d, site.owner)
        return "Website isolation was disabled for domain(s),\n" + ",".join(domains)

    def _drop_site(self, st: State, site: Site) -> None:
        for name in site.names:
            st.keep_php(name, site)
        st.sites.pop(site.token, None)

    def regenerate(self, st: State, users: list[str]) -> str:
        users = _users(users, self.cfg)
        panel = panels.get_panel(self.cfg)
        for u in users:
            self._regenerate_user(st, accounts.lookup(u, self.cfg),
                                  panel.domains(owner=u))
        return ("Regenerated configuration website isolation for users:\n"
                + "\n".join(users))

    def _regenerate_user(self, st: State, acct: accounts.Account,
                         current: dict[str, panels.DomainRecord]) -> None:
        """Each isolated name of the user follows its panel record: names
        gone from the panel lose isolation, and the names left are grouped
        by where their docroots now resolve, one site a docroot (§1): a site
        whose names now point at two docroots splits, two that now share
        one merge. A site keeps its token (its storage and settings) where
        it keeps its docroot, else where most of its names go."""
        sites = st.sites_of(acct.name)
        site_of = {n: site for site in sites for n in site.names}
        groups: dict[str, list[str]] = {}
        for name, site in site_of.items():
            rec = current.get(name)
            if rec is None:
                self.warnings.append(f"{name} is no longer in the panel for "
                                     f"{acct.name}: its isolation ends")
                st.keep_php(name, site)
                continue
            try:
                docroot = engine.resolve_docroot(acct, rec.docroot, self.cfg.hidden)
            except SiteisoError as e:
                self.warnings.append(f"{name}: {e.message}; kept at {site.docroot}")
                docroot = site.docroot
            groups.setdefault(docroot, []).append(name)
        placed: dict[str, Site] = {}       # docroot → the site that serves it
        for docroot in groups:
            same = [s for s in sites if s.docroot == docroot]
            if same:
                placed[docroot] = same[0]
        # The biggest groups choose first: a site keeps its token where most
        # of its names go.
        for docroot, names in sorted(groups.items(), key=lambda g: -len(g[1])):
            if docroot in placed:
                continue
            free = [s for s in sites if s not in placed.values()]
            votes = {s.token: sum(site_of[n] is s for n in names) for s in free}
            best = max(free, key=lambda s: votes[s.token], default=None)
            if best is not None and votes[best.token]:
                log.info("site %s moved: %s -> %s", ",".join(names), best.docroot,
                         docroot)
                placed[docroot] = best
            else:                           # split off: a site of its own
                origin = site_of[names[0]]
                placed[docroot] = Site(token=secrets.token_hex(8), owner=acct.name,
                                       uid=acct.uid, docroot=docroot, names=[],
                                       home=origin.home, php=dict(origin.php))
                st.sites[placed[docroot].token] = placed[docroot]
                log.info("site %s split off at %s", ",".join(names), docroot)
        for site in sites:
            if site not in placed.values():
                site.names = []
                self._drop_site(st, site)
        for docroot, site in placed.items():
            site.docroot = docroot
            site.names = sorted(groups[docroot])

    def list_text(self, st: State, users: list[str], as_json: bool) -> str:
        if users:
            order = _users(users, self.cfg)
        else:
            order = accounts.uid_order(_unique(s.owner for s in st.sites.values()))
        result: dict[str, list[str]] = {}
        for u in order:
            names = sorted(n for s in st.sites_of(u) for n in s.names)
            if names:
                result[u] = names
        if as_json:
            return json.dumps({"users": result})
        if not result:
            return "No users with enabled Website isolation"
        blocks = []
        for u, names in result.items():
            blocks.append(f"Domains with enabled website isolation for user {u}:\n"
                          + "\n".join(names))
        return "\n".join(blocks)


def _report(st: State, cfg: config.Config, users: list[str], links: bool) -> None:
    """What the admin should know about the users' sites, warned about on
    stderr and in the log, never an error: the sites.d lines left out, and
    (`links`) hard links and symlinks between the sites' trees (§4.9)."""
    from siteiso.views import engine as views_engine
    from siteiso.views.links import find_links
    for user in users:
        try:
            acct = accounts.lookup(user, cfg)
        except SiteisoError:
            continue
        sites = st.sites_of(user)
        lines = [p for site in sites for p in views_engine.sites_d_paths(
            site, acct, cfg.hidden, [s.docroot for s in sites])[1]]
        if links:
            lines += find_links(acct.home, views_engine.site_inputs(st, acct, cfg))
        warn(lines, f"{user}: ")


def commit(st: State, cfg: config.Config, users: list[str] | None = None,
           rebuild: bool = False, gate: bool = False,
           others: Iterable[str] = ()) -> list[str]:
    """Save a changed state, then re-drive its side effects (lock held).

    users: the users whose views the change is about (None: every user's);
    their views are converged, and so are leftover views of users without
    sites. A failure in the views of a user the change is about is the
    command's error, and the change is undone first: the document recorded
    before it is recorded again and converged, so an error leaves nothing
    changed. Failures in other users' views, and every failure of a gate
    change (`gate`: the mode and user lists, which change no view), are
    returned as warnings: one account's home never fails a command that is
    not about it. `others`: users whose views the change affects though it
    is not about them; converged too, their failures are warnings.

    cagefsctl, its hooks, selectorctl and siteisod change state only here.
    """
    before = recorded()
    after = save(st)
    mirrors.apply(st)
    extra = [u for u in others if users is not None and u not in users]
    converged = None if users is None else [*users, *extra]
    failures = engine.converge(st, cfg, users=converged, rebuild=rebuild)
    about = set(failures) if users is None else set(users)
    errors = {} if gate else {u: m for u, m in failures.items() if u in about}
    warnings = [f"user {u}: {m}" for u, m in failures.items() if u not in errors]
    if errors and before != after:
        undo = State.from_json(before)
        save(undo)
        mirrors.apply(undo)
        for u, m in engine.converge(undo, cfg, users=converged).items():
            log.warning("undoing the change: user %s: %s", u, m)
        log.info("change undone: views of %s could not be built",
                 ", ".join(sorted(errors)))
    if errors:
        raise EngineError("\n".join(f"user {u}: {m}" for u, m in errors.items()))
    fault("views-converged")
    return warnings


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Flags may follow a list of names (`--site-isolation-list john --json`
    # and `--site-isolation-list --json john` are the same request).
    flags = [a for a in argv if a in ("--json", "--debug")]
    parser = build_parser()
    args = parser.parse_args(flags + [a for a in argv if a not in flags])
    if args.json and args.site_isolation_list is None:
        parser.error("--json is only for --site-isolation-list")
    setup_logging(args.debug)

    def body() -> int:
        require_root()
        cfg = config.load()
        admin = Admin(cfg)
        if args.site_isolation_list is not None:
            with locked():
                st = load()
                print(admin.list_text(st, args.site_isolation_list, args.json))
            return 0
        with locked():
            st = load()
            users: list[str] | None = None
            rebuild = False
            if args.site_isolation_allow_all:
                msg = admin.allow_all(st)
            elif args.site_isolation_deny_all:
                msg = admin.deny_all(st)
            elif args.site_isolation_allow:
                msg = admin.allow(st, args.site_isolation_allow)
            elif args.site_isolation_deny:
                msg = admin.deny(st, args.site_isolation_deny)
                users = sorted(admin.touched or ())
            elif args.site_isolation_toggle_mode:
                msg = admin.toggle_mode(st)
            elif args.site_isolation_enable:
                msg = admin.enable(st, args.site_isolation_enable)
                users = sorted(admin.touched or ())
            elif args.site_isolation_disable:
                msg = admin.disable(st, args.site_isolation_disable)
                users = sorted(admin.touched or ())
            elif args.site_isolation_regenerate:
                msg = admin.regenerate(st, args.site_isolation_regenerate)
                users, rebuild = _users(args.site_isolation_regenerate, cfg), True
            elif args.remount:
                users = _users(args.remount, cfg)
                rebuild = True
                msg = f"Remounted website isolation for user(s): {', '.join(users)}"
            else:
                rebuild = True
                msg = "Remounted website isolation for all users."
            gate = bool(args.site_isolation_allow_all or args.site_isolation_deny_all
                        or args.site_isolation_allow or args.site_isolation_toggle_mode)
            admin.warnings += commit(st, cfg, users=users, rebuild=rebuild,
                                     gate=gate, others=sorted(admin.others))
            if args.site_isolation_enable or args.site_isolation_regenerate \
                    or args.remount:
                _report(st, cfg, users or [], links=not args.remount)
            warn(admin.warnings)
        print(msg)
        return 0

    return run_main(body, debug=args.debug, as_json=args.json)
