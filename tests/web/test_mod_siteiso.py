"""mod_siteiso (native/mod_siteiso.c), the guard of isolated sites' vhosts
(SPEC §8), through a real Apache.

Without it an isolated site's docroot has `Options None`: no symlink
leads out of it, but mod_rewrite then refuses every `.htaccess` RewriteRule
(AH00670) and WordPress permalinks answer 403. With it the docroot has
`Options SymLinksIfOwnerMatch` (rewrites work) and the module refuses, for
the isolated vhost only, any file that resolves outside the site's docroot or
into a nested sibling's, and any handler but the site's own (an
`.htaccess` cannot pick `[H=proxy:unix:…]`, `[H=cgi-script]`, `[P]`, or a
panel's Action type by `[T=]` or AddType).

Each attack is shown to work before isolation (the panel's vhost follows
symlinks and lets .htaccess pick handlers), then to fail for the isolated
site, while a site that is not isolated keeps the panel's behaviour.
"""

from __future__ import annotations

import re
import statistics

import pytest
from conftest_handlers import A_ROOT, B_ROOT, B_SECRET, JANE, A, B, enable, set_handler
from harness import Sandbox
from test_attack_handlers import EVIL, WWW_SOCK, escaped, start_host_fpm
from webserver import make_web

pytestmark = pytest.mark.web

HANDLERS = ["cgi", "fcgid", "fpm"]
JANE_ROOT = "/home/jane/public_html"

WORDPRESS = """# BEGIN WordPress
<IfModule mod_rewrite.c>
RewriteEngine On
RewriteRule .* - [E=HTTP_AUTHORIZATION:%{HTTP:Authorization}]
RewriteBase /
RewriteRule ^index\\.php$ - [L]
RewriteCond %{REQUEST_FILENAME} !-f
RewriteCond %{REQUEST_FILENAME} !-d
RewriteRule . /index.php [L]
</IfModule>
# END WordPress
"""
PERMALINK = "/2024/05/hello-world/"


def htaccess(sbx: Sandbox, owner: str, docroot: str, text: str) -> None:
    sbx.make_tree(owner, {f"{docroot}/.htaccess": text})


def error_log(sbx: Sandbox) -> str:
    return sbx.read("/var/log/apache2/error.log")


def doctor(sbx: Sandbox) -> str:
    return sbx.run(["siteiso", "doctor"]).stdout


def reload(sbx: Sandbox) -> None:
    """A graceful restart, returning once the new generation serves."""
    sbx.run(["/opt/siteiso/venv/bin/python", "-c", "from siteiso.service import "
             "apache, layout; apache.reload(layout.detect())"])


def ran(body: str) -> bool:
    """The attacker's script ran (its source, served as text, does not
    count: there 'RAN-AS ' is followed by a quote)."""
    return re.search(r"RAN-AS \w", body) is not None


# ---- rewrites ------------------------------------------------------------------


@pytest.mark.parametrize("handler", HANDLERS)
def test_wordpress_permalinks_work_in_an_isolated_site(web, handler):
    sbx = web.sbx
    set_handler(sbx, handler)
    htaccess(sbx, "john", A_ROOT, WORDPRESS)
    htaccess(sbx, "jane", JANE_ROOT, WORDPRESS)
    assert web.get(A, PERMALINK) == (200, "hello from a.example")     # the panel's
    enable(sbx, A, B)
    assert web.get(A, PERMALINK) == (200, "hello from a.example")
    assert web.get(A, "/data.txt") == (200, "data of a.example\n")   # !-f: itself
    assert web.get(A, "/") == (200, "hello from a.example")
    # PHP still runs in the site's view.
    assert web.probe(A, "read", f"{A_ROOT}/wp-config.php")["ok"]
    assert not web.probe(A, "read", B_SECRET)["ok"]
    # Not isolated: unchanged.
    assert web.get(JANE, PERMALINK) == (200, "hello from jane.example")
    assert "ok      web-guard" in doctor(sbx)


