"""Links between sites' trees: reported, not prevented (SPEC §4.9).

A hard link made before isolation between two sites' trees shares one file
between their views, and a symlink in one site pointing into a sibling shows
where an attacker meant to reach. Both are found at enable and regenerate and
reported to the admin; nothing is changed.
"""

from __future__ import annotations

import os
import posixpath
import stat

from siteiso.names import quote
from siteiso.plan.sites import SiteInput, inside, site_paths

MAX_ENTRIES = 200_000   # per user: the walk stays bounded on huge trees


def _owner_of(path: str, owned: dict[str, list[str]]) -> str | None:
    """The site whose paths hold path (longest prefix)."""
    best, best_len = None, -1
    for token, paths in owned.items():
        for p in paths:
            if inside(path, p) and len(p) > best_len:
                best, best_len = token, len(p)
    return best


def find_links(home: str, sites: list[SiteInput]) -> list[str]:
    """One line per link that crosses from one site's tree into another's."""
    owned = {s.token: site_paths(s, home, sites) for s in sites}
    label = {s.token: (s.names[0] if s.names else s.docroot) for s in sites}
    inodes: dict[tuple[int, int], list[str]] = {}
    found: list[str] = []
    seen = 0
    for site in sites:
        for root in owned[site.token]:
            for dirpath, dirnames, filenames in os.walk(root):
                if _owner_of(dirpath, owned) != site.token:
                    dirnames[:] = []      # a nested sibling: its own walk
                    continue
                for name in (*dirnames, *filenames):
                    seen += 1
                    if seen > MAX_ENTRIES:
                        found.append(f"note: stopped after {MAX_ENTRIES} entries; "
                                     "links further down were not checked")
                        return found
                    path = posixpath.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    if stat.S_ISLNK(st.st_mode):
                        line = _symlink(path, site.token, owned, label)
                        if line:
                            found.append(line)
                    elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                        inodes.setdefault((st.st_dev, st.st_ino), []).append(path)
    for paths in inodes.values():
        tokens = {_owner_of(p, owned) for p in paths}
        if len(tokens) > 1:
            shown = ", ".join(
                f"{quote(p)} ({label.get(_owner_of(p, owned) or '', '?')})"
                for p in sorted(paths))
            found.append(f"hard link shared between sites: {shown}")
    return found


def _symlink(path: str, token: str, owned: dict[str, list[str]],
             label: dict[str, str]) -> str | None:
    try:
        target = os.readlink(path)
    except OSError:
        return None
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    other = _owner_of(resolved, owned)
    if other is None or other == token:
        return None
    return (f"symlink into another site: {quote(path)} -> {quote(target)} "
            f"({label[token]} -> {label[other]})")
