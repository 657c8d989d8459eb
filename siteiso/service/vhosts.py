"""Which vhost answers a name, and which siteiso includes it loads.

`siteiso doctor` asks Apache itself: `apachectl -S` lists every vhost with
the file and line where it starts, its ServerName and aliases; `apachectl
-t -D DUMP_INCLUDES` lists every file Apache read, indented under the file
that included it, with the line it was included from. A vhost's includes
are those its file includes between the vhost's first line and the next
vhost's of that file. A siteiso include names its site on its first line
(siteiso.service.apache.include_mark), so one include per vhost is enough
for all the names of a site that vhost answers (ServerAlias), and an
include of another site is told apart.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

_NAMEVHOST = re.compile(r"^\s+port (\d+) namevhost (\S+) \((.+):(\d+)\)$")
_SINGLE = re.compile(r"^\S+:(\d+)\s+(\S+) \((.+):(\d+)\)$")
_ALIAS = re.compile(r"^\s+(?:wild )?alias (\S+)$")
_INCLUDED = re.compile(r"^( *)\((\d+|\*)\) (.+)$")
_TOKEN = re.compile(r"^# siteiso: site ([0-9a-f]+) is isolated;")


@dataclass(frozen=True)
class Vhost:
    file: str
    line: int
    port: int
    names: tuple[str, ...]      # ServerName, then aliases (may be wildcards)

    def answers(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, n.lower().rsplit(":", 1)[0])
                   for n in self.names)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def parse_vhosts(text: str) -> list[Vhost]:
    """The vhosts of `apachectl -S` (one entry a vhost and port)."""
    found: list[tuple[str, int, int, list[str]]] = []
    for line in text.splitlines():
        m = _NAMEVHOST.match(line) or (
            None if "NameVirtualHost" in line else _SINGLE.match(line))
        if m:
            found.append((m[3], int(m[4]), int(m[1]), [m[2]]))
            continue
        a = _ALIAS.match(line)
        if a and found:
            found[-1][3].append(a[1])
    out: list[Vhost] = []
    for file, start, port, names in found:
        v = Vhost(file, start, port, tuple(names))
        if v not in out:
            out.append(v)
    return out


def parse_includes(text: str) -> list[tuple[str, int, str]]:
    """(including file, its line, included file) from DUMP_INCLUDES."""
    stack: list[tuple[int, str]] = []      # (indent, file) of open parents
    out: list[tuple[str, int, str]] = []
    for line in text.splitlines():
        m = _INCLUDED.match(line)
        if not m:
            continue
        indent, at, file = len(m[1]), int(m[2]) if m[2] != "*" else 0, m[3].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            out.append((stack[-1][1], at, file))
        stack.append((indent, file))
    return out


def included_by(v: Vhost, vhosts: list[Vhost],
                includes: list[tuple[str, int, str]]) -> list[str]:
    """The files the vhost's block includes."""
    later = [o.line for o in vhosts if o.file == v.file and o.line > v.line]
    end = min(later, default=1 << 30)
    return [f for parent, at, f in includes if parent == v.file and v.line < at < end]


def include_token(path: str) -> str | None:
    """The site a siteiso include belongs to (None: not one)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            m = _TOKEN.match(f.readline())
    except OSError:
        return None
    return m[1] if m else None
