"""`siteiso install` / `siteiso uninstall`: put siteiso in its system places.

Run from the product's venv (/opt/siteiso/venv, made from the
distribution's python3 so that every user can run the user commands).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from siteiso import paths
from siteiso.errors import SiteisoError
from siteiso.service import apache, layout

BIN = Path(__file__).resolve().parent.parent / "_bin"
ADMIN_COMMANDS = ("cagefsctl", "siteiso")
USER_COMMANDS = ("cagefsctl-user", "selectorctl", "cagefs_enter_site")
# Shell scripts that must work inside views, where /opt/siteiso is hidden.
COPIED = ("cagefs_enter_site",)
UNITS = {
    "siteiso.slice": """[Unit]
Description=siteiso: holders and per-site PHP of isolated websites
Before=slices.target

[Slice]
Delegate=yes
""",
    # systemd before 253 ignores Delegate= on slices: this unit owns the
    # delegated subtree the views live in on those hosts (cgroup_root in
    # /etc/siteiso/siteiso.conf then names its cgroup).
    "siteiso-views.service": """[Unit]
Description=siteiso: delegated cgroup subtree of the isolated sites' views
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
Slice=siteiso.slice
Delegate=yes

[Install]
WantedBy=multi-user.target
""",
    "siteisod.service": """[Unit]
Description=siteiso daemon: user socket, docroot monitor, FPM supervision
After=local-fs.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/siteiso daemon
Slice=siteiso.slice
PIDFile=/run/siteiso/siteisod.pid
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
""",
}
UNIT_DIR = "/etc/systemd/system"


def _nosuid(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_NOSUID)


def install() -> list[str]:
    if os.geteuid() != 0:
        raise SiteisoError("siteiso install must be run as root")
    done = []
    os.makedirs(paths.LIBEXEC, mode=0o755, exist_ok=True)
    if _nosuid(paths.LIBEXEC):
        raise SiteisoError(f"{paths.LIBEXEC} is on a nosuid file system: "
                           "the setuid entry cannot work there")
    for name, mode in (("siteiso-holder", 0o755), ("siteiso-enter", 0o4755)):
        src = BIN / name
        if not src.is_file():
            raise SiteisoError(f"{src} is missing: the package was built without "
                               "its C programs")
        dst = f"{paths.LIBEXEC}/{name}"
        tmp = f"{dst}.new"
        shutil.copyfile(src, tmp)
        os.chown(tmp, 0, 0)
        os.chmod(tmp, mode)
        os.rename(tmp, dst)
        done.append(f"{dst} ({oct(mode)})")
    venv_bin = os.path.dirname(sys.executable)
    for names, where in ((ADMIN_COMMANDS, "/usr/local/sbin"),
                         (USER_COMMANDS, "/usr/local/bin")):
        os.makedirs(where, exist_ok=True)
        for name in names:
            link = f"{where}/{name}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            if name in COPIED:
                shutil.copyfile(f"{venv_bin}/{name}", link)
                os.chmod(link, 0o755)
            else:
                os.symlink(f"{venv_bin}/{name}", link)
            done.append(link)
    if os.path.isdir(UNIT_DIR):
        for name, text in UNITS.items():
            with open(f"{UNIT_DIR}/{name}", "w", encoding="utf-8") as f:
                f.write(text)
            done.append(f"{UNIT_DIR}/{name}")
    done += _install_apache_module(layout.detect())
    return done


def _install_apache_module(lay: layout.Layout) -> list[str]:
    """mod_siteiso into Apache's module directory, with its LoadModule file
    (enabled with a2enmod on Debian), then a graceful reload where Apache
    runs. Without Apache, or a build without apxs, nothing: isolated sites'
    includes then keep `Options None` (siteiso doctor warns)."""
    src = BIN / "mod_siteiso.so"
    if not src.is_file() or not os.path.isdir(lay.apache_module_dir) or \
            not os.path.isdir(os.path.dirname(lay.apache_module_conf)):
        return []
    tmp = f"{lay.apache_module}.new"
    shutil.copyfile(src, tmp)
    os.chown(tmp, 0, 0)
    os.chmod(tmp, 0o644)
    os.rename(tmp, lay.apache_module)
    with open(f"{lay.apache_module_conf}.new", "w", encoding="utf-8") as f:
        f.write("# siteiso: the guard of isolated sites' vhosts (mod_siteiso)\n"
                f"LoadModule siteiso_module {lay.apache_module}\n")
    os.chmod(f"{lay.apache_module_conf}.new", 0o644)
    os.rename(f"{lay.apache_module_conf}.new", lay.apache_module_conf)
    if lay.name == "debian":
        subprocess.run(["a2enmod", "-q", "siteiso"], check=False,
                       capture_output=True)
    apache.reload(lay)
    return [lay.apache_module, lay.apache_module_conf]


def _uninstall_apache_module(lay: layout.Layout) -> list[str]:
    """The LoadModule line first, then the module once Apache no longer
    loads it."""
    done = []
    if lay.name == "debian" and os.path.exists(lay.apache_module_conf):
        subprocess.run(["a2dismod", "-q", "siteiso"], check=False,
                       capture_output=True)
    for path in (lay.apache_module_conf, lay.apache_module):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            done.append(path)
            if path == lay.apache_module_conf:
                apache.reload(lay)
    return done


def uninstall() -> list[str]:
    if os.geteuid() != 0:
        raise SiteisoError("siteiso uninstall must be run as root")
    from siteiso.service import cron
    done = [f"{cron.spool_dir()}/{u}" for u in cron.remove_cron_shells()]
    done += _uninstall_apache_module(layout.detect())
    targets = [f"/usr/local/sbin/{n}" for n in ADMIN_COMMANDS]
    targets += [f"/usr/local/bin/{n}" for n in USER_COMMANDS]
    targets += [f"{UNIT_DIR}/{n}" for n in UNITS]
    for t in targets:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(t)
            done.append(t)
    if os.path.isdir(paths.LIBEXEC):
        shutil.rmtree(paths.LIBEXEC)
        done.append(paths.LIBEXEC)
    if os.path.isdir(paths.OPT):
        subprocess.run(["rm", "-rf", "--one-file-system", paths.OPT], check=False)
        done.append(paths.OPT)
    return done
