"""The operations of a plan and their text form (native/README.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from siteiso.errors import UnsafePath

# TAB and newline separate fields and lines: no field may hold them, nor any
# other control character; and every field must be valid UTF-8 (surrogates
# stand for undecodable bytes of a name read from a home).
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

KINDS = {"version", "uid", "home", "cgroup", "pidns", "proc",
         "clone", "tmpfs", "mkdir", "attach", "mask", "ro", "detach", "devpts",
         "pin", "touch", "symlink"}


@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[str, ...]

    def line(self) -> str:
        if _CONTROL.search("".join(self.args)):
            bad = next(a for a in self.args if _CONTROL.search(a))
            raise UnsafePath("refusing a path with a control character or invalid "
                             f"UTF-8: {bad!r}")
        return "\t".join((self.kind, *self.args))


def op(kind: str, *args: object) -> Op:
    assert kind in KINDS, kind
    return Op(kind, tuple(str(a) for a in args))


def render(ops: list[Op]) -> str:
    return "".join(o.line() + "\n" for o in ops)
