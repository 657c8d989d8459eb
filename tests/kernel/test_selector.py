"""Per-domain PHP (SPEC §5) with the real PHP 8.2 and a second build laid
out like CloudLinux's /opt/alt/php81, on a sandboxed server: selectorctl as
root and as the user (through siteisod), seen from inside the site views."""

from __future__ import annotations

import json

import pytest
from testlib import ok, start_daemon, stop_daemon

pytestmark = pytest.mark.kernel

A, B = "example.com", "blog.example.org"      # two sites of john
JANE = "jane.example.net"
ALT = "/opt/alt/php81"
MARKER = "siteiso-alt-php81"

# The second build: copies of the real 8.2 programs and three of its shared
# objects, its own ini tree (mbstring enabled, a marker setting), made inside
# the sandbox (its /opt is a throwaway overlay).
MAKE_ALT = f"""set -e
d={ALT}
mkdir -p $d/usr/bin $d/usr/lib64/php/modules $d/etc/php.d
cp /usr/bin/php8.2 $d/usr/bin/php
cp /usr/bin/php-cgi8.2 $d/usr/bin/php-cgi
for e in mbstring xml curl; do
    cp /usr/lib/php/20220829/$e.so $d/usr/lib64/php/modules/
done
printf '; this build\\nuser_agent="{MARKER}"\\n' > $d/etc/php.d/00-build.ini
printf 'extension=mbstring.so\\n' > $d/etc/php.d/20-mbstring.ini
"""


@pytest.fixture
def php_server(server):
    installed = server.run(["dpkg-query", "-W", "-f=${Status}\\n", "php8.2-cli",
                            "php8.2-cgi", "php8.2-mbstring", "php8.2-xml",
                            "php8.2-curl"], check=False).stdout.split("\n")
    if not all("install ok installed" in line for line in installed if line):
        pytest.skip("needs php8.2-cli, -cgi, -mbstring, -xml and -curl")
    server.sh(MAKE_ALT)
    ok(server, "--site-isolation-allow-all")
    return server


def selectorctl(sbx, *args, user=None):
    return sbx.run(["selectorctl", *args], user=user, check=False)


def root_ok(sbx, *args):
    r = selectorctl(sbx, *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def inside(sbx, site, script, user="john", env=None):
    r = sbx.run(["cagefs_enter_site", site, "sh", "-c", script], user=user,
                check=False, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def modules(sbx, site, **kw):
    """What `php -m` lists inside the site's view."""
    out = inside(sbx, site, "php -m", **kw)
    return {ln.strip().lower() for ln in out.splitlines()
            if ln.strip() and not ln.startswith("[")}


def user_agent(sbx, site, program="php"):
    if program == "php":
        return inside(sbx, site, "php -r 'echo ini_get(\"user_agent\");'")
    # php-cgi, as the handler runs it, on a script of the site.
    return inside(sbx, site, "php-cgi -q /home/john/public_html/ua.php")


def ident(sbx, site, *paths):
    return inside(sbx, site, "stat -L -c %d:%i " + " ".join(paths)).split()


def settings(sbx, domain):
    """The settings recorded for a site (recorded at enable)."""
    st = json.loads(sbx.read("/var/lib/siteiso/state.json"))
    site = next(s for s in st["sites"].values() if domain in s["names"])
    return site["php"]


def current(sbx, domain, user="john"):
    return root_ok(sbx, "--user-current", "--domain", domain, "--user",
                   user).split("\t")[0]


# ---- extensions, per site -----------------------------------------------------------

def test_extensions_change_in_one_site_only(php_server):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A, B)
    want = {"mbstring", "xml", "curl"}
    assert want <= modules(sbx, A) and want <= modules(sbx, B)

    root_ok(sbx, "--disable-user-extensions=mbstring,xml,curl", "--version", "8.2",
            "--domain", A, "--user", "john")
    assert not want & modules(sbx, A)
    assert want <= modules(sbx, B)
    # The caller's own scan dir does not count: the entry sets the site's.
    env = {"PHP_INI_SCAN_DIR": "/etc/php/8.2/cli/conf.d"}
    assert not want & modules(sbx, A, env=env)
    listed = root_ok(sbx, "--list-user-extensions", "--version", "8.2", "--domain",
                     A, "--user", "john").split()
    assert "curl" not in listed and "ctype" in listed

    root_ok(sbx, "--enable-user-extensions=mbstring", "--version", "8.2", "--domain",
            A, "--user", "john")
    got = modules(sbx, A)
    assert "mbstring" in got and not {"xml", "curl"} & got
    assert want <= modules(sbx, B)
    # The site's ini dir is root's and read-only in its view.
    r = sbx.run(["cagefs_enter_site", A, "sh", "-c",
                 "touch /run/siteiso/php/x.ini"], user="john", check=False)
    assert r.returncode != 0


# Each way a site loses isolation, and how it is allowed again.
LOSSES = {
    "disable": ([["--site-isolation-disable", A]], []),
    "deny-user": ([["--site-isolation-deny", "john"]],
                  [["--site-isolation-allow", "john"]]),
    "deny-all": ([["--site-isolation-deny-all"]], [["--site-isolation-allow-all"]]),
}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_settings_are_kept_across_disable_and_enable(php_server, loss):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A)
    root_ok(sbx, "--set-user-current=8.1", "--domain", A, "--user", "john")
    root_ok(sbx, "--enable-user-extensions=xml", "--version", "8.1", "--domain", A,
            "--user", "john")
    before = settings(sbx, A)
    lose, allow_again = LOSSES[loss]
    for args in lose:
        ok(sbx, *args)
    kept = json.loads(sbx.read("/var/lib/siteiso/state.json"))["php_kept"][A]
    assert kept == {**before, "kept_for": "john"}
    for args in allow_again:
        ok(sbx, *args)
    ok(sbx, "--site-isolation-enable", A)
    assert settings(sbx, A) == before
    assert root_ok(sbx, "--user-current", "--domain", A, "--user", "john") == \
        f"8.1\talt-php81\t{ALT}/usr/bin/php-cgi\n"
    got = modules(sbx, A)
    assert {"mbstring", "xml"} <= got and "curl" not in got
    assert user_agent(sbx, A) == MARKER


