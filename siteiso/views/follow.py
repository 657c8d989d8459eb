"""Views follow the host's unmounts (SPEC §4.7, §7).

A view holds clones of the host's mounts it was built from. When the admin
unmounts a file system on the host, each view still holding it lets go too
(a lazy detach in the view's mount namespace), so nothing is kept busy.
siteisod calls follow_unmounts() when /proc/self/mountinfo changes; the
vanished file systems are told by their device numbers.
"""

from __future__ import annotations

import logging
import subprocess

from siteiso import paths
from siteiso.views import index

log = logging.getLogger("siteiso")


def _unescape(field: str) -> str:
    return (field.replace("\\040", " ").replace("\\011", "\t")
            .replace("\\012", "\n").replace("\\134", "\\"))


def mounts(mountinfo: str) -> list[tuple[str, str, str, str]]:
    """(mount id, parent id, device "major:minor", mount point) of every
    mount in a mountinfo."""
    out = []
    for line in mountinfo.splitlines():
        f = line.split()
        if len(f) >= 5:
            out.append((f[0], f[1], f[2], _unescape(f[4])))
    return out


def host_devices() -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return {dev for _, _, dev, _ in mounts(f.read())}


def detachable(view: list[tuple[str, str, str, str]], vanished: set[str]) -> list[str]:
    """Mount points of the view's mounts of vanished file systems that a path
    reaches. A mount covered by another on the same mount point (a mask over
    it) is left alone: detaching by path would take the cover off instead."""
    covered = {parent for mid, parent, _, mp in view
               for pid, _, _, pmp in view if pid == parent and pmp == mp}
    targets = {mp for mid, _, dev, mp in view if dev in vanished and mid not in covered}
    return sorted(targets, key=lambda p: (-p.count("/"), p))


def follow_unmounts(vanished: set[str]) -> int:
    """Detach, in every live view, the mounts of file systems the host no
    longer has. Returns how many mounts were detached."""
    if not vanished:
        return 0
    detached = 0
    for uid in index.known_uids():
        for h in index.read(uid):
            if not h.alive():
                continue
            try:
                with open(f"/proc/{h.pid}/mountinfo", encoding="utf-8") as f:
                    view = mounts(f.read())
            except (FileNotFoundError, ProcessLookupError):
                continue
            targets = detachable(view, vanished)
            left = {mp for _, _, dev, mp in view if dev in vanished} - set(targets)
            if left:
                log.warning("view %s of uid %d still holds %s under a mask; "
                            "remount the user to release it", h.token, uid,
                            ", ".join(sorted(left)))
            if not targets:
                continue
            plan = "version\t1\n" + "".join(f"detach\t{t}\n" for t in targets)
            r = subprocess.run([paths.HOLDER, "apply", str(h.pid)], input=plan,
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                log.warning("view %s: cannot follow the host's unmount: %s",
                            h.token, r.stderr.strip())
                continue
            detached += len(targets)
            log.info("view %s of uid %d let go of %d unmounted file system(s)",
                     h.token, uid, len(targets))
    return detached
