"""Site paths the admin adds in /etc/siteiso/sites.d/<domain>.conf (SPEC
§4.2): the path becomes the site's own (read-write in its view, gone from
its siblings'); a line that cannot be one is left out with a warning on
stderr, never silently, and never hands another site's files over."""

from __future__ import annotations

import pytest
from testlib import ok

pytestmark = pytest.mark.kernel

BLOG = "blog.example.org"
SHARED = "/home/john/blog-uploads"
SHOP_SECRET = "/home/john/public_html/shop/wp-config.php"


def enter(sbx, site, script):
    return sbx.run(["cagefs_enter_site", site, "sh", "-c", script], user="john",
                   check=False)


def test_an_added_path_is_the_sites_own(server):
    server.make_tree("john", {f"{SHARED}/photo.txt": "a photo\n"})
    server.write(f"/etc/siteiso/sites.d/{BLOG}.conf", f"# uploads\n{SHARED}\n")
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", BLOG, "example.com")
    r = enter(server, BLOG, f"cat {SHARED}/photo.txt && touch {SHARED}/new")
    assert r.returncode == 0 and r.stdout == "a photo\n", r.stderr
    assert enter(server, "example.com", f"ls {SHARED}").returncode != 0


def test_lines_that_cannot_be_site_paths_are_left_out_and_said(server):
    """One line names a sibling's docroot (it would give blog shop's
    files), one the home itself (every site's), one another account's
    home: each is refused on stderr; the good line still applies."""
    server.make_tree("john", {f"{SHARED}/photo.txt": "a photo\n"})
    server.write(f"/etc/siteiso/sites.d/{BLOG}.conf",
                 f"/home/john/public_html/shop\n/home/john\n/home/jane/public_html\n"
                 f"{SHARED}\n")
    ok(server, "--site-isolation-allow-all")
    r = server.cagefsctl("--site-isolation-enable", BLOG, "shop.example.com")
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]
    conf = f"/etc/siteiso/sites.d/{BLOG}.conf"
    assert len(warned) == 3, r.stderr
    assert warned[0].startswith(f"warning: {conf}: skipping "
                                "'/home/john/public_html/shop': it holds "
                                "/home/john/public_html/shop, the docroot of "
                                "another site")
    assert all(w.startswith(f"warning: {conf}: skipping ") for w in warned)
    assert "'/home/jane/public_html'" in warned[2]
    r = enter(server, BLOG, f"cat {SHOP_SECRET}; ls /home/jane; cat {SHARED}/photo.txt")
    assert "secret-shop" not in r.stdout
    assert r.stdout.endswith("a photo\n"), (r.stdout, r.stderr)
    # The same lines are said again when the admin applies them (remount).
    r = server.cagefsctl("--remount", "john")
    assert r.returncode == 0
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("warning: ")]) == 3
