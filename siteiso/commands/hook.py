"""`siteiso hook …`: what panels call when accounts and domains change (§6).

  siteiso hook post_modify_domain modify -u U --domain OLD --new-domain NEW
  siteiso hook post_modify_user delete -u U
  siteiso hook post_modify_user modify -u U --new-username N
  siteiso hook post_restore_account -u U

Each runs after the panel's change, reads the panel as it now is, and
re-drives views under the state lock like cagefsctl. A renamed domain keeps
its isolation (the panel must list the new name for the same user); a
deleted user's sites lose it (their views end); a renamed user keeps them
(same uid; docroots follow the panel); a restored account is regenerated
(docroots moved, domains renamed or gone). Errors change nothing.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from siteiso import accounts, config, panels
from siteiso.commands.cagefsctl import Admin, commit
from siteiso.commands.common import warn
from siteiso.errors import SiteisoError, UsageError
from siteiso.names import normalize_domain, validate_username
from siteiso.state import State, load, locked

log = logging.getLogger("siteiso")


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    hook = sub.add_parser("hook", help="panel hooks: renames, deletions, restores")
    hooks = hook.add_subparsers(dest="hook", required=True)
    dom = hooks.add_parser("post_modify_domain", help="a domain was renamed")
    dom.add_argument("action", choices=["modify"])
    dom.add_argument("-u", "--user", required=True, help="the domain's owner")
    dom.add_argument("--domain", required=True, help="the old name")
    dom.add_argument("--new-domain", required=True, help="the new name")
    usr = hooks.add_parser("post_modify_user",
                           help="an account was deleted or renamed")
    usr.add_argument("action", choices=["delete", "modify"])
    usr.add_argument("-u", "--user", required=True, help="the old user name")
    usr.add_argument("--new-username", help="the new user name (modify)")
    rest = hooks.add_parser("post_restore_account", help="an account was restored")
    rest.add_argument("-u", "--user", required=True, help="the account")


def run(args: argparse.Namespace) -> int:
    cfg = config.load()
    user = validate_username(args.user)
    admin = Admin(cfg)
    with locked():
        st = load()
        rebuild = args.hook != "post_modify_domain"   # a rename keeps every view
        if args.hook == "post_modify_domain":
            users = _rename_domain(st, cfg, admin, user, args.domain, args.new_domain)
        elif args.hook == "post_modify_user" and args.action == "delete":
            for site in st.sites_of(user):
                st.sites.pop(site.token, None)
            st.forget_kept(user)
            st.denied = [u for u in st.denied if u != user]
            st.allowed = [u for u in st.allowed if u != user]
            log.info("user %s deleted: its sites are no longer isolated", user)
            users = []
        elif args.hook == "post_modify_user":
            if not args.new_username:
                raise UsageError("post_modify_user modify needs --new-username")
            users = [_rename_user(st, cfg, admin, user, args.new_username)]
        else:
            admin.regenerate(st, [user])
            users = [user]
        if users is None:
            return 0
        admin.warnings += commit(st, cfg, users=users, rebuild=rebuild)
    warn(admin.warnings)
    return 0


def _rename_domain(st: State, cfg: config.Config, admin: Admin, user: str,
                   old_name: str, new_name: str) -> list[str] | None:
    """The panel renamed a domain (its hook runs after the change): the
    site keeps its isolation under the new name, which the panel must now
    list as a domain of the same user and which must not be another site's
    name. Then the user's sites follow the panel (the docroot may have moved
    with the name). None: the domain was not isolated, nothing to do."""
    old, new = normalize_domain(old_name), normalize_domain(new_name)
    site = st.site_of(old)
    if site is None:
        return None
    if site.owner != user:
        raise SiteisoError(f"domain {old} does not belong to user {user}")
    other = st.site_of(new)
    if other is not None and other is not site:
        raise SiteisoError(f"domain {new} is already a name of another isolated "
                           f"site ({other.docroot}): refusing to rename {old} to it")
    panel = panels.get_panel(cfg)
    rec = panel.domain(new)
    if rec is None or rec.owner != user or (new != old and panel.domain(old)):
        raise SiteisoError(f"the panel does not list {new} instead of {old} for "
                           f"{user}: run this hook after the panel has renamed "
                           "the domain")
    site.names = sorted({*(n for n in site.names if n != old), new})
    if old in st.php_kept:
        st.php_kept[new] = st.php_kept.pop(old)
    log.info("isolated domain %s renamed to %s", old, new)
    admin.regenerate(st, [user])
    return [user]


def _rename_user(st: State, cfg: config.Config, admin: Admin, user: str,
                 new_name: str) -> str:
    """The panel renamed an account (after `usermod -l`, which keeps the
    uid): its sites, list entries and views follow, and the docroots follow
    the panel (a moved home). A new name that is another account is
    refused: nothing of one account is ever handed to another."""
    new = validate_username(new_name)
    acct = accounts.lookup(new, cfg)
    sites = st.sites_of(user)
    if sites and new != user:
        if st.sites_of(new):
            raise SiteisoError(f"user {new} has isolated sites of its own: "
                               f"refusing to give it the sites of {user}")
        if {s.uid for s in sites} != {acct.uid}:
            raise SiteisoError(f"user {new} (uid {acct.uid}) is not the account "
                               f"{user} renamed (uid {sites[0].uid}): a rename "
                               "keeps the uid")
    panel = panels.get_panel(cfg)
    still = [n for s in sites for n in s.names
             if (rec := panel.domain(n)) is not None and rec.owner == user]
    if new != user and still:
        raise SiteisoError(f"the panel still lists {', '.join(still)} for {user}: "
                           "run this hook after the panel has renamed the account")
    for site in sites:
        site.owner = acct.name
    if new != user:
        # Kept settings follow only a rename the sites' uid proved.
        if sites:
            st.rename_kept(user, new)
        else:
            st.forget_kept(user)
    st.denied = [new if u == user else u for u in st.denied]
    st.allowed = [new if u == user else u for u in st.allowed]
    log.info("user %s renamed to %s: isolation kept", user, new)
    admin.regenerate(st, [new])
    return new
