"""The shipped systemd units verify cleanly (`systemd-analyze verify`)."""

import shutil
import subprocess

import pytest

from siteiso.commands.install import UNITS

pytestmark = pytest.mark.pure


def test_units_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    files = []
    for name, text in UNITS.items():
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *files],
                       capture_output=True, text=True)
    problems = [line for line in r.stderr.splitlines()
                if "Delegate= setting not supported for this unit type" not in line]
    assert r.returncode == 0 and not problems, r.stderr
    assert "Delegate=yes" in UNITS["siteiso.slice"]
    assert "KillMode=process" in UNITS["siteisod.service"]
