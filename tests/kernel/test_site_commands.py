"""enable, disable and list (SPEC §2) with real views behind them."""

from __future__ import annotations

import json

import pytest
from testlib import DOMAINS, fails, ok

pytestmark = pytest.mark.kernel


def test_enable_message_and_list(server):
    ok(server, "--site-isolation-allow-all")
    assert ok(server, "--site-isolation-enable", "Shop.Example.com.", "example.com",
              "shop.example.com") == \
        "Website isolation was enabled for domain(s),\nshop.example.com,example.com\n"
    assert ok(server, "--site-isolation-list") == (
        "Domains with enabled website isolation for user john:\n"
        "example.com\nshop.example.com\n")
    assert json.loads(ok(server, "--site-isolation-list", "--json")) == \
        {"users": {"john": ["example.com", "shop.example.com"]}}


def test_list_orders_users_by_uid_or_as_given(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "jane.example.net", "blog.example.org")
    both = ("Domains with enabled website isolation for user john:\nblog.example.org\n"
            "Domains with enabled website isolation for user jane:\njane.example.net\n")
    assert ok(server, "--site-isolation-list") == both
    assert ok(server, "--site-isolation-list", "jane", "john") == (
        "Domains with enabled website isolation for user jane:\njane.example.net\n"
        "Domains with enabled website isolation for user john:\nblog.example.org\n")


def test_enable_twice_changes_nothing(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com")
    before = server.read("/var/lib/siteiso/state.json")
    assert ok(server, "--site-isolation-enable", "example.com") == \
        "Website isolation was enabled for domain(s),\nexample.com\n"
    assert server.read("/var/lib/siteiso/state.json") == before


def test_second_name_of_a_site_is_recorded_not_a_second_view(server):
    server.set_domains({"example.com": ("john", "/home/john/public_html"),
                        "example.net": ("john", "/home/john/public_html/")})
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com")
    ok(server, "--site-isolation-enable", "example.net")
    st = json.loads(server.read("/var/lib/siteiso/state.json"))
    assert len(st["sites"]) == 1
    (site,) = st["sites"].values()
    assert site["names"] == ["example.com", "example.net"]


def test_disable_message_and_list(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "shop.example.com")
    assert ok(server, "--site-isolation-disable", "example.com") == \
        "Website isolation was disabled for domain(s),\nexample.com\n"
    assert ok(server, "--site-isolation-list") == (
        "Domains with enabled website isolation for user john:\nshop.example.com\n")


def test_disable_works_after_the_domain_left_the_panel(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    server.set_domains({})
    ok(server, "--site-isolation-disable", "blog.example.org")
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"


def test_disable_unknown_domain(server):
    assert fails(server, "--site-isolation-disable", "nosuch.example") == \
        "Please specify existing domain name and try again"


def test_mode_change_never_drops_isolation(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com")
    ok(server, "--site-isolation-toggle-mode")
    assert "example.com" in ok(server, "--site-isolation-list")
    assert fails(server, "--site-isolation-enable", "blog.example.org") == \
        "Website isolation is not allowed for user john"


def test_deny_user_disables_their_sites_only(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "jane.example.net")
    ok(server, "--site-isolation-deny", "john")
    assert ok(server, "--site-isolation-list") == (
        "Domains with enabled website isolation for user jane:\njane.example.net\n")


def test_deny_all_disables_every_site(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "jane.example.net")
    ok(server, "--site-isolation-deny-all")
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"


def test_regenerate_follows_a_renamed_and_a_deleted_domain(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "blog.example.org")
    server.set_domains({"example.com": ("john", "/home/john/public_html")})
    r = server.cagefsctl("--site-isolation-regenerate", "john")
    assert (r.returncode, r.stdout) == (
        0, "Regenerated configuration website isolation for users:\njohn\n")
    assert r.stderr == ("warning: blog.example.org is no longer in the panel for "
                        "john: its isolation ends\n")
    assert ok(server, "--site-isolation-list") == (
        "Domains with enabled website isolation for user john:\nexample.com\n")


def test_docroot_outside_home_is_refused(server):
    server.set_domains({"evil.example": ("john", "/etc")})
    ok(server, "--site-isolation-allow-all")
    assert fails(server, "--site-isolation-enable", "evil.example")
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"


def test_list_json_error(server):
    r = server.cagefsctl("--site-isolation-list", "--json", "nosuch")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"error": "User nosuch does not exist"}


def sites_by_docroot(server):
    st = json.loads(server.read("/var/lib/siteiso/state.json"))
    return {s["docroot"]: s["names"] for s in st["sites"].values()}


def test_regenerate_splits_a_site_whose_names_now_have_two_docroots(server):
    server.set_domains({"example.com": ("john", "/home/john/public_html"),
                        "alias.example.com": ("john", "/home/john/public_html")})
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "alias.example.com")
    server.set_domains({"example.com": ("john", "/home/john/public_html"),
                        "alias.example.com": ("john", "/home/john/blog")})
    ok(server, "--site-isolation-regenerate", "john")
    assert sites_by_docroot(server) == {
        "/home/john/public_html": ["example.com"],
        "/home/john/blog": ["alias.example.com"]}
    r = server.run(["cagefs_enter_site", "alias.example.com", "sh", "-c",
                    "cat /home/john/blog/wp-config.php; "
                    "cat /home/john/public_html/wp-config.php"],
                   user="john", check=False)
    assert "secret-blog.example.org" in r.stdout
    assert "secret-example.com" not in r.stdout
    r = server.run(["cagefs_enter_site", "example.com", "cat",
                    "/home/john/public_html/wp-config.php"], user="john")
    assert "secret-example.com" in r.stdout


def test_regenerate_merges_sites_that_now_share_a_docroot(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "blog.example.org")
    server.set_domains({**DOMAINS,
                        "blog.example.org": ("john", "/home/john/public_html")})
    ok(server, "--site-isolation-regenerate", "john")
    assert sites_by_docroot(server) == {
        "/home/john/public_html": ["blog.example.org", "example.com"]}
    r = server.run(["cagefs_enter_site", "blog.example.org", "sh", "-c",
                    "cat /home/john/public_html/wp-config.php; "
                    "cat /home/john/blog/wp-config.php"], user="john", check=False)
    assert "secret-example.com" in r.stdout
    assert "secret-blog.example.org" not in r.stdout


@pytest.mark.parametrize("docroot", [
    "/home/john/.ssh", "/home/john/mail/www", "/home/john/.cagefs/websites",
    "/home/john/backup-2024/site", "/home/john/bin", "/home/john/.config/www",
])
def test_docroot_in_a_path_no_site_may_own_is_refused(server, docroot):
    server.sh(f"mkdir -p {docroot}", user="john")
    server.set_domains({**DOMAINS, "odd.example": ("john", docroot)})
    ok(server, "--site-isolation-allow-all")
    err = fails(server, "--site-isolation-enable", "odd.example")
    assert err.startswith(f"refusing docroot '{docroot}': it lies in '/home/john/")
    assert err.endswith("which every site view keeps hidden or read-only")
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"
