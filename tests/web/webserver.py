"""A real Apache serving three sites of john (one nested in another's
docroot) and one of jane, inside the sandbox (the `web` fixture of
conftest.py), and helpers to look at it. A module of its own so that test
modules import it by a name no other tier shares."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from harness import Sandbox

from siteiso.sandbox import curl, start_apache

SITES = {
    "a.example": ("john", "/home/john/public_html"),
    "nested.example": ("john", "/home/john/public_html/nested"),
    "b.example": ("john", "/home/john/b.example/www"),
    "jane.example": ("jane", "/home/jane/public_html"),
}

# One PHP file in every site: tries an operation on a path and says what
# happened, as JSON.
PROBE = r"""<?php
header('Content-Type: application/json');
$op = $_GET['op'] ?? 'read';
$t = $_GET['t'] ?? '';
$r = ['op' => $op, 'ok' => false, 'out' => null];
switch ($op) {
case 'read':    $v = @file_get_contents($t); $r['ok'] = $v !== false;
                $r['out'] = $v; break;
case 'list':    $v = @scandir($t); $r['ok'] = $v !== false; $r['out'] = $v; break;
case 'include': ob_start(); $v = @include($t); $r['out'] = ob_get_clean();
                $r['ok'] = $v !== false; break;
case 'write':   $r['ok'] = @file_put_contents($t, 'x') !== false; break;
case 'connect': $s = @stream_socket_client('unix://' . $t, $en, $es, 1);
                $r['ok'] = $s !== false; $r['out'] = $es; break;
case 'session': session_id('siteisotest' . preg_replace('/\W/', '', $t));
                session_start(); $_SESSION['who'] = $_SERVER['HTTP_HOST'];
                $r['ok'] = true; $r['out'] = session_save_path(); break;
case 'exec':    $v = @shell_exec($t); $r['ok'] = $v !== null; $r['out'] = $v; break;
case 'env':     $r['ok'] = true; $r['out'] = ['uid' => posix_getuid(),
                'pid' => getmypid(), 'docroot' => $_SERVER['DOCUMENT_ROOT']]; break;
}
echo json_encode($r);
"""


class Web:
    def __init__(self, sbx: Sandbox) -> None:
        self.sbx = sbx

    def probe(self, domain: str, op: str, target: str = "") -> dict:
        code, body = curl(self.sbx, domain,
                          "/probe.php?" + urlencode({"op": op, "t": target}))
        if code != 200:
            return {"ok": False, "status": code, "out": body}
        return json.loads(body)

    def get(self, domain: str, path: str) -> tuple[int, str]:
        return curl(self.sbx, domain, path)


def make_web(sbx: Sandbox, siteiso_module: bool = True) -> Web:
    sbx.useradd("john")
    sbx.useradd("jane")
    for domain, (owner, docroot) in SITES.items():
        sbx.make_tree(owner, {
            f"{docroot}/probe.php": PROBE,
            f"{docroot}/index.php": f"<?php echo 'hello from {domain}';\n",
            f"{docroot}/wp-config.php":
                f"<?php $secret = 'secret-of-{domain}'; echo $secret;\n",
            f"{docroot}/data.txt": f"data of {domain}\n",
        })
    sbx.make_tree("john", {"/home/john/b.example/.env": "B_DB_PASSWORD=hunter2\n"})
    sbx.set_domains(SITES)
    start_apache(sbx, SITES, siteiso_module=siteiso_module)
    return Web(sbx)


def fpm_socket(sbx: Sandbox, token: str) -> str:
    """A site's php-fpm socket: named by an HMAC of its token under the
    host's secret (siteiso.service.fpm), computed as root in the sandbox."""
    return sbx.run(["/opt/siteiso/venv/bin/python", "-c",
                    "import sys; from siteiso.service import fpm; "
                    "print(fpm.socket_path(sys.argv[1]))", token]).stdout.strip()
