"""A hostile hosting customer against siteiso's admin side: regenerate's
regrouping, the panel hooks, commit()'s undo and the panel readers.

john is the attacker: he owns his home and everything in it and changes
panel data the way a hosting customer can (adds and deletes his domains,
picks docroots under his home). jane is another account. Each test asserts
the safe behaviour, so it fails while the attack works.
"""

from __future__ import annotations

import json

import pytest
from testlib import DOMAINS, entered, listing, ok, start_daemon, stop_daemon, wait_for

pytestmark = pytest.mark.kernel

STATE = "/var/lib/siteiso/state.json"
CLAIM = "claim.example.net"
BREAK_CAGEFS = "rm -rf ~/.cagefs && ln -s /etc ~/.cagefs"






def hook(sbx, *args):
    return sbx.run(["siteiso", "hook", *args], check=False)


def recorded_sites(sbx):
    return json.loads(sbx.read(STATE))["sites"].values()


# ---- a name that left one account and went to another -----------------------------

def _john_claims_then_breaks(sbx):
    """john isolates CLAIM, breaks his siteiso storage so that every converge
    of his fails, then deletes CLAIM in the panel; jane then adds it."""
    sbx.make_tree("john", {"/home/john/claim/index.php": "<?php echo 'john';\n"})
    sbx.make_tree("jane", {"/home/jane/claim/index.php": "<?php echo 'jane';\n"})
    ok(sbx, "--site-isolation-allow-all")
    sbx.set_domains({**DOMAINS, CLAIM: ("john", "/home/john/claim")})
    ok(sbx, "--site-isolation-enable", CLAIM, "blog.example.org")
    sbx.sh(BREAK_CAGEFS, user="john")
    sbx.set_domains(DOMAINS)                     # john deleted his domain
    # What the admin (or siteisod) does after a panel change: regenerate.
    r = sbx.cagefsctl("--site-isolation-regenerate", "john")
    sbx.set_domains({**DOMAINS, CLAIM: ("jane", "/home/jane/claim")})
    return r


def test_a_regenerate_that_fails_on_a_home_changes_nothing(server):
    """john's home makes his views fail: the regenerate is an error that
    names him and changes nothing (SPEC §2), so CLAIM stays recorded as his
    until it can be converged; the next test shows it cannot keep jane from
    the name."""
    before = listing(server)
    r = _john_claims_then_breaks(server)
    assert r.returncode == 1 and "user john:" in r.stderr, (r.stdout, r.stderr)
    assert listing(server) == {"john": sorted([CLAIM, "blog.example.org"])}
    assert before == {}


def test_enable_of_a_name_recorded_for_another_account_isolates_it(server):
    """jane's CLAIM is enabled by the admin: it must end up isolated as
    jane's site, or the command must fail; never a success message while
    the name stays recorded as john's (jane's site served unisolated)."""
    _john_claims_then_breaks(server)
    r = server.cagefsctl("--site-isolation-enable", CLAIM)
    assert r.returncode == 0, r.stderr
    assert f"warning: {CLAIM} was isolated as a site of john" in r.stderr
    assert listing(server) == {"jane": [CLAIM], "john": ["blog.example.org"]}
    assert entered(server, CLAIM, "jane", "cat", "/home/jane/claim/index.php")
    # jane's vhost includes /etc/apache2/siteiso/<domain>.conf (README): it
    # is her site's include (her suexec user, handler, docroot), not john's.
    inc = f"/etc/apache2/siteiso/{CLAIM}.conf"

    def include_is_janes():
        text = server.read(inc)
        return "SuexecUserGroup jane jane" in text and "/home/john" not in text
    assert include_is_janes()
    # john mends his home: converging his views removes his own includes,
    # never the one jane's site has at that path now.
    server.sh("rm ~/.cagefs", user="john")
    ok(server, "--site-isolation-regenerate", "john")
    assert include_is_janes()
    assert listing(server) == {"jane": [CLAIM], "john": ["blog.example.org"]}


# ---- siteisod's regenerate after a panel change -------------------------------------

def test_panel_change_for_jane_is_not_undone_by_johns_home(server):
    """A change of the panel file makes siteisod regenerate every owner in
    one commit: john's broken home must not undo jane's part of it (jane's
    deleted domain keeps its isolation and view otherwise)."""
    ok(server, "--site-isolation-allow-all")
    server.make_tree("jane", {"/home/jane/old/index.php": "<?php echo 1;\n"})
    server.set_domains({**DOMAINS, "old.example.net": ("jane", "/home/jane/old")})
    ok(server, "--site-isolation-enable", "blog.example.org", "jane.example.net",
       "old.example.net")
    proc = start_daemon(server)
    try:
        server.sh(BREAK_CAGEFS, user="john")
        server.set_domains(DOMAINS)              # jane deleted old.example.net
        wait_for(lambda: "old.example.net" not in listing(server).get("jane", []),
                 "jane's deleted domain to lose isolation", timeout=15)
    finally:
        stop_daemon(server, proc)


# ---- cPanel: a mapped spelling of another account's domain ---------------------------

