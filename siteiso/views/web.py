"""Keeping the web server tier in step with the isolated sites."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd

from siteiso import config, paths
from siteiso.accounts import Account
from siteiso.config import Config
from siteiso.errors import EngineError, SiteisoError
from siteiso.plan import SiteInput
from siteiso.service import apache, fpm, layout
from siteiso.views import index
from siteiso.views.index import Holder

log = logging.getLogger(__name__)


# Which include files belong to which token: /run/siteiso/views/<uid>/<token>.web
def _record(uid: int, token: str) -> str:
    return f"{paths.VIEWS}/{uid}/{token}.web"


def _site_cgroup(cfg: Config, uid: int, token: str) -> str:
    # The engine imports this module: import it when called, not at load.
    from siteiso.views import engine
    return f"{engine.user_cgroup(cfg, uid)}/site-{token}"


def converge_sites(acct: Account, sites: list[SiteInput], cfg: Config,
                   gone: list[str]) -> None:
    lay = layout.detect()
    docroots = [s.docroot for s in sites]
    # The index was just written: the current holder of every site.
    holders = {h.token: h for h in index.read(acct.uid) if h.kind == "site"}
    changed = False
    failed: list[str] = []
    # Masters to stop once the web server no longer sends requests to them.
    stop = [(t, True) for t in gone]
    for s in sites:
        apache.write_wrappers(acct, s.token, lay)
        if cfg.handler == "fpm":
            _ensure_fpm(acct, s, holders.get(s.token), cfg, lay, failed)
        else:
            stop.append((s.token, False))  # the handler was switched away from FPM
        wanted = set()
        for name in s.names:
            text = apache.include_text(acct, s.token, s.docroot, cfg.handler,
                                       docroots, lay,
                                       fpm_socket=fpm.socket_path(s.token),
                                       configured=s.configured)
            for path in lay.includes_for(acct.name, name):
                wanted.add(path)
                changed |= apache.write_include(path, text)
        for stale in _recorded(acct.uid, s.token) - wanted:
            changed |= apache.remove_include(stale, s.token)
        with open(_record(acct.uid, s.token), "w", encoding="utf-8") as f:
            f.write("\n".join(sorted(wanted)) + "\n")
    for token in gone:
        changed |= _forget(acct.uid, token, acct)
    if changed:
        apache.reload(lay)
    for token, forget in stop:
        _stop_fpm(token, cfg.grace_seconds, forget)
    if failed:
        raise EngineError("\n".join(failed))


def _ensure_fpm(acct: Account, s: SiteInput, holder: Holder | None, cfg: Config,
                lay: layout.Layout, failed: list[str]) -> None:
    """Start (or restart) the site's php-fpm master in its current view. A
    failure is reported after every other site has converged."""
    if holder is None:
        failed.append(f"cannot start php-fpm for {','.join(s.names)}: "
                      "the site's view is not running")
        return
    try:
        fpm.ensure(acct, s, holder, _site_cgroup(cfg, acct.uid, s.token),
                   cfg.web_group, lay, cfg.grace_seconds)
    except (SiteisoError, OSError) as e:
        log.error("php-fpm of %s: %s", ",".join(s.names), e)
        failed.append(e.message if isinstance(e, SiteisoError)
                      else f"cannot start php-fpm for {','.join(s.names)}: {e}")


def _recorded(uid: int, token: str) -> set[str]:
    try:
        with open(_record(uid, token), encoding="utf-8") as f:
            return {line for line in f.read().splitlines() if line}
    except FileNotFoundError:
        return set()


def _stop_fpm(token: str, grace: float, forget: bool = False) -> None:
    try:
        fpm.stop(token, grace, remove_log=forget)
    except (SiteisoError, OSError) as e:
        log.error("cannot stop php-fpm of site %s: %s", token, e)


def _forget(uid: int, token: str, acct: Account | None) -> bool:
    changed = False
    for path in _recorded(uid, token):
        changed |= apache.remove_include(path, token)
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
    # Once the web server no longer sends requests to it; before the engine
    # ends the rest of the site's processes.
    try:
        grace = config.load().grace_seconds
    except SiteisoError:
        grace = Config().grace_seconds
    _stop_fpm(h.token, grace, forget=True)
