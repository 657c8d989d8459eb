"""Attacks on the web server tier by a hostile isolated site (SPEC §8, §4.3):
its PHP (or its owner's files in its docroot) writes `.htaccess` files,
symlinks and scripts, and sends requests, trying to get the web server to run
code outside the site's view or to serve a sibling's files.

Tests named after a guarantee that fails today show an attack that works;
the others pin down attempts that are blocked (each shows the attempt is real
where it should work, so it can fail).
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlencode

import pytest
from testlib import run_handler

from siteiso.sandbox import curl, start_apache

pytestmark = pytest.mark.web

A, NESTED, B, JANE = "a.example", "nested.example", "b.example", "jane.example"
A_ROOT = "/home/john/public_html"
B_ROOT = "/home/john/b.example/www"
B_SECRET = f"{B_ROOT}/wp-config.php"
A_SECRET = f"{A_ROOT}/wp-config.php"
NESTED_SECRET = f"{A_ROOT}/nested/wp-config.php"


def enable(sbx, *domains):
    r = sbx.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0, r.stderr
    r = sbx.cagefsctl("--site-isolation-enable", *domains)
    assert r.returncode == 0, r.stderr


def htaccess(sbx, docroot, text):
    """What the site's PHP (or anyone writing its docroot) puts there."""
    sbx.make_tree("john", {f"{docroot}/.htaccess": text})


def script(sbx, path, text):
    sbx.make_tree("john", {path: text})
    sbx.run(["chmod", "755", path], user="john")


# ---- findings: attacks that work today -----------------------------------------

def test_htaccess_cannot_send_php_to_the_panels_handler_outside_the_view(web):
    """The include adds siteiso's Action but leaves the panel's handler of
    the vhost (here /php-bin/, on cPanel /cgi-sys/ea-phpXY) in place, and
    lets `.htaccess` use FileInfo (Action, AddHandler, SetHandler). One line
    in the site's `.htaccess` sends its PHP to the panel's php-cgi, which
    suexec runs as the user outside every view."""
    enable(web.sbx, A, NESTED, B)
    assert not web.probe(A, "read", B_SECRET)["ok"]        # isolated
    # Written by a.example's own PHP, in its view.
    r = web.probe(A, "exec", "echo 'Action application/x-httpd-php /php-bin/php-cgi'"
                             f" > {A_ROOT}/.htaccess && echo done")
    assert "done" in (r["out"] or ""), r
    r = web.probe(A, "read", B_SECRET)
    assert not r["ok"], r
    r = web.probe(A, "read", NESTED_SECRET)
    assert not r["ok"], r


def test_htaccess_cannot_run_cgi_scripts_outside_the_view_with_fcgid(web):
    """handler = fcgid turns `Options +ExecCGI` on for the whole docroot;
    `.htaccess` may AddHandler (FileInfo): `AddHandler cgi-script .cgi` makes
    Apache run the site's own script through suexec as the user, outside
    every view."""
    web.sbx.sh("echo 'handler = fcgid' >> /etc/siteiso/siteiso.conf")
    enable(web.sbx, A, NESTED, B)
    script(web.sbx, f"{A_ROOT}/x.cgi",
           f"#!/bin/sh\necho Content-Type: text/plain\necho\ncat {B_SECRET}\n")
    htaccess(web.sbx, A_ROOT, "AddHandler cgi-script .cgi\n")
    code, body = web.get(A, "/x.cgi")
    assert "secret-of-b.example" not in body, (code, body)


def test_parent_vhost_does_not_serve_nested_sites_files(web):
    """SPEC §8: the web server does not serve one site's files through
    another. The nested site's PHP is refused through the parent's vhost,
    but everything else of it (uploads, .env, backups) is served."""
    web.sbx.make_tree("john", {f"{A_ROOT}/nested/.env": "NESTED_DB_PASSWORD=s3cr3t\n"})
    enable(web.sbx, A, NESTED)
    assert web.get(NESTED, "/data.txt") == (200, "data of nested.example\n")
    code, body = web.get(A, "/nested/data.txt")
    assert "data of nested.example" not in body, (code, body)
    code, body = web.get(A, "/nested/.env")
    assert "s3cr3t" not in body, (code, body)


