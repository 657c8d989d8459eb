"""A hostile hosting customer against the changes of session 3: names that
move between accounts (enable, cagefsctl-user enable), includes that carry
their site's token, sites.d lines refused for holding another site's
docroot, and the cPanel reader keeping the file's spelling.

john is the attacker: he owns his home and everything in it and adds,
deletes and renames his own domains in the panel. jane is another account.
Each test asserts the safe behaviour, so it fails while the attack works.
"""

from __future__ import annotations

import json

import pytest
from testlib import DOMAINS, entered, listing, ok, start_daemon, stop_daemon

pytestmark = pytest.mark.kernel

STATE = "/var/lib/siteiso/state.json"
INCLUDES = "/etc/apache2/siteiso"

# jane's IDN domain, as a panel that keeps U-labels lists it, and the same
# name as an A-label (what john types when he adds "his" domain).
U_LABEL = "b\u00fccher.example"
A_LABEL = "xn--bcher-kva.example"






def user_enable(sbx, user, domain):
    return sbx.run(["cagefsctl-user", "site-isolation-enable", "--domain", domain],
                   user=user, check=False)


def panel(entries):
    """domains.json from (name, owner, docroot) in file order (duplicates
    kept: a panel's writer may list one name twice)."""
    body = ",\n".join(
        f' {json.dumps(n)}: {{"owner": "{o}", "document_root": "{d}", '
        f'"is_main": false}}' for n, o, d in entries)
    return "{\n" + body + "\n}\n"


def base_entries():
    return [(n, o, d) for n, (o, d) in DOMAINS.items()]


def _jane_isolates_her_idn_site(sbx):
    sbx.make_tree("jane", {
        "/home/jane/buecher/index.php": "<?php echo 'jane';\n",
        "/home/jane/buecher/wp-config.php": "<?php $pw='jane-idn';\n"})
    sbx.make_tree("john", {"/home/john/grab/index.php": "<?php echo 'john';\n"})
    ok(sbx, "--site-isolation-allow-all")
    sbx.write("/etc/siteiso/domains.json",
              panel([*base_entries(), (U_LABEL, "jane", "/home/jane/buecher")]))
    ok(sbx, "--site-isolation-enable", U_LABEL)
    assert listing(sbx) == {"jane": [A_LABEL]}


# ---- 1. a live site's name taken by another account ------------------------------

def test_user_cannot_take_a_live_idn_site_by_adding_its_a_label(server):
    """The panel keeps jane's IDN domain as she typed it (U-label); john adds
    the same name as an A-label, a spelling such a panel does not see as a
    duplicate. siteiso's reader keeps the "canonical" (A-label) record, so
    the panel seems to give the name to john, and cagefsctl-user enable,
    which now goes by the panel only, moves jane's isolated, live site to
    john: her include becomes his (SuexecUserGroup john), her site leaves
    her view. A name two accounts list is ambiguous: it must stay jane's."""
    _jane_isolates_her_idn_site(server)
    daemon = start_daemon(server)
    try:
        server.write("/etc/siteiso/domains.json",
                     panel([*base_entries(), (U_LABEL, "jane", "/home/jane/buecher"),
                            (A_LABEL, "john", "/home/john/grab")]))
        r = user_enable(server, "john", A_LABEL)
    finally:
        stop_daemon(server, daemon)
    assert listing(server).get("jane") == [A_LABEL], (r.stdout, r.stderr)
    assert "john" not in listing(server)
    text = server.read(f"{INCLUDES}/{A_LABEL}.conf")
    assert "SuexecUserGroup jane jane" in text
    assert entered(server, A_LABEL, "jane", "cat", "/home/jane/buecher/index.php")


def test_user_cannot_take_a_live_site_through_a_duplicate_panel_key(server):
    """A panel whose writer lists a name once per account that has it (the
    integration scripts' or domains.json's object with one key twice): JSON
    readers keep the last silently, so the name reads as john's, and his
    cagefsctl-user enable takes jane's isolated site. Two owners for one
    name must read as ambiguous (not found), never as the last one's."""
    ok(server, "--site-isolation-allow-all")
    server.make_tree("john", {"/home/john/grab/index.php": "<?php echo 'john';\n"})
    ok(server, "--site-isolation-enable", "jane.example.net")
    daemon = start_daemon(server)
    try:
        server.write("/etc/siteiso/domains.json",
                     panel([*base_entries(),
                            ("jane.example.net", "john", "/home/john/grab")]))
        r = user_enable(server, "john", "jane.example.net")
    finally:
        stop_daemon(server, daemon)
    assert r.returncode != 0, r.stdout
    assert listing(server) == {"jane": ["jane.example.net"]}
    assert "SuexecUserGroup jane jane" in server.read(
        f"{INCLUDES}/jane.example.net.conf")