# ---- a second build ---------------------------------------------------------------

def test_second_build_is_selectable_per_domain(php_server):
    sbx = php_server
    sbx.make_tree("john", {"/home/john/public_html/ua.php":
                           "<?php echo ini_get('user_agent');\n"})
    ok(sbx, "--site-isolation-enable", A, B)
    assert root_ok(sbx, "--list") == (f"8.1\talt-php81\t{ALT}/usr/bin/php-cgi\n"
                                      "8.2\tphp8.2\t/usr/bin/php-cgi8.2\n")
    assert root_ok(sbx, "--user-current", "--domain", A, "--user", "john") == \
        "8.2\tphp8.2\t/usr/bin/php-cgi8.2\n"
    assert user_agent(sbx, A) == ""

    assert root_ok(sbx, "--set-user-current=8.1", "--domain", A, "--user",
                   "john") == f"8.1\talt-php81\t{ALT}/usr/bin/php-cgi\n"
    # php and php-cgi (the handler's /usr/bin/php-cgi) are the build's own
    # files in A's view, with its ini tree and only its default extensions.
    real = ident(sbx, A, "/usr/bin/php", "/usr/bin/php-cgi")
    assert real == ident(sbx, A, f"{ALT}/usr/bin/php", f"{ALT}/usr/bin/php-cgi")
    assert user_agent(sbx, A) == MARKER
    assert user_agent(sbx, A, "php-cgi") == MARKER
    got = modules(sbx, A)
    assert "mbstring" in got and not {"xml", "curl", "ctype"} & got
    root_ok(sbx, "--enable-user-extensions=curl", "--version", "8.1", "--domain", A,
            "--user", "john")
    assert "curl" in modules(sbx, A)
    # The sibling still runs the system's 8.2.
    assert ident(sbx, B, "/usr/bin/php") != ident(sbx, B, f"{ALT}/usr/bin/php")
    assert user_agent(sbx, B) == ""
    assert "ctype" in modules(sbx, B)

    root_ok(sbx, "--set-user-current=8.2", "--domain", A, "--user", "john")
    assert user_agent(sbx, A) == ""
    assert "ctype" in modules(sbx, A)


def test_a_new_site_gets_the_panels_per_domain_version(php_server):
    sbx = php_server
    doc = json.loads(sbx.read("/etc/siteiso/domains.json"))
    doc[B]["php"] = {"version": "8.1"}
    sbx.write("/etc/siteiso/domains.json", json.dumps(doc))
    ok(sbx, "--site-isolation-enable", A, B)
    assert current(sbx, B) == "8.1"
    assert current(sbx, A) == "8.2"     # the system's PHP
    assert user_agent(sbx, B) == MARKER
    assert user_agent(sbx, A) == ""


# ---- who may do what ------------------------------------------------------------

def test_root_must_name_the_user(php_server):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A)
    r = selectorctl(sbx, "--set-user-current=8.1", "--domain", A)
    assert r.returncode == 1
    assert "--user" in r.stderr
    assert current(sbx, A) == "8.2"
    r = selectorctl(sbx, "--set-user-current=8.1", "--domain", A, "--user", "jane")
    assert r.returncode == 1
    assert r.stderr.strip() == f"Domain {A} does not belong to user jane"