def test_parent_htaccess_cannot_expose_nested_sites_php_source(web):
    """The parent's `.htaccess` still applies to /nested/ in the parent's
    vhost (the AllowOverride None for the parent is only in the nested
    site's vhost): it switches PHP off and the nested site's wp-config.php
    comes out as text."""
    enable(web.sbx, A, NESTED)
    htaccess(web.sbx, A_ROOT, "<Files \"*.php\">\nSetHandler default-handler\n"
                              "ForceType text/plain\n</Files>\n")
    code, body = web.get(A, "/nested/wp-config.php")
    assert "secret-of-nested.example" not in body, (code, body)


def test_htaccess_cannot_reach_a_siblings_or_another_accounts_fpm(web):
    """handler = fpm: every site's php-fpm socket is reachable by the web
    server, and the sockets' names (tokens) are readable in every view
    (/proc/net/unix of the shared network namespace, and /sys/fs/cgroup). A
    site's `.htaccess` (FileInfo: SetHandler, ProxyFCGISetEnvIf) sends its
    requests to another site's master with SCRIPT_FILENAME, PHP_VALUE and
    PHP_ADMIN_VALUE of its choice: code of its own runs in the sibling's
    view, or in another account's, as that account."""
    sbx = web.sbx
    sbx.sh("echo 'handler = fpm' >> /etc/siteiso/siteiso.conf")
    enable(sbx, A, B, JANE)
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    # What a.example's PHP finds out about the others' sockets.
    # (/sys/fs/cgroup/.../site-<token> names them too, for every account of the
    # host; /proc/net/unix is enough here.)
    # The tokens are public (cgroup names); the socket names are not: they
    # are keyed by a root-only secret and bound where /proc/net/unix of the
    # shared network namespace does not list them. The attacker tries every
    # path it can learn or guess.
    r = web.probe(A, "exec", "ls -R /sys/fs/cgroup; cat /proc/net/unix")
    tokens = sorted(set(re.findall(r"site-([0-9a-f]{16})", r["out"] or "")))
    assert len(tokens) >= 3, r
    listed = set(re.findall(r"(/run/siteiso/fpm/[^\s]+\.sock)", r["out"] or ""))
    assert listed == set(), listed
    code = ("<?php echo 'RAN-AS ', get_current_user(), ' '; "
            f"@readfile('{B_SECRET}');"
            " @readfile('/home/jane/public_html/wp-config.php');"
            " exit;")
    payload = base64.b64encode(code.encode()).decode()
    leaked = []
    # Any .php file that exists in the target view will do (a guessable one).
    scripts = ("/home/john/b.example/www/index.php", "/home/jane/public_html/index.php")
    for token in tokens:
        for script_filename in scripts:
            htaccess(sbx, A_ROOT,
                     '<FilesMatch "\\.php$">\n'
                     f'SetHandler "proxy:unix:/run/siteiso/fpm/{token}.sock|fcgi://x/"\n'
                     "</FilesMatch>\n"
                     f'ProxyFCGISetEnvIf "true" SCRIPT_FILENAME "{script_filename}"\n'
                     'ProxyFCGISetEnvIf "true" PHP_ADMIN_VALUE "allow_url_include=1"\n'
                     f"ProxyFCGISetEnvIf \"true\" PHP_VALUE 'auto_prepend_file="
                     f"\"data://text/plain;base64,{payload}\"'\n")
            _code, body = web.get(A, "/index.php")
            if "secret-of-b.example" in body or "secret-of-jane.example" in body:
                leaked.append((token, body))
    assert leaked == []


