"""A small hosting server inside the sandbox: two accounts, four domains."""

from __future__ import annotations

import pytest
from harness import Sandbox

FLAG = "/opt/cloudlinux/flags/enabled-flags.d/website-isolation.flag"
ALLOW_ALL = "/etc/cagefs/site-isolation.mode.allow_all"
DENY_ALL = "/etc/cagefs/site-isolation.mode.deny_all"
DENIED = "/etc/cagefs/site-isolation.users.denied"
ALLOWED = "/etc/cagefs/site-isolation.users.allowed"

DOMAINS = {
    "example.com": ("john", "/home/john/public_html"),
    "shop.example.com": ("john", "/home/john/public_html/shop"),
    "blog.example.org": ("john", "/home/john/blog"),
    "jane.example.net": ("jane", "/home/jane/public_html"),
}


def make_server(sbx: Sandbox) -> Sandbox:
    sbx.useradd("john")
    sbx.useradd("jane")
    sbx.useradd("sysacct", uid=500)
    files = {}
    for domain, (owner, docroot) in DOMAINS.items():
        tree = files.setdefault(owner, {})
        tree[f"{docroot}/index.php"] = f"<?php echo '{domain}';\n"
        tree[f"{docroot}/wp-config.php"] = f"<?php $pw = 'secret-{domain}';\n"
    for owner, tree in files.items():
        sbx.make_tree(owner, tree)
    sbx.set_domains(DOMAINS)
    return sbx


@pytest.fixture
def server(sandbox: Sandbox) -> Sandbox:
    return make_server(sandbox)
