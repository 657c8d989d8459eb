"""Kernel-tier fixtures."""

from __future__ import annotations

import pytest
from harness import Sandbox
from testlib import make_server


@pytest.fixture
def server(sandbox: Sandbox) -> Sandbox:
    return make_server(sandbox)
