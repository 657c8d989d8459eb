"""selectorctl: per-domain PHP of isolated sites (SPEC §3, §5).

    selectorctl --list
    selectorctl --user-current --domain D [--user U]
    selectorctl --set-user-current=V --domain D [--user U]
    selectorctl --list-user-extensions [--version V] --domain D [--user U]
    selectorctl --enable-user-extensions=a,b [--version V] --domain D [--user U]
    selectorctl --disable-user-extensions=a,b [--version V] --domain D [--user U]

Root names the account (--user); a user acts on its own account only. A user
cannot change root's files, so its selectorctl carries its command line to
siteisod over the user socket, and siteisod (which knows the caller from the
kernel alone) runs it here for that account. --domain works for isolated
domains only. A change is recorded in the site's settings, then the user's
views converge: new PHP processes of that site see it, nothing else does.

Output: `--list` and `--user-current` print `version<TAB>build<TAB>binary` a
line; `--set-user-current` prints the new current line; the extension lists
print one extension a line; enabling and disabling print nothing. Errors go
to stderr with exit status 1; a wrong command line exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from siteiso import accounts, config, panels
from siteiso.accounts import Account
from siteiso.commands.common import Parser, run_main, setup_logging
from siteiso.errors import DomainNotFound, SiteisoError, UsageError
from siteiso.names import normalize_domain
from siteiso.service import php
from siteiso.state import Site, State, load, locked

log = logging.getLogger("siteiso")

ACTIONS = ("list", "user_current", "set_user_current", "list_user_extensions",
           "enable_user_extensions", "disable_user_extensions")


class _Parser(Parser):
    """Raises instead of exiting: siteisod parses a user's selectorctl too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="selectorctl", description="per-domain PHP of isolated sites")
    act = p.add_mutually_exclusive_group(required=True)
    act.add_argument("--list", "-l", action="store_true",
                     help="the installed PHP versions")
    act.add_argument("--user-current", "-C", action="store_true",
                     help="the domain's PHP version")
    act.add_argument("--set-user-current", "-b", metavar="VERSION",
                     help="set the domain's PHP version")
    act.add_argument("--list-user-extensions", "-G", action="store_true",
                     help="the domain's extensions of a version")
    act.add_argument("--enable-user-extensions", "-E", metavar="EXT[,EXT…]",
                     help="enable extensions for the domain")
    act.add_argument("--disable-user-extensions", "-D", metavar="EXT[,EXT…]",
                     help="disable extensions for the domain")
    p.add_argument("--version", "-v", metavar="VERSION",
                   help="PHP version of the extension options (default: the "
                        "domain's current one)")
    p.add_argument("--domain", "-d", metavar="DOMAIN", help="an isolated domain")
    p.add_argument("--user", "-u", metavar="USER",
                   help="the domain's owner (required as root)")
    p.add_argument("--debug", action="store_true", help="tracebacks and debug log")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if not args.list and not args.domain:
        raise UsageError("selectorctl: error: --domain is required (per-domain PHP "
                         "works on isolated domains)")
    return args


# ---- the work, as root (the command itself, or siteisod for a user) -----------

def _site(st: State, domain: str, acct: Account, as_root: bool,
          panel: panels.Panel) -> Site:
    """The caller's isolated site of a domain, or an error that says why not."""
    site = st.site_of(domain)
    owner = site.owner if site is not None else None
    if site is None:
        rec = panel.domain(domain)
        owner = rec.owner if rec is not None else None
    if owner != acct.name:
        # A user learns nothing about domains it does not own.
        if as_root and owner is not None:
            raise SiteisoError(f"Domain {domain} does not belong to user {acct.name}")
        raise DomainNotFound(domain)
    if site is None:
        fix = f"cagefsctl --site-isolation-enable {domain}"
        if not as_root:
            fix += f" (or: cagefsctl-user site-isolation-enable --domain {domain})"
        raise SiteisoError(f"Website isolation is not enabled for domain {domain}; "
                           f"per-domain PHP works for isolated domains only: {fix}")
    return site