def test_only_isolated_domains_have_their_own_php(php_server):
    r = selectorctl(php_server, "--set-user-current=8.1", "--domain", A, "--user",
                    "john")
    assert r.returncode == 1
    assert f"cagefsctl --site-isolation-enable {A}" in r.stderr
    r = selectorctl(php_server, "--user-current", "--domain", "nope.example",
                    "--user", "john")
    assert r.returncode == 1
    assert r.stderr.strip() == "Please specify existing domain name and try again"


def test_unknown_version_and_extension_name_what_exists(php_server):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A)
    before = settings(sbx, A)
    r = selectorctl(sbx, "--set-user-current=7.4", "--domain", A, "--user", "john")
    assert (r.returncode, r.stderr.strip()) == \
        (1, "PHP version 7.4 is not installed; installed versions: 8.1, 8.2")
    r = selectorctl(sbx, "--enable-user-extensions=mbstring,nosuch", "--version",
                    "8.1", "--domain", A, "--user", "john")
    assert (r.returncode, r.stderr.strip()) == \
        (1, "PHP 8.1 has no extension nosuch; available: curl, mbstring, xml")
    r = selectorctl(sbx, "--list-user-extensions", "--version", "5.6", "--domain", A,
                    "--user", "john")
    assert r.returncode == 1 and "installed versions: 8.1, 8.2" in r.stderr
    assert current(sbx, A) == "8.2" and settings(sbx, A) == before


# ---- the user, through siteisod ---------------------------------------------------

@pytest.fixture
def siteisod(php_server):
    proc = start_daemon(php_server)
    yield proc
    stop_daemon(php_server, proc)


def test_user_changes_own_domains_through_siteisod(php_server, siteisod):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A, B, JANE)
    r = selectorctl(sbx, "--set-user-current=8.1", "--domain", A, user="john")
    assert (r.returncode, r.stdout, r.stderr) == \
        (0, f"8.1\talt-php81\t{ALT}/usr/bin/php-cgi\n", "")
    r = selectorctl(sbx, "--disable-user-extensions=mbstring", "--version", "8.1",
                    "--domain", A, user="john")
    assert (r.returncode, r.stderr) == (0, "")
    assert user_agent(sbx, A) == MARKER
    assert "mbstring" not in modules(sbx, A)
    assert "mbstring" in modules(sbx, B)
    r = selectorctl(sbx, "--list-user-extensions", "--version", "8.1", "--domain", A,
                    user="john")
    assert (r.returncode, r.stdout) == (0, "")
    r = selectorctl(sbx, "--list", user="john")
    assert r.stdout.splitlines()[0].startswith("8.1\talt-php81")
    # Naming oneself is fine.
    r = selectorctl(sbx, "--user-current", "--domain", A, "--user", "john",
                    user="john")
    assert r.returncode == 0 and r.stdout.startswith("8.1\t")


def test_user_cannot_touch_another_users_domain(php_server, siteisod):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A, JANE)
    before = settings(sbx, JANE), settings(sbx, A)
    r = selectorctl(sbx, "--set-user-current=8.1", "--domain", JANE, user="john")
    assert r.returncode == 1
    assert r.stderr.strip() == "Please specify existing domain name and try again"
    r = selectorctl(sbx, "--set-user-current=8.1", "--domain", JANE, "--user", "jane",
                    user="john")
    assert r.returncode == 1 and "only your own domains" in r.stderr
    r = selectorctl(sbx, "--enable-user-extensions=xml", "--domain", A, user="jane")
    assert r.returncode == 1
    assert current(sbx, JANE, "jane") == "8.2" and current(sbx, A) == "8.2"
    assert (settings(sbx, JANE), settings(sbx, A)) == before


def test_user_errors_name_what_exists(php_server, siteisod):
    sbx = php_server
    ok(sbx, "--site-isolation-enable", A)
    r = selectorctl(sbx, "--set-user-current=9.9", "--domain", A, user="john")
    assert (r.returncode, r.stderr.strip()) == \
        (1, "PHP version 9.9 is not installed; installed versions: 8.1, 8.2")
    r = selectorctl(sbx, "--set-user-current=8.1", "--domain", B, user="john")
    assert r.returncode == 1
    assert f"cagefsctl --site-isolation-enable {B}" in r.stderr
    assert f"cagefsctl-user site-isolation-enable --domain {B}" in r.stderr


def test_user_without_siteisod_is_told_so(php_server):
    ok(php_server, "--site-isolation-enable", A)
    r = selectorctl(php_server, "--user-current", "--domain", A, user="john")
    assert r.returncode == 1 and "siteisod is not running" in r.stderr


def test_enable_records_the_sites_php_settings(server):
    r = server.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0
    r = server.cagefsctl("--site-isolation-enable", "blog.example.org")
    assert r.returncode == 0, r.stderr
    import json
    st = json.loads(server.read("/var/lib/siteiso/state.json"))
    (site,) = st["sites"].values()
    assert site["php"]["version"] == "8.2"
    assert "mbstring" in site["php"]["extensions"]["8.2"]
