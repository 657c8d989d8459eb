"""The web tier's fixture: a real Apache serving three sites of john (one
nested in another's docroot) and one of jane (webserver.py)."""

from __future__ import annotations

import pytest
from harness import Sandbox
from webserver import Web, make_web


@pytest.fixture
def web(sandbox: Sandbox) -> Web:
    return make_web(sandbox)
