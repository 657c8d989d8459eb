"""Fixtures for the open findings: the kernel tier's `server`, and the attack
test modules (whose helpers the findings reuse) on the import path."""

import sys
from pathlib import Path

import pytest
from harness import Sandbox
from testlib import make_server

for tier in ("kernel", "web"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / tier))


@pytest.fixture
def server(sandbox: Sandbox) -> Sandbox:
    return make_server(sandbox)
