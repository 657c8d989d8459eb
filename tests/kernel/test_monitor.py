"""siteisod's monitor (SPEC §7): docroot moves and panel changes regenerate
views, host unmounts are followed, and an idle daemon does not wake up."""

from __future__ import annotations

import time

import pytest
from testlib import ok

pytestmark = pytest.mark.kernel


def wait_for(check, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.fixture(params=["started-after-allow-all", "started-on-a-fresh-server"])
def daemon(server, request):
    """siteisod after allow-all, or first of all (as the README's first steps
    order it: no command has run yet, /var/lib/siteiso does not exist)."""
    fresh = request.param == "started-on-a-fresh-server"
    if fresh:
        assert not server.exists("/var/lib/siteiso")
    else:
        ok(server, "--site-isolation-allow-all")
    p = server.popen(["siteiso", "daemon"])
    assert wait_for(lambda: server.exists("/run/siteiso/siteisod.pid"))
    if fresh:
        ok(server, "--site-isolation-allow-all")
    yield server
    p.terminate()
    p.wait(timeout=30)


def test_moved_docroot_gets_a_rebuilt_view(daemon):
    sbx = daemon
    ok(sbx, "--site-isolation-enable", "blog.example.org")
    time.sleep(1)
    sbx.run(["mv", "/home/john/blog", "/home/john/blog2"], user="john")
    sbx.set_domains({"blog.example.org": ("john", "/home/john/blog2"),
                     "example.com": ("john", "/home/john/public_html")})

    def moved():
        r = sbx.run(["cagefs_enter_site", "blog.example.org", "cat",
                     "/home/john/blog2/wp-config.php"], user="john", check=False)
        return r.returncode == 0 and "secret-blog" in r.stdout
    assert wait_for(moved)


def test_domain_deleted_in_the_panel_loses_isolation(daemon):
    sbx = daemon
    ok(sbx, "--site-isolation-enable", "blog.example.org", "example.com")
    time.sleep(1)
    sbx.set_domains({"example.com": ("john", "/home/john/public_html")})
    assert wait_for(lambda: "blog.example.org" not in
                    ok(sbx, "--site-isolation-list"))
    assert "example.com" in ok(sbx, "--site-isolation-list")


def test_host_unmount_is_followed_by_the_daemon(sandbox):
    sbx = sandbox
    sbx.run(["mkdir", "-p", "/srv/homes"])
    sbx.run(["mount", "-t", "tmpfs", "homes", "/srv/homes"])
    sbx.run(["useradd", "-m", "-d", "/srv/homes/john", "-U", "john"])
    sbx.run(["chmod", "711", "/srv/homes/john"])
    sbx.make_tree("john", {"/srv/homes/john/site/index.php": "<?php\n"})
    sbx.set_domains({"site.example": ("john", "/srv/homes/john/site")})
    ok(sbx, "--site-isolation-allow-all")
    ok(sbx, "--site-isolation-enable", "site.example")
    p = sbx.popen(["siteiso", "daemon"])
    try:
        assert wait_for(lambda: sbx.exists("/run/siteiso/siteisod.pid"))
        time.sleep(0.5)
        dev = sbx.sh("mountpoint -d /srv/homes").stdout.strip()
        uid = sbx.run(["id", "-u", "john"]).stdout.strip()
        holders = [line.split("\t")[2] for line in
                   sbx.read(f"/run/siteiso/index/{uid}").splitlines()
                   if line.startswith(("site\t", "cage\t"))]
        sbx.run(["umount", "-l", "/srv/homes"])

        def released():
            return all(dev not in sbx.read(f"/proc/{pid}/mountinfo")
                       for pid in holders)
        assert wait_for(released)
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_idle_daemon_with_isolated_sites_does_not_wake_up(daemon):
    sbx = daemon
    ok(sbx, "--site-isolation-enable", "blog.example.org", "example.com")
    time.sleep(2)
    pid = sbx.read("/run/siteiso/siteisod.pid").strip()

    def switches():
        out = sbx.sh(f"cat /proc/{pid}/task/*/status | grep ^voluntary_ctxt "
                     "| awk '{s+=$2} END {print s}'").stdout
        return int(out)
    before = switches()
    time.sleep(3)
    assert switches() == before


def test_crontab_rewritten_by_the_user_gets_the_cron_shell_back(daemon):
    sbx = daemon
    ok(sbx, "--site-isolation-enable", "blog.example.org")
    spool = "/var/spool/cron/crontabs/john"
    sbx.run(["crontab", "-"], user="john", input="* * * * * true\n")
    assert wait_for(lambda: "siteiso-cron-shell" in sbx.read(spool))
    assert "* * * * * true" in sbx.run(["crontab", "-l"], user="john").stdout
