"""The panel readers behind the installed cagefsctl (SPEC §6): cPanel's own
files from ../shared/cases/cpanel and a real integration script."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.kernel


def copy_cpanel_case(sbx, cases):
    root = cases / "cpanel"
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sbx.write("/" + str(path.relative_to(root)), path.read_text())


def test_cpanel_addon_is_a_second_name_of_its_subdomains_site(sandbox, cases):
    sandbox.useradd("john")
    sandbox.useradd("jane")
    sandbox.make_tree("john", {
        "/home/john/public_html/index.php": "<?php\n",
        "/home/john/public_html/shop/index.php": "<?php\n",
        "/home/john/public_html/other-site.net/index.php": "<?php\n"})
    copy_cpanel_case(sandbox, cases)
    assert sandbox.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = sandbox.cagefsctl("--site-isolation-enable", "other-site.net",
                          "other-site.example.com", "shop.example.com")
    assert r.returncode == 0, r.stderr
    st = json.loads(sandbox.read("/var/lib/siteiso/state.json"))
    names = sorted(sorted(s["names"]) for s in st["sites"].values())
    assert names == [["other-site.example.com", "other-site.net"],
                     ["shop.example.com"]]
    r = sandbox.run(["cagefs_enter_site", "other-site.net", "ls",
                     "/home/john/public_html/shop"], user="john", check=False)
    assert r.returncode != 0
    r = sandbox.cagefsctl("--site-isolation-enable", "nosuch.example.com")
    assert r.stderr.strip() == "Please specify existing domain name and try again"


SCRIPT = """#!/bin/sh
# An integration script as panels ship it: JSON on stdout.
case "$*" in
  *--name*nosuch*) echo '{"data": null, "metadata": {"result": "NotFound",
                    "message": "Domain nosuch.example does not exist"}}' ;;
  *--name*denied*) echo '{"data": null, "metadata": {"result": "PermissionDenied",
                    "message": "Only the owner may list these domains"}}' ;;
  *) echo '{"data": {"example.com": {"owner": "john", "document_root":
        "/home/john/public_html", "is_main": true}, "denied.example":
        {"owner": "john", "document_root": "/home/john/x", "is_main": false}},
        "metadata": {"result": "ok"}}' ;;
esac
"""


def test_integration_script_panel(sandbox):
    sandbox.useradd("john")
    sandbox.make_tree("john", {"/home/john/public_html/index.php": "<?php\n"})
    sandbox.write("/opt/cpvendor/bin/domains", SCRIPT, mode=0o755)
    sandbox.write("/opt/cpvendor/etc/integration.ini",
                  "[integration_scripts]\ndomains = /opt/cpvendor/bin/domains\n")
    assert sandbox.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = sandbox.cagefsctl("--site-isolation-enable", "example.com")
    assert r.returncode == 0, r.stderr
    r = sandbox.cagefsctl("--site-isolation-enable", "nosuch.example")
    assert r.returncode == 1
    assert r.stderr.strip() == "Please specify existing domain name and try again"


def test_hanging_integration_script_is_a_clear_error(sandbox):
    sandbox.useradd("john")
    sandbox.write("/opt/cpvendor/bin/domains", "#!/bin/sh\nsleep 600\n", mode=0o755)
    sandbox.write("/opt/cpvendor/etc/integration.ini",
                  "[integration_scripts]\ndomains = /opt/cpvendor/bin/domains\n")
    sandbox.write("/etc/siteiso/siteiso.conf",
                  sandbox.read("/etc/siteiso/siteiso.conf") + "script_timeout = 1\n")
    assert sandbox.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = sandbox.run(["cagefsctl", "--site-isolation-enable", "example.com"],
                    check=False, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip()
    assert "Traceback" not in r.stderr


def test_enable_warns_for_an_lsapi_site(sandbox, cases):
    sandbox.useradd("john")
    sandbox.make_tree("john", {"/home/john/public_html/index.php": "<?php\n",
                               "/home/john/public_html/shop/index.php": "<?php\n"})
    answer = (cases / "integration" / "domains-ok.json").read_text()
    sandbox.write("/opt/cpvendor/bin/domains", "#!/bin/sh\ncat <<'EOF'\n"
                  + answer + "\nEOF\n", mode=0o755)
    sandbox.write("/opt/cpvendor/etc/integration.ini",
                  "[integration_scripts]\ndomains = /opt/cpvendor/bin/domains\n")
    assert sandbox.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = sandbox.cagefsctl("--site-isolation-enable", "example.com",
                          "shop.example.com")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("Website isolation was enabled for domain(s),\n"
                        "example.com,shop.example.com\n")
    assert "warning: example.com is served by lsapi" in r.stderr
    assert "shop.example.com is served" not in r.stderr
