"""Hard links and symlinks between sites' trees are reported at enable and
regenerate, not prevented (SPEC §4.9)."""

import pytest
from testlib import ok

pytestmark = pytest.mark.kernel


def test_links_between_sites_are_reported(server):
    server.run(["ln", "/home/john/public_html/wp-config.php",
                "/home/john/blog/copy-of-a.php"], user="john")
    server.run(["ln", "-s", "../public_html/wp-config.php",
                "/home/john/blog/peek.php"], user="john")
    ok(server, "--site-isolation-allow-all")
    r = server.cagefsctl("--site-isolation-enable", "example.com", "blog.example.org")
    assert r.returncode == 0
    assert r.stdout == ("Website isolation was enabled for domain(s),\n"
                        "example.com,blog.example.org\n")
    assert "hard link shared between sites" in r.stderr
    assert "/home/john/blog/copy-of-a.php" in r.stderr
    assert "symlink into another site: '/home/john/blog/peek.php'" in r.stderr
    r = server.cagefsctl("--site-isolation-regenerate", "john")
    assert r.returncode == 0 and "hard link shared between sites" in r.stderr


def test_links_inside_one_site_are_not_reported(server):
    server.run(["ln", "-s", "wp-config.php", "/home/john/blog/alias.php"],
               user="john")
    ok(server, "--site-isolation-allow-all")
    r = server.cagefsctl("--site-isolation-enable", "example.com", "blog.example.org")
    assert r.returncode == 0 and r.stderr == ""