def test_without_the_module_isolated_sites_fail_closed(sandbox):
    """The include relies on the guard only where the module is loaded:
    without it, `Options None` (rewrites answer 403, no link is followed),
    and doctor says why."""
    web = make_web(sandbox, siteiso_module=False)
    htaccess(sandbox, "john", A_ROOT, WORDPRESS)
    sandbox.run(["ln", "-s", B_SECRET, f"{A_ROOT}/leak.txt"], user="john")
    assert web.get(A, PERMALINK) == (200, "hello from a.example")
    assert "secret-of-b.example" in web.get(A, "/leak.txt")[1]
    enable(sandbox, A, B)
    assert web.get(A, PERMALINK)[0] == 403
    assert "AH00670" in error_log(sandbox)
    code, body = web.get(A, "/leak.txt")
    assert code == 403 and "secret-of-b.example" not in body
    assert re.search(r"^WARNING +web-guard +mod_siteiso is not loaded",
                     doctor(sandbox), re.M)


# ---- symlinks ------------------------------------------------------------------


LEAKS = {
    "/leak.txt": "secret-of-b.example",        # -> the sibling's wp-config.php
    "/passwd.txt": "root:x:0:0",                # -> /etc/passwd
    "/sib/wp-config.php": "secret-of-b.example",  # sib -> the sibling's docroot
    "/sib/data.txt": "data of b.example",
}


def plant_links(sbx: Sandbox, docroot: str, owner: str) -> None:
    """What the site's owner (or its PHP, in its view) puts in its docroot:
    links out of it, and links within it."""
    for link, target in (("leak.txt", B_SECRET), ("passwd.txt", "/etc/passwd"),
                         ("sib", B_ROOT), ("own.txt", "data.txt"),
                         ("ownlink", "sub")):
        sbx.run(["ln", "-s", target, f"{docroot}/{link}"], user=owner)
    sbx.make_tree(owner, {f"{docroot}/sub/f.txt": "inside\n"})


@pytest.mark.parametrize("handler", HANDLERS)
def test_symlinks_out_of_an_isolated_site_are_refused(web, handler):
    sbx = web.sbx
    set_handler(sbx, handler)
    plant_links(sbx, A_ROOT, "john")
    for path, secret in LEAKS.items():
        code, body = web.get(A, path)
        assert code == 200 and secret in body, (path, code, body)     # real
    enable(sbx, A, B)
    for path, secret in LEAKS.items():
        code, body = web.get(A, path)
        assert code in (403, 404) and secret not in body, (path, code, body)
    # Apache's owner check passes a link to a file of the same owner: the
    # guard is what refuses it.
    assert f"siteiso: refused {A_ROOT}/leak.txt, which leads to: {B_SECRET}" \
        in error_log(sbx)
    # Links that stay inside the site are followed.
    assert web.get(A, "/own.txt") == (200, "data of a.example\n")
    assert web.get(A, "/ownlink/f.txt") == (200, "inside\n")
    # The sibling serves its own files, PHP included.
    assert web.get(B, "/index.php") == (200, "hello from b.example")


def test_a_site_that_is_not_isolated_is_unaffected(web):
    sbx = web.sbx
    for link, target in (("passwd.txt", "/etc/passwd"), ("leak.txt", B_SECRET)):
        sbx.run(["ln", "-s", target, f"{JANE_ROOT}/{link}"], user="jane")
    enable(sbx, A, B)
    assert "root:x:0:0" in web.get(JANE, "/passwd.txt")[1]
    assert "secret-of-b.example" in web.get(JANE, "/leak.txt")[1]


def test_static_files_are_served_from_the_checked_descriptor(web):
    """A link swapped in between the check and the read would lead out of
    the site: the guard opens the file once, checks the path the kernel
    gives for that descriptor, and the core serves that very file. The
    owner swaps race.txt between a plain file and a link to the sibling's
    secret as fast as it can while the site is fetched."""
    sbx = web.sbx
    enable(sbx, A, B)
    sbx.run(["sed", "-i", "s/^LogLevel .*/LogLevel warn siteiso:trace1/",
             "/etc/apache2/apache2.conf"])
    reload(sbx)
    sbx.make_tree("john", {f"{A_ROOT}/race.txt": "plain\n"})
    assert web.get(A, "/race.txt") == (200, "plain\n")
    assert re.search(rf"siteiso: serving {A_ROOT}/race.txt as /proc/self/fd/\d+",
                     error_log(sbx))
    swap = (f"import os, time\nd = {A_ROOT!r}\nend = time.time() + 60\n"
            "while time.time() < end and not os.path.exists('/tmp/stop'):\n"
            f"    os.symlink({B_SECRET!r}, d + '/.l')\n"
            "    os.rename(d + '/.l', d + '/race.txt')\n"
            "    with open(d + '/.f', 'w') as f:\n"
            "        f.write('plain\\n')\n"
            "    os.rename(d + '/.f', d + '/race.txt')\n")
    swapper = sbx.popen(["python3", "-c", swap], user="john")
    try:
        out = sbx.sh("for i in $(seq 600); do curl -s -H 'Host: a.example' "
                     "http://127.0.0.1/race.txt; done", timeout=120).stdout
    finally:
        sbx.run(["touch", "/tmp/stop"])
        swapper.wait(timeout=30)
    assert out.count("plain") > 0, out[:500]
    assert "secret-of-b.example" not in out