def test_user_cannot_take_another_accounts_name_by_spelling_it_differently(server):
    """Kept (blocked): john asks for jane's isolated name in other spellings
    (case, trailing dot, full-width letters): the panel gives it to jane, so
    it reads as a name john does not have, and nothing changes."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "jane.example.net")
    daemon = start_daemon(server)
    try:
        for spelling in ("JANE.example.net", "jane.example.net.",
                         "\uff4aane.example.net"):
            r = user_enable(server, "john", spelling)
            assert r.returncode != 0, (spelling, r.stdout)
            assert "jane" not in r.stdout + r.stderr.replace(spelling, "")
    finally:
        stop_daemon(server, daemon)
    assert listing(server) == {"jane": ["jane.example.net"]}


# ---- 6. cPanel without /etc/userdatadomains --------------------------------------

def _cpanel_userdata(sbx, user, main, parked=(), docroot="public_html"):
    lines = [f"main_domain: {main}", "parked_domains:"]
    lines += [f"  - {p}" for p in parked] or ["  []"]
    lines += ["sub_domains: []", "addon_domains: {}"]
    sbx.write(f"/var/cpanel/userdata/{user}/main", "\n".join(lines) + "\n")
    sbx.write(f"/var/cpanel/userdata/{user}/{main}",
              f"user: {user}\ndocumentroot: /home/{user}/{docroot}\n")


def test_cpanel_userdata_mapped_spelling_does_not_hide_another_accounts_domain(
        server):
    """The fix that keeps the file's spelling (raw) covers /etc/userdatadomains
    only: read from the accounts' userdata files (no index), john's parked
    domain spelled with a soft hyphen is normalized before the record is
    made, counts as canonical, and cancels jane's own record: the admin
    cannot isolate jane.example.net (not found)."""
    ok(server, "--site-isolation-allow-all")
    server.run(["rm", "-f", "/etc/siteiso/domains.json", "/etc/userdatadomains"])
    server.write("/etc/siteiso/siteiso.conf",
                 server.read("/etc/siteiso/siteiso.conf") + "panel = cpanel\n")
    server.write("/etc/trueuserdomains",
                 "example.com: john\njane.example.net: jane\n")
    _cpanel_userdata(server, "john", "example.com",
                     parked=["jane.exam\u00adple.net"])
    _cpanel_userdata(server, "jane", "jane.example.net")
    r = server.cagefsctl("--site-isolation-enable", "jane.example.net")
    assert r.returncode == 0, r.stderr
    assert listing(server) == {"jane": ["jane.example.net"]}


# ---- 2. includes that carry their site's token -----------------------------------

def test_include_without_a_token_line_is_removed_with_its_site(server):
    """Includes written before this change begin "# siteiso: this site is
    isolated;" (no token). Removing an include keeps any include whose first
    line does not name the site, so disabling a site whose include was
    never rewritten since the upgrade leaves it in the vhost: the site is
    recorded as not isolated while Apache still sends its PHP to the gone
    site's handler (wrappers removed, php-fpm stopped)."""
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    inc = f"{INCLUDES}/blog.example.org.conf"
    text = server.read(inc)
    first, rest = text.split("\n", 1)
    assert first.startswith("# siteiso: site ")
    # What the previous version wrote at this path.
    server.write(inc, "# siteiso: this site is isolated; generated, do not edit.\n"
                 + rest)
    ok(server, "--site-isolation-disable", "blog.example.org")
    assert not server.exists(inc), server.read(inc)[:200]


def test_other_owners_converge_never_removes_the_new_owners_include(server):
    """Kept (blocked): jane's stale record of a name john now has in the
    panel is moved to john by the admin; converging jane (a warning path)
    must not remove john's include at the name's path, and disabling
    jane's remaining site must not either."""
    server.make_tree("jane", {"/home/jane/claim/index.php": "<?php echo 1;\n"})
    server.make_tree("john", {"/home/john/claim/index.php": "<?php echo 2;\n"})
    ok(server, "--site-isolation-allow-all")
    server.set_domains({**DOMAINS, "claim.example.net": ("jane", "/home/jane/claim")})
    ok(server, "--site-isolation-enable", "claim.example.net", "jane.example.net")
    server.set_domains({**DOMAINS, "claim.example.net": ("john", "/home/john/claim")})
    r = server.cagefsctl("--site-isolation-enable", "claim.example.net")
    assert r.returncode == 0, r.stderr
    inc = f"{INCLUDES}/claim.example.net.conf"
    assert "SuexecUserGroup john john" in server.read(inc)
    ok(server, "--site-isolation-disable", "jane.example.net")
    ok(server, "--site-isolation-regenerate", "jane")
    assert "SuexecUserGroup john john" in server.read(inc)
    assert listing(server) == {"john": ["claim.example.net"]}


# ---- 3. sites.d containment ------------------------------------------------------

def test_sites_d_line_inside_another_sites_docroot_is_refused(server):
    """sites.d lines that are or hold another site's docroot are refused
    ("it handed that site's files to this one"), but a line that lies
    inside another site's docroot is not, and it hands over the same files.
    Here the admin's line for blog is a harmless-looking ~/media, which
    john (who owns the home) turns into a symlink into shop's docroot: blog's
    view then reads and writes shop's private files."""
    server.make_tree("john", {"/home/john/public_html/shop/private/key.txt":
                              "shop-key\n", "/home/john/media/x": "x\n"})
    server.write("/etc/siteiso/sites.d/blog.example.org.conf", "/home/john/media\n")
    server.sh("rm -rf ~/media && ln -s public_html/shop/private ~/media",
              user="john")
    ok(server, "--site-isolation-allow-all")
    r = server.cagefsctl("--site-isolation-enable", "blog.example.org",
                         "shop.example.com")
    assert r.returncode == 0, r.stderr
    r = server.run(["cagefs_enter_site", "blog.example.org", "sh", "-c",
                    "cat /home/john/public_html/shop/private/key.txt "
                    "/home/john/media/key.txt"], user="john", check=False)
    assert "shop-key" not in r.stdout, r.stdout
