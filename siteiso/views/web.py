"""Keeping the web server tier in step with the isolated sites."""

from __future__ import annotations

import contextlib
import os
import pwd

from siteiso import paths
from siteiso.accounts import Account
from siteiso.config import Config
from siteiso.plan import SiteInput
from siteiso.service import apache, layout
from siteiso.views.index import Holder


# Which include files belong to which token: /run/siteiso/views/<uid>/<token>.web
def _record(uid: int, token: str) -> str:
    return f"{paths.VIEWS}/{uid}/{token}.web"


def converge_sites(acct: Account, sites: list[SiteInput], cfg: Config,
                   gone: list[str]) -> None:
    lay = layout.detect()
    docroots = [s.docroot for s in sites]
    changed = False
    for s in sites:
        apache.write_wrappers(acct, s.token, lay)
        wanted = set()
        for name in s.names:
            path = lay.include_for(acct.name, name)
            wanted.add(path)
            text = apache.include_text(acct, s.token, s.docroot, cfg.handler,
                                       docroots, lay)
            changed |= apache.write_include(path, text)
        for stale in _recorded(acct.uid, s.token) - wanted:
            changed |= apache.remove_include(stale)
        with open(_record(acct.uid, s.token), "w", encoding="utf-8") as f:
            f.write("\n".join(sorted(wanted)) + "\n")
    for token in gone:
        changed |= _forget(acct.uid, token, acct)
    if changed:
        apache.reload(lay)


def _recorded(uid: int, token: str) -> set[str]:
    try:
        with open(_record(uid, token), encoding="utf-8") as f:
            return {line for line in f.read().splitlines() if line}
    except FileNotFoundError:
        return set()


def _forget(uid: int, token: str, acct: Account | None) -> bool:
    changed = False
    for path in _recorded(uid, token):
        changed |= apache.remove_include(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record(uid, token))
    if acct is not None:
        with contextlib.suppress(Exception):
            apache.remove_wrappers(acct, token)
    return changed


def forget_site(uid: int, h: Holder) -> None:
    """A site left isolation (its owner may be gone too)."""
    if h.kind == "cage":
        return
    try:
        pw = pwd.getpwuid(uid)
        acct: Account | None = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    except KeyError:
        acct = None
    if _forget(uid, h.token, acct):
        apache.reload(layout.detect())
