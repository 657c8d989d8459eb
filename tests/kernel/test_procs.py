"""Lifecycle against the real kernel (SPEC §8 "Restart", §9 cgroups, §10).

Every scenario runs as PID 1 of a private PID and mount namespace that the
test creates (this file re-runs itself under `unshare --pid --fork
--mount-proc`), so the scanner sees, and terminate() can signal, only the
processes the scenario started; they all die with the namespace. cgroups are
made only under <cgroup2 mount>/siteiso-test-<pid> and removed at the end,
also when a test fails. uids are bare numbers (no passwd entries needed).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator

import pytest

from siteiso.errors import EngineError, SiteisoError  # noqa: E402
from siteiso.procs import lifecycle  # noqa: E402

pytestmark = pytest.mark.kernel

USER = 1500  # the account whose site is restarted
NEIGHBOUR = 1600  # another hosting account
SITE_PROCS = 500


# ------------------------------------------------------------------ outside


def _run(scenario: str, *args: str) -> dict:
    """Run a scenario as PID 1 of a new PID + mount namespace; its last
    stdout line is a JSON report."""
    cmd = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--mount",
        "--kill-child",
        sys.executable,
        os.path.abspath(__file__),
        scenario,
        *args,
    ]
    # On timeout subprocess kills unshare; --kill-child then kills PID 1,
    # which takes every process of the namespace with it.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{scenario} failed:\n{proc.stderr}{proc.stdout}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: PID namespaces, setresuid, cgroups")


@pytest.fixture(scope="module")
def scan_report(root_only: None) -> dict:
    return _run("scan")


@pytest.fixture(scope="module")
def terminate_report(root_only: None) -> dict:
    return _run("terminate")


def _empty_and_remove(base: str) -> None:
    """Kill whatever a failed scenario left and remove the subtree."""
    for _ in range(50):
        for cg, _dirs, files in os.walk(base, topdown=False):
            if "cgroup.kill" in files:
                try:
                    with open(os.path.join(cg, "cgroup.kill"), "w") as f:
                        f.write("1")
                except OSError:
                    pass
        try:
            lifecycle.remove_cgroup_tree(base)
            return
        except EngineError:
            time.sleep(0.1)
    lifecycle.remove_cgroup_tree(base)


@pytest.fixture(scope="module")
def test_cgroup(root_only: None) -> Iterator[str]:
    root = lifecycle.cgroup_root("")
    if root is None:
        pytest.skip("no cgroup2 file system mounted on this host")
    base = os.path.join(root, f"siteiso-test-{os.getpid()}")
    lifecycle.ensure_cgroup(base)
    try:
        yield base
    finally:
        _empty_and_remove(base)
        assert not os.path.exists(base)


# ------------------------------------------------------------------ scan


def test_scan_finds_site_processes_by_cwd_environ_and_fpm_pool(scan_report):
    found = set(scan_report["site_query"])
    names = scan_report["pids"]
    for name in (
        "cwd_docroot",
        "cwd_below_docroot",
        "cwd_removed_below_docroot",
        "environ_docroot",
        "environ_docroot_slash",
        "fpm_pool",
    ):
        assert names[name] in found, name


def test_scan_keeps_to_path_boundaries_and_nested_sibling_sites(scan_report):
    found = set(scan_report["site_query"])
    names = scan_report["pids"]
    for name in ("cwd_lookalike", "cwd_nested_sibling", "cwd_home", "fpm_other_pool"):
        assert names[name] not in found, name


def test_scan_never_finds_another_users_processes(scan_report):
    assert scan_report["pids"]["neighbour_in_docroot"] not in scan_report["site_query"]


def test_scan_finds_by_and_excludes_by_mount_namespace(scan_report):
    view = scan_report["pids"]["in_view"]
    assert view not in scan_report["site_query"]  # excluded
    assert scan_report["mntns_query"] == [view]


def test_find_site_processes_leaves_the_users_login_session(scan_report):
    names = scan_report["pids"]
    assert names["login_tty"] in scan_report["raw_cwd_query"]
    assert names["login_tty"] not in scan_report["api_query"]
    everything_else = set(scan_report["site_query"]) - {names["login_tty"]}
    assert set(scan_report["api_query"]) == everything_else


def test_scan_never_returns_the_scanning_process(scan_report):
    assert scan_report["self_query"] == []


def test_scan_with_one_thread_finds_the_same(scan_report):
    assert set(scan_report["single_thread_query"]) == set(scan_report["site_query"])


def test_starttime_is_field_22_and_gone_pid_raises(scan_report):
    assert scan_report["starttime_ok"]
    assert scan_report["gone_raises"]


# ------------------------------------------------------------------ terminate


def test_terminate_ends_every_site_process(terminate_report):
    r = terminate_report
    assert r["found_is_site"], r["found_diff"]
    assert r["result"] == {"ended": SITE_PROCS, "survivors": []}
    assert r["site_alive"] == 0
    # the ones that ignore SIGTERM needed the SIGKILL
    assert r["killed_by_sigkill"] == r["term_ignorers"] > 0


def test_terminate_leaves_collateral_alone(terminate_report):
    assert terminate_report["collateral"] > 0
    assert terminate_report["collateral_dead"] == []


def test_terminate_skips_a_pid_whose_starttime_changed(terminate_report):
    assert terminate_report["stale_result"] == {"ended": 0, "survivors": []}
    assert terminate_report["stale_target_alive"]


# ------------------------------------------------------------------ cgroups


@pytest.mark.parametrize("method", ["kill", "freeze", "signal"])
def test_kill_cgroup_empties_the_site_subtree_only(test_cgroup, method):
    r = _run("cgroup", test_cgroup, method)
    assert r["method"] == method
    assert r["populated_after"] == "0"
    assert r["result_survivors"] == []
    assert r["site_alive"] == 0
    assert r["forked_during_grace"] > 0  # the forker did fork on SIGTERM
    assert r["collateral_dead"] == []
    assert r["removed"]


def test_kill_cgroup_of_a_missing_cgroup_ends_nothing(test_cgroup):
    result = lifecycle.kill_cgroup(os.path.join(test_cgroup, "never-made"), 0.1)
    assert result == lifecycle.Result(0, [])


def test_remove_cgroup_tree_removes_nested_and_tolerates_gone(test_cgroup):
    tree = os.path.join(test_cgroup, "user-1500")
    lifecycle.ensure_cgroup(os.path.join(tree, "site-abc"))
    lifecycle.ensure_cgroup(os.path.join(tree, "cage"))
    lifecycle.remove_cgroup_tree(tree)
    assert not os.path.exists(tree)
    lifecycle.remove_cgroup_tree(tree)


def test_cgroup_root_prefers_config_then_first_cgroup2_mount(tmp_path, root_only):
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    pure = tmp_path / "pure"
    pure.write_text("30 23 0:27 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n")
    none = tmp_path / "none"
    none.write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    assert lifecycle.cgroup_root("", str(hybrid)) == "/sys/fs/cgroup/unified"
    assert lifecycle.cgroup_root("", str(pure)) == "/sys/fs/cgroup"
    assert lifecycle.cgroup_root("", str(none)) is None
    assert lifecycle.cgroup_root("/srv/cg/", str(none)) == "/srv/cg"
    with pytest.raises(SiteisoError):
        lifecycle.cgroup_root("relative/path")


# ------------------------------------------------------------------ inside
# Everything below runs as PID 1 of the scenario's namespaces.


class World:
    """The processes a scenario starts; all end when it returns."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.top = tempfile.mkdtemp(prefix="siteiso-procs-")
        os.chmod(self.top, 0o755)
        self.home = os.path.join(self.top, "home", "alice")
        self.docroot = os.path.join(self.home, "public_html")
        self.nested = os.path.join(self.docroot, "shop")
        self.lookalike = os.path.join(self.home, "public_html2")
        self.below = os.path.join(self.docroot, "wp-content")
        for d in (self.nested, self.lookalike, self.below):
            os.makedirs(d, mode=0o755)

    def spawn(
        self,
        uid: int,
        cwd: str,
        *,
        docroot_env: str | None = None,
        ignore_term: bool = False,
        title: str | None = None,
        tty: int | None = None,
        argv: list[str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> subprocess.Popen:
        env = {"PATH": "/usr/bin:/bin"}
        if docroot_env is not None:
            env["DOCUMENT_ROOT"] = docroot_env

        def child_setup() -> None:
            if ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if tty is not None:
                # Modules are imported before the fork: the child already
                # runs as the user and may not read the module search path.
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        p = subprocess.Popen(
            argv or [title or "sleep", "infinity"],
            executable=None if argv else "/usr/bin/sleep",
            cwd=cwd,
            env=env,
            user=uid,
            group=uid,
            extra_groups=[],
            start_new_session=True,
            stdin=tty if tty is not None else stdin,
            stdout=subprocess.DEVNULL,
            preexec_fn=child_setup if (ignore_term or tty is not None) else None,
        )
        self.procs.append(p)
        return p

    def end(self) -> None:
        # Our own unreaped children: their pids cannot be reused yet.
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        subprocess.run(["rm", "-rf", self.top], check=False)


def _stat_starttime(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def _wait_exec(procs: list[subprocess.Popen], exe: str = "/usr/bin/sleep") -> None:
    """Until each has exec'd (a forked child still shows root's cwd...)."""
    deadline = time.monotonic() + 20
    for p in procs:
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{p.pid}/exe") == exe:
                    break
            except OSError:
                pass
            time.sleep(0.005)


def scenario_scan() -> dict:
    from siteiso import _procscan
    from siteiso.procs import SiteMatch, find_site_processes

    w = World()
    try:
        removed = os.path.join(w.docroot, "old-release")
        os.mkdir(removed)
        master, slave = os.openpty()
        p = {
            "cwd_docroot": w.spawn(USER, w.docroot),
            "cwd_below_docroot": w.spawn(USER, w.below),
            "cwd_removed_below_docroot": w.spawn(USER, removed),
            "environ_docroot": w.spawn(USER, w.home, docroot_env=w.docroot),
            "environ_docroot_slash": w.spawn(USER, w.home, docroot_env=w.docroot + "/"),
            "fpm_pool": w.spawn(USER, "/", title="php-fpm: pool site_a"),
            "fpm_other_pool": w.spawn(USER, "/", title="php-fpm: pool site_ab"),
            "cwd_lookalike": w.spawn(USER, w.lookalike),
            "cwd_nested_sibling": w.spawn(USER, w.nested, docroot_env=w.nested),
            "cwd_home": w.spawn(USER, w.home),
            "neighbour_in_docroot": w.spawn(
                NEIGHBOUR, w.docroot, docroot_env=w.docroot
            ),
            "login_tty": w.spawn(USER, w.docroot, tty=slave),
            # A process in a mount namespace of its own: a site's view.
            "in_view": w.spawn(
                0,
                w.docroot,
                argv=[
                    "unshare",
                    "--mount",
                    f"--setuid={USER}",
                    f"--setgid={USER}",
                    "sleep",
                    "infinity",
                ],
            ),
        }
        os.close(slave)
        _wait_exec(list(p.values()))
        os.rmdir(removed)
        view_ns = os.stat(f"/proc/{p['in_view'].pid}/ns/mnt").st_ino
        assert view_ns != os.stat("/proc/self/ns/mnt").st_ino

        enc = os.fsencode
        query = {
            "cwd_prefixes": (enc(w.docroot),),
            "docroots": (enc(w.docroot),),
            "fpm_pools": (b"site_a",),
            "cwd_excludes": (enc(w.nested),),
            "exclude_mntns": (view_ns,),
        }
        site = SiteMatch(
            docroot=w.docroot,
            fpm_pools=("site_a",),
            other_paths=(w.nested,),
            exclude_mntns=(view_ns,),
        )
        os.chdir(w.docroot)
        try:
            self_query = _procscan.scan(0, cwd_prefixes=(enc(w.docroot),))
        finally:
            os.chdir("/")
        pid = p["cwd_docroot"].pid
        try:
            _procscan.starttime(2**22 + 1)
            gone_raises = False
        except ProcessLookupError:
            gone_raises = True
        return {
            "pids": {name: proc.pid for name, proc in p.items()},
            "site_query": [x for x, _ in _procscan.scan(USER, **query)],
            "single_thread_query": [
                x for x, _ in _procscan.scan(USER, threads=1, **query)
            ],
            "raw_cwd_query": [
                x for x, _ in _procscan.scan(USER, cwd_prefixes=(enc(w.docroot),))
            ],
            "api_query": [x for x, _ in find_site_processes(USER, site)],
            "mntns_query": [x for x, _ in _procscan.scan(USER, mntns=view_ns)],
            "self_query": self_query,
            "starttime_ok": _procscan.starttime(pid) == _stat_starttime(pid),
            "gone_raises": gone_raises,
        }
    finally:
        w.end()


def scenario_terminate() -> dict:
    from siteiso.procs import SiteMatch, find_site_processes, terminate

    w = World()
    try:
        site: list[subprocess.Popen] = []
        ignorers = 50
        for i in range(SITE_PROCS - 100):
            site.append(w.spawn(USER, w.docroot if i % 2 else w.below))
        for _ in range(50):
            site.append(w.spawn(USER, w.home, docroot_env=w.docroot))
        for _ in range(ignorers):
            site.append(w.spawn(USER, w.docroot, ignore_term=True))
        collateral = []
        for _ in range(20):
            collateral.append(w.spawn(USER, w.home))
            collateral.append(w.spawn(USER, w.nested, docroot_env=w.nested))
            collateral.append(w.spawn(USER, w.lookalike))
            collateral.append(
                w.spawn(NEIGHBOUR, w.docroot, docroot_env=w.docroot, ignore_term=True)
            )
        master, slave = os.openpty()
        collateral.append(w.spawn(USER, w.docroot, tty=slave))
        os.close(slave)
        _wait_exec(site + collateral)

        match = SiteMatch(docroot=w.docroot, other_paths=(w.nested,))
        found = find_site_processes(USER, match)
        site_pids = {p.pid for p in site}
        found_pids = {pid for pid, _ in found}

        stale_target = collateral[0]
        stale = terminate(
            [(stale_target.pid, _stat_starttime(stale_target.pid) + 1)], 0.1
        )

        result = terminate(found, grace=2.0)
        site_alive = sum(1 for p in site if p.poll() is None)
        killed = sum(1 for p in site if p.returncode == -signal.SIGKILL)
        return {
            "found_is_site": found_pids == site_pids,
            "found_diff": sorted(found_pids ^ site_pids)[:20],
            "result": {"ended": result.ended, "survivors": result.survivors},
            "site_alive": site_alive,
            "term_ignorers": ignorers,
            "killed_by_sigkill": killed,
            "collateral": len(collateral),
            "collateral_dead": [p.pid for p in collateral if p.poll() is not None],
            "stale_result": {"ended": stale.ended, "survivors": stale.survivors},
            "stale_target_alive": stale_target.poll() is None,
        }
    finally:
        w.end()


def scenario_cgroup(base: str, method: str) -> dict:
    from siteiso.procs import ensure_cgroup, kill_cgroup, remove_cgroup_tree

    site_cg = os.path.join(base, f"site-{method}")
    php_cg = os.path.join(site_cg, "php")
    other_cg = os.path.join(base, f"other-{method}")
    for cg in (php_cg, other_cg):
        ensure_cgroup(cg)

    def move(p: subprocess.Popen, cg: str) -> None:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))

    w = World()
    try:
        site = []
        for i in range(100):
            p = w.spawn(USER, w.docroot, ignore_term=i % 5 == 0)
            move(p, site_cg if i % 2 else php_cg)
            site.append(p)
        # Forks two more children on SIGTERM: the kill must catch those too.
        # It waits for a line on stdin, so that it is moved before it forks.
        forker = w.spawn(
            USER,
            w.docroot,
            argv=[
                "sh",
                "-c",
                'read _; trap "sleep 1000 & sleep 1000 &" TERM; '
                "while :; do sleep 1 & wait $!; done",
            ],
            stdin=subprocess.PIPE,
        )
        move(forker, php_cg)
        assert forker.stdin is not None
        forker.stdin.write(b"go\n")
        forker.stdin.close()
        site.append(forker)
        collateral = []
        for _ in range(20):
            p = w.spawn(USER, w.docroot)
            move(p, other_cg)
            collateral.append(p)
        _wait_exec(site[:-1] + collateral)

        forked: set[int] = set()
        real_method = lifecycle._kill_method
        real_wait_empty = lifecycle._wait_empty

        def wait_and_watch(path: str, hier, timeout: float) -> bool:
            # Remember what the forker made during the grace period.
            done = real_wait_empty(path, hier, timeout)
            forked.update(
                pid
                for pid in lifecycle.cgroup_pids(path)
                if pid not in {p.pid for p in site}
            )
            return done

        lifecycle._kill_method = lambda path: method  # type: ignore[assignment]
        lifecycle._wait_empty = wait_and_watch  # type: ignore[assignment]
        try:
            used = lifecycle._kill_method(site_cg)
            result = kill_cgroup(site_cg, grace=0.5, kill_wait=5.0)
        finally:
            lifecycle._kill_method = real_method
            lifecycle._wait_empty = real_wait_empty

        with open(os.path.join(site_cg, "cgroup.events")) as f:
            events = dict(line.split() for line in f)
        for p in site:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        report = {
            "method": used,
            "populated_after": events["populated"],
            "result_survivors": result.survivors,
            "site_alive": sum(1 for p in site if p.poll() is None),
            "forked_during_grace": len(forked),
            "collateral_dead": [p.pid for p in collateral if p.poll() is not None],
        }
    finally:
        w.end()
    # The collateral ended with w.end(); everything is empty now.
    for _ in range(50):
        try:
            remove_cgroup_tree(site_cg)
            remove_cgroup_tree(other_cg)
            break
        except EngineError:
            time.sleep(0.1)
    report["removed"] = not os.path.exists(site_cg) and not os.path.exists(other_cg)
    return report


def _main(argv: list[str]) -> int:
    if os.getpid() != 1:
        print("run by the tests under unshare --pid --fork", file=sys.stderr)
        return 2
    # PID 1 ignores signals without a handler; make SIGTERM end us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenarios = {
        "scan": scenario_scan,
        "terminate": scenario_terminate,
        "cgroup": scenario_cgroup,
    }
    report = scenarios[argv[0]](*argv[1:])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