def test_htaccess_cannot_choose_another_sites_fcgid_wrapper(web):
    """SPEC §8: nothing in an .htaccess can choose another site. handler =
    fcgid: `FcgidWrapper` is allowed in .htaccess (FileInfo), and the entry
    accepts a FastCGI spawn with no request in its environment for whatever
    token the wrapper names. a.example's .htaccess names nested.example's
    wrapper: a.example's vhost now runs requests in nested.example's view
    (here its index.php answers through the parent's vhost, which the
    parent's own wrapper refuses)."""
    sbx = web.sbx
    sbx.sh("echo 'handler = fcgid' >> /etc/siteiso/siteiso.conf")
    enable(sbx, A, NESTED, B)
    assert web.get(A, "/index.php") == (200, "hello from a.example")
    assert web.get(A, "/nested/index.php")[0] != 200      # refused, as it must be
    st = json.loads(sbx.read("/var/lib/siteiso/state.json"))
    nested_token = next(t for t, s in st["sites"].items() if NESTED in s["names"])
    htaccess(sbx, A_ROOT, "FcgidWrapper /home/john/.cagefs/wrappers/"
                          f"{nested_token}/php-fcgi .php\n")
    code, body = web.get(A, "/nested/index.php")
    assert body != "hello from nested.example", (code, body)


SYMLINKED = {
    "a.example": ("john", "/home/john/public_html"),
    "b.example": ("john", "/home/john/blog"),        # a symlink to sites/blog
    "jane.example": ("jane", "/home/jane/public_html"),
}


# A reduced probe of our own (the web fixture's is in conftest.py).
READER = r"""<?php
header('Content-Type: application/json');
$v = @file_get_contents($_GET['t'] ?? '');
echo json_encode(['ok' => $v !== false, 'out' => $v]);
"""


class _Site:
    def __init__(self, sbx):
        self.sbx = sbx

    def get(self, domain, path):
        return curl(self.sbx, domain, path)

    def probe(self, domain, op, target):
        assert op == "read"
        code, body = curl(self.sbx, domain, "/probe.php?" + urlencode({"t": target}))
        if code != 200:
            return {"ok": False, "status": code, "out": body}
        return json.loads(body)


def _symlinked_web(sbx, real_blog):
    sbx.useradd("john")
    sbx.useradd("jane")
    for domain, (owner, docroot) in SYMLINKED.items():
        real = real_blog if domain == "b.example" else docroot
        sbx.make_tree(owner, {
            f"{real}/probe.php": READER,
            f"{real}/index.php": f"<?php echo 'hello from {domain}';\n",
            f"{real}/wp-config.php": f"<?php $secret = 'secret-of-{domain}';\n",
        })
    sbx.run(["ln", "-s", real_blog, "/home/john/blog"], user="john")
    sbx.set_domains(SYMLINKED)
    start_apache(sbx, SYMLINKED)
    return _Site(sbx)


def test_symlinked_docroot_keeps_the_symlink_protection(sandbox):
    """SPEC §4.4 allows a docroot reached through a symlink in the home
    (resolved once). The include's <Directory> names the resolved path, but
    Apache matches the path of its DocumentRoot (the symlink): the
    `Options -FollowSymLinks` of the include never applies, and a symlink in
    the site's docroot serves a sibling's files."""
    web = _symlinked_web(sandbox, "/home/john/sites/blog")
    enable(sandbox, A, B)
    sandbox.run(["ln", "-s", A_SECRET, "/home/john/sites/blog/leak.txt"], user="john")
    code, body = web.get(B, "/leak.txt")
    assert "secret-of-a.example" not in body, (code, body)


def test_symlinked_docroot_still_runs_php_in_its_view(sandbox):
    """Same set-up. The entry and the view accept the symlinked path
    (test_symlinked_docroot_runs_php_in_its_view_under_its_configured_path),
    and the vhost include repeats the docroot's <Directory> for it, with the
    home allowing the link on the way (under mod_siteiso's guard): Apache
    serves the site through its DocumentRoot symlink, its PHP runs in its
    view, and its .htaccess rewrites work there too."""
    web = _symlinked_web(sandbox, "/home/john/sites/blog")
    enable(sandbox, A, B)
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert not web.probe(B, "read", A_SECRET)["ok"]
    htaccess(sandbox, "/home/john/sites/blog",
             "RewriteEngine On\nRewriteCond %{REQUEST_FILENAME} !-f\n"
             "RewriteRule . /index.php [L]\n")
    assert web.get(B, "/some/permalink/") == (200, "hello from b.example")
    include = sandbox.read(f"/etc/apache2/siteiso/{B}.conf")
    assert '<Directory "/home/john/blog">' in include, include


