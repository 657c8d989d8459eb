"""A command killed at any step leaves the old or the new recorded state, and
the next command converges (SPEC §2 "Atomicity")."""

from __future__ import annotations

import pytest
from testlib import ok, state

from siteiso.state.store import FAULT_POINTS

pytestmark = pytest.mark.kernel

STATE = "/var/lib/siteiso/state.json"

SCENARIOS = {
    # name: (set-up commands, the command that is killed)
    "allow-all": ([], ["--site-isolation-allow-all"]),
    "enable": ([["--site-isolation-allow-all"]],
               ["--site-isolation-enable", "example.com", "blog.example.org"]),
    "disable": ([["--site-isolation-allow-all"],
                 ["--site-isolation-enable", "example.com"]],
                ["--site-isolation-disable", "example.com"]),
    "deny": ([["--site-isolation-allow-all"],
              ["--site-isolation-enable", "example.com"]],
             ["--site-isolation-deny", "john"]),
    "deny-all": ([["--site-isolation-allow-all"],
                  ["--site-isolation-enable", "blog.example.org"]],
                 ["--site-isolation-deny-all"]),
}


def read_state(sbx) -> str | None:
    r = sbx.run(["cat", STATE], check=False)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_killed_command_leaves_old_or_new_state(server, scenario, point):
    setup, cmd = SCENARIOS[scenario]
    for args in setup:
        ok(server, *args)
    old = read_state(server)
    r = server.run(["cagefsctl", *cmd], check=False,
                   env={"SITEISO_FAULT": point})
    starts_views = scenario == "enable"
    if point == "holder-started" and not starts_views:
        assert r.returncode == 0, r.stderr     # this command starts no view
    else:
        assert r.returncode in (-9, 137), (r.returncode, r.stdout, r.stderr)
    after_crash = read_state(server)
    # The command again, without the fault: it converges.
    out = ok(server, *cmd)
    assert out.startswith("Website isolation was")
    final = read_state(server)
    assert after_crash in (old, final)
    # Mirrors agree with the recorded state after convergence.
    s = state(server)
    if scenario == "deny-all":
        assert not s["flag"] and s["deny_all"]
    else:
        assert s["flag"] and s["allow_all"]
        assert s["denied"] == (["john"] if scenario == "deny" else [])
    listing = ok(server, "--site-isolation-list")
    if scenario == "enable":
        assert "blog.example.org" in listing and "example.com" in listing
        for site in ("example.com", "blog.example.org"):
            r = server.run(["cagefs_enter_site", site, "true"], user="john",
                           check=False)
            assert r.returncode == 0, r.stderr
    if scenario in ("disable", "deny", "deny-all"):
        assert listing == "No users with enabled Website isolation\n"
    # No holder is left running that the index does not name.
    index = server.sh("cat /run/siteiso/index/* 2>/dev/null | "
                      "grep -cE '^(site|cage|retired)'", check=False).stdout.strip()
    assert holders_running(server) <= int(index or 0)


def holders_running(sbx) -> int:
    out = sbx.sh("ps -eo user=,args= | grep '^root .*siteiso-holder' | grep -v grep "
                 "| wc -l", check=False).stdout
    return int(out.strip() or 0)


@pytest.mark.parametrize("cleanup", [
    ["--site-isolation-disable", "example.com"],
    ["--site-isolation-regenerate", "john"],
])
def test_disable_and_regenerate_clean_up_leftovers(server, cleanup):
    """deny-all killed once its state is written leaves running views behind
    (flag absent, mode set); disable and regenerate remove them."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "blog.example.org")
    r = server.run(["cagefsctl", "--site-isolation-deny-all"], check=False,
                   env={"SITEISO_FAULT": "state-written"})
    assert r.returncode in (-9, 137)
    assert holders_running(server) > 0
    out = ok(server, *cleanup)
    assert out.startswith(("Website isolation was disabled for domain(s),\n",
                           "Regenerated configuration website isolation"))
    s = state(server)
    assert (s["flag"], s["deny_all"], s["allowed"]) == (False, True, [])
    assert holders_running(server) == 0
    for site in ("example.com", "blog.example.org"):
        r = server.run(["cagefs_enter_site", site, "true"], user="john", check=False)
        assert r.returncode != 0
    assert server.run(["ls", "/run/siteiso/index"]).stdout == ""
