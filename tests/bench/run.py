"""siteiso benchmarks: every row of SPEC §10 with its target, in one table.

Run as root (not part of the test run):

    PYTHONPATH=/opt/siteiso/venv/lib/python3.11/site-packages \\
        /tmp/tv/bin/python tests/bench/run.py [--quick]

Everything is measured in this one run, on this machine, against the
installed siteiso (cagefsctl, siteiso-enter, siteiso-holder), inside
sandboxed servers (siteiso.sandbox.Sandbox) that this script starts and
stops. Each sandbox first copies the installed product into its own tmpfs
and binds the copy over the original (inside the sandbox only), so that a
reinstall on the host during the run cannot change what is measured. The
host's /etc, /home, mount table and cgroups are never changed.

Rows:
  entry    per-entry overhead (method minus plain fork+exec of /bin/true as
           the user) of siteiso-enter, a static user-switch helper
           (user_switch.c), setpriv, nsenter into a pinned mount namespace +
           setpriv, bubblewrap building the same view, firejail; with few
           mounts and with 1000 extra tmpfs mounts in the sandbox (added
           before the views are built). A small static C driver
           (benchtool.c loop) forks and execs, the methods interleaved round
           by round; an overhead is the median over rounds of (method - plain
           in the same round). Variants of the helper (setuid, fork+wait,
           joining the holder's namespaces) split siteiso-enter's extra cost.
  scan     bench_scan.py (siteiso._procscan vs psutil.process_iter among
           10 000 processes), in a sandbox, against the installed siteiso.
  memory   per isolated site at rest: holders' PSS (smaps_rollup), siteiso's
           files (records, index, plans, wrappers, includes) and the
           kernel's own memory (Slab + KernelStack + PageTables + Percpu of
           /proc/meminfo, before/after enabling: machine-wide, so the idle
           drift over the same time is printed beside it).
  admin    cagefsctl --site-isolation-list, disable and enable of one domain
           at N users x 3 sites (users written straight into the sandbox's
           /etc/passwd, domains into the embedded panel's JSON).
  remount  cagefsctl --remount-all at N users x 3 sites against mount(8) run
           once per mount (the same plans applied in throwaway mount
           namespaces by benchtool.c mount8); wall and CPU time, growth with
           N; meanwhile a user enters its site in a loop and every entry is
           checked for the right view.
A missed target gets a one-line measured reason: strace counts, a cProfile
of the command, or the system calls of one holder build.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    from siteiso.sandbox import Sandbox, User, host_snapshot
except ImportError:
    print("run.py: siteiso is not importable: run with "
          "PYTHONPATH=/opt/siteiso/venv/lib/python3.11/site-packages",
          file=sys.stderr)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PY = "/opt/siteiso/venv/bin/python"
ENTER = "/usr/libexec/siteiso/siteiso-enter"
ENTER_SITE = "/usr/local/bin/cagefs_enter_site"
CAGEFSCTL = "/usr/local/sbin/cagefsctl"
MOUNT = "/usr/bin/mount"
BENCH = "/tmp/bench"            # inside every sandbox
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FIRST_UID = 20000               # the generated hosting users
EXTRA_MOUNTS = 1000
KERNEL_FIELDS = ("Slab", "KernelStack", "PageTables", "Percpu")

ENTRY_DOMAINS = {
    "example.com": ("john", "/home/john/public_html"),
    "shop.example.com": ("john", "/home/john/public_html/shop"),
    "blog.example.org": ("john", "/home/john/blog"),
    "jane.example.net": ("jane", "/home/jane/public_html"),
}
DOCROOT = "/home/john/public_html"


def bwrap_view(docroot: str) -> list[str]:
    """bubblewrap building siteiso's site view: the system read-only, no
    other home (a tmpfs on /home), the docroot writable, private /tmp,
    /var/tmp, /proc (new PID namespace), /dev and IPC."""
    return ["/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev", "/dev",
            "--proc", "/proc", "--tmpfs", "/home", "--bind", docroot, docroot,
            "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--unshare-pid",
            "--unshare-ipc", "--die-with-parent"]


def firejail_view(docroot: str) -> list[str]:
    return ["/usr/bin/firejail", "--noprofile", f"--whitelist={docroot}",
            "--private-tmp"]


@dataclass
class Row:
    section: str
    what: str
    siteiso: str = "—"
    alt: str = "—"
    ratio: str = "—"
    target: str = "—"
    result: str = "info"
    note: str = ""


@dataclass
class Method:
    """One way of starting /bin/true as the user, for the entry loop."""
    key: str
    label: str
    programs: int          # programs exec'd on the path, /bin/true included
    spec: str              # uid:gid the driver's child starts it as
    argv: list[str]
    samples: list[float] = field(default_factory=list)   # ms, round order
    fails: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def pct(self, q: float) -> float:
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(len(s) * q))]


@dataclass
class Scale:
    """Admin and remount results at n users x 3 sites."""
    n: int
    mass_enable: dict[str, Any] = field(default_factory=dict)
    list_s: float | None = None
    list_json_s: float | None = None
    enable_s: float | None = None
    disable_s: float | None = None
    list_reason: str = ""
    endis_reason: str = ""
    remount: dict[str, Any] = field(default_factory=dict)
    remount_failures: list[str] = field(default_factory=list)
    remount_partial: list[tuple[float, int]] = field(default_factory=list)
    mass_enable_reason: str = ''
    remount_reason: str = ""
    holder_reason: str = ""
    checker: dict[str, Any] = field(default_factory=dict)
    plans: int = 0
    mounts: int = 0
    mount8_wall: float | None = None
    mount8_cpu: float = 0.0
    mount8_note: str = ""
    mount8_failed: int = 0


def paired(a: Method, b: Method) -> float:
    """Median over rounds of a's time minus b's in the same round: the loop
    runs every method once per round, so drift of the machine between
    rounds cancels."""
    return statistics.median(x - y for x, y in zip(a.samples, b.samples,
                                                   strict=True))


def ms(x: float) -> str:
    return f"{x:.3f} ms" if abs(x) < 10 else f"{x:.1f} ms"


def secs(x: float) -> str:
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


class BenchError(Exception):
    pass


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[Row] = []
        self.sandboxes: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.tools = tempfile.mkdtemp(prefix="siteiso-bench-")
        self.scale: dict[int, Scale] = {}
        self.stamps: dict[str, str] = {}
        self.failures: dict[str, int] = {}

    # ---- plumbing -----------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f} s] {msg}", flush=True)

    def compile_tools(self) -> None:
        for name in ("benchtool", "user_switch"):
            subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-static",
                            "-o", os.path.join(self.tools, name),
                            os.path.join(HERE, f"{name}.c")], check=True)
        for name in ("inside.py", "bench_scan.py"):
            shutil.copy(os.path.join(HERE, name), os.path.join(self.tools, name))

    @contextlib.contextmanager
    def sandbox(self, name: str) -> Iterator[Sandbox]:
        sbx = Sandbox(f"bench-{name}")
        try:
            sbx.start()
        except BaseException:
            # stop() needs the sandbox's PID 1; without it, end what started.
            if sbx.pid:
                sbx.stop()
            elif sbx.proc is not None:
                sbx.proc.kill()
                sbx.proc.wait(timeout=30)
            raise
        self.sandboxes.append({"name": name, "cgroup": sbx.cgroup_root,
                               "pidns": os.stat(f"/proc/{sbx.pid}/ns/pid").st_ino})
        try:
            self.freeze_product(sbx, name)
            dest = sbx.host_path(BENCH)
            os.makedirs(dest, mode=0o755)
            os.chmod(dest, 0o755)
            for tool in os.listdir(self.tools):
                shutil.copy(os.path.join(self.tools, tool), dest)
                os.chmod(os.path.join(dest, tool), 0o755)
            yield sbx
        finally:
            sbx.stop()

    def freeze_product(self, sbx: Sandbox, name: str) -> None:
        """Other people reinstall siteiso on this machine while we measure,
        and the sandbox's /opt is an overlay on the live /opt: copy the
        installed product into the sandbox's own tmpfs and bind the copies
        over the originals, inside the sandbox only, so that every command
        of this sandbox runs one version. Retried while a reinstall is
        caught half-way (the import check fails)."""
        site = "/mnt/frozen/opt/venv/lib/python3.11/site-packages"
        script = (
            "set -e; rm -rf /mnt/frozen; mkdir -p /mnt/frozen; "
            "cp -a /usr/libexec/siteiso /mnt/frozen/libexec; "
            "cp -a /opt/siteiso /mnt/frozen/opt; "
            f"cp -a {ENTER_SITE} /mnt/frozen/cagefs_enter_site; "
            "test -u /mnt/frozen/libexec/siteiso-enter; "
            "test -x /mnt/frozen/libexec/siteiso-holder; "
            f"/mnt/frozen/opt/venv/bin/python -c 'import sys; sys.path[:0] = "
            f"[\"{site}\"]; import siteiso.commands.cagefsctl, siteiso._procscan, "
            "siteiso._sys'")
        for _ in range(10):
            r = sbx.run(["sh", "-c", script], check=False, timeout=300)
            if r.returncode == 0:
                break
            self.log(f"{name}: product copy incomplete (a reinstall in progress?), "
                     f"retrying: {r.stderr.strip()[-160:]}")
            time.sleep(3)
        else:
            raise BenchError("cannot copy a consistent installed siteiso")
        sbx.run(["sh", "-c",
                 "mount --bind /mnt/frozen/libexec /usr/libexec/siteiso && "
                 "mount --bind /mnt/frozen/opt /opt/siteiso && "
                 f"mount --bind /mnt/frozen/cagefs_enter_site {ENTER_SITE}"])
        stamp = sbx.run(["sh", "-c",
                         "sha256sum /usr/libexec/siteiso/siteiso-enter "
                         "/usr/libexec/siteiso/siteiso-holder | cut -c1-12 | "
                         "tr '\\n' ' '; find /opt/siteiso/venv/lib/python3.11/"
                         "site-packages/siteiso -name '*.py' -o -name '*.so' | sort "
                         "| xargs cat | sha256sum | cut -c1-12"]).stdout.split()
        self.stamps[name] = f"enter {stamp[0]} holder {stamp[1]} python {stamp[2]}"
        self.log(f"{name}: siteiso frozen for this sandbox: {self.stamps[name]}")

    def put(self, sbx: Sandbox, path: str, text: str) -> None:
        with open(sbx.host_path(path), "w", encoding="utf-8") as f:
            f.write(text)

    def inside(self, sbx: Sandbox, *args: str, user: str | None = None,
               timeout: float = 600, env: dict[str, str] | None = None) -> str:
        r = sbx.run([VENV_PY, f"{BENCH}/inside.py", *args], user=user,
                    timeout=timeout, check=False, env=env)
        if r.returncode != 0:
            raise BenchError(f"inside.py {args[0]} exited {r.returncode}: "
                             f"{r.stderr.strip()[-400:]}")
        return r.stdout

    def timecmd(self, sbx: Sandbox, cmds: list[list[str]], reps: int,
                timeout: float = 7200, full_out: bool = False
                ) -> list[list[dict[str, Any]]]:
        """Each command reps times, alternating, timed inside the sandbox:
        per run {wall, cpu (children's user+system), rc, err, out}."""
        self.put(sbx, f"{BENCH}/spec.json", json.dumps(
            {"reps": reps, "cmds": cmds, "full_out": full_out}))
        return json.loads(self.inside(sbx, "timecmd", f"{BENCH}/spec.json",
                                      timeout=timeout))

    def cagefsctl(self, sbx: Sandbox, *args: str, timeout: float = 7200,
                  retries: int = 2) -> str:
        """Run a setup command; a failure is recorded and the command run
        again (every command converges from the recorded state, so the next
        run repairs what a failed one left), up to `retries` times."""
        for attempt in range(retries + 1):
            r = sbx.run([CAGEFSCTL, *args], check=False, timeout=timeout)
            if r.returncode == 0:
                return r.stdout
            self.failure(f"cagefsctl {args[0]}", r.stderr)
            if attempt == retries:
                raise BenchError(f"cagefsctl {' '.join(args)[:80]} exited "
                                 f"{r.returncode}: {r.stderr.strip()[-300:]}")
        return ""

    def failure(self, what: str, stderr: str) -> None:
        """A product command that failed during the benchmark: its last
        traceback frame and error line, counted in the report."""
        lines = [x.strip() for x in stderr.strip().splitlines() if x.strip()]
        frame = next((x for x in reversed(lines) if x.startswith("File ")), "")
        key = f"{what}: {lines[-1] if lines else '(no message)'}" + (
            f" at {frame.split('site-packages/')[-1]}" if frame else "")
        self.failures[key] = self.failures.get(key, 0) + 1
        self.log(f"product failure: {key}")

    # ---- entering a site ----------------------------------------------------

    def make_entry_server(self, sbx: Sandbox) -> User:
        for u in ("john", "jane"):
            sbx.useradd(u)
        trees: dict[str, dict[str, str]] = {}
        for domain, (owner, docroot) in ENTRY_DOMAINS.items():
            trees.setdefault(owner, {})[f"{docroot}/wp-config.php"] = \
                f"<?php $pw = 'secret-{domain}';\n"
        for owner, tree in trees.items():
            sbx.make_tree(owner, tree)
        sbx.set_domains(ENTRY_DOMAINS)
        self.cagefsctl(sbx, "--site-isolation-allow-all")
        self.cagefsctl(sbx, "--site-isolation-enable", "example.com",
                       "shop.example.com", "blog.example.org")
        return sbx.users["john"]

    def pin_view(self, sbx: Sandbox, tag: str) -> str:
        """A mount namespace holding the same view (tmpfs on /home with the
        docroot bound back, private /tmp and /var/tmp), kept alive by a
        sleeping process in it; entered with nsenter --mount=/proc/PID/ns/mnt
        + setpriv. (Pinning it on a file with unshare --mount=FILE fails
        intermittently here with EINVAL, so a process pins it.)"""
        name = "".join(c if c.isalnum() else "-" for c in tag)
        pidfile = f"/run/benchpin-{name}.pid"
        inner = ("mount -t tmpfs stage /run/benchstage && "
                 "mkdir /run/benchstage/d && "
                 f"mount --rbind {DOCROOT} /run/benchstage/d && "
                 f"mount -t tmpfs -o mode=0755 home /home && mkdir -p {DOCROOT} && "
                 f"mount --move /run/benchstage/d {DOCROOT} && "
                 "mount -t tmpfs -o mode=1777 tmp /tmp && "
                 "mount -t tmpfs -o mode=1777 vartmp /var/tmp && "
                 f"umount /run/benchstage && echo $$ > {pidfile}.tmp && "
                 f"mv {pidfile}.tmp {pidfile} && exec sleep 100000")
        sbx.run(["sh", "-c", f"mkdir -p /run/benchstage; rm -f {pidfile}; "
                 f"setsid unshare --mount --propagation slave sh -c '{inner}' "
                 "</dev/null >/dev/null 2>&1 &"])
        for _ in range(100):
            if os.path.exists(sbx.host_path(pidfile)):
                with open(sbx.host_path(pidfile), encoding="ascii") as f:
                    return f"/proc/{f.read().strip()}/ns/mnt"
            time.sleep(0.05)
        raise BenchError("the pinned view for nsenter was not built")

    def firejail_usable(self, sbx: Sandbox) -> tuple[bool, str]:
        r = sbx.run([*firejail_view(DOCROOT), "/bin/sh", "-c", "ls /home"],
                    user="john", check=False, env={"HOME": "/home/john"})
        if any("existing sandbox" in x for x in r.stderr.splitlines()):
            return False, ("firejail 0.9.72 finds no kernel thread in the "
                           "sandbox's PID namespace (check_kernel_procs) and runs "
                           "the command unsandboxed ('an existing sandbox was "
                           "detected'); --force does not change that")
        if r.returncode != 0:
            return False, f"firejail exited {r.returncode}: {r.stderr.strip()[:160]}"
        if r.stdout.split() != ["john"]:
            return False, f"firejail's view shows other homes: {r.stdout.split()[:4]}"
        return True, ""

    def entry_methods(self, john: User, pin: str, firejail: bool,
                      holder: str) -> list[Method]:
        user = f"{john.uid}:{john.gid}"
        ids = [str(john.uid), str(john.gid)]
        helper = f"{BENCH}/user_switch"
        setpriv = ["/usr/bin/setpriv", "--reuid=john", "--regid=john",
                   "--init-groups"]
        true = "/bin/true"
        methods = [
            Method("plain", "fork+exec /bin/true as the user", 1, user, [true]),
            Method("switch", "static user-switch helper (root) + exec", 2, "0:0",
                   [helper, *ids, true]),
            Method("switchfork", "same helper, exec in a child it waits for", 2,
                   "0:0", [helper, "-f", *ids, true]),
            Method("nsfork", "same, after joining the holder's mnt/pid/ipc ns", 2,
                   "0:0", [helper, "-n", holder, *ids, true]),
            Method("suid", "same helper installed setuid root, run by the user", 2,
                   user, [f"{helper}-suid", *ids, true]),
            Method("setpriv", "setpriv --reuid --regid --init-groups (root)", 2,
                   "0:0", [*setpriv, true]),
            Method("siteiso", "siteiso-enter enter <domain>, as the user", 2, user,
                   [ENTER, "enter", "example.com", true]),
            Method("wrapper", "cagefs_enter_site <domain> (sh + siteiso-enter)", 3,
                   user, [ENTER_SITE, "example.com", true]),
            Method("nsenter", "nsenter into a pinned mount ns + setpriv (root)", 3,
                   "0:0",
                   ["/usr/bin/nsenter", f"--mount={pin}", *setpriv, true]),
            Method("bwrap", "bubblewrap building the view, as the user", 2, user,
                   [*bwrap_view(DOCROOT), true]),
        ]
        if firejail:
            methods.append(Method("firejail", "firejail --whitelist=docroot", 2, user,
                                  [*firejail_view(DOCROOT), true]))
        return methods

    def check_views(self, sbx: Sandbox, methods: list[Method], tag: str) -> None:
        """Each method once with `ls /home` instead of /bin/true: which homes
        does the command see?"""
        seen = []
        for m in methods:
            argv = [*m.argv[:-1], "/bin/sh", "-c", "ls /home | tr '\\n' ' '"]
            r = sbx.run(argv, user="john" if m.spec != "0:0" else None, check=False,
                        env={"HOME": "/home/john"})
            seen.append(f"{m.key}: {r.stdout.strip() or f'(rc {r.returncode})'}")
        self.log(f"view check ({tag}), /home as each method sees it: "
                 + "; ".join(seen))

    def entry_round(self, sbx: Sandbox, john: User, tag: str,
                    firejail: bool) -> dict[str, Method]:
        idx = sbx.read(f"/run/siteiso/index/{john.uid}")
        holder = next(line.split("\t")[2] for line in idx.splitlines()
                      if line.startswith("site\t") and f"\t{DOCROOT}\t" in line)
        methods = self.entry_methods(john, self.pin_view(sbx, tag), firejail, holder)
        self.check_views(sbx, methods, tag)
        argv = [f"{BENCH}/benchtool", "loop", str(self.args.runs),
                str(self.args.warmup), "--"]
        for m in methods:
            argv += [m.spec, *m.argv, "::"]
        argv.pop()
        self.log(f"entry ({tag}): {len(methods)} methods x {self.args.runs} runs")
        r = sbx.run(argv, env={"HOME": john.home, "USER": "john"}, timeout=7200)
        for line in r.stdout.splitlines():
            f = line.split()
            m = methods[int(f[1])]
            m.fails = int(f[2])
            m.samples = [int(x) / 1e6 for x in f[3:]]
            if m.fails:
                e = sbx.run(m.argv, user="john" if m.spec != "0:0" else None,
                            check=False)
                self.log(f"entry ({tag}) {m.key}: {m.fails} of {len(m.samples)} "
                         f"runs failed; once more: rc {e.returncode} "
                         f"{e.stderr.strip()[:200]}")
        out = {m.key: m for m in methods}
        for m in methods:
            self.log(f"entry ({tag}) {m.key:10} {m.label:50} {m.programs} programs: "
                     f"median {ms(m.median)} (p10 {ms(m.pct(0.1))}, p90 "
                     f"{ms(m.pct(0.9))}), overhead {ms(paired(m, out['plain']))}"
                     + (f", {m.fails} FAILED" if m.fails else ""))
        return out

    def strace_reason(self, sbx: Sandbox, john: User) -> str:
        """Where the entry's time goes: strace -f -T of one entry and of the
        helper with fork+wait (same shape, no view), 5 times each; per system
        call the median total time, and the calls that cost siteiso-enter
        more than the helper (strace adds about the same to every call)."""
        timed = re.compile(r"^\d+\s+(?:<\.\.\. )?(\w+)[( ].*<([\d.]+)>$")

        def profile(argv: list[str], as_user: bool) -> tuple[dict[str, float], int]:
            runs: list[dict[str, float]] = []
            count = 0
            for _ in range(5):
                out = f"{BENCH}/strace.txt"
                pre = ["strace", "-f", "-T", "-o", out,
                       *(["-u", "john"] if as_user else [])]
                sbx.run([*pre, *argv], check=False, env={"HOME": john.home})
                per: dict[str, float] = {}
                count = 0
                for line in sbx.read(out).splitlines():
                    m = timed.match(line)
                    if m:
                        per[m[1]] = per.get(m[1], 0.0) + float(m[2]) * 1000
                        count += "resumed>" not in line
                runs.append(per)
            names = {k for r in runs for k in r}
            return ({k: statistics.median(r.get(k, 0.0) for r in runs)
                     for k in names}, count)
        try:
            e, ne = profile([ENTER, "enter", "example.com", "/bin/true"], True)
            h, nh = profile([f"{BENCH}/user_switch", "-f", str(john.uid),
                             str(john.gid), "/bin/true"], False)
        except Exception as exc:  # noqa: BLE001 - the reason is best effort
            return f"(strace failed: {exc})"
        waits = {"rt_sigtimedwait", "wait4", "waitid"}
        extra = sorted(((v - h.get(k, 0.0), k) for k, v in e.items()
                        if k not in waits), reverse=True)
        return (f"strace -f -T: {ne} system calls on the siteiso-enter path, {nh} "
                "on the helper's; costing more than in the helper (ms, under "
                "strace): " + ", ".join(f"{k} +{d:.3f}" for d, k in extra[:6]))

    def phase_entry(self) -> None:
        sec = "entering a site (per entry, method minus plain fork+exec)"
        with self.sandbox("entry") as sbx:
            john = self.make_entry_server(sbx)
            # The helper as a setuid-root program the user runs (sandbox /tmp).
            sbx.run(["sh", "-c", f"cp {BENCH}/user_switch {BENCH}/user_switch-suid && "
                     f"chmod 4755 {BENCH}/user_switch-suid"])
            fj_ok, fj_reason = self.firejail_usable(sbx)
            few = self.entry_round(sbx, john, "few mounts", fj_ok)

            def count(path: str) -> int:
                return int(sbx.run(["sh", "-c", f"grep -c . {path}"]).stdout)
            before = count("/proc/self/mountinfo")
            sbx.run([f"{BENCH}/benchtool", "mounts", "/mnt/extra", str(EXTRA_MOUNTS)])
            self.cagefsctl(sbx, "--remount", "john")   # views built after them
            idx = sbx.read(f"/run/siteiso/index/{john.uid}")
            holder = next(line.split("\t")[2] for line in idx.splitlines()
                          if line.startswith("site\t"))
            view_mounts = count(f"/proc/{holder}/mountinfo")
            self.log(f"mounts: sandbox {before} -> {count('/proc/self/mountinfo')} "
                     f"after {EXTRA_MOUNTS} tmpfs under /mnt/extra; a site view "
                     f"rebuilt after them has {view_mounts}")
            many = self.entry_round(sbx, john, "1000 extra mounts", fj_ok)
            reason = ""
            if any(paired(r["siteiso"], r["switch"]) > 0.2 for r in (few, many)):
                reason = self.strace_reason(sbx, john)
        plain = few["plain"].median
        self.rows.append(Row(sec, "plain fork+exec of /bin/true as the user",
                             ms(plain), note="the zero of every overhead below "
                             f"(with 1000 extra mounts: {ms(many['plain'].median)}); "
                             "overheads are medians over rounds of (method - plain "
                             f"in the same round), {self.args.runs} rounds"))
        for tag, res in (("", few), (f" [+{EXTRA_MOUNTS} mounts]", many)):
            s = paired(res["siteiso"], res["plain"])
            sw = paired(res["switch"], res["plain"])
            bw = paired(res["bwrap"], res["plain"])
            diff = paired(res["siteiso"], res["switch"])
            fk = paired(res["switchfork"], res["switch"])
            ns = paired(res["nsfork"], res["switchfork"])
            su = paired(res["suid"], res["switch"])
            note = ("both 2 programs; helper = static C setgroups/setresgid/"
                    "setresuid + exec run by root; difference of the medians "
                    f"{res['siteiso'].median - res['switch'].median:+.3f} ms")
            if diff > 0.2:
                note += (f"; of the {diff:+.3f} ms, a setuid-root exec instead of "
                         f"root's (the helper setuid) costs {su:+.3f} ms, a "
                         f"supervising parent (helper with fork+wait) {fk:+.3f} ms, "
                         f"joining the holder's namespaces (helper -n) {ns:+.3f} ms; "
                         f"the rest, {diff - su - fk - ns:+.3f} ms, is siteiso-enter's "
                         "own work (index and holder checks, clone3 into the site "
                         f"cgroup, cgroup ns, Landlock, seccomp); {reason}")
            self.rows.append(Row(
                sec, f"siteiso-enter vs user switch + exec{tag}", ms(s),
                f"helper {ms(sw)}", f"{diff:+.3f} ms", "≤ +0.2 ms",
                verdict(diff <= 0.2), note))
            self.rows.append(Row(
                sec, f"siteiso-enter vs bubblewrap, same view{tag}", ms(s),
                f"bwrap {ms(bw)}", f"{s / bw:.2f}x", "≤ 0.20x", verdict(s <= bw / 5)))
        for key in ("suid", "switchfork", "nsfork", "setpriv", "wrapper", "nsenter",
                    "firejail"):
            if key in few:
                v, w = few[key], many[key]
                self.rows.append(Row(
                    sec, f"{v.label} ({v.programs} programs)",
                    alt=f"{ms(paired(v, few['plain']))} / "
                        f"{ms(paired(w, many['plain']))}",
                    note="overhead with few / with 1000 extra mounts"))
        if not fj_ok:
            self.rows.append(Row(sec, "firejail building the view", alt="not measured",
                                 result="n/a", note=fj_reason))
        s0 = paired(few["siteiso"], few["plain"])
        s1 = paired(many["siteiso"], many["plain"])
        b0 = paired(few["bwrap"], few["plain"])
        b1 = paired(many["bwrap"], many["plain"])
        flat = s1 - s0 <= max(0.1, 0.1 * s0)
        self.rows.append(Row(
            sec, f"growth, few -> +{EXTRA_MOUNTS} mounts",
            f"{s0:.3f} -> {s1:.3f} ms", f"bwrap {b0:.2f} -> {b1:.2f} ms",
            f"{s1 - s0:+.3f} / {b1 - b0:+.2f} ms", "flat: ≤ +0.1 ms or 10%",
            verdict(flat), f"the view rebuilt after the mounts has {view_mounts} "
            "mounts; bubblewrap copies and remounts each"))

    # ---- finding a site's processes -----------------------------------------

    def phase_scan(self) -> None:
        sec = "finding one site's processes"
        with self.sandbox("scan") as sbx:
            self.log(f"scan: bench_scan.py --total {self.args.scan_total}")
            r = sbx.run([VENV_PY, f"{BENCH}/bench_scan.py", "--total",
                         str(self.args.scan_total), "--runs", str(self.args.scan_runs),
                         "--json", "--floor", f"{BENCH}/benchtool"],
                        env={"SITEISO_BENCH_INSTALLED": "1"}, timeout=3600,
                        check=False)
        found = None
        for line in r.stdout.splitlines():
            if line.startswith("BENCH_SCAN_JSON "):
                found = json.loads(line.split(" ", 1)[1])
            else:
                self.log(f"bench_scan: {line}")
        if found is None:
            raise BenchError(f"bench_scan.py exited {r.returncode}: "
                             f"{r.stderr.strip()[-300:]}")
        d = found
        med = d["median_ms"]
        scan, ps = med["_procscan.scan"], med["psutil.process_iter"]
        ok = scan <= 20 and d["ratio"] >= 10 and d["same"]
        why = ""
        if not ok and d.get("floor_ms"):
            why = (f"; floor: readdir + fstatat of every /proc entry alone (C, one "
                   f"thread) takes {ms(d['floor_ms'])} here: the kernel's /proc "
                   f"walk, which the scan splits over {os.cpu_count()} CPUs")
        self.rows.append(Row(
            sec, f"among {d['processes']} processes ({d['site_user']} the user's)",
            ms(scan), f"psutil {ms(ps)}", f"{d['ratio']:.1f}x faster",
            "≤ 20 ms, ≥ 10x", verdict(ok),
            f"same {d['expected']} pids found by both: {d['same']}; "
            f"find_site_processes {ms(med['find_site_processes'])}; one thread "
            f"{ms(med['  one thread'])}; first (cold) scan {ms(d['cold_ms'])}{why}"))

    # ---- memory per isolated site ---------------------------------------------

    @staticmethod
    def kernel_kb() -> dict[str, int]:
        """The kernel's own memory by /proc/meminfo field (kB), and the slab
        caches from /proc/slabinfo (bytes, as "slab:<name>")."""
        out: dict[str, int] = {}
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k in KERNEL_FIELDS:
                    out[k] = int(rest.split()[0])
        slabinfo = "/proc/slabinfo"
        with contextlib.suppress(OSError), open(slabinfo, encoding="ascii") as f:
            for line in f.readlines()[2:]:
                p = line.split()
                out[f"slab:{p[0]}"] = int(p[2]) * int(p[3])
        return out

    @staticmethod
    def delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}

    def phase_memory(self) -> None:
        sec = "memory per isolated site at rest"
        n_users = math.ceil(self.args.mem_sites / 3)
        deltas: list[dict[str, int]] = []
        idle: list[int] = []
        stat: dict[str, Any] = {}
        with self.sandbox("memory") as sbx:
            users = json.loads(self.inside(sbx, "mkusers", str(n_users),
                                           str(FIRST_UID)))
            domains = [d for u in users for d in u["domains"]]
            self.cagefsctl(sbx, "--site-isolation-allow-all")
            for cycle in range(self.args.mem_cycles):
                time.sleep(0.5)
                k0 = self.kernel_kb()
                t = time.monotonic()
                self.cagefsctl(sbx, "--site-isolation-enable", *domains)
                took = time.monotonic() - t
                time.sleep(1.0)
                deltas.append(self.delta(k0, self.kernel_kb()))
                # The same time with nothing done: the machine's own drift.
                k2 = self.kernel_kb()
                time.sleep(took + 1.0)
                d2 = self.delta(k2, self.kernel_kb())
                idle.append(sum(d2[k] for k in KERNEL_FIELDS))
                if not stat:
                    stat = json.loads(self.inside(sbx, "memstat"))
                if cycle + 1 < self.args.mem_cycles:
                    self.cagefsctl(sbx, "--site-isolation-disable", *domains)
                    time.sleep(1.5)      # retired holders leave, cgroups go
        sites = int(stat["sites"])
        holders = stat["holders"]
        pss = sum(h.get("Pss", 0) for h in holders)
        rss = sum(h.get("Rss", 0) for h in holders)
        pte = sum(h.get("VmPTE", 0) for h in holders)
        trees = stat["trees"]
        files = sum(v[1] for v in trees.values()) / 1024
        totals = [sum(d[k] for k in KERNEL_FIELDS) for d in deltas]
        kern = statistics.median(totals)
        mid = deltas[totals.index(sorted(totals)[(len(totals) - 1) // 2])]
        fields = ", ".join(f"{k} {mid[k] / sites:.0f}" for k in KERNEL_FIELDS)
        slabs = sorted(((v, k[5:]) for k, v in mid.items() if k.startswith("slab:")),
                       reverse=True)[:6]
        slab_s = ", ".join(f"{k} {v / 1024 / sites:.0f}" for v, k in slabs)
        views = [h["mounts"] for h in holders if h["kind"] == "site"]
        per = (pss + files + kern) / sites
        self.log(f"memory: {sites} sites of {stat['users']} users, {len(holders)} "
                 f"holders: RSS {rss} kB, PSS {pss} kB, page tables {pte} kB; files "
                 f"{files:.0f} kB allocated ("
                 + ", ".join(f"{k} {v[1] // 1024} kB in {v[2]} files/{v[3]} dirs"
                             for k, v in trees.items())
                 + f"); kernel delta per enable (kB): {totals}, idle drift over the "
                 f"same time: {idle}; per site (KB): {fields}; top slab caches per "
                 f"site (KB): {slab_s}; mounts per site view: "
                 f"{statistics.median(views) if views else '?'}")
        note = (f"holders PSS {pss / sites:.0f} KB (RSS {rss / sites:.0f}) + files "
                f"{files / sites:.0f} KB + kernel {kern / sites:.0f} KB (meminfo "
                f"delta, median of {len(totals)} enables {min(totals)}..{max(totals)}"
                f" kB; idle drift {min(idle)}..{max(idle)} kB: machine-wide)")
        if per > 200:
            big = sorted(((v, k) for k, v in stat.get("parts", {}).items()),
                         reverse=True)[:4]
            note += (f"; kernel per site: {fields} KB; top slab caches: {slab_s} KB; "
                     f"{statistics.median(views) if views else '?'} mounts per view; "
                     "largest files per site: "
                     + ", ".join(f"{k} {v / 1024 / sites:.0f} KB" for v, k in big))
        self.rows.append(Row(
            sec, f"holders + files + kernel ({sites} sites, {stat['users']} users)",
            f"{per:.0f} KB", target="≤ 200 KB", result=verdict(per <= 200),
            note=note))
        self.rows.append(Row(
            sec, "  of which holders + files (measured per process/file)",
            f"{(pss + files) / sites:.0f} KB",
            note=f"{len(holders)} holders (a cage per user, one per site)"))

    # ---- admin commands and remount at N users x 3 sites -------------------------

    def profile_reason(self, sbx: Sandbox, args: list[str], attempts: int = 1) -> str:
        """The command once under cProfile (again while it fails, up to
        `attempts` times): its top functions, as a share of its wall time."""
        out = f"{BENCH}/prof.json"
        prof: dict[str, Any] = {}
        for _ in range(attempts):
            try:
                self.inside(sbx, "profile", out, CAGEFSCTL, *args, timeout=7200)
                with open(sbx.host_path(out), encoding="utf-8") as f:
                    prof = json.load(f)
                break
            except Exception as exc:  # noqa: BLE001 - the reason is best effort
                self.failure(f"cagefsctl {args[0]} (profiled)", str(exc))
        if not prof:
            return "(the profiled run failed too)"
        wall = prof["wall"]
        top = [r for r in prof["cum"] if r["func"] not in
               ("commit", "converge", "converge_user")][:5]
        parts = [f"{r['file'].removesuffix('.py').replace('/', '.')}.{r['func']} "
                 f"{r['cum'] / wall:.0%} ({r['calls']}x"
                 + (f", from {'/'.join(r['callers'])}" if r.get("callers") else "")
                 + ")" for r in top]
        selfs = [f"{r['func']} {r['self'] / wall:.0%}" for r in prof["self"][:3]]
        users = len(sbx.read("/etc/passwd").splitlines())
        return (f"cProfile of {args[0]} (~{users} passwd entries, {wall:.1f} s "
                "profiled): " + ", ".join(parts) + "; self time: " + ", ".join(selfs))

    def holder_reason(self, sbx: Sandbox) -> str:
        plans = sbx.run(["sh", "-c", "ls /run/siteiso/views/*/*.plan | "
                         "grep -v cage.plan | head -1"]).stdout.split()
        try:
            d = json.loads(self.inside(sbx, "holderprobe", plans[0], "10"))
        except Exception as exc:  # noqa: BLE001 - the reason is best effort
            return f"(holder probe failed: {exc})"
        top = ", ".join(f"{c['call']} {c['seconds'] * 1000:.1f} ms/{c['calls']}x"
                        for c in d["top"][:4])
        return (f"one siteiso-holder build alone: {d['wall'] * 1000:.1f} ms wall, "
                f"{d['cpu'] * 1000:.1f} ms CPU (median of 10), strace -c -w: {top}")

    def phase_scale(self, n: int) -> None:
        res = self.scale[n] = Scale(n)
        reps = self.args.admin_reps if n < 1000 else max(2, self.args.admin_reps - 2)
        with self.sandbox(f"scale{n}") as sbx:
            t = time.monotonic()
            users = json.loads(self.inside(sbx, "mkusers", str(n), str(FIRST_UID)))
            domains = [d for u in users for d in u["domains"]]
            self.log(f"{n} users x 3 sites written in {time.monotonic() - t:.1f} s")
            self.cagefsctl(sbx, "--site-isolation-allow-all")
            self.log(f"{n} x 3: enabling {len(domains)} domains in one command")
            me = self.timecmd(sbx, [[CAGEFSCTL, "--site-isolation-enable", *domains]],
                              1)[0][0]
            if me["rc"] != 0:
                raise BenchError(f"mass enable failed: {me['err']}")
            res.mass_enable = me
            holders = int(sbx.run(["sh", "-c", "cat /run/siteiso/index/* | "
                                   "grep -c '^site'"]).stdout)
            self.log(f"{n} x 3: mass enable {secs(me['wall'])} wall, "
                     f"{secs(me['cpu'])} CPU; {holders} site holders running")
            self.admin(sbx, res, users, reps)
            self.remount(sbx, res, users)
            self.baseline(sbx, res)
            if self.args.profile and n == 100:
                self.cagefsctl(sbx, "--site-isolation-disable", *domains)
                res.mass_enable_reason = self.profile_reason(
                    sbx, ["--site-isolation-enable", *domains], attempts=2)

    def admin(self, sbx: Sandbox, res: Scale, users: list[dict[str, Any]],
              reps: int) -> None:
        n = res.n
        lst = self.timecmd(sbx, [[CAGEFSCTL, "--site-isolation-list"],
                                 [CAGEFSCTL, "--site-isolation-list", "--json"]],
                           reps, full_out=True)
        res.list_s = self.median_ok(lst[0], "cagefsctl --site-isolation-list")
        res.list_json_s = self.median_ok(lst[1], "cagefsctl --site-isolation-list")
        listed = len(json.loads(next(x["out"] for x in lst[1] if x["rc"] == 0))
                     ["users"])
        # disable, then enable again, one domain of a user in the middle
        d = f"blog.{users[n // 2]['user']}.example.org"
        en = self.timecmd(sbx, [[CAGEFSCTL, "--site-isolation-disable", d],
                                [CAGEFSCTL, "--site-isolation-enable", d]], reps)
        res.disable_s = self.median_ok(en[0], "cagefsctl --site-isolation-disable")
        res.enable_s = self.median_ok(en[1], "cagefsctl --site-isolation-enable")
        self.log(f"{n} x 3: list {secs(res.list_s)} (--json {secs(res.list_json_s)}, "
                 f"{listed} users listed), disable {d} {secs(res.disable_s)}, enable "
                 f"it {secs(res.enable_s)} (medians of {reps})")
        if self.args.profile and n >= 100:
            if res.list_s > 1.0:
                res.list_reason = self.profile_reason(sbx, ["--site-isolation-list"])
            if max(res.enable_s, res.disable_s) > 0.5:
                res.endis_reason = self.profile_reason(
                    sbx, ["--site-isolation-disable", d])
                self.cagefsctl(sbx, "--site-isolation-enable", d)

    def median_ok(self, runs: list[dict[str, Any]], what: str) -> float:
        """Median wall time of the runs that succeeded; failures recorded."""
        for x in runs:
            if x["rc"] != 0:
                self.failure(what, x["err"])
        ok = [x["wall"] for x in runs if x["rc"] == 0]
        if not ok:
            raise BenchError(f"{what} failed every time: {runs[0]['err'][-300:]}")
        return statistics.median(ok)

    def remount(self, sbx: Sandbox, res: Scale, users: list[dict[str, Any]]) -> None:
        """--remount-all, timed, while the first user enters its main site in
        a loop and every entry is checked for the right view."""
        n = res.n
        first = users[0]["user"]
        stop = f"{BENCH}/stop-checker"
        checker = sbx.popen([VENV_PY, f"{BENCH}/inside.py", "checker",
                             f"{first}.example.com", f"/home/{first}/public_html",
                             f"/home/{first}/blog", stop], user=first)
        rm: dict[str, Any] = {}
        try:
            time.sleep(1.0)
            for _ in range(3):
                self.log(f"{n} x 3: cagefsctl --remount-all")
                sbx.run(["touch", f"{BENCH}/mark"])
                rm = self.timecmd(sbx, [[CAGEFSCTL, "--remount-all"]], 1)[0][0]
                if rm["rc"] == 0:
                    break
                # How far it got: users whose index it rewrote.
                done = int(sbx.run(["sh", "-c", "find /run/siteiso/index -type f "
                                    f"-newer {BENCH}/mark | wc -l"]).stdout)
                tail = str(rm["err"]).strip().splitlines()
                res.remount_failures.append(tail[-1] if tail else f"exit {rm['rc']}")
                res.remount_partial.append((rm["wall"], done))
                self.failure("cagefsctl --remount-all", rm["err"])
                self.log(f"{n} x 3: remount-all FAILED after {secs(rm['wall'])}, "
                         f"{done} of {n} users rebuilt (exit {rm['rc']}): "
                         f"{str(rm['err']).strip()[-500:]}")
        finally:
            self.put(sbx, stop, "")
            out, err = checker.communicate(timeout=300)
        if rm.get("rc") == 0:
            res.remount = rm
        try:
            res.checker = json.loads(out.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res.checker = {"error": err.strip()[-200:]}
        self.log(f"{n} x 3: remount-all {secs(rm['wall'])} wall, {secs(rm['cpu'])} "
                 f"CPU{'' if res.remount else ' (FAILED)'}; entries meanwhile: "
                 f"{res.checker}")
        if self.args.profile and (n == 100 or (n >= 1000 and rm["wall"] < 120)):
            res.remount_reason = self.profile_reason(sbx, ["--remount-all"],
                                                     attempts=3)
        if n >= 100:
            res.holder_reason = self.holder_reason(sbx)

    def baseline(self, sbx: Sandbox, res: Scale) -> None:
        """The same plans applied with mount(8), one process per mount."""
        n = res.n
        plans = sbx.run(["sh", "-c", "ls /run/siteiso/views/*/*.plan"]).stdout.split()
        limit = self.args.baseline_plans
        sample = plans[::math.ceil(len(plans) / limit)] if len(plans) > limit else plans
        sbx.run(["mkdir", "-p", "/run/bench-stage"])
        self.log(f"{n} x 3: mount(8) baseline over {len(sample)} of {len(plans)} plans")
        b = self.timecmd(sbx, [[f"{BENCH}/benchtool", "mount8", MOUNT,
                                "/run/bench-stage", *sample]], 1, full_out=True)[0][0]
        if b["rc"] != 0:
            raise BenchError(f"mount(8) baseline failed: {b['err']}")
        counts = [line.split() for line in b["out"].splitlines()
                  if line.startswith("plan ")]
        per_plan = sum(int(c[1]) for c in counts) / max(1, len(counts))
        scale = len(plans) / len(sample)
        res.plans = len(plans)
        res.mounts = round(per_plan * len(plans))
        res.mount8_wall = b["wall"] * scale
        res.mount8_cpu = b["cpu"] * scale
        res.mount8_failed = sum(int(c[2]) for c in counts)
        res.mount8_note = ("" if scale == 1 else
                           f"mount(8) extrapolated x{scale:.1f} from {len(sample)} "
                           "plans (each plan in its own namespace: linear)")
        self.log(f"{n} x 3: mount(8) {secs(res.mount8_wall)} wall, "
                 f"{secs(res.mount8_cpu)} CPU ({per_plan:.0f} mount processes per "
                 f"view, {res.mount8_failed} failed) {res.mount8_note}")

    def scale_rows(self) -> None:
        why = ("--quick" if self.args.quick else
               "not in --users" if 1000 not in self.args.user_levels else
               "it failed (see the failure row)")
        sec = "admin commands (N users x 3 sites)"
        for n, r in sorted(self.scale.items()):
            big = n >= 1000
            if r.list_s is not None and r.list_json_s is not None:
                ok = r.list_s <= 1.0
                self.rows.append(Row(
                    sec, f"--site-isolation-list, {n} users", secs(r.list_s),
                    target="≤ 1 s" if big else "(≤ 1 s at 1000)",
                    result=verdict(ok) if big else ("ok" if ok else "slow"),
                    note=f"--json {secs(r.list_json_s)}"
                    + (f"; {r.list_reason}" if not ok and r.list_reason else "")))
            for key, val in (("disable", r.disable_s), ("enable", r.enable_s)):
                if val is None:
                    continue
                ok = val <= 0.5
                self.rows.append(Row(
                    sec, f"--site-isolation-{key} of one domain, {n} users",
                    secs(val), target="≤ 0.5 s" if big else "(≤ 0.5 s at 1000)",
                    result=verdict(ok) if big else ("ok" if ok else "slow"),
                    note=r.endis_reason if not ok else ""))
            if r.mass_enable:
                note = (f"{secs(r.mass_enable['cpu'])} CPU; starts {4 * n} holders "
                        "(3 sites + a cage per user)")
                lower = [m for m in self.scale.values() if m.n < n and m.mass_enable]
                if lower:
                    m = max(lower, key=lambda x: x.n)
                    note += (f"; x{r.mass_enable['wall'] / m.mass_enable['wall']:.0f} "
                             f"the time of {m.n} users for x{n // m.n} the users")
                base = self.scale.get(100)
                if base and base.mass_enable_reason and n >= 100:
                    note += f"; at 100 users: {base.mass_enable_reason}"
                self.rows.append(Row(
                    sec, f"mass enable of {3 * n} domains, one command",
                    secs(r.mass_enable["wall"]), note=note))
        if 1000 not in self.scale or self.scale[1000].enable_s is None:
            for what, tgt in (("--site-isolation-list", "≤ 1 s"),
                              ("--site-isolation-enable/disable", "≤ 0.5 s")):
                self.rows.append(Row(sec, f"{what}, 1000 users", "not measured",
                                     target=tgt, result="n/a", note=f"skipped: {why}"))
        sec = "remount-all (N users x 3 sites) vs mount(8) per mount"
        prev: Scale | None = None
        for _n, r in sorted(self.scale.items()):
            if r.mount8_wall is None:
                continue
            self.remount_rows(sec, r, prev)
            if r.remount:
                prev = r
        if 1000 not in self.scale or self.scale[1000].mount8_wall is None:
            self.rows.append(Row(sec, "1000 users", "not measured",
                                 target="≤ 10 s, ≥ 5x", result="n/a",
                                 note=f"skipped: {why}"))

    def remount_rows(self, sec: str, r: Scale, prev: Scale | None) -> None:
        n = r.n
        big = n >= 1000
        bw, bc = r.mount8_wall or 0.0, r.mount8_cpu
        ck = r.checker
        clean = ck.get("failed") == 0 and ck.get("wrong") == 0
        notes = [f"entries meanwhile: {ck.get('ok', 0)} ok, {ck.get('failed', '?')} "
                 f"failed, {ck.get('wrong', '?')} wrong view"
                 + (f" (first: {ck['first_error']})" if ck.get("first_error") else ""),
                 r.mount8_note]
        if r.mount8_failed:
            notes.append(f"{r.mount8_failed} mount(8) calls failed")
        if r.remount_failures:
            got = ", ".join(f"{d} users in {w:.1f} s" for w, d in r.remount_partial)
            notes.append(f"remount-all exited 1 {len(r.remount_failures)}x "
                         f"({r.remount_failures[0]}; rebuilt before the crash: {got})")
        base = self.scale.get(100)
        why = [r.remount_reason or (base.remount_reason if base else ""),
               r.holder_reason or (base.holder_reason if base else "")] if big else []
        what = f"{n} users: {r.plans} views, ~{r.mounts} mounts; wall"
        target = "≤ 10 s, ≥ 5x, 0 bad" if big else "(at 1000)"
        if not r.remount:
            # It never completed: the best rate seen, for the whole of it.
            rate = max((d / w for w, d in r.remount_partial if w > 0), default=0.0)
            est = n / rate if rate else 0.0
            notes.append("estimated from the fastest failed run's progress"
                         if est else "no progress measured")
            self.rows.append(Row(
                sec, what, f"failed ({len(r.remount_failures)}/"
                f"{len(r.remount_failures)})" + (f", ~{secs(est)}" if est else ""),
                f"mount(8) {secs(bw)}", f"~{bw / est:.1f}x" if est else "—",
                target, "MISS" if big else "fail",
                "; ".join(x for x in (*notes, *why) if x)))
            return
        wall, cpu = r.remount["wall"], r.remount["cpu"]
        ok = wall <= 10 and bw / wall >= 5 and clean
        if not ok:
            notes += why
        self.rows.append(Row(
            sec, what, secs(wall), f"mount(8) {secs(bw)}", f"{bw / wall:.1f}x faster",
            target,
            verdict(ok) if big else ("ok" if bw / wall >= 5 and clean else "slow"),
            "; ".join(x for x in notes if x)))
        self.rows.append(Row(sec, f"{n} users: CPU", secs(cpu), f"mount(8) {secs(bc)}",
                             f"{bc / cpu:.1f}x less" if cpu else "—"))
        if prev is not None and prev.mount8_wall:
            f = n // prev.n
            self.rows.append(Row(
                sec, f"growth {prev.n} -> {n} users (x{f})",
                f"wall x{wall / prev.remount['wall']:.1f}, "
                f"CPU x{cpu / prev.remount['cpu']:.1f}",
                f"wall x{bw / prev.mount8_wall:.1f}, CPU x{bc / prev.mount8_cpu:.1f}",
                note=f"linear would be x{f}"))

    # ---- output ---------------------------------------------------------------

    def table(self) -> str:
        cols = ("what", "siteiso", "alternative", "ratio", "target", "result")
        width = (56, 22, 24, 18, 22, 6)
        head = "  ".join(c.ljust(w) for c, w in zip(cols, width, strict=True))
        lines = [head, "-" * len(head)]
        section = None
        for r in self.rows:
            if r.section != section:
                section = r.section
                lines.append(f"[{section}]")
            cells = (r.what, r.siteiso, r.alt, r.ratio, r.target, r.result)
            lines.append("  ".join(str(c).ljust(w)
                                   for c, w in zip(cells, width, strict=True)).rstrip())
            if r.note:
                lines.append(f"    ↳ {r.note}")
        return "\n".join(lines)


def leftovers(bench: Bench, before: dict[str, Any]) -> list[str]:
    """What this run may have left on the host: its sandboxes' processes and
    cgroups, and any change of the host's mount table or /etc/passwd."""
    problems = []
    mine = {int(s["pidns"]) for s in bench.sandboxes}
    left: list[int] = []
    for _ in range(30):     # a PID namespace with thousands of processes
        left = []           # takes a moment to empty after its PID 1 died
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.stat(f"/proc/{name}/ns/pid").st_ino in mine:
                        left.append(int(name))
                except OSError:
                    continue
        if not left:
            break
        time.sleep(0.5)
    if left:
        problems.append(f"processes left in the benchmark's PID namespaces: "
                        f"{left[:10]}")
    problems += [f"cgroup left: {s['cgroup']}" for s in bench.sandboxes
                 if os.path.exists(str(s["cgroup"]))]
    after = host_snapshot()
    if after["passwd"] != before["passwd"]:
        problems.append("host /etc/passwd changed")
    now: set[str] = set(after["mounts"])  # type: ignore[call-overload]
    new = now - set(before["mounts"])
    gone = set(before["mounts"]) - now
    if new or gone:
        problems.append(f"host mount table changed (by this run or someone else): "
                        f"+{sorted(new)[:5]} -{sorted(gone)[:5]}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description="siteiso benchmarks (SPEC §10)")
    p.add_argument("--quick", action="store_true",
                   help="fewer runs, up to 100 users (a few minutes)")
    p.add_argument("--runs", type=int, help="entries per method (250; quick 40)")
    p.add_argument("--users", help="user counts for admin/remount (10,100,1000)")
    p.add_argument("--only", help="phases, comma-separated: entry,scan,memory,scale")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="no cProfile run of commands that miss their target")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("run.py: must run as root", file=sys.stderr)
        return 1
    args.runs = args.runs or (40 if args.quick else 250)
    args.warmup = 5
    args.user_levels = [int(x) for x in
                        (args.users or ("10,100" if args.quick else "10,100,1000"))
                        .split(",")]
    args.scan_total = 10_000
    args.scan_runs = 6 if args.quick else 15
    args.mem_sites = 51 if args.quick else 150
    args.mem_cycles = 2 if args.quick else 3
    args.admin_reps = 3 if args.quick else 5
    args.baseline_plans = 400
    phases = (args.only or "entry,scan,memory,scale").split(",")

    # The sandbox inherits the working directory and PATH: give it the system's.
    os.chdir("/")
    os.environ["PATH"] = SYS_PATH
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: sys.exit(128 + s))

    before = host_snapshot()
    load0 = os.getloadavg()[0]
    bench = Bench(args)
    bench.log(f"siteiso benchmarks{' (quick)' if args.quick else ''}: "
              f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    steps: list[tuple[str, Callable[[], None]]] = []
    if "entry" in phases:
        steps.append(("entering a site", bench.phase_entry))
    if "scan" in phases:
        steps.append(("finding one site's processes", bench.phase_scan))
    if "memory" in phases:
        steps.append(("memory per isolated site at rest", bench.phase_memory))
    if "scale" in phases:
        for n in args.user_levels:
            steps.append((f"{n} users x 3 sites",
                          lambda n=n: bench.phase_scale(n)))  # type: ignore[misc]
    try:
        bench.compile_tools()
        for name, fn in steps:
            try:
                fn()
            except (BenchError, subprocess.SubprocessError, AssertionError,
                    OSError, ValueError, KeyError) as e:
                bench.rows.append(Row(name, name, "not measured", result="n/a",
                                      note=f"failed: {str(e)[:400]}"))
                bench.log(f"{name}: FAILED: {e}")
        if "scale" in phases:
            bench.scale_rows()
    finally:
        shutil.rmtree(bench.tools, ignore_errors=True)
    if bench.failures:
        bench.rows.append(Row(
            "product failures during the run", "commands that exited 1 "
            "(then run again)", str(sum(bench.failures.values())), result="n/a",
            note="; ".join(f"{n}x {k}" for k, n in bench.failures.items())))
    problems = leftovers(bench, before)
    total = time.monotonic() - bench.t0
    print()
    print(f"siteiso benchmarks, SPEC §10 — {os.cpu_count()} CPUs, kernel "
          f"{os.uname().release}, {args.runs} entries per method, "
          f"{'quick' if args.quick else 'full'} run, {total:.0f} s; load average "
          f"{load0:.1f} at start, {os.getloadavg()[0]:.1f} at end (shared machine)")
    versions = sorted(set(bench.stamps.values()))
    print("siteiso measured (frozen per sandbox): " + " | ".join(versions)
          + ("  <- the installed product changed between sandboxes (a reinstall "
             "during the run): rows come from different builds"
             if len(versions) > 1 else ""))
    print(bench.table())
    print()
    print("host check: " + ("clean: no process, cgroup, mount or /etc/passwd change "
                            "left by this run" if not problems
                            else "; ".join(problems)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
