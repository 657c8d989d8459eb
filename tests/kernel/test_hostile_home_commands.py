"""One account's hostile home never fails a command about another account,
and a command that fails because of a home changes nothing (SPEC §2:
errors change nothing; §4.4: everything under a home is its user's)."""

from __future__ import annotations

import json

import pytest
from testlib import DENY_ALL, entered, ok, start_daemon, state, stop_daemon

pytestmark = pytest.mark.kernel

STATE = "/var/lib/siteiso/state.json"
# john replaces the directory siteiso keeps his sites' storage in.
BREAK_CAGEFS = {
    "file": "rm -rf ~/.cagefs && echo x > ~/.cagefs",
    "symlink": "rm -rf ~/.cagefs && ln -s /etc ~/.cagefs",
}




@pytest.fixture(params=list(BREAK_CAGEFS))
def broken_john(server, request):
    """john has an isolated site, then breaks his home's siteiso storage."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    server.sh(BREAK_CAGEFS[request.param], user="john")
    return server


@pytest.mark.parametrize("args", [
    ["--site-isolation-toggle-mode"], ["--site-isolation-allow", "jane"],
    ["--site-isolation-allow-all"], ["--site-isolation-enable", "jane.example.net"],
    ["--site-isolation-deny", "jane"], ["--remount", "jane"],
])
def test_another_accounts_home_does_not_fail_the_command(broken_john, args):
    sbx = broken_john
    r = sbx.cagefsctl(*args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(("Website isolation", "Remounted"))
    assert "Traceback" not in r.stderr
    if args == ["--site-isolation-toggle-mode"]:
        assert sbx.exists(DENY_ALL)
    if args[0] == "--site-isolation-enable":
        assert entered(sbx, "jane.example.net", "jane")
    # john's own views are still there, his error only a warning.
    assert entered(sbx, "blog.example.org", "john")
    for line in r.stderr.splitlines():
        assert line.startswith("warning: user john: "), r.stderr


def test_remount_all_names_the_home_that_failed(broken_john):
    sbx = broken_john
    ok(sbx, "--site-isolation-enable", "jane.example.net")
    r = sbx.cagefsctl("--remount-all")
    assert r.returncode == 1
    assert r.stderr.startswith("user john: refusing /home/john/.cagefs"), r.stderr
    assert r.stdout == ""
    assert entered(sbx, "jane.example.net", "jane")


def test_enable_that_fails_on_the_home_changes_nothing(broken_john):
    sbx = broken_john
    before = (sbx.read(STATE), state(sbx))
    r = sbx.cagefsctl("--site-isolation-enable", "jane.example.net", "example.com")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("user john: refusing /home/john/.cagefs"), r.stderr
    assert (sbx.read(STATE), state(sbx)) == before
    assert ok(sbx, "--site-isolation-list") == (
        "Domains with enabled website isolation for user john:\nblog.example.org\n")
    # jane's view, built before john's failed, is gone again.
    assert not entered(sbx, "jane.example.net", "jane")
    assert not sbx.exists(f"/run/siteiso/index/{sbx.users['jane'].uid}")


def test_disable_of_a_users_last_site_works_on_a_broken_home(broken_john):
    sbx = broken_john
    assert ok(sbx, "--site-isolation-disable", "blog.example.org") == \
        "Website isolation was disabled for domain(s),\nblog.example.org\n"
    assert ok(sbx, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"
    assert not entered(sbx, "blog.example.org", "john")


def test_user_request_is_not_failed_by_another_accounts_home(broken_john):
    sbx = broken_john
    daemon = start_daemon(sbx)
    try:
        r = sbx.run(["cagefsctl-user", "site-isolation-enable", "--domain",
                     "jane.example.net"], user="jane", check=False)
    finally:
        stop_daemon(sbx, daemon)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout) == {"result": "success",
                                    "enabled_sites": ["jane.example.net"]}
    assert "john" not in r.stdout + r.stderr
    assert entered(sbx, "jane.example.net", "jane")
