"""Fixtures and the suite's own guarantees.

- `sandbox`: a fresh private server per test (see harness.py).
- In CI (CI=true) a skipped kernel or web test is a failure.
- At the end the host's mount table, /etc/passwd and cgroup tree must be
  exactly as before the suite.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Sandbox, host_snapshot  # noqa: E402
from testlib import cases_dir  # noqa: E402

_before: dict[str, object] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:
        _before.update(host_snapshot())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _before:
        return
    after = host_snapshot()
    problems = []
    for key in ("mounts", "passwd", "cgroups"):
        if after[key] != _before[key]:
            if isinstance(after[key], list):
                new = set(after[key]) - set(_before[key])  # type: ignore[arg-type]
                gone = set(_before[key]) - set(after[key])  # type: ignore[arg-type]
                problems.append(f"host {key} changed: added {sorted(new)[:5]} "
                                f"removed {sorted(gone)[:5]}")
            else:
                problems.append(f"host {key} changed")
    if problems:
        print("\nHOST CHANGED BY THE SUITE:\n  " + "\n  ".join(problems))
        session.exitstatus = 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        tiers = {m.name for m in item.iter_markers()}
        if tiers & {"kernel", "web"}:
            report.outcome = "failed"
            report.longrepr = f"skipped in CI (not allowed for kernel/web tests): " \
                              f"{report.longrepr}"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    require_root()
    sbx = Sandbox(request.node.name[:40].replace("/", "_").replace("[", "_")
                  .replace("]", "_"))
    sbx.start()
    try:
        yield sbx
    finally:
        sbx.stop()


@pytest.fixture
def cases() -> Path:
    try:
        return cases_dir()
    except FileNotFoundError as e:
        pytest.fail(str(e))
