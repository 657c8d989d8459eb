"""Helpers that tests/bench/run.py runs inside its sandboxes.

Copied into the sandbox's /tmp/bench and run with the product's venv Python
(standard library only), so that timings are taken next to the command and
not through nsenter. Subcommands:

  timecmd SPEC.json       run commands, print wall and CPU time of each run
  mkusers N FIRST_UID     write N hosting users, homes, 3 docroots each and
                          the embedded panel's domains.json
  memstat                 holders' memory (smaps_rollup) and siteiso's files
  checker DOMAIN DOCROOT SIBLING STOPFILE
                          enter a site in a loop (as the user) and check
                          that every entry sees its own view
  profile OUT.json SCRIPT ARGS...
                          run a Python command under cProfile, keep the top
                          functions
  holderprobe PLAN RUNS   time `siteiso-holder build` of one plan, and its
                          system calls' wall time (strace -c -w)
Not part of the test run.
"""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import pstats
import resource
import runpy
import signal
import subprocess
import sys
import time

ENTER = "/usr/libexec/siteiso/siteiso-enter"


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timecmd(spec_file: str) -> int:
    """SPEC: {"reps": k, "cmds": [argv, ...], "full_out": bool}: the
    commands alternate, k rounds. Prints [[{wall, cpu, rc, err, out}, ...]
    per command]; out is the tail of stdout unless full_out."""
    with open(spec_file, encoding="utf-8") as f:
        spec = json.load(f)
    cmds = spec["cmds"]
    keep = None if spec.get("full_out") else -2000
    out: list[list[dict[str, object]]] = [[] for _ in cmds]
    for _ in range(int(spec["reps"])):
        for i, argv in enumerate(cmds):
            c0, t0 = _cpu_children(), time.perf_counter()
            p = subprocess.run(argv, capture_output=True, check=False)
            wall = time.perf_counter() - t0
            out[i].append({"wall": wall, "cpu": _cpu_children() - c0,
                           "rc": p.returncode,
                           "err": p.stderr.decode(errors="replace")[-400:],
                           "out": p.stdout.decode(errors="replace")[keep:] if keep
                           else p.stdout.decode(errors="replace")})
    print(json.dumps(out))
    return 0


