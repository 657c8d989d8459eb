"""Fixtures for the open findings (the kernel tier's `server`)."""

import pytest
from harness import Sandbox
from testlib import make_server


@pytest.fixture
def server(sandbox: Sandbox) -> Sandbox:
    return make_server(sandbox)