def test_symlinked_docroot_runs_php_in_its_view_under_its_configured_path(sandbox):
    """The web server names b.example's docroot by its symlink (~/blog ->
    ~/sites/blog). The index records both paths: the entry accepts either
    as DOCUMENT_ROOT with the script under the same one, the path exists in
    the view (FastCGI and FPM requests name it too), and nothing else
    passes: not a sibling's script, not after the link is re-pointed."""
    _symlinked_web(sandbox, "/home/john/sites/blog")
    enable(sandbox, A, B)
    st = json.loads(sandbox.read("/var/lib/siteiso/state.json"))
    b_token = next(t for t, s in st["sites"].items() if B in s["names"])
    uid = sandbox.users["john"].uid
    index = sandbox.read(f"/run/siteiso/index/{uid}")
    assert any(line.split("\t")[1] == b_token and
               line.split("\t")[6:] == ["/home/john/sites/blog", B, "/run/siteiso/php",
                                        "/home/john/blog"]
               for line in index.splitlines()), index
    for root in ("/home/john/blog", "/home/john/sites/blog"):
        r = run_handler(sandbox, b_token, root, f"{root}/index.php", "php-cgi", "-q")
        assert (r.returncode, r.stdout) == (0, "hello from b.example"), (root, r.stderr)
    # In the view the configured path leads to the docroot; the sibling's
    # files do not exist.
    r = sandbox.run(["cagefs_enter_site", "/home/john/blog", "sh", "-c",
                     f"cat /home/john/blog/index.php; cat {A_SECRET}"],
                    user="john", check=False)
    assert "hello from b.example" in r.stdout and "secret-of-a" not in r.stdout, r
    bad = [("/home/john/blog", f"{A_ROOT}/wp-config.php"),        # another root
           ("/home/john/blog", "/home/john/sites/blog/index.php"),
           ("/home/john/sites/blog", "/home/john/blog/index.php"),
           ("/home/john/blog", "/home/john/blog/../public_html/index.php"),
           ("/home/john", "/home/john/blog/index.php")]
    for root, script in bad:
        r = run_handler(sandbox, b_token, root, script, "cat", A_SECRET)
        assert r.returncode == 125 and "secret" not in r.stdout, (root, script, r)
    # The owner re-points the link at the sibling: the next rebuild drops the
    # path from the index (it no longer leads to this docroot): refused.
    sandbox.run(["ln", "-sfn", A_ROOT, "/home/john/blog"], user="john")
    assert sandbox.cagefsctl("--remount", "john").returncode == 0
    r = run_handler(sandbox, b_token, "/home/john/blog", "/home/john/blog/index.php",
                 "cat", A_SECRET)
    assert r.returncode == 125 and "secret" not in r.stdout, r
    r = run_handler(sandbox, b_token, "/home/john/sites/blog",
                 "/home/john/sites/blog/index.php", "php-cgi", "-q")
    assert r.stdout == "hello from b.example", r.stderr


def test_symlinked_docroot_through_a_siblings_tree_is_not_accepted(sandbox):
    """The configured path may not pass through another isolated site's
    tree: that site could re-point the link (here ~/public_html/blog, in
    a.example's docroot). b.example's requests under it fail closed."""
    _symlinked_web(sandbox, "/home/john/sites/blog")
    sandbox.run(["ln", "-s", "/home/john/sites/blog", f"{A_ROOT}/blog"], user="john")
    domains = dict(SYMLINKED, **{B: ("john", f"{A_ROOT}/blog")})
    sandbox.set_domains(domains)
    enable(sandbox, A, B)
    st = json.loads(sandbox.read("/var/lib/siteiso/state.json"))
    b_token = next(t for t, s in st["sites"].items() if B in s["names"])
    r = run_handler(sandbox, b_token, f"{A_ROOT}/blog", f"{A_ROOT}/blog/index.php",
                 "php-cgi", "-q")
    assert r.returncode == 125 and "hello" not in r.stdout, r


