"""The VM tier: part of the kernel tier on Debian 12's stock kernel (6.1)
under qemu, whatever kernel the host runs (see README.md in this directory).

The guest's exit status is the result; on failure the message carries the
guest's summary and the tail of its output. Environment:
SITEISO_VM_FULL=1 (whole test files), SITEISO_VM_TESTS="node ids…" (these
instead), SITEISO_VM_STRICT=1 (no known gaps),
SITEISO_VM_ACCEL=kvm|tcg, SITEISO_VM_TIMEOUT, SITEISO_VM_CACHE.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vmtier  # noqa: E402

pytestmark = pytest.mark.vm


def _unavailable(why: str) -> None:
    """Skip where the tier cannot run; in CI that is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the VM tier cannot run in CI: {why}")
    pytest.skip(why)


def test_kernel_tier_on_debian_12_stock_kernel() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root (the guest reads the host's files as root)")
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"),
                          ("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is missing (package {package})")
    full = os.environ.get("SITEISO_VM_FULL") == "1"
    tests = os.environ.get("SITEISO_VM_TESTS", "").split() or list(
        vmtier.FULL_TESTS if full else vmtier.DEFAULT_TESTS)
    timeout = float(os.environ.get("SITEISO_VM_TIMEOUT") or (2700 if full else 900))
    try:
        job = vmtier.default_job(tests, vmtier.python_with_pytest(), [])
        r = vmtier.run_vm(job, accel=os.environ.get("SITEISO_VM_ACCEL", "auto"),
                          timeout=timeout)
    except vmtier.VMError as e:
        pytest.fail(f"the VM could not be set up: {e}")
    summary = r.summary()
    print(summary)
    print("---- siteiso doctor in the guest ----")
    print(r.doctor)
    if r.status is None:
        pytest.fail(f"the guest gave no exit status\n{summary}\n---- console tail "
                    f"----\n{r.tail(60)}", pytrace=False)
    if r.status != 0:
        pytest.fail(f"the guest tier failed\n{summary}\n---- guest output tail "
                    f"----\n{r.tail(80)}", pytrace=False)
