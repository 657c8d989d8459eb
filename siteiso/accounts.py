"""Hosting accounts: Unix users with uid ≥ min_uid and a home."""

from __future__ import annotations

import pwd
from dataclasses import dataclass

from siteiso.config import Config
from siteiso.errors import NotHostingAccount, SiteisoError, UserNotFound
from siteiso.names import validate_username

# The kernel's overflow uid ("nobody"): above min_uid, never a hosting account.
NOBODY_UID = 65534


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def _hosting_uid(uid: int, cfg: Config) -> bool:
    return uid >= cfg.min_uid and uid != NOBODY_UID


def lookup(name: str, cfg: Config) -> Account:
    name = validate_username(name)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise UserNotFound(name) from None
    if not _hosting_uid(pw.pw_uid, cfg):
        raise NotHostingAccount(name)
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir.rstrip("/") or "/")


def lookup_uid(uid: int, cfg: Config) -> Account:
    """The hosting account of a uid (a caller of siteisod), checked as
    lookup() checks a name."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise SiteisoError(f"uid {uid} has no user name") from None
    return lookup(name, cfg)


def uid_order(names: list[str]) -> list[str]:
    def key(n: str) -> tuple[int, str]:
        try:
            return (pwd.getpwnam(n).pw_uid, n)
        except KeyError:
            return (1 << 32, n)
    return sorted(names, key=key)


def hosting_accounts(cfg: Config) -> list[Account]:
    """Every hosting account on the server, by uid."""
    out = [Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir.rstrip("/") or "/")
           for p in pwd.getpwall() if _hosting_uid(p.pw_uid, cfg)]
    return sorted(out, key=lambda a: a.uid)
