"""The harness itself: private, real, and gone afterwards."""

import pytest

pytestmark = pytest.mark.kernel


def test_useradd_inside_is_private(sandbox):
    sandbox.useradd("john")
    assert "john:" in sandbox.read("/etc/passwd")
    with open("/etc/passwd") as f:
        assert "\njohn:" not in "\n" + f.read()


def test_network_has_only_loopback(sandbox):
    out = sandbox.run(["ip", "-o", "link"]).stdout
    names = [line.split(":")[1].strip() for line in out.splitlines()]
    assert names == ["lo"]


def test_runs_as_user(sandbox):
    sandbox.useradd("jane")
    assert sandbox.run(["id", "-un"], user="jane").stdout.strip() == "jane"
