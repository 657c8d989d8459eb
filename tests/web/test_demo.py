"""The README's demo (`siteiso demo`) runs as it says, on its own sandbox."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.web


def test_the_demo_runs_as_expected():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    r = subprocess.run(["/usr/local/sbin/siteiso", "demo"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "unexpected result" not in r.stdout + r.stderr
    assert r.stdout.rstrip().endswith(
        "The demo ran as expected. The sandbox is gone; the host is unchanged.")
    # It showed the attack working before isolation and failing after.
    assert "secret-of-b.example" in r.stdout
    assert "(cannot read /home/john/b.example/www/wp-config.php)" in r.stdout
