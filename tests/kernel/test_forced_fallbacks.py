"""Every fallback of SPEC §9, forced on this (new) kernel, still isolates.

The C programs' fallbacks are forced the way an old kernel shows itself:
tests/tools/nosys answers close_range or clone3 with ENOSYS (a seccomp filter
that root installs without no_new_privs, so the setuid entry below it still
runs, under the filter). The Python code's fallbacks are forced with
SITEISO_FORCE_MISSING in root's environment. The host without a cgroup2
mount is a sandbox in which none is mounted. Every required feature forced
missing fails enable with the platform error and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from harness import Sandbox
from testlib import make_server, ok, state

from siteiso import platform

pytestmark = pytest.mark.kernel

NOSYS = "/tmp/nosys"    # inside the sandbox
ENTER = "/usr/libexec/siteiso/siteiso-enter"
HOLDER = "/usr/libexec/siteiso/siteiso-holder"
PLATFORM_ERROR = "Website isolation feature is not available on this platform"
REQUIRED = [name for name, (_fallback, required) in platform.FALLBACKS.items()
            if required]

# Run as the user: open a file, leave it inheritable as fd 7 and as the
# highest descriptor the limit allows, then exec the rest of argv.
LEAK = """
import os, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fd = os.open("/etc/hostname", os.O_RDONLY)
os.dup2(fd, 7)
os.dup2(fd, hard - 1)
os.execvp(sys.argv[1], sys.argv[1:])
"""
# A process that forks in a loop: each child ignores SIGTERM and sleeps, so
# a child forked between a listing of the cgroup and the kill would survive.
FORKER = ('trap "" TERM; while :; do sh -c \'trap "" TERM; exec sleep 1000\' & '
          'sleep 0.01; done')


@pytest.fixture(scope="module")
def nosys_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = Path(__file__).resolve().parents[1] / "tools" / "nosys.c"
    out = tmp_path_factory.mktemp("nosys") / "nosys"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(src)], check=True)
    return out


@pytest.fixture
def srv(server: Sandbox, nosys_bin: Path) -> Sandbox:
    """The server with nosys at NOSYS and isolation allowed for all."""
    shutil.copy(nosys_bin, server.host_path(NOSYS))
    ok(server, "--site-isolation-allow-all")
    return server


def as_user(sbx: Sandbox, user: str, argv: list[str]) -> list[str]:
    """argv as the user, for a command that root starts (under nosys)."""
    u = sbx.users[user]
    return ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--init-groups",
            "--", *argv]


def user_env(sbx: Sandbox, user: str) -> dict[str, str]:
    return {"HOME": sbx.users[user].home, "USER": user}


def without(calls: str, argv: list[str]) -> list[str]:
    return [NOSYS, calls, *argv]


def enable(sbx: Sandbox, *domains: str, calls: str = "", force: str = "") -> None:
    argv = ["cagefsctl", "--site-isolation-enable", *domains]
    env = {platform.FORCE_ENV: force} if force else None
    r = sbx.run(without(calls, argv) if calls else argv, env=env, check=False)
    assert r.returncode == 0, r.stderr


def record(sbx: Sandbox, user: str, kind: str = "site") -> dict[str, str]:
    """The user's index record of that kind: token, pid, pidns, ..."""
    lines = sbx.read(f"/run/siteiso/index/{sbx.users[user].uid}").splitlines()[1:]
    keys = ("kind", "token", "pid", "start", "pidns", "mntns")
    recs = [dict(zip(keys, ln.split("\t")[:6], strict=True)) for ln in lines]
    return next(r for r in recs if r["kind"] == kind)


# ---- the tool ---------------------------------------------------------------

