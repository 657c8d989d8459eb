"""Which paths a site owns (SPEC §4.2): docroot, app root, admin-added paths."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

APP_ROOT_NAMES = ("public", "web", "pub", "htdocs", "www")


@dataclass(frozen=True)
class SiteInput:
    token: str
    docroot: str                        # canonical real path
    names: tuple[str, ...] = ()
    extra_paths: tuple[str, ...] = ()   # from /etc/siteiso/sites.d/<domain>.conf
    home_mode: str = "private"          # private | ro | shared
    shared: tuple[str, ...] = field(default=())  # home-relative, ":rw" suffix
    hidden: tuple[str, ...] = field(default=())  # home-relative, hidden in every mode
    # The docroot as the web server names it where that differs (a symlink on
    # the way), each already resolved to `docroot` by the engine.
    configured: tuple[str, ...] = field(default=())


def inside(path: str, root: str) -> bool:
    """path is root or lies beneath it."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def app_root(docroot: str, home: str, others: list[str]) -> str | None:
    """The docroot's parent when the docroot is a framework public folder,
    the parent is not the home, and it neither contains nor lies inside
    another site's paths (`others`)."""
    if posixpath.basename(docroot) not in APP_ROOT_NAMES:
        return None
    parent = posixpath.dirname(docroot)
    if parent == home or not inside(parent, home):
        return None
    for other in others:
        if inside(other, parent) or inside(parent, other):
            return None
    return parent


def site_paths(site: SiteInput, home: str, sites: list[SiteInput]) -> list[str]:
    """Every path the site owns, outermost first, without duplicates."""
    others = [s.docroot for s in sites if s.token != site.token]
    others += [p for s in sites if s.token != site.token for p in s.extra_paths]
    owned = [site.docroot, *site.extra_paths]
    root = app_root(site.docroot, home, others)
    if root is not None:
        owned.append(root)
    result: list[str] = []
    for p in sorted(set(owned), key=lambda x: (x.count("/"), x)):
        if not any(inside(p, q) for q in result):
            result.append(p)
    return result
