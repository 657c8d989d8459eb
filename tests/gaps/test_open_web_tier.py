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
    """Same set-up: the entry compares DOCUMENT_ROOT (the symlink path Apache
    uses) with the resolved docroot of the index and refuses every request:
    the site's PHP is down (fails closed, but the site is broken)."""
    web = _symlinked_web(sandbox, "/home/john/sites/blog")
    enable(sandbox, A, B)
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert not web.probe(B, "read", A_SECRET)["ok"]
