"""`siteiso hook …`: what panels call when accounts and domains change (§6).

  siteiso hook post_modify_domain modify -u U --domain OLD --new-domain NEW
  siteiso hook post_modify_user delete -u U
  siteiso hook post_modify_user modify -u U --new-username N
  siteiso hook post_restore_account -u U

A renamed domain keeps its isolation; a deleted user's sites lose it (their
views end); a renamed user keeps them; a restored account is regenerated
(docroots moved, domains renamed or gone). Each runs under the state lock
and re-drives views like cagefsctl does.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from siteiso import accounts, config
from siteiso.commands.cagefsctl import Admin, commit
from siteiso.errors import SiteisoError, UsageError
from siteiso.names import normalize_domain, validate_username
from siteiso.state import load, locked

log = logging.getLogger("siteiso")


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    hook = sub.add_parser("hook", help="panel hooks: renames, deletions, restores")
    hooks = hook.add_subparsers(dest="hook", required=True)
    dom = hooks.add_parser("post_modify_domain")
    dom.add_argument("action", choices=["modify"])
    dom.add_argument("-u", "--user", required=True)
    dom.add_argument("--domain", required=True)
    dom.add_argument("--new-domain", required=True)
    usr = hooks.add_parser("post_modify_user")
    usr.add_argument("action", choices=["delete", "modify"])
    usr.add_argument("-u", "--user", required=True)
    usr.add_argument("--new-username")
    rest = hooks.add_parser("post_restore_account")
    rest.add_argument("-u", "--user", required=True)


def run(args: argparse.Namespace) -> int:
    cfg = config.load()
    user = validate_username(args.user)
    with locked():
        st = load()
        if args.hook == "post_modify_domain":
            old, new = normalize_domain(args.domain), normalize_domain(args.new_domain)
            site = st.site_of(old)
            if site is None:
                return 0            # not isolated: nothing of ours changes
            if site.owner != user:
                raise SiteisoError(f"domain {old} does not belong to user {user}")
            site.names = sorted({*(n for n in site.names if n != old), new})
            if old in st.php_kept:
                st.php_kept[new] = st.php_kept.pop(old)
            log.info("isolated domain %s renamed to %s", old, new)
            commit(st, cfg, users=[user])
        elif args.hook == "post_modify_user" and args.action == "delete":
            for site in st.sites_of(user):
                st.sites.pop(site.token, None)
            st.denied = [u for u in st.denied if u != user]
            st.allowed = [u for u in st.allowed if u != user]
            log.info("user %s deleted: its sites are no longer isolated", user)
            commit(st, cfg, users=[])
        elif args.hook == "post_modify_user":
            if not args.new_username:
                raise UsageError("post_modify_user modify needs --new-username")
            new = validate_username(args.new_username)
            acct = accounts.lookup(new, cfg)
            for site in st.sites_of(user):
                site.owner, site.uid = acct.name, acct.uid
            st.denied = [new if u == user else u for u in st.denied]
            st.allowed = [new if u == user else u for u in st.allowed]
            log.info("user %s renamed to %s: isolation kept", user, new)
            commit(st, cfg, users=[new], rebuild=True)
        else:
            admin = Admin(cfg)
            admin.regenerate(st, [user])
            commit(st, cfg, users=[user], rebuild=True)
    return 0
