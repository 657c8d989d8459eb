"""Views follow a host unmount: nothing stays busy (SPEC §4.7)."""

import pytest

pytestmark = pytest.mark.kernel


def devices(sbx, pid="self"):
    out = sbx.read(f"/proc/{pid}/mountinfo")
    return {line.split()[2] for line in out.splitlines()}


def test_view_lets_go_of_a_file_system_the_host_unmounted(sandbox):
    sandbox.run(["mkdir", "-p", "/srv/homes"])
    sandbox.run(["mount", "-t", "tmpfs", "homes", "/srv/homes"])
    sandbox.run(["useradd", "-m", "-d", "/srv/homes/john", "-U", "john"])
    sandbox.run(["chmod", "711", "/srv/homes/john"])
    sandbox.make_tree("john", {"/srv/homes/john/site/index.php": "<?php\n"})
    sandbox.set_domains({"site.example": ("john", "/srv/homes/john/site")})
    assert sandbox.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = sandbox.cagefsctl("--site-isolation-enable", "site.example")
    assert r.returncode == 0, r.stderr
    dev = sandbox.sh("mountpoint -d /srv/homes").stdout.strip()
    uid = sandbox.run(["id", "-u", "john"]).stdout.strip()
    holders = [line.split("\t")[2] for line in
               sandbox.read(f"/run/siteiso/index/{uid}").splitlines()
               if line.startswith(("site\t", "cage\t"))]
    assert holders and all(dev in devices(sandbox, pid) for pid in holders)

    sandbox.run(["umount", "-l", "/srv/homes"])
    assert dev not in devices(sandbox)
    r = sandbox.run(["siteiso", "follow-unmounts", dev])
    assert "detached" in r.stdout
    for pid in holders:
        assert dev not in devices(sandbox, pid)
