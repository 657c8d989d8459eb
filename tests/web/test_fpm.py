"""PHP-FPM for isolated sites, through a real Apache (SPEC §8): one php-fpm
master per site, as the user, in the site's view, on a socket root made and
handed over; started on enable, stopped on disable, restarted by the next
converge when it died."""

from __future__ import annotations

import time

import pytest
from conftest_handlers import (
    A_ROOT,
    A_SECRET,
    B_ROOT,
    B_SECRET,
    NESTED,
    NESTED_SECRET,
    A,
    B,
    Proc,
    alive,
    disable,
    enable,
    host_pidns,
    php_pidns,
    processes,
    serving_process,
    set_handler,
    site_record,
    wait_gone,
)
from testlib import start_daemon, stop_daemon, wait_for
from webserver import fpm_socket

pytestmark = pytest.mark.web

FPM_DIR = "/run/siteiso/fpm"


@pytest.fixture
def fweb(web):
    set_handler(web.sbx, "fpm")
    return web


def master(sbx, token: str) -> Proc:
    """The site's php-fpm master, from its record, checked to be that process."""
    pid, start, pidns, *_ = sbx.read(f"{FPM_DIR}/{token}.pid").split("\t")
    found = [p for p in processes(sbx) if p.pid == int(pid)]
    assert found and found[0].start == int(start), "the recorded master is not running"
    assert found[0].pidns == int(pidns)
    return found[0]


def fpm_procs(sbx, pidns: int) -> list[Proc]:
    return [p for p in processes(sbx)
            if p.pidns == pidns and p.name.startswith("php-fpm")]


