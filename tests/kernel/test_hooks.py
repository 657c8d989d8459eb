"""Panel hooks (SPEC §6): renames keep isolation, deletions drop it,
restores regenerate."""


import pytest
from testlib import DOMAINS, listing, ok

pytestmark = pytest.mark.kernel


def hook(sbx, *args):
    return sbx.run(["siteiso", "hook", *args], check=False)




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
    # Before the panel knows: refused, nothing changed.
    r = hook(server, "post_modify_user", "modify", "-u", "jane",
             "--new-username", "janet")
    assert (r.returncode, r.stderr) == (1, (
        "the panel still lists jane.example.net for jane: run this hook after the "
        "panel has renamed the account\n"))
    assert listing(server) == {"jane": ["jane.example.net"]}
    server.set_domains({**DOMAINS,
                        "jane.example.net": ("janet", "/home/jane/public_html")})
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


def test_domain_rename_the_panel_does_not_know_changes_nothing(server):
    """Called before the panel renamed the domain, the hook would record a
    name the next regenerate drops: it is refused instead."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    r = hook(server, "post_modify_domain", "modify", "-u", "john", "--domain",
             "blog.example.org", "--new-domain", "blog.example.net")
    assert r.returncode == 1
    assert r.stderr == ("the panel does not list blog.example.net instead of "
                        "blog.example.org for john: run this hook after the panel "
                        "has renamed the domain\n")
    assert listing(server) == {"john": ["blog.example.org"]}


def test_domain_rename_onto_another_sites_name_is_refused(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com", "jane.example.net")
    for new in ("jane.example.net", "shop.example.com"):
        r = hook(server, "post_modify_domain", "modify", "-u", "john", "--domain",
                 "example.com", "--new-domain", new)
        assert r.returncode == 1, r.stderr
    assert listing(server) == {"john": ["example.com"], "jane": ["jane.example.net"]}


def test_renamed_user_with_a_moved_home_keeps_isolation(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org", "example.com")
    server.run(["usermod", "-l", "johnny", "-d", "/home/johnny", "-m", "john"])
    server.users["johnny"] = server.users["john"]
    server.set_domains({"blog.example.org": ("johnny", "/home/johnny/blog"),
                        "example.com": ("johnny", "/home/johnny/public_html")})
    r = hook(server, "post_modify_user", "modify", "-u", "john",
             "--new-username", "johnny")
    assert r.returncode == 0, r.stderr
    assert listing(server) == {"johnny": ["blog.example.org", "example.com"]}
    r = server.run(["cagefs_enter_site", "blog.example.org", "sh", "-c",
                    "cat /home/johnny/blog/wp-config.php; ls /home/johnny/public_html"],
                   user="johnny", check=False)
    assert "secret-blog.example.org" in r.stdout
    assert "wp-config.php" not in r.stdout.split("secret-blog.example.org")[1]


def test_user_rename_onto_another_account_is_refused(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    r = hook(server, "post_modify_user", "modify", "-u", "john",
             "--new-username", "jane")
    assert r.returncode == 1
    assert r.stderr.startswith("user jane (uid ")
    assert listing(server) == {"john": ["blog.example.org"]}
    assert server.run(["cagefs_enter_site", "blog.example.org", "true"],
                      user="john", check=False).returncode == 0
