"""`siteiso uninstall` removes everything `siteiso install` put in place, and
install puts it back (inside a sandbox whose /usr and /opt are overlays)."""

import pytest
from harness import Sandbox

pytestmark = pytest.mark.kernel

PLACES = ["/usr/local/sbin/cagefsctl", "/usr/local/sbin/siteiso",
          "/usr/local/bin/cagefsctl-user", "/usr/local/bin/selectorctl",
          "/usr/local/bin/cagefs_enter_site", "/usr/libexec/siteiso/siteiso-enter",
          "/usr/libexec/siteiso/siteiso-holder", "/opt/siteiso/venv/bin/python",
          "/etc/systemd/system/siteiso.slice", "/etc/systemd/system/siteisod.service",
          "/etc/systemd/system/siteiso-views.service",
          "/usr/lib/apache2/modules/mod_siteiso.so",
          "/etc/apache2/mods-available/siteiso.load",
          "/etc/apache2/mods-enabled/siteiso.load"]


def test_uninstall_then_install():
    with Sandbox("install", overlay_usr=True) as sbx:
        for p in PLACES:
            assert sbx.exists(p), p
        mode = sbx.run(["stat", "-c", "%a %U", "/usr/libexec/siteiso/siteiso-enter"])
        assert mode.stdout.strip() == "4755 root"
        # Keep a copy of the venv to reinstall from after uninstall removes it.
        sbx.run(["cp", "-a", "/opt/siteiso", "/tmp/siteiso-copy"])
        out = sbx.run(["/opt/siteiso/venv/bin/siteiso", "uninstall"]).stdout
        assert "removed /usr/libexec/siteiso" in out
        for p in PLACES:
            assert not sbx.exists(p), p
        sbx.run(["cp", "-a", "/tmp/siteiso-copy", "/opt/siteiso"])
        sbx.run(["/opt/siteiso/venv/bin/siteiso", "install"])
        for p in PLACES:
            assert sbx.exists(p), p
        r = sbx.run(["stat", "-c", "%a %U", "/usr/libexec/siteiso/siteiso-enter"])
        assert r.stdout.strip() == "4755 root"