def test_nosys_answers_enosys_like_an_old_kernel(nosys_bin):
    probe = ("import ctypes, os\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "for nr, args in ((436, (1 << 30, 1 << 30, 0)), (435, (0, 0))):\n"
             "    r = libc.syscall(nr, *args)\n"
             "    print(r, os.strerror(ctypes.get_errno()) if r < 0 else 'ok')\n")
    plain = subprocess.run(["python3", "-c", probe], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    # clone3 with a zero-sized argument is refused as invalid, not unknown.
    assert plain[0] == "0 ok" and "Function not implemented" not in plain[1]
    forced = subprocess.run([str(nosys_bin), "close_range,clone3", "python3", "-c",
                             probe], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert forced == ["-1 Function not implemented"] * 2


# ---- close_range ------------------------------------------------------------

def test_without_close_range_the_entered_command_has_only_fds_0_1_2(srv):
    enable(srv, "example.com", calls="close_range")
    # The holders built under it kept only stdio and the cgroup (fd 3), not
    # the build's pipes and descriptors.
    for kind in ("site", "cage"):
        holder = record(srv, "john", kind)["pid"]
        assert srv.run(["ls", f"/proc/{holder}/fd"]).stdout.split() == \
            ["0", "1", "2", "3"], kind
    show = ["sh", "-c", "ls /proc/$$/fd"]
    leak = ["python3", "-c", LEAK]
    # The leak is real: a command started directly keeps both descriptors.
    r = srv.run(without("close_range", as_user(srv, "john", [*leak, *show])),
                env=user_env(srv, "john"))
    leaked = r.stdout.split()
    assert "7" in leaked and len(leaked) == 5, leaked

    r = srv.run(without("close_range", as_user(
        srv, "john", [*leak, "cagefs_enter_site", "example.com", *show])),
        env=user_env(srv, "john"), check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1", "2"]


def _cg_rel(sbx: Sandbox) -> str:
    """The sandbox's cgroup as /proc/<pid>/cgroup names it (from the root
    of the hierarchy)."""
    mount = sbx.cgroup_root
    for line in sbx.read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        if right.startswith("cgroup2 ") and mount.startswith(point + "/"):
            return mount[len(point):]
    raise AssertionError(f"{mount} is not on a cgroup2 mount in the sandbox")


def test_without_close_range_and_clone3_a_run_child_is_in_the_site(srv):
    """The site's php-fpm master is started by `siteiso-holder run`: with
    neither system call it forks, joins the site's cgroup through
    cgroup.procs, and closes what root's caller leaked."""
    enable(srv, "example.com", calls="close_range,clone3")
    site = record(srv, "john")
    u = srv.users["john"]
    # Its stdio is a file: the child keeps it open while sleeping.
    start = [HOLDER, "run", site["pid"], str(u.uid), str(u.gid), "--",
             "/usr/bin/sleep", "60"]
    srv.run(without("close_range,clone3", [
        "sh", "-c", 'exec "$@" > /tmp/run.out 2>&1 < /dev/null', "sh",
        "python3", "-c", LEAK, *start]))
    pid = srv.read("/tmp/run.out").strip()
    assert pid.isdigit(), pid
    try:
        cgroup = srv.read(f"/proc/{pid}/cgroup").splitlines()
        assert [ln for ln in cgroup if ln.startswith("0::")] == \
            [f"0::{_cg_rel(srv)}/siteiso.slice/user-{u.uid}/site-{site['token']}"]
        assert srv.run(["readlink", f"/proc/{pid}/ns/pid"]).stdout.strip() == \
            f"pid:[{site['pidns']}]"
        assert srv.run(["ls", f"/proc/{pid}/fd"]).stdout.split() == ["0", "1", "2"]
        assert srv.run(["stat", "-c", "%u", f"/proc/{pid}"]).stdout.strip() == \
            str(u.uid)
    finally:
        srv.run(["kill", "-KILL", pid], check=False)


# ---- clone3 (CLONE_INTO_CGROUP) -------------------------------------------

def test_without_clone3_the_entered_command_is_in_the_site(srv):
    enable(srv, "example.com", calls="clone3")
    site = record(srv, "john")
    holder_cgns = srv.run(["readlink", f"/proc/{site['pid']}/ns/cgroup"]).stdout
    show = ["sh", "-c", "grep '^0::' /proc/self/cgroup; "
                        "readlink /proc/self/ns/pid /proc/self/ns/cgroup"]
    r = srv.run(without("clone3", as_user(
        srv, "john", ["cagefs_enter_site", "example.com", *show])),
        env=user_env(srv, "john"), check=False)
    assert r.returncode == 0, r.stderr
    # The root of the site's cgroup namespace is the site's cgroup: "/" there
    # is the site's cgroup itself, not a path beside it.
    assert r.stdout.split() == ["0::/", f"pid:[{site['pidns']}]",
                                holder_cgns.strip()]


# ---- cgroup.kill ----------------------------------------------------------

def kill_method(sbx: Sandbox, path: str, force: str = "") -> str:
    code = ("from siteiso.procs import lifecycle\n"
            f"print(lifecycle._kill_method({path!r}))\n")
    env = {platform.FORCE_ENV: force} if force else None
    return sbx.run(["/opt/siteiso/venv/bin/python", "-c", code],
                   env=env).stdout.strip()


def john_pids(sbx: Sandbox) -> list[str]:
    return sbx.run(["pgrep", "-u", "john"], check=False).stdout.split()


def test_without_cgroup_kill_disable_ends_every_process(srv):
    enable(srv, "example.com")
    uid = srv.users["john"].uid
    cage_cg = f"{srv.cgroup_root}/siteiso.slice/user-{uid}/cage"
    # The kernel has cgroup.kill; forced missing, the freeze path is taken.
    assert kill_method(srv, cage_cg) == "kill"
    assert kill_method(srv, cage_cg, force="cgroup_kill") == "freeze"

    forkers = [
        srv.popen(["cagefs_enter_site", "example.com", "sh", "-c", FORKER],
                  user="john"),
        # The cage shares the host's PID namespace: its processes outlive
        # the cage's holder and are ended through the cgroup alone.
        srv.popen([ENTER, "cage", "sh", "-c", FORKER], user="john"),
    ]
    try:
        for _ in range(100):
            if len(srv.read(f"{cage_cg}/cgroup.procs").split()) >= 5:
                break
            time.sleep(0.05)
        assert len(srv.read(f"{cage_cg}/cgroup.procs").split()) >= 5

        r = srv.run(["cagefsctl", "--site-isolation-disable", "example.com"],
                    env={platform.FORCE_ENV: "cgroup_kill"}, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        for _ in range(100):
            if not john_pids(srv):
                break
            time.sleep(0.05)
        assert john_pids(srv) == []
        assert not srv.exists(f"{srv.cgroup_root}/siteiso.slice/user-{uid}")
    finally:
        for p in forkers:
            p.kill()
            p.wait(timeout=10)


# ---- per-mount procfs options ---------------------------------------------

def proc_options(sbx: Sandbox, argv: list[str]) -> tuple[list[str], bool]:
    """(super options of /proc, whether /proc/1 is visible) as argv's view
    shows them to john. The last /proc mount is the one on top (the
    sandbox's own /proc lies on the host's)."""
    script = ("grep ' /proc ' /proc/self/mountinfo | tail -1 | sed 's/.* - //'; "
              "test -e /proc/1/stat && echo sees-1 || echo no-1")
    out = sbx.run([*argv, "sh", "-c", script], user="john").stdout.split("\n")
    fstype, _src, opts = out[0].split()
    assert fstype == "proc", out
    return opts.split(","), out[1] == "sees-1"


def test_without_proc_hidepid_only_the_cage_loses_hidepid(srv):
    enable(srv, "example.com")
    # With the feature: the cage hides every other user's processes, the
    # sandbox's PID 1 (root) too.
    opts, sees_1 = proc_options(srv, [ENTER, "cage"])
    assert "hidepid=invisible" in opts and not sees_1

    # Forced missing: the next converge rebuilds the cage without hidepid.
    enable(srv, "blog.example.org", force="proc_hidepid")
    opts, sees_1 = proc_options(srv, [ENTER, "cage"])
    assert not any(o.startswith("hidepid") for o in opts) and sees_1
    # A site still sees only its own processes: its own PID namespace, and
    # hidepid hides the holder (its PID 1, root).
    script = "for p in /proc/[0-9]*; do stat -c %U $p 2>/dev/null; done; true"
    for site in ("example.com", "blog.example.org"):
        opts, sees_1 = proc_options(srv, ["cagefs_enter_site", site])
        assert "hidepid=invisible" in opts and not sees_1
        owners = srv.run(["cagefs_enter_site", site, "sh", "-c", script],
                         user="john").stdout.split()
        assert owners and set(owners) == {"john"}, owners


# ---- no cgroup2 mounted (hybrid and v1 hosts) ------------------------------

def test_without_a_cgroup2_mount_siteiso_mounts_one_and_cleans_up():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sbx = Sandbox("forced-no-cgroup2", cgroup2=False)
    sbx.start()
    try:
        assert "cgroup2" not in sbx.run(["cat", "/proc/self/mountinfo"]).stdout
        make_server(sbx)
        doctor = sbx.run(["siteiso", "doctor"]).stdout
        assert any(ln.split()[:2] == ["ok", "cgroup2"] and "not mounted" in ln
                   for ln in doctor.splitlines()), doctor
        ok(sbx, "--site-isolation-allow-all")
        enable(sbx, "example.com")

        uid = sbx.users["john"].uid
        site = record(sbx, "john")
        mounts = sbx.run(["cat", "/proc/self/mountinfo"]).stdout
        assert [ln.split()[4] for ln in mounts.splitlines()
                if " - cgroup2 " in ln] == ["/run/siteiso/cgroup"]
        site_cg = f"/run/siteiso/cgroup/siteiso.slice/user-{uid}/site-{site['token']}"
        assert sbx.read(f"{site_cg}/cgroup.procs").split() == [site["pid"]]
        r = sbx.run(["cagefs_enter_site", "example.com", "sh", "-c",
                     "grep '^0::' /proc/self/cgroup; readlink /proc/self/ns/pid; "
                     "cat /home/john/public_html/wp-config.php; "
                     "cat /home/john/blog/wp-config.php"], user="john", check=False)
        lines = r.stdout.splitlines()
        assert lines[:3] == ["0::/", f"pid:[{site['pidns']}]",
                             "<?php $pw = 'secret-example.com';"], r.stderr
        assert "secret-blog" not in r.stdout

        ok(sbx, "--site-isolation-disable", "example.com")
        left = sbx.run(["find", "/run/siteiso/cgroup/siteiso.slice", "-mindepth", "1",
                        "-type", "d"]).stdout
        assert left == ""
        assert john_pids(sbx) == []
    finally:
        sbx.stop()
    # siteiso.slice at the root of the hierarchy went with the sandbox.
    assert not os.path.exists(sbx.cgroup_root)


# ---- required features -----------------------------------------------------

def views(sbx: Sandbox) -> tuple[str, str, str]:
    """What enable would have built: index files, holders, user cgroups."""
    index = sbx.run(["sh", "-c", "ls -A /run/siteiso/index 2>/dev/null"],
                    check=False).stdout
    holders = sbx.run(["pgrep", "-f", HOLDER], check=False).stdout
    cgroups = sbx.run(["sh", "-c", f"ls -d {sbx.cgroup_root}/siteiso.slice/*/ "
                                   "2>/dev/null"], check=False).stdout
    return index, holders, cgroups


@pytest.mark.parametrize("feature", REQUIRED)
def test_a_missing_required_feature_fails_enable_and_changes_nothing(srv, feature):
    before = (state(srv), views(srv))
    r = srv.run(["cagefsctl", "--site-isolation-enable", "example.com"],
                env={platform.FORCE_ENV: feature}, check=False)
    assert r.returncode == 1
    first, second = r.stderr.strip().splitlines()
    assert first == PLATFORM_ERROR
    assert feature in second.replace(",", " ").split()
    assert (state(srv), views(srv)) == before
    assert ok(srv, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"
