"""Admin configuration: /etc/siteiso/siteiso.conf (INI, section [siteiso]).

Every key has a default, so a missing file is a valid configuration.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field

from siteiso import paths
from siteiso.errors import SiteisoError

HOME_MODES = ("private", "ro", "shared")


@dataclass(frozen=True)
class Config:
    min_uid: int = 1000
    # auto | embedded | integration | cpanel
    panel: str = "auto"
    script_timeout: float = 30.0
    home_mode: str = "private"
    # Extra paths under every home hidden in every mode (relative to home).
    hidden: tuple[str, ...] = ()
    # Paths under the home shared read-only with every site in private mode;
    # a trailing ":rw" makes one writable.
    shared: tuple[str, ...] = ()
    grace_seconds: float = 3.0
    # Where siteiso's cgroup tree lives; empty = detect (cgroup2 mount).
    cgroup_root: str = ""
    web_group: str = "www-data"
    # PHP handler of isolated sites' vhost includes: cgi | fcgid | fpm
    handler: str = "cgi"
    extra: dict[str, str] = field(default_factory=dict)


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.replace("\n", ",").split(",") if p.strip())


def load(path: str = paths.CONF) -> Config:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return Config()
    except (OSError, configparser.Error) as e:
        raise SiteisoError(f"cannot read {path}: {e}") from e
    if not parser.has_section("siteiso"):
        return Config()
    s = parser["siteiso"]
    try:
        cfg = Config(
            min_uid=s.getint("min_uid", 1000),
            panel=s.get("panel", "auto").strip(),
            script_timeout=s.getfloat("script_timeout", 30.0),
            home_mode=s.get("home", "private").strip(),
            hidden=_split(s.get("hidden", "")),
            shared=_split(s.get("shared", "")),
            grace_seconds=s.getfloat("grace_seconds", 3.0),
            cgroup_root=s.get("cgroup_root", "").strip(),
            web_group=s.get("web_group", "www-data").strip(),
            handler=s.get("handler", "cgi").strip(),
        )
    except ValueError as e:
        raise SiteisoError(f"bad value in {path}: {e}") from e
    if cfg.home_mode not in HOME_MODES:
        raise SiteisoError(
            f"bad value in {path}: home = {cfg.home_mode!r}, "
            f"expected one of {', '.join(HOME_MODES)}"
        )
    if cfg.handler not in ("cgi", "fcgid", "fpm"):
        raise SiteisoError(
            f"bad value in {path}: handler = {cfg.handler!r}, "
            "expected cgi, fcgid or fpm"
        )
    if cfg.panel not in ("auto", "embedded", "integration", "cpanel"):
        raise SiteisoError(
            f"bad value in {path}: panel = {cfg.panel!r}, "
            "expected auto, embedded, integration or cpanel"
        )
    return cfg