def test_docroot_name_cannot_break_the_web_servers_configuration(sandbox):
    """Hostile home: the owner points a (panel-clean) docroot through a
    symlink at a directory whose name holds a double quote. Enable succeeds
    and writes it into `<Directory "...">` unescaped: Apache's configuration
    no longer parses, the graceful reload is refused (so the site's isolation
    never reaches Apache and its PHP keeps running through the panel's
    handler, outside the view), and the next restart takes every account's
    sites down."""
    web = _symlinked_web(sandbox, '/home/john/we"ird')
    r = sandbox.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0
    r = sandbox.cagefsctl("--site-isolation-enable", A, B)
    if r.returncode != 0:
        return                      # refusing the name is a fine answer
    t = sandbox.run(["apache2ctl", "-t"], check=False)
    assert t.returncode == 0, t.stderr
    # If enable said yes, b.example's PHP must now run in its view.
    assert not web.probe(B, "read", A_SECRET)["ok"]


# ---- blocked attempts ---------------------------------------------------------------

def test_htaccess_cannot_turn_options_back_on(web):
    """`Options +FollowSymLinks` (or +ExecCGI, +Includes) in .htaccess is
    refused (no Options override): the request fails, the link is not
    followed."""
    web.sbx.run(["ln", "-s", B_SECRET, f"{A_ROOT}/leak.txt"], user="john")
    htaccess(web.sbx, A_ROOT, "Options +FollowSymLinks +ExecCGI +Includes\n")
    assert "secret-of-b.example" in web.get(A, "/leak.txt")[1]   # real before
    enable(web.sbx, A, NESTED, B)
    code, body = web.get(A, "/leak.txt")
    assert "secret-of-b.example" not in body and code >= 400, (code, body)


def test_htaccess_cannot_run_cgi_scripts_with_the_cgirun_handler(web):
    script(web.sbx, f"{A_ROOT}/x.cgi",
           f"#!/bin/sh\necho Content-Type: text/plain\necho\ncat {B_SECRET}\n")
    htaccess(web.sbx, A_ROOT, "AddHandler cgi-script .cgi\n"
                              "<Files x.sh>\nSetHandler cgi-script\n</Files>\n")
    script(web.sbx, f"{A_ROOT}/x.sh",
           f"#!/bin/sh\necho Content-Type: text/plain\necho\ncat {B_SECRET}\n")
    enable(web.sbx, A, NESTED, B)
    for path in ("/x.cgi", "/x.sh"):
        code, body = web.get(A, path)
        assert "secret-of-b.example" not in body, (path, code, body)


def test_htaccess_cannot_point_php_at_a_siblings_wrapper(web):
    """Even naming the sibling's own (root-written) wrapper, by its token
    (which a site can learn), gets nothing: the wrapper is not reachable by
    URL from another vhost, and the entry would check DOCUMENT_ROOT."""
    enable(web.sbx, A, NESTED, B)
    st = json.loads(web.sbx.read("/var/lib/siteiso/state.json"))
    b_token = next(t for t, s in st["sites"].items() if B in s["names"])
    wrapper = f"/home/john/.cagefs/wrappers/{b_token}/php-cgi"
    action = "Action application/x-httpd-php"
    for line in (f"{action} {wrapper}\n",
                 f"{action} /.siteiso-php/../{b_token}/php-cgi\n"):
        htaccess(web.sbx, A_ROOT, line)
        r = web.probe(A, "read", B_SECRET)
        assert not r["ok"], (line, r)
    # The entry itself refuses B's token with A's DOCUMENT_ROOT, from outside.
    r = web.sbx.run(["/usr/libexec/siteiso/siteiso-enter", "handler", b_token,
                     "cat", B_SECRET], user="john", check=False,
                    env={"DOCUMENT_ROOT": A_ROOT, "SCRIPT_FILENAME": f"{A_ROOT}/x.php"})
    assert r.returncode == 125 and "secret" not in r.stdout


@pytest.mark.parametrize("path", [
    "/nested/probe.php", "//nested/probe.php", "/nested//probe.php",
    "/./nested/probe.php", "/%6eested/probe.php", "/nested/./probe.php",
    "/x/../nested/probe.php", "/index.php/../nested/probe.php",
    "/NESTED/probe.php",
])
def test_request_paths_do_not_run_nested_sites_php_in_the_parents_view(web, path):
    enable(web.sbx, A, NESTED)
    query = "?" + urlencode({"op": "read", "t": NESTED_SECRET})
    code, body = curl(web.sbx, A, path + query)
    assert "secret-of-nested.example" not in body, (path, code, body)
    # and the nested site, served by its own vhost, reads its own file
    assert web.probe(NESTED, "read", NESTED_SECRET)["ok"]