def test_cpanel_mapped_spelling_does_not_hide_another_accounts_domain(server):
    """john adds, under a spelling cPanel keeps as typed, a name that maps
    to jane's domain: jane's own record must still be found (enable works)."""
    ok(server, "--site-isolation-allow-all")
    server.run(["rm", "-f", "/etc/siteiso/domains.json"])
    lines = [
        "example.com: john==root==main==example.com==/home/john/public_html=="
        "127.0.0.1:80==",
        "jane.example.net: jane==root==main==jane.example.net=="
        "/home/jane/public_html==127.0.0.1:80==",
        "jane.exam\u00adple.net: john==root==parked==example.com=="
        "/home/john/public_html==127.0.0.1:80==",
    ]
    server.write("/etc/userdatadomains", "\n".join(lines) + "\n")
    r = server.cagefsctl("--site-isolation-enable", "jane.example.net")
    assert r.returncode == 0, r.stderr
    assert listing(server) == {"jane": ["jane.example.net"]}


# ---- PHP settings kept across disable, keyed by the name only ------------------------

def test_php_settings_of_another_account_are_not_inherited(server):
    """Settings kept at disable are keyed by domain name only: a name that
    moves to another account must not bring its old owner's PHP choice."""
    have = server.run(["sh", "-c", "ls /usr/bin/php8.2"], check=False)
    if have.returncode != 0:
        pytest.skip("needs php8.2")
    server.make_tree("john", {"/home/john/claim/index.php": "<?php echo 1;\n"})
    server.make_tree("jane", {"/home/jane/claim/index.php": "<?php echo 2;\n"})
    ok(server, "--site-isolation-allow-all")
    server.set_domains({**DOMAINS, CLAIM: ("john", "/home/john/claim")})
    ok(server, "--site-isolation-enable", CLAIM, "jane.example.net")
    fresh = next(s["php"] for s in recorded_sites(server)
                 if "jane.example.net" in s["names"])
    r = server.run(["selectorctl", "--disable-user-extensions=mbstring",
                    "--version", fresh["version"], "--domain", CLAIM,
                    "--user", "john"], check=False)
    assert r.returncode == 0, r.stderr
    ok(server, "--site-isolation-disable", CLAIM)
    server.set_domains({**DOMAINS, CLAIM: ("jane", "/home/jane/claim")})
    ok(server, "--site-isolation-enable", CLAIM)
    got = next(s["php"] for s in recorded_sites(server) if CLAIM in s["names"])
    assert got == fresh


# ---- blocked routes, kept as regression tests ----------------------------------------

def test_rename_hook_cannot_take_another_accounts_isolated_name(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org", "jane.example.net")
    server.set_domains({**{d: v for d, v in DOMAINS.items()
                           if d != "blog.example.org"},
                        "jane.example.net": ("john", "/home/john/blog")})
    r = hook(server, "post_modify_domain", "modify", "-u", "john", "--domain",
             "blog.example.org", "--new-domain", "jane.example.net")
    assert r.returncode == 1
    assert listing(server) == {"john": ["blog.example.org"],
                               "jane": ["jane.example.net"]}


def test_regenerate_does_not_follow_a_docroot_into_another_home(server):
    """john points his blog's docroot through a symlink at jane's docroot:
    refused, the site stays where it was, jane's files stay out of view."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    server.sh("ln -s /home/jane/public_html ~/evil", user="john")
    server.set_domains({**DOMAINS, "blog.example.org": ("john", "/home/john/evil")})
    r = server.cagefsctl("--site-isolation-regenerate", "john")
    assert r.returncode == 0, r.stderr
    assert "blog.example.org" in r.stderr          # warned, kept
    sites = [s for s in recorded_sites(server) if "blog.example.org" in s["names"]]
    assert [s["docroot"] for s in sites] == ["/home/john/blog"]
    assert not entered(server, "blog.example.org", "john", "cat",
                       "/home/jane/public_html/wp-config.php")


def test_regroup_split_and_merge_keep_one_site_per_docroot(server):
    """Names moved between docroots by the panel: one site a docroot, no
    name in two sites, and each name's view shows its own docroot only."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "blog.example.org",
       "shop.example.com")
    # blog moves onto example.com's docroot (merge); shop moves to blog's
    # old docroot (a swap of trees).
    server.set_domains({**DOMAINS,
                        "blog.example.org": ("john", "/home/john/public_html"),
                        "shop.example.com": ("john", "/home/john/blog")})
    r = server.cagefsctl("--site-isolation-regenerate", "john")
    assert r.returncode == 0, r.stderr
    sites = list(recorded_sites(server))
    by_root = {s["docroot"]: sorted(s["names"]) for s in sites}
    assert by_root == {"/home/john/public_html": ["blog.example.org", "example.com"],
                       "/home/john/blog": ["shop.example.com"]}
    assert entered(server, "shop.example.com", "john", "cat",
                   "/home/john/blog/wp-config.php")
    assert not entered(server, "shop.example.com", "john", "cat",
                       "/home/john/public_html/wp-config.php")
