"""The operations of a plan and their text form (native/README.md)."""

from __future__ import annotations

from dataclasses import dataclass

from siteiso.errors import UnsafePath

KINDS = {"version", "uid", "home", "cgroup", "pidns", "proc",
         "clone", "tmpfs", "mkdir", "attach", "mask", "ro", "detach", "devpts",
         "pin", "touch", "symlink"}


@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple[str, ...]

    def line(self) -> str:
        for a in self.args:
            if any(ord(c) < 32 or ord(c) == 127 for c in a):
                raise UnsafePath(f"refusing a path with a control character: {a!r}")
        return "\t".join((self.kind, *self.args))


def op(kind: str, *args: object) -> Op:
    assert kind in KINDS, kind
    return Op(kind, tuple(str(a) for a in args))


def render(ops: list[Op]) -> str:
    return "".join(o.line() + "\n" for o in ops)
