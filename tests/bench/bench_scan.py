"""Benchmark: find one site's processes among 10 000 (SPEC §10).

Target: the /proc scan takes <= 20 ms and is >= 10x faster than
psutil.process_iter reading the same attributes (uid, cwd, environ, start
time) in the same run.

The population (with the default --total 10000):
  - 1 000 processes of the site's user (uid 1500): 100 belong to the site
    (cwd in its docroot, or DOCUMENT_ROOT naming it), the rest sit in a
    sibling site nested in the docroot, in a sibling whose name shares the
    docroot's prefix (public_html2), or in the home;
  - 9 000 processes of nine other uids, all with their cwd in the site's
    docroot and DOCUMENT_ROOT set to it: only the uid tells them apart.
Every process is a child of a tiny static C helper that forks N children
which drop to the uid and pause(); the helper exits and the children are
adopted by this script, which is PID 1 of a private PID namespace (it
re-executes itself under `unshare --pid --fork --mount-proc`). At the end
each started process is killed by its pid through a pidfd and reaped.

Run as root from the repository root (siteiso._procscan must be built):
    python tests/bench/bench_scan.py [--total 10000] [--runs 15] [--json]
With SITEISO_BENCH_INSTALLED=1 the installed siteiso is measured instead of
the repository's (tests/bench/run.py does that). --json adds one line
"BENCH_SCAN_JSON {...}" with the medians, for run.py's table; --floor PROG
runs "PROG procwalk RUNS" (tests/bench/benchtool.c) among the same processes:
readdir + fstatat of every /proc entry, one thread, the floor of any scan.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.environ.get("SITEISO_BENCH_INSTALLED") != "1":
    sys.path.insert(0, REPO)

INSIDE = "SITEISO_BENCH_PIDNS"
SITE_UID = 1500
OTHER_UIDS = range(2000, 2009)

SPAWNER_C = r"""
#define _GNU_SOURCE
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* spawner UID N: fork N children that switch to UID and pause(); print
   their pids once all of them have switched, then exit. */
