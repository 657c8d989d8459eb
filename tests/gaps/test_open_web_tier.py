"""Open findings (known gaps, see the README): each test shows an attack
that still works; run with SITEISO_GAPS=1. The helpers are the attack
tests' own."""

from __future__ import annotations

import pytest  # noqa: F401
from test_attack_web_tier import (  # noqa: F401
    A_SECRET,
    A,
    B,
    _symlinked_web,
    enable,
)


def test_symlinked_docroot_still_runs_php_in_its_view(sandbox):
    """Same set-up. The entry and the view now accept the symlinked path
    (test_symlinked_docroot_runs_php_in_its_view_under_its_configured_path),
    but the vhost include (siteiso/service/apache.py) names only the resolved
    docroot in its <Directory> and closes the home with `Options None`: Apache
    refuses to follow the DocumentRoot symlink (AH00037, HTTP 403) and the
    site is down (fails closed). Needs the include to repeat the docroot's
    <Directory> for the symlinked path and to allow following links on the
    way to it (`Options SymLinksIfOwnerMatch` on the home's section)."""
    web = _symlinked_web(sandbox, "/home/john/sites/blog")
    enable(sandbox, A, B)
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert not web.probe(B, "read", A_SECRET)["ok"]