def _split(value: str) -> list[str]:
    return [v for v in (p.strip() for p in value.split(",")) if v]


def _current_line(settings: dict[str, object],
                  builds: dict[str, php.Build]) -> str:
    v = php.recorded_version(settings)
    if v in builds:
        return builds[v].line()
    chosen = php.effective(settings, builds)
    if chosen is None:
        return "no PHP installed"
    return f"{v}\t(not installed; the site runs {chosen[0].version})" if v \
        else chosen[0].line()


def act(args: argparse.Namespace, acct: Account | None, cfg: config.Config,
        as_root: bool) -> str:
    """Do one selectorctl request; returns what it prints."""
    panel = panels.get_panel(cfg)
    builds = php.builds_for(panel)
    if args.list:
        return "\n".join(b.line() for b in builds.values())
    assert acct is not None
    domain = normalize_domain(args.domain)
    with locked():
        st = load()
        site = _site(st, domain, acct, as_root, panel)
        settings = php.site_settings(site, builds, panel)
        version = args.version or php.recorded_version(settings) or ""
        if args.user_current:
            return _current_line(settings, builds)
        if args.list_user_extensions:
            return "\n".join(php.enabled(settings, php.normalize_version(version,
                                                                         builds)))
        if args.set_user_current is not None:
            new = php.set_version(settings, args.set_user_current, builds)
        elif args.enable_user_extensions is not None:
            new = php.enable_extensions(settings, version,
                                        _split(args.enable_user_extensions), builds)
        else:
            new = php.disable_extensions(settings, version,
                                         _split(args.disable_user_extensions), builds)
        if new != site.php:
            # Imported here: cagefsctl imports the engine, which is heavy.
            from siteiso.commands.cagefsctl import commit
            site.php = new
            for line in commit(st, cfg, users=[acct.name]):
                log.warning("%s", line)
            log.info("site %s of %s: PHP settings now %s (selectorctl)",
                     domain, acct.name, new)
        return _current_line(new, builds) if args.set_user_current else ""


def perform_for_uid(uid: int, argv: list[str]) -> dict[str, object]:
    """siteisod's side of a user's selectorctl: the caller's own account only."""
    try:
        args = parse(argv)
        cfg = config.load()
        acct = accounts.lookup_uid(uid, cfg)
        if args.user is not None and args.user != acct.name:
            raise SiteisoError(f"You can manage only your own domains (user "
                               f"{acct.name}), not those of {args.user}")
        return {"result": "success", "output": act(args, acct, cfg, as_root=False)}
    except SiteisoError as e:
        return {"result": "error", "message": e.message}
    except Exception:
        log.exception("selectorctl request of uid %d failed", uid)
        return {"result": "error",
                "message": "siteisod failed to do the request (see the system log)"}


# ---- the command ---------------------------------------------------------------

def _as_user(argv: list[str]) -> int:
    from siteiso.commands.user import ask  # the siteisod client
    answer = ask({"command": "selectorctl", "argv": argv})
    if answer.get("result") != "success":
        print(answer.get("message", "siteisod failed"), file=sys.stderr)
        return 1
    out = answer.get("output")
    if isinstance(out, str) and out:
        print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    setup_logging(debug)

    def body() -> int:
        try:
            args = parse(argv)
        except UsageError as e:
            build_parser().print_usage(sys.stderr)
            raise e
        if os.geteuid() != 0:
            return _as_user(argv)
        cfg = config.load()
        acct = None
        if not args.list:
            if not args.user:
                raise SiteisoError("selectorctl runs as root here: name the "
                                   "domain's owner with --user USER")
            acct = accounts.lookup(args.user, cfg)
        out = act(args, acct, cfg, as_root=True)
        if out:
            print(out)
        return 0

    return run_main(body, debug=debug, as_json=False)