int main(int argc, char **argv)
{
    int ready[2];
    char c;
    long uid, n, got = 0;

    if (argc != 3)
        return 2;
    uid = strtol(argv[1], NULL, 10);
    n = strtol(argv[2], NULL, 10);
    if (pipe(ready) != 0) {
        perror("spawner: pipe");
        return 1;
    }
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("spawner: fork");
            return 1;
        }
        if (pid == 0) {
            /* Hold no end of the caller's stdout pipe: it waits for EOF. */
            close(STDOUT_FILENO);
            close(ready[0]);
            if (setgroups(0, NULL) || setresgid(uid, uid, uid) ||
                setresuid(uid, uid, uid))
                _exit(1);
            if (write(ready[1], "x", 1) != 1)
                _exit(1);
            close(ready[1]);
            for (;;)
                pause();
        }
        printf("%d\n", (int)pid);
    }
    close(ready[1]);
    while (got < n && read(ready[0], &c, 1) == 1)
        got++;
    if (got != n) {
        fprintf(stderr, "spawner: only %ld of %ld children ready\n", got, n);
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
"""


@dataclass
class Group:
    uid: int
    count: int
    cwd: str
    docroot_env: str | None
    site: bool


def reexec_in_pidns() -> int:
    if os.geteuid() != 0:
        print("bench_scan: must run as root", file=sys.stderr)
        return 1
    env = dict(os.environ, **{INSIDE: "1"})
    cmd = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        sys.executable,
        os.path.abspath(__file__),
        *sys.argv[1:],
    ]
    return subprocess.run(cmd, env=env, check=False).returncode


def build_spawner(workdir: str) -> str:
    src = os.path.join(workdir, "spawner.c")
    exe = os.path.join(workdir, "spawner")
    with open(src, "w", encoding="ascii") as f:
        f.write(SPAWNER_C)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-static", "-o", exe, src], check=True
    )
    return exe


def spawn(spawner: str, group: Group) -> list[int]:
    env = {"PATH": "/usr/bin:/bin"}
    if group.docroot_env is not None:
        env["DOCUMENT_ROOT"] = group.docroot_env
    out = subprocess.run(
        [spawner, str(group.uid), str(group.count)],
        cwd=group.cwd,
        env=env,
        stdout=subprocess.PIPE,
        check=True,
        timeout=120,
    ).stdout
    pids = [int(x) for x in out.split()]
    assert len(pids) == group.count, (len(pids), group)
    return pids


def end_all(pids: list[int]) -> int:
    """SIGKILL each started process through a pidfd, then reap it (they are
    this PID 1's adopted children, so a pid cannot be reused before that)."""
    ended = 0
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    for pid in pids:
        try:
            os.waitpid(pid, 0)
            ended += 1
        except ChildProcessError:
            pass
    return ended


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def psutil_find(uid: int, docroot: str, excludes: tuple[str, ...]) -> set[int]:
    """The same query as the scanner, the way one writes it with psutil."""
    import psutil

    me = os.getpid()
    found = set()
    for p in psutil.process_iter(["uids"]):
        uids = p.info["uids"]
        if uids is None or uids.real != uid or p.pid == me:
            continue
        try:
            cwd = p.cwd()
            hit = under(cwd, docroot) and not any(under(cwd, x) for x in excludes)
            if not hit:
                hit = p.environ().get("DOCUMENT_ROOT", "").rstrip("/") == docroot
            if hit:
                p.create_time()
                found.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def timed(fn: Callable[[], set[int]], runs: int) -> tuple[list[float], set[int]]:
    times = []
    result: set[int] = set()
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def bench(total: int, runs: int, as_json: bool = False, floor: str = "") -> int:
    from siteiso import _procscan
    from siteiso.procs import SiteMatch, find_site_processes

    per_user = max(10, total // 10)
    site_n = max(1, per_user // 10)
    others = total - per_user
    workdir = tempfile.mkdtemp(prefix="siteiso-bench-")
    started: list[int] = []
    try:
        os.chmod(workdir, 0o755)
        home = os.path.join(workdir, "home", "alice")
        docroot = os.path.join(home, "public_html")
        shop = os.path.join(docroot, "shop")
        lookalike = os.path.join(home, "public_html2")
        uploads = os.path.join(docroot, "wp-content", "uploads")
        for d in (shop, lookalike, uploads):
            os.makedirs(d, mode=0o755)
        spawner = build_spawner(workdir)

        rest = per_user - site_n
        groups = [
            Group(SITE_UID, site_n * 6 // 10, docroot, docroot, True),
            Group(SITE_UID, site_n * 2 // 10, uploads, None, True),
            Group(SITE_UID, site_n - site_n * 8 // 10, home, docroot, True),
            Group(SITE_UID, rest // 3, shop, shop, False),
            Group(SITE_UID, rest // 3, lookalike, lookalike, False),
            Group(SITE_UID, rest - 2 * (rest // 3), home, None, False),
        ]
        for i, uid in enumerate(OTHER_UIDS):
            n = others // len(OTHER_UIDS) + (1 if i < others % len(OTHER_UIDS) else 0)
            groups.append(Group(uid, n, docroot, docroot, False))

        t0 = time.perf_counter()
        expected: set[int] = set()
        for g in groups:
            pids = spawn(spawner, g)
            started.extend(pids)
            if g.site:
                expected.update(pids)
        spawn_s = time.perf_counter() - t0
        in_proc = sum(1 for n in os.listdir("/proc") if n.isdigit())
        print(
            f"started {len(started)} processes in {spawn_s:.1f} s "
            f"({per_user} of uid {SITE_UID}, {len(expected)} of them the site's; "
            f"{in_proc} in this PID namespace's /proc)"
        )

        def scan(threads: int = 0) -> set[int]:
            return {
                pid
                for pid, _ in _procscan.scan(
                    SITE_UID,
                    cwd_prefixes=(docroot.encode(),),
                    docroots=(docroot.encode(),),
                    cwd_excludes=(shop.encode(),),
                    threads=threads,
                )
            }

        site = SiteMatch(docroot=docroot, other_paths=(shop,))
        methods: dict[str, Callable[[], set[int]]] = {
            "_procscan.scan": scan,
            "  one thread": lambda: scan(1),
            "find_site_processes": lambda: {
                pid for pid, _ in find_site_processes(SITE_UID, site)
            },
            "psutil.process_iter": lambda: psutil_find(SITE_UID, docroot, (shop,)),
        }
        cold, _ = timed(scan, 1)
        # Rounds interleave the methods so that noise from the rest of the
        # machine falls on all of them alike; psutil runs every third round.
        times: dict[str, list[float]] = {name: [] for name in methods}
        found: dict[str, set[int]] = {}
        for i in range(runs):
            for name, fn in methods.items():
                if name.startswith("psutil") and i % 3:
                    continue
                t, found[name] = timed(fn, 1)
                times[name] += t

        ok = all(f == expected for f in found.values())
        counts = ", ".join(f"{n.strip()} {len(f)}" for n, f in found.items())
        print(
            f"found: {counts}; expected {len(expected)}: "
            f"{'same' if ok else 'DIFFERENT'}"
        )
        med = {n: statistics.median(t) * 1000 for n, t in times.items()}
        for name, t in times.items():
            print(
                f"{name:22} median {med[name]:8.2f} ms, "
                f"min {min(t) * 1000:8.2f} ms ({len(t)} runs)"
            )
        print(f"first scan (cold /proc dentries): {cold[0] * 1000:.2f} ms")
        floor_ms = None
        if floor:
            out = subprocess.run([floor, "procwalk", str(runs)], check=True,
                                 stdout=subprocess.PIPE, text=True).stdout.split()
            floor_ms = int(out[0]) / 1e6
            print(f"floor: readdir + fstatat of {out[1]} /proc entries, one thread "
                  f"(C): median {floor_ms:.2f} ms")
        scan_ms = med["_procscan.scan"]
        ratio = med["psutil.process_iter"] / scan_ms
        print(f"ratio psutil / scan: {ratio:.1f}x")
        fast = scan_ms <= 20.0 and ratio >= 10.0
        print(f"target <= 20 ms and >= 10x: {'PASS' if fast else 'FAIL'}")
        if as_json:
            print("BENCH_SCAN_JSON " + json.dumps({
                "module": _procscan.__file__, "processes": len(started),
                "site_user": per_user, "expected": len(expected), "same": ok,
                "median_ms": med, "cold_ms": cold[0] * 1000, "ratio": ratio,
                "runs": {n: len(t) for n, t in times.items()}, "floor_ms": floor_ms}))
        return 0 if ok and fast else 1
    finally:
        ended = end_all(started)
        print(f"ended {ended} of {len(started)} started processes")
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--floor", default="")
    args = parser.parse_args()
    if os.environ.get(INSIDE) != "1" or os.getpid() != 1:
        return reexec_in_pidns()
    # PID 1 ignores signals it has no handler for: install some, so that a
    # stopped benchmark still ends its processes in the finally clause.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    return bench(args.total, args.runs, args.json, args.floor)


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
