"""Open findings (known gaps, see the README): each test shows an attack
that still works; run with SITEISO_GAPS=1.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

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


def test_symlinked_docroot_still_runs_php_in_its_view(sandbox):
    """Same set-up: the entry compares DOCUMENT_ROOT (the symlink path Apache
    uses) with the resolved docroot of the index and refuses every request:
    the site's PHP is down (fails closed, but the site is broken)."""
    web = _symlinked_web(sandbox, "/home/john/sites/blog")
    enable(sandbox, A, B)
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert not web.probe(B, "read", A_SECRET)["ok"]