def mkusers(n: int, first_uid: int) -> int:
    """Hosting users written straight into /etc/passwd, /etc/group and
    /etc/shadow (the sandbox's overlay), each with three sites: a main
    domain on public_html, a subdomain nested in it (public_html/shop) and
    an addon domain on ~/blog."""
    names = [f"u{i:04d}" for i in range(n)]
    with open("/etc/passwd", "a", encoding="utf-8") as pw, \
            open("/etc/group", "a", encoding="utf-8") as gr, \
            open("/etc/shadow", "a", encoding="utf-8") as sh:
        for i, name in enumerate(names):
            uid = first_uid + i
            pw.write(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/bash\n")
            gr.write(f"{name}:x:{uid}:\n")
            sh.write(f"{name}:!:19000:0:99999:7:::\n")
    path = "/etc/siteiso/domains.json"
    try:
        with open(path, encoding="utf-8") as f:
            domains = json.load(f)
    except FileNotFoundError:
        domains = {}
    out = []
    for i, name in enumerate(names):
        uid = first_uid + i
        home = f"/home/{name}"
        sites = {f"{name}.example.com": f"{home}/public_html",
                 f"shop.{name}.example.com": f"{home}/public_html/shop",
                 f"blog.{name}.example.org": f"{home}/blog"}
        os.makedirs(home, mode=0o711, exist_ok=True)
        os.chown(home, uid, uid)
        os.chmod(home, 0o711)
        for domain, docroot in sites.items():
            os.makedirs(docroot, mode=0o755, exist_ok=True)
            for fname, text in (("index.php", f"<?php echo '{domain}';\n"),
                                ("wp-config.php", f"<?php $pw = 'secret-{domain}';\n")):
                fp = f"{docroot}/{fname}"
                with open(fp, "w", encoding="utf-8") as f:
                    f.write(text)
                os.chown(fp, uid, uid)
        for d in (f"{home}/public_html", f"{home}/public_html/shop", f"{home}/blog"):
            os.chown(d, uid, uid)
        for domain, docroot in sites.items():
            domains[domain] = {"owner": name, "document_root": docroot,
                               "is_main": domain.startswith(name)}
        out.append({"user": name, "uid": uid, "domains": list(sites)})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(domains, f)
    os.rename(path + ".tmp", path)
    print(json.dumps(out))
    return 0


def _smaps(pid: int) -> dict[str, int]:
    vals: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    vals[parts[0].rstrip(":")] = int(parts[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return vals


def _status(pid: int) -> dict[str, int]:
    """VmPTE (page tables, kB) and the number of threads of a process."""
    vals: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k in ("VmPTE", "Threads"):
                    vals[k] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return vals


def _mounts(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8",
                  errors="replace") as f:
            return sum(1 for _ in f)
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _tree_size(top: str) -> tuple[int, int, int, int]:
    """(bytes, allocated bytes, files, dirs) below top, symlinks not followed."""
    size = alloc = files = dirs = 0
    for dirpath, _dirnames, filenames in os.walk(top):
        dirs += 1
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            size += st.st_size
            alloc += st.st_blocks * 512
            files += 1
    return size, alloc, files, dirs


def memstat() -> int:
    """What siteiso keeps per isolated site at rest: holders and files."""
    holders = []
    index_dir = "/run/siteiso/index"
    users = set()
    sites = 0
    for name in sorted(os.listdir(index_dir)):
        if not name.isdigit():
            continue
        users.add(int(name))
        with open(f"{index_dir}/{name}", encoding="utf-8") as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                if fields[0] in ("site", "cage", "retired"):
                    sites += fields[0] == "site"
                    pid = int(fields[2])
                    holders.append({"kind": fields[0], "pid": pid, **_smaps(pid),
                                    **_status(pid), "mounts": _mounts(pid)})
    trees: dict[str, tuple[int, ...]] = {}
    parts: dict[str, int] = {}     # allocated bytes by the first level below
    for top in ("/run/siteiso", "/var/lib/siteiso", "/etc/apache2/siteiso"):
        if os.path.isdir(top):
            trees[top] = _tree_size(top)
            for entry in os.scandir(top):
                if entry.is_dir(follow_symlinks=False):
                    parts[entry.path] = _tree_size(entry.path)[1]
    # Per-site storage and wrappers live in each user's ~/.cagefs.
    import pwd
    cagefs = [0, 0, 0, 0]
    for uid in users:
        home = pwd.getpwuid(uid).pw_dir
        for i, v in enumerate(_tree_size(f"{home}/.cagefs")):
            cagefs[i] += v
    trees["~/.cagefs"] = tuple(cagefs)
    print(json.dumps({"sites": sites, "users": len(users), "holders": holders,
                      "trees": trees, "parts": parts}))
    return 0


def checker(domain: str, docroot: str, sibling: str, stop: str) -> int:
    """Run as the site's user: enter the site until STOP exists. An entry is
    failed when the command does not run (exit status != 0), wrong when it
    runs in a view that is not the site's (own secret missing, the
    sibling's visible, another home visible)."""
    own = f"secret-{domain}"
    script = (f"cat {docroot}/wp-config.php; cat {sibling}/wp-config.php "
              "2>/dev/null; ls /home")
    user = os.environ.get("USER", "")
    ok = failed = wrong = 0
    first_error = ""
    t0 = time.monotonic()
    t_end = None
    while True:
        if os.path.exists(stop):
            if t_end is None:
                t_end = time.monotonic() + 0.3   # a few entries after the end
            elif time.monotonic() > t_end:
                break
        p = subprocess.run([ENTER, "enter", domain, "/bin/sh", "-c", script],
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            failed += 1
            first_error = first_error or (
                f"exit {p.returncode} at +{time.monotonic() - t0:.1f} s: "
                f"{p.stderr.strip()[:160]!r} stdout {p.stdout.strip()[:80]!r}")
            continue
        lines = p.stdout.split("\n")
        homes = [x for x in lines if x and not x.startswith("<?php")]
        if own not in p.stdout or "secret-" in p.stdout.replace(own, "") \
                or homes != [user]:
            wrong += 1
            first_error = first_error or (
                f"wrong view at +{time.monotonic() - t0:.1f} s: {p.stdout[:160]!r}")
            continue
        ok += 1
    print(json.dumps({"ok": ok, "failed": failed, "wrong": wrong,
                      "first_error": first_error}))
    return 0


HOLDER = "/usr/libexec/siteiso/siteiso-holder"


def holderprobe(plan_file: str, runs: int) -> int:
    """Where a holder build's time goes: `siteiso-holder build` of one real
    plan, RUNS times (wall and CPU of the build process), then once under
    `strace -c -w` (wall time per system call, the build process only: its
    forked holder is not followed). The plan's cgroup gets a "-probe"
    suffix; every holder started here is SIGKILLed and its cgroup removed."""
    with open(plan_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    cg = ""
    for i, line in enumerate(lines):
        if line.startswith("cgroup\t"):
            cg = line.split("\t", 1)[1] + "-probe"
            lines[i] = f"cgroup\t{cg}"
    plan = "\n".join(lines) + "\n"
    os.makedirs(cg, exist_ok=True)
    pids: list[int] = []
    walls, cpus = [], []
    strace_out = "/tmp/bench/holder-strace.txt"
    try:
        for i in range(runs + 1):
            argv = [HOLDER, "build"]
            if i == runs:
                argv = ["strace", "-c", "-w", "-o", strace_out, *argv]
            c0, t0 = _cpu_children(), time.perf_counter()
            p = subprocess.run(argv, input=plan, capture_output=True, text=True,
                               check=False)
            if i < runs:
                walls.append(time.perf_counter() - t0)
                cpus.append(_cpu_children() - c0)
            if p.returncode != 0:
                raise SystemExit(f"holderprobe: build failed: {p.stderr.strip()}")
            pids.append(int(p.stdout.split()[0]))
            for pid in pids[-1:]:
                fd = os.pidfd_open(pid)
                try:
                    signal_kill(fd)
                finally:
                    os.close(fd)
    finally:
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    calls = []
    total = 0.0
    with open(strace_out, encoding="utf-8") as f:
        for line in f:
            col = line.split()
            if len(col) >= 5 and col[0][0].isdigit():
                if col[-1] == "total":
                    total = float(col[1])
                else:
                    calls.append({"call": col[-1], "seconds": float(col[1]),
                                  "calls": int(col[3])})
    calls.sort(key=lambda c: -float(str(c["seconds"])))
    walls.sort()
    cpus.sort()
    print(json.dumps({"wall": walls[len(walls) // 2], "cpu": cpus[len(cpus) // 2],
                      "strace_total": total, "top": calls[:6]}))
    return 0


def signal_kill(pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


SKIP_FUNCS = {"<module>", "main", "body", "run_main"}


def profile(out: str, script: str, args: list[str]) -> int:
    sys.argv = [script, *args]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        pass
    finally:
        prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof)
    rows = []
    for (file, _line, name), (_cc, nc, tt, ct, callers) in st.stats.items():  # type: ignore[attr-defined]
        # Who calls it most (by time spent in it from there).
        by = sorted(((c[3], f"{k[2]}") for k, c in callers.items()), reverse=True)
        rows.append({"file": file, "func": name, "calls": nc, "self": tt, "cum": ct,
                     "callers": [f for _t, f in by[:2]]})
    mine = [r for r in rows if "/siteiso/" in r["file"] and r["func"] not in SKIP_FUNCS]
    for r in mine:
        r["file"] = r["file"].rsplit("/siteiso/", 1)[1]
    mine.sort(key=lambda r: -r["cum"])
    selfs = sorted(rows, key=lambda r: -r["self"])[:6]
    for r in selfs:
        r["file"] = os.path.basename(r["file"]) if r["file"] != "~" else "builtin"
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"wall": wall, "cum": mine[:12], "self": selfs}, f)
    return 0


def main() -> int:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "timecmd":
        return timecmd(args[0])
    if cmd == "mkusers":
        return mkusers(int(args[0]), int(args[1]))
    if cmd == "memstat":
        return memstat()
    if cmd == "checker":
        return checker(*args[:4])
    if cmd == "profile":
        return profile(args[0], args[1], args[2:])
    if cmd == "holderprobe":
        return holderprobe(args[0], int(args[1]))
    print(f"inside.py: unknown subcommand {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
