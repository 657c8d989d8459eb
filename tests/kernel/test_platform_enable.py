"""Enable fails with the platform error, naming what is missing (SPEC §9)."""

import pytest

pytestmark = pytest.mark.kernel


def test_missing_kernel_feature_fails_enable_and_names_it(server):
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = server.run(["cagefsctl", "--site-isolation-enable", "example.com"],
                   check=False, env={"SITEISO_FORCE_MISSING": "openat2,mount_setattr"})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "Website isolation feature is not available on this platform"
    assert "openat2" in lines[1] and "mount_setattr" in lines[1]
    assert server.cagefsctl("--site-isolation-list").stdout.startswith("No users")


def test_missing_feature_with_a_fallback_does_not_block_enable(server):
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = server.run(["cagefsctl", "--site-isolation-enable", "example.com"],
                   check=False, env={"SITEISO_FORCE_MISSING": "close_range"})
    assert r.returncode == 0, r.stderr


def test_doctor_prints_every_probe(server):
    out = server.run(["siteiso", "doctor"]).stdout
    for name in ("openat2", "pidfd_open", "new_mount_api", "mount_setattr",
                 "close_range", "clone_into_cgroup", "proc_hidepid", "cgroup2",
                 "cgroup_kill", "seccomp_filter"):
        assert name in out
