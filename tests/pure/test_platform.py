"""Kernel feature probes (SPEC §9): probed, listed, and enable refuses."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from siteiso import platform
from siteiso.errors import KernelUnsupported
from siteiso.plan import CageInput, SiteInput, cage_plan, site_plan
from siteiso.plan.view import Storage
from siteiso.procs import lifecycle

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


@pytest.mark.pure
def test_cgroup2_is_required_and_every_fallback_is_optional() -> None:
    # siteiso mounts cgroup2 itself where none is mounted (the probe passes);
    # a kernel without it has no safe substitute.
    assert platform.FALLBACKS["cgroup2"] == (None, True)
    with_fallback = {n for n, (fb, _req) in platform.FALLBACKS.items() if fb}
    assert with_fallback == {"close_range", "clone_into_cgroup", "proc_hidepid",
                             "cgroup_kill"}
    assert not any(platform.FALLBACKS[n][1] for n in with_fallback)


@pytest.mark.pure
def test_forced_missing_feature_is_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(platform.FORCE_ENV, "cgroup_kill, proc_hidepid")
    assert platform.forced_missing("cgroup_kill")
    assert not platform.forced_missing("close_range")
    assert not platform.available("proc_hidepid")
    monkeypatch.delenv(platform.FORCE_ENV)
    # Unforced, the verdict is the probe's.
    by_name = {p.name: p.ok for p in platform.probe_all()}
    assert platform.available("cgroup2") == by_name["cgroup2"]


@pytest.mark.pure
def test_forced_missing_cgroup_kill_takes_the_freeze_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("cgroup.kill", "cgroup.freeze", "cgroup.procs"):
        (tmp_path / name).write_text("")
    assert lifecycle._kill_method(str(tmp_path)) == "kill"
    monkeypatch.setenv(platform.FORCE_ENV, "cgroup_kill")
    assert lifecycle._kill_method(str(tmp_path)) == "freeze"
    (tmp_path / "cgroup.freeze").unlink()
    assert lifecycle._kill_method(str(tmp_path)) == "signal"


def _plan_inputs(proc_hidepid: bool) -> tuple[CageInput, SiteInput]:
    store = "/home/john/.cagefs"
    cage = CageInput(
        user="john", uid=1001, gid=1001, home="/home/john",
        hosting_homes=("/home/john",), home_entries=(), passwd="/p", group="/g",
        cgroup="/sys/fs/cgroup/x",
        storage=Storage(f"{store}/tmp", f"{store}/var-tmp", f"{store}/shm",
                        f"{store}/sessions"),
        proc_hidepid=proc_hidepid)
    return cage, SiteInput(token="t", docroot="/home/john/public_html")


def _proc_line(ops: list) -> tuple[str, ...]:
    return next(o.args for o in ops if o.kind == "proc")


@pytest.mark.pure
def test_the_cage_follows_the_proc_hidepid_verdict_and_sites_keep_it() -> None:
    cage, site = _plan_inputs(proc_hidepid=True)
    assert _proc_line(cage_plan(cage)) == ("hidepid=invisible",)
    cage = dataclasses.replace(cage, proc_hidepid=False)
    # "-": a fresh /proc without options, which reconfigures nothing.
    assert _proc_line(cage_plan(cage)) == ("-",)
    assert _proc_line(site_plan(cage, site, [site])) == ("hidepid=invisible",)