# ---- handlers ------------------------------------------------------------------


# A panel's own PHP type (cPanel's EA4 names them so), served by the panel's
# php-cgi outside every view.
PANEL_TYPE = "application/x-httpd-ea-php82"
CGI = ("#!/bin/sh\necho Content-Type: text/plain\necho\necho RAN-AS $(id -un)\n"
       f"cat {B_SECRET}\n")

# name: (.htaccess, path, status once isolated). The panel's vhost lets
# .htaccess set Options; an isolated site's does not (fcgid gives .php files
# ExecCGI itself).
ROUTES = {
    "H-www-pool": (f"RewriteEngine On\nRewriteRule ^evil\\.php$ - "
                   f"[H=proxy:unix:{WWW_SOCK}|fcgi://localhost]\n", "/evil.php", 403),
    "H-cgi-script": ("RewriteEngine On\nRewriteRule ^x\\.php$ - [H=cgi-script]\n",
                     "/x.php", 403),
    "P": (f"RewriteEngine On\nRewriteRule ^evil\\.php$ unix:{WWW_SOCK}|"
          f"fcgi://localhost{A_ROOT}/evil.php [P]\n", "/evil.php", 403),
    "T-panel-type": (f"RewriteEngine On\nRewriteRule ^evil\\.txt$ - [T={PANEL_TYPE}]\n",
                     "/evil.txt", 200),
    "AddType-panel-type": (f"AddType {PANEL_TYPE} .txt\n", "/evil.txt", 200),
    "SetHandler": (f"<Files evil.txt>\nSetHandler {PANEL_TYPE}\n</Files>\n",
                   "/evil.txt", 500),
    "AddHandler": (f"AddHandler {PANEL_TYPE} .txt\n", "/evil.txt", 500),
}


@pytest.fixture
def rweb(web):
    """The host's php-fpm (Debian's www pool), the attacker's scripts, and a
    panel Action type of the server's."""
    sbx = web.sbx
    start_host_fpm(sbx)
    sbx.make_tree("john", {f"{A_ROOT}/evil.php": EVIL, f"{A_ROOT}/evil.txt": EVIL,
                           f"{A_ROOT}/x.php": CGI})
    sbx.make_tree("jane", {f"{JANE_ROOT}/evil.php": EVIL})
    sbx.run(["chmod", "755", f"{A_ROOT}/x.php"], user="john")
    sbx.write("/etc/apache2/conf-enabled/panel-php.conf",
              f"Action {PANEL_TYPE} /php-bin/php-cgi\n")
    reload(sbx)
    return web


@pytest.mark.parametrize("handler", HANDLERS)
def test_htaccess_cannot_pick_another_handler(rweb, handler):
    sbx = rweb.sbx
    set_handler(sbx, handler)
    for name, (rules, path, _) in ROUTES.items():
        htaccess(sbx, "john", A_ROOT, "Options +ExecCGI\n" + rules)
        code, body = rweb.get(A, path)
        assert escaped(body), (name, code, body)                     # real
    enable(sbx, A, B)
    for name, (rules, path, status) in ROUTES.items():
        htaccess(sbx, "john", A_ROOT, rules)
        code, body = rweb.get(A, path)
        assert not ran(body) and not escaped(body), (name, code, body)
        assert code == status, (name, code, body)
    log = error_log(sbx)
    assert f"siteiso: refused handler: proxy:unix:{WWW_SOCK}" in log
    # (with handler = cgi, cgi-script is the site's own, for its wrapper only)
    assert re.search(r"siteiso: refused (handler: cgi-script|"
                     rf"{A_ROOT}/x\.php, which leads to)", log)
    assert "siteiso: refused a proxy request" in log
    # The site's own PHP, and a WordPress .htaccess, still work.
    htaccess(sbx, "john", A_ROOT, WORDPRESS)
    assert rweb.get(A, PERMALINK) == (200, "hello from a.example")
    # A site that is not isolated keeps the panel's behaviour.
    htaccess(sbx, "jane", JANE_ROOT, ROUTES["H-www-pool"][0])
    assert "RAN-AS www-data" in rweb.get(JANE, "/evil.php")[1]