def test_handler_environment_tricks_fail_closed(web):
    """REDIRECT_STATUS / PATH_TRANSLATED / SCRIPT_FILENAME from the caller
    naming a nested sibling's script, or not normalized, are refused by the
    entry (exit 125); the same call for the site's own script runs."""
    enable(web.sbx, A, NESTED)
    st = json.loads(web.sbx.read("/var/lib/siteiso/state.json"))
    a_token = next(t for t, s in st["sites"].items() if A in s["names"])
    entry = "/usr/libexec/siteiso/siteiso-enter"

    def call(**env):
        return web.sbx.run([entry, "handler", a_token, "cat", NESTED_SECRET],
                           user="john", check=False, env=env)
    bad = [
        {"DOCUMENT_ROOT": A_ROOT, "SCRIPT_FILENAME": f"{A_ROOT}/nested/wp-config.php"},
        {"DOCUMENT_ROOT": A_ROOT, "SCRIPT_FILENAME": f"{A_ROOT}/x/../nested/x.php"},
        {"DOCUMENT_ROOT": A_ROOT, "SCRIPT_FILENAME": f"{A_ROOT}//nested/x.php"},
        {"DOCUMENT_ROOT": A_ROOT, "REDIRECT_STATUS": "200",
         "SCRIPT_FILENAME": f"{A_ROOT}/index.php",
         "PATH_TRANSLATED": f"{A_ROOT}/nested/wp-config.php"},
        {"DOCUMENT_ROOT": f"{A_ROOT}/nested", "SCRIPT_FILENAME": f"{A_ROOT}/nested/x"},
        {"DOCUMENT_ROOT": f"{A_ROOT}/../public_html"},
        {"SCRIPT_FILENAME": f"{A_ROOT}/index.php"},
    ]
    for env in bad:
        r = call(**env)
        assert r.returncode == 125, (env, r.returncode, r.stdout, r.stderr)
    r = web.sbx.run([entry, "handler", a_token, "cat", A_SECRET], user="john",
                    check=False, env={"DOCUMENT_ROOT": A_ROOT + "/",
                                      "SCRIPT_FILENAME": f"{A_ROOT}/index.php"})
    assert "secret-of-a.example" in r.stdout, r.stderr


def test_session_files_of_a_sibling_are_not_reachable(web):
    enable(web.sbx, A, B)
    web.probe(B, "session", "victim")
    for target in ("/var/lib/php/sessions/sess_siteisotestvictim",
                   "/tmp/sess_siteisotestvictim"):
        r = web.probe(A, "read", target)
        assert not r["ok"], (target, r)


def test_app_root_htaccess_cannot_enable_cgi_outside_the_view(web):
    """Apache reads `.htaccess` in every directory down to the file, and
    `<Directory /home>` allows all overrides. A site with an app root
    (b.example: ~/b.example/www, app root ~/b.example, read-write in its
    view) writes ~/b.example/.htaccess, above the include's <Directory>:
    `Options +ExecCGI` there survives the include's relative
    `Options -FollowSymLinks -SymLinksIfOwnerMatch`, and the site's CGI
    script runs through suexec as the user, outside every view."""
    enable(web.sbx, A, NESTED, B)
    # All written by b.example's own PHP, inside its view.
    cmd = ("printf 'Options +ExecCGI\\nAddHandler cgi-script .cgi\\n' "
           "> /home/john/b.example/.htaccess && "
           "printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\n"
           f"cat {A_SECRET}\\n' > {B_ROOT}/x.cgi && chmod 755 {B_ROOT}/x.cgi"
           " && echo done")
    r = web.probe(B, "exec", cmd)
    assert "done" in (r["out"] or ""), r
    code, body = web.get(B, "/x.cgi")
    assert "secret-of-a.example" not in body, (code, body)
