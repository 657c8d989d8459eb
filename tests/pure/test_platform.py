"""Kernel feature probes (SPEC §9): probed, listed, and enable refuses."""

from __future__ import annotations

import os

import pytest

from siteiso import platform
from siteiso.errors import KernelUnsupported

ROOT = os.geteuid() == 0
FIRST_LINE = "Website isolation feature is not available on this platform"


@pytest.fixture(autouse=True)
def no_forcing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platform.FORCE_ENV, raising=False)


def mount_table() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return f.read()


@pytest.mark.pure
def test_probe_all_names_every_probe() -> None:
    probes = platform.probe_all()

    assert [p.name for p in probes] == list(platform.NAMES)
    for p in probes:
        assert isinstance(p.ok, bool)
        assert p.detail
        assert p.fallback is None or not p.required
    assert {
        "openat2",
        "pidfd_open",
        "setns_pidfd",
        "new_mount_api",
        "mount_setattr",
        "close_range",
        "clone_into_cgroup",
        "proc_hidepid",
        "cgroup2",
        "cgroup_kill",
        "seccomp_filter",
        "unprivileged_userns",
    } <= set(platform.NAMES)


@pytest.mark.pure
def test_probes_leave_the_mount_table_as_it_was() -> None:
    before = mount_table()
    platform.probe_all()
    assert mount_table() == before


@pytest.mark.pure
def test_forced_missing_required_feature_blocks_enable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(platform.FORCE_ENV, "openat2")

    with pytest.raises(KernelUnsupported) as e:
        platform.require_for_enable()
    first, second = e.value.message.splitlines()
    assert first == FIRST_LINE
    assert "openat2" in second


@pytest.mark.pure
def test_second_line_names_every_missing_required_feature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(platform.FORCE_ENV, "new_mount_api, pidfd_open")

    with pytest.raises(KernelUnsupported) as e:
        platform.require_for_enable()
    second = e.value.message.splitlines()[1]
    assert "new_mount_api" in second
    assert "pidfd_open" in second


@pytest.mark.pure
def test_missing_feature_with_fallback_does_not_block_enable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(platform.FORCE_ENV, "close_range,cgroup_kill")

    try:
        platform.require_for_enable()
    except KernelUnsupported as e:
        # Only when this machine lacks a required feature (or we are not root).
        assert "close_range" not in e.message
        assert "cgroup_kill" not in e.message


@pytest.mark.pure
def test_doctor_lists_every_probe_with_fallbacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(platform.FORCE_ENV, "close_range,openat2")

    lines = platform.doctor_lines()
    assert len(lines) == len(platform.NAMES)
    for line, name in zip(lines, platform.NAMES, strict=True):
        status, shown = line.split()[:2]
        assert status in ("ok", "MISSING")
        assert shown == name
    close_range = lines[platform.NAMES.index("close_range")]
    assert close_range.startswith("MISSING close_range ")
    assert (
        "(fallback: the entry closes inherited descriptors one by one)" in close_range
    )
    assert "required" in lines[platform.NAMES.index("openat2")]


@pytest.mark.pure
def test_doctor_mentions_unknown_forced_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(platform.FORCE_ENV, "no_such_feature")
    assert "no_such_feature" in platform.doctor_lines()[-1]


@pytest.mark.kernel
@pytest.mark.skipif(not ROOT, reason="the mount and cgroup probes need root")
def test_this_kernel_has_every_required_feature() -> None:
    platform.require_for_enable()
    by_name = {p.name: p for p in platform.probe_all()}
    assert by_name["openat2"].ok
    assert by_name["new_mount_api"].ok
    assert by_name["proc_hidepid"].ok