def test_the_guards_directives_are_not_for_htaccess(web):
    """RSRC_CONF only: no override class or AllowOverrideList admits them."""
    sbx = web.sbx
    enable(sbx, A, B)
    for owner, root, domain in (("john", A_ROOT, A), ("jane", JANE_ROOT, JANE)):
        for line in ("SiteisoSite /tmp", "SiteisoHandler cgi-script",
                     f"SiteisoDeny {root}"):
            htaccess(sbx, owner, root, line + "\n")
            assert web.get(domain, "/data.txt")[0] == 500, (domain, line)
    assert "SiteisoSite not allowed here" in error_log(sbx)


# ---- install -------------------------------------------------------------------


def test_install_puts_the_module_in_place_and_uninstall_removes_it():
    with Sandbox("modinstall", overlay_usr=True) as sbx:
        sbx.run(["/opt/siteiso/venv/bin/siteiso", "install"])
        so = "/usr/lib/apache2/modules/mod_siteiso.so"
        load = "/etc/apache2/mods-available/siteiso.load"
        assert sbx.read(load) == ("# siteiso: the guard of isolated sites' vhosts "
                                  f"(mod_siteiso)\nLoadModule siteiso_module {so}\n")
        assert sbx.exists("/etc/apache2/mods-enabled/siteiso.load")
        assert "siteiso_module" in sbx.run(["apache2ctl", "-M"]).stdout
        assert "ok      web-guard" in doctor(sbx)
        out = sbx.run(["/opt/siteiso/venv/bin/siteiso", "uninstall"]).stdout
        assert so in out and load in out
        for p in (so, load, "/etc/apache2/mods-enabled/siteiso.load"):
            assert not sbx.exists(p), p
        assert "siteiso_module" not in sbx.run(["apache2ctl", "-M"]).stdout


# ---- cost ----------------------------------------------------------------------


def _ab(sbx: Sandbox, path: str, n: int) -> float:
    """Mean milliseconds per request, one at a time; every answer a 200."""
    out = sbx.run(["ab", "-q", "-n", str(n), "-c", "1", "-H", f"Host: {A}",
                   f"http://127.0.0.1{path}"]).stdout
    assert "Non-2xx" not in out and re.search(r"Failed requests:\s+0\n", out), out
    m = re.search(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)", out)
    assert m, out
    return float(m.group(1))


def _switch(sbx: Sandbox, on: bool) -> None:
    sbx.sh(f"{'a2enmod' if on else 'a2dismod'} -q siteiso >/dev/null")
    reload(sbx)
    loaded = "siteiso_module" in sbx.run(["apache2ctl", "-M"]).stdout
    assert loaded == on


def test_guard_cost_side_by_side(web):
    """Prints the mean time of a static file and of a PHP request (FPM) of
    an isolated site, with the module and without it (the include's
    `Options None`), alternating; nothing is asserted about time."""
    sbx = web.sbx
    set_handler(sbx, "fpm")
    enable(sbx, A, B)
    assert web.get(A, "/index.php") == (200, "hello from a.example")
    rows: dict[tuple[str, bool], list[float]] = {}
    for _ in range(3):
        for on in (True, False):
            _switch(sbx, on)
            _ab(sbx, "/data.txt", 200)                      # warm up
            rows.setdefault(("static", on), []).append(_ab(sbx, "/data.txt", 2000))
            rows.setdefault(("php", on), []).append(_ab(sbx, "/index.php", 500))
    print("\nmod_siteiso per request (ab -c 1, median of 3 rounds, ms):")
    print(f"{'request':<24}{'without':>10}{'with':>10}{'difference':>12}")
    for what, label in (("static", "static file (data.txt)"),
                        ("php", "PHP (index.php, FPM)")):
        off = statistics.median(rows[(what, False)])
        on_ = statistics.median(rows[(what, True)])
        print(f"{label:<24}{off:>10.3f}{on_:>10.3f}{(on_ - off) * 1000:>9.0f} µs")
