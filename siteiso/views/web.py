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
    records: dict[str, set[str]] = {}    # written once Apache took the includes
    failed: list[str] = []
    # Masters to stop once the web server no longer sends requests to them.
    stop = [(t, True) for t in gone]
    with apache.IncludeJournal() as journal:
        for s in sites:
            apache.write_wrappers(acct, s.token, lay)
            if cfg.handler == "fpm":
                _ensure_fpm(acct, s, holders.get(s.token), cfg, lay, failed)
            else:
                stop.append((s.token, False))  # the handler was switched from FPM
            # One include for the site, at each of its names' paths.
            text = apache.include_text(acct, s.token, s.docroot, cfg.handler,
                                       docroots, lay,
                                       fpm_socket=fpm.socket_path(s.token),
                                       configured=s.configured)
            wanted = set()
            for name in s.names:
                for path in lay.includes_for(acct.name, name):
                    wanted.add(path)
                    journal.write(path, text)
            for stale in _recorded(acct.uid, s.token) - wanted:
                journal.remove(stale, s.token)
            records[s.token] = wanted
        for token in gone:
            _forget_includes(acct.uid, token, journal)
        journal.reload(lay)
    for token, wanted in records.items():
        with open(_record(acct.uid, token), "w", encoding="utf-8") as f:
            f.write("\n".join(sorted(wanted)) + "\n")
    for token in gone:
        _forget_rest(acct.uid, token, acct)
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


def _forget_includes(uid: int, token: str, journal: apache.IncludeJournal) -> None:
    for path in _recorded(uid, token):
        journal.remove(path, token)


def _forget_rest(uid: int, token: str, acct: Account | None) -> None:
    """Once Apache no longer names them: the site's record and wrappers."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record(uid, token))
    if acct is not None:
        with contextlib.suppress(Exception):
            apache.remove_wrappers(acct, token)


def forget_site(uid: int, h: Holder) -> None:
    """A site left isolation (its owner may be gone too)."""
    if h.kind == "cage":
        return
    try:
        pw = pwd.getpwuid(uid)
        acct: Account | None = Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    except KeyError:
        acct = None
    with apache.IncludeJournal() as journal:
        _forget_includes(uid, h.token, journal)
        journal.reload(layout.detect())
    _forget_rest(uid, h.token, acct)
    # Once the web server no longer sends requests to it; before the engine
    # ends the rest of the site's processes.
    try:
        grace = config.load().grace_seconds
    except SiteisoError:
        grace = Config().grace_seconds
    _stop_fpm(h.token, grace, forget=True)