def test_socket_made_by_root_for_the_web_server_only(fweb):
    sbx = fweb.sbx
    enable(sbx, A)
    token = site_record(sbx, "john", A_ROOT).token
    text = sbx.read(f"/etc/apache2/siteiso/{A}.conf")
    path = fpm_socket(sbx, token)
    assert f'SetHandler "proxy:unix:{path}|fcgi://siteiso-{token}/"' in text
    st = sbx.run(["stat", "-c", "%U:%G %a %F", FPM_DIR, path]).stdout.split("\n")
    assert st[0] == "root:www-data 710 directory"
    assert st[1] == "root:www-data 660 socket"
    # Not even the account itself reaches it from outside its views.
    r = sbx.run(["python3", "-c", "import socket; socket.socket(socket.AF_UNIX)"
                 f".connect('{path}')"], user="john", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_php_runs_as_the_user_in_the_sites_own_pid_namespace(fweb):
    sbx = fweb.sbx
    enable(sbx, A, B)
    assert fweb.get(A, "/index.php") == (200, "hello from a.example")
    assert fweb.get(B, "/index.php") == (200, "hello from b.example")
    rec = site_record(sbx, "john", A_ROOT)
    john = sbx.users["john"].uid
    env = fweb.probe(A, "env")
    assert env["out"]["uid"] == john
    assert php_pidns(fweb, A) == rec.pidns != host_pidns(sbx)
    worker = serving_process(sbx, rec.pidns, env["out"]["pid"])
    m = master(sbx, rec.token)
    assert worker.name == "php-fpm8.2" and "pool a.example" in worker.cmd
    assert m.uid == worker.uid == john and "master process" in m.cmd
    assert m.pidns == rec.pidns
    # In the site's cgroup (its fpm child), not the web server's.
    assert m.cgroup.endswith(f"/site-{rec.token}/fpm") and worker.cgroup == m.cgroup
    ps = fweb.probe(A, "exec", "ls /proc | grep -c '^[0-9]'")
    assert int(ps["out"]) < 10  # only the site's own processes
    # b: its own master, in its own view.
    b_rec = site_record(sbx, "john", B_ROOT)
    assert master(sbx, b_rec.token).pidns == b_rec.pidns == php_pidns(fweb, B)
    # The configuration is no file of the view: a sealed descriptor that
    # the site (same uid) can find but not change.
    r = fweb.probe(A, "exec",
                   "for f in /proc/[0-9]*/fd/*; do case $(readlink $f) in"
                   " *memfd:siteiso-fpm*) echo found;"
                   " printf x >> $f 2>/dev/null && echo written;; esac; done")
    assert "found" in r["out"] and "written" not in r["out"], r


def test_isolated_sites_cannot_read_each_others_files(fweb):
    enable(fweb.sbx, A, B, NESTED)
    for op in ("read", "include"):
        for target in (B_SECRET, NESTED_SECRET, "/home/john/b.example/.env"):
            r = fweb.probe(A, op, target)
            assert not r["ok"], (op, target, r)
        assert not fweb.probe(B, op, A_SECRET)["ok"]
        assert not fweb.probe(NESTED, op, A_SECRET)["ok"]
    assert fweb.probe(B, "read", "/home/john/b.example/.env")["ok"]  # its own app root
    assert fweb.probe(A, "write", f"{A_ROOT}/new.txt")["ok"]


def test_a_siblings_fpm_socket_does_not_exist_in_the_view(fweb):
    sbx = fweb.sbx
    enable(sbx, A, B)
    a_tok = site_record(sbx, "john", A_ROOT).token
    b_tok = site_record(sbx, "john", B_ROOT).token
    assert sbx.exists(fpm_socket(sbx, b_tok))  # it is there, outside
    for target in (fpm_socket(sbx, b_tok), fpm_socket(sbx, a_tok)):
        r = fweb.probe(A, "connect", target)
        assert not r["ok"], r
        assert "No such file" in r["out"], r
        r = fweb.probe(A, "exec", f"test -e {target} && echo yes || echo no")
        assert r["out"].strip() == "no"
    r = fweb.probe(A, "list", FPM_DIR)
    assert not r["ok"], r
    # The records and logs are root's.
    assert not fweb.probe(A, "read", f"{FPM_DIR}/{b_tok}.pid")["ok"]
    assert not fweb.probe(A, "read", f"/var/log/siteiso/fpm/{b_tok}.log")["ok"]


def test_nested_site_through_the_parent_vhost_fails_closed(fweb):
    enable(fweb.sbx, A, NESTED)
    assert fweb.get(NESTED, "/index.php") == (200, "hello from nested.example")
    code, body = fweb.get(A, "/nested/wp-config.php")
    assert "secret-of-nested.example" not in body
    assert code != 200


def test_disable_stops_the_master_and_restores_the_panels_handler(fweb):
    sbx = fweb.sbx
    enable(sbx, A, B)
    rec = site_record(sbx, "john", A_ROOT)
    b_tok = site_record(sbx, "john", B_ROOT).token
    assert fweb.get(A, "/index.php")[0] == 200
    procs = fpm_procs(sbx, rec.pidns)
    m = master(sbx, rec.token)
    b_master = master(sbx, b_tok)
    assert len(procs) >= 2  # the master and the worker that served

    disable(sbx, A)
    assert fweb.get(A, "/index.php") == (200, "hello from a.example")
    assert fweb.probe(A, "read", B_SECRET)["ok"]  # the panel's CGI again
    assert php_pidns(fweb, A) == host_pidns(sbx)
    assert wait_gone(sbx, procs) == []
    assert not alive(sbx, m)
    assert not sbx.exists(fpm_socket(sbx, rec.token))
    assert not sbx.exists(f"{FPM_DIR}/{rec.token}.pid")
    # b keeps its master.
    assert alive(sbx, b_master)
    assert fweb.get(B, "/index.php") == (200, "hello from b.example")


def test_killed_master_is_restarted_on_remount(fweb):
    sbx = fweb.sbx
    enable(sbx, A)
    rec = site_record(sbx, "john", A_ROOT)
    assert fweb.get(A, "/index.php") == (200, "hello from a.example")
    old = fpm_procs(sbx, rec.pidns)
    m = master(sbx, rec.token)
    # A converge that changes nothing keeps the master.
    enable(sbx, A)
    assert alive(sbx, m) and master(sbx, rec.token) == m

    sbx.run(["kill", "-KILL", str(m.pid)])
    assert wait_gone(sbx, [m]) == []
    # (Its worker, orphaned, may go on answering on the socket it holds.)

    r = sbx.cagefsctl("--remount", "john")
    assert r.returncode == 0, r.stderr
    assert fweb.get(A, "/index.php") == (200, "hello from a.example")
    new_rec = site_record(sbx, "john", A_ROOT)
    new = master(sbx, rec.token)
    assert new.pid != m.pid and new.pidns == new_rec.pidns == php_pidns(fweb, A)
    # The workers the killed master left behind are gone, and with them
    # the old view (its holder was retired by the remount).
    assert wait_gone(sbx, old) == []
    old_holder = [p for p in processes(sbx)
                  if p.pid == rec.pid and p.start == rec.start]
    assert wait_gone(sbx, old_holder) == []


def test_remount_moves_a_running_master_into_the_new_view(fweb):
    sbx = fweb.sbx
    enable(sbx, A)
    rec = site_record(sbx, "john", A_ROOT)
    m = master(sbx, rec.token)
    r = sbx.cagefsctl("--remount", "john")
    assert r.returncode == 0, r.stderr
    new_rec = site_record(sbx, "john", A_ROOT)
    assert new_rec.pidns != rec.pidns
    assert wait_gone(sbx, [m]) == []
    assert master(sbx, rec.token).pidns == new_rec.pidns
    assert php_pidns(fweb, A) == new_rec.pidns
    assert not fweb.probe(A, "read", B_SECRET)["ok"]


def test_siteisod_starts_a_dead_master_again_at_once(fweb):
    sbx = fweb.sbx
    enable(sbx, A)
    rec = site_record(sbx, "john", A_ROOT)
    m = master(sbx, rec.token)
    proc = start_daemon(sbx)
    try:
        sbx.run(["kill", "-KILL", str(m.pid)])
        assert wait_gone(sbx, [m]) == []

        def replaced():
            try:
                return master(sbx, rec.token).pid != m.pid
            except (AssertionError, FileNotFoundError, ValueError):
                return False
        # No command runs: the daemon sees the master exit and starts it.
        wait_for(replaced, "a new php-fpm master", timeout=15)
        new = master(sbx, rec.token)
        assert new.pidns == site_record(sbx, "john", A_ROOT).pidns
        assert fweb.get(A, "/index.php") == (200, "hello from a.example")

        # A master stopped on purpose stays stopped.
        disable(sbx, A)
        assert wait_gone(sbx, [new]) == []
        time.sleep(2)
        assert not sbx.exists(f"{FPM_DIR}/{rec.token}.pid")
        assert fpm_procs(sbx, new.pidns) == []
    finally:
        stop_daemon(sbx, proc)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
