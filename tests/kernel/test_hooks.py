"""Panel hooks (SPEC §6): renames keep isolation, deletions drop it,
restores regenerate."""

import json

import pytest
from testlib import ok

pytestmark = pytest.mark.kernel


def hook(sbx, *args):
    return sbx.run(["siteiso", "hook", *args], check=False)


def listing(sbx):
    return json.loads(ok(sbx, "--site-isolation-list", "--json"))["users"]


def test_renamed_domain_keeps_isolation(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    server.set_domains({"blog.example.net": ("john", "/home/john/blog")})
    r = hook(server, "post_modify_domain", "modify", "-u", "john", "--domain",
             "blog.example.org", "--new-domain", "Blog.Example.NET")
    assert r.returncode == 0, r.stderr
    assert listing(server) == {"john": ["blog.example.net"]}
    r = server.run(["cagefs_enter_site", "blog.example.net", "ls",
                    "/home/john/public_html"], user="john", check=False)
    assert r.returncode != 0


def test_deleted_user_loses_isolation_and_its_views(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "jane.example.net", "blog.example.org")
    uid = server.users["jane"].uid
    assert server.exists(f"/run/siteiso/index/{uid}")
    server.run(["userdel", "jane"])
    r = hook(server, "post_modify_user", "delete", "-u", "jane")
    assert r.returncode == 0, r.stderr
    assert listing(server) == {"john": ["blog.example.org"]}
    assert not server.exists(f"/run/siteiso/index/{uid}")


def test_renamed_user_keeps_isolation(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "jane.example.net")
    server.run(["usermod", "-l", "janet", "jane"])
    server.users["janet"] = server.users["jane"]
    r = hook(server, "post_modify_user", "modify", "-u", "jane",
             "--new-username", "janet")
    assert r.returncode == 0, r.stderr
    assert listing(server) == {"janet": ["jane.example.net"]}
    r = server.run(["cagefs_enter_site", "jane.example.net", "true"], user="janet",
                   check=False)
    assert r.returncode == 0, r.stderr


def test_restored_account_with_moved_docroot_is_regenerated(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    server.run(["mv", "/home/john/blog", "/home/john/blog2"], user="john")
    server.set_domains({"blog.example.org": ("john", "/home/john/blog2")})
    r = hook(server, "post_restore_account", "-u", "john")
    assert r.returncode == 0, r.stderr
    r = server.run(["cagefs_enter_site", "blog.example.org", "cat",
                    "/home/john/blog2/wp-config.php"], user="john", check=False)
    assert r.returncode == 0 and "secret-blog" in r.stdout


def test_hook_with_bad_names_changes_nothing(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    r = hook(server, "post_modify_domain", "modify", "-u", "john", "--domain",
             "blog.example.org", "--new-domain", "../../etc")
    assert r.returncode == 1 and r.stderr
    assert listing(server) == {"john": ["blog.example.org"]}
