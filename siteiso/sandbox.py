"""A private server inside namespaces: for the tests and the demo.

A Sandbox is a long-lived PID 1 started under `unshare` with its own mount,
PID and network namespaces. Inside it /etc, /var, /run, /home and /opt are
overlays with a tmpfs upper layer and /tmp is a tmpfs, so useradd, panel
files, Apache and cron configuration are real but private, and vanish with
the sandbox. The test process itself never changes namespace: it runs
commands inside through nsenter and reads files through /proc/<pid>/root.

cgroups: each sandbox gets one subtree of the cgroup2 hierarchy (the host's
cgroup2 mount, or a private mount inside the sandbox where the host has
none), named in the sandbox's /etc/siteiso/siteiso.conf, removed at the end.
Sandbox(cgroup2=False) is a host where no cgroup2 is mounted (hybrid or v1):
none is visible inside, siteiso.conf names no cgroup_root, and siteiso
mounts its own (views.engine.CGROUP_FALLBACK), whose siteiso.slice at the
hierarchy's root the sandbox removes at the end.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from siteiso.service.layout import DEBIAN

OVERLAID = ("/etc", "/var", "/run", "/home", "/opt")
SBX = "/mnt"  # the tmpfs holding the overlays' upper layers, inside the sandbox
CG_PRIVATE = "/mnt/cgroup2"
# Where siteiso mounts cgroup2 when none is (siteiso.views.engine.CGROUP_FALLBACK).
CG_SITEISO = "/run/siteiso/cgroup"

CG_PRIVATE_MOUNT = """if ! grep -q ' - cgroup2 ' /proc/self/mountinfo; then
    mkdir -p {cgpriv}
    mount -t cgroup2 none {cgpriv}
fi"""
# Private mount namespace: the host's mounts stay.
CG_UNMOUNT = """for m in $(grep ' - cgroup2 ' /proc/self/mountinfo | cut -d' ' -f5 \\
             | sort -r); do
    umount "$m"
done"""

# PID 1 of the sandbox: reap orphans (holders re-parent here) until killed.
REAPER = r"""
import os, signal, time
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
print("ready", flush=True)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(0.2)
"""

SETUP = r"""
set -e
cd /
mount --make-rprivate /
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t tmpfs -o mode=0755 sbx {sbx}
for d in {overlaid}; do
    n=$(echo "$d" | tr / _)
    mkdir -p {sbx}/$n/upper {sbx}/$n/work
    mount -t overlay overlay \
        -o lowerdir=$d,upperdir={sbx}/$n/upper,workdir={sbx}/$n/work $d
done
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /run/lock /var/lock 2>/dev/null || true
ip link set lo up
{cgroups}
exec /usr/bin/python3 -c '{reaper}'
"""


def host_cgroup2() -> str | None:
    """The host's cgroup2 mount point, if the host has one."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split()[4]
    return None


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: str


class Sandbox:
    """One private server. Use as a context manager or through the fixture."""

    def __init__(self, name: str = "t", overlay_usr: bool = False,
                 cgroup2: bool = True) -> None:
        self.name = name
        # /usr too, for tests that install or uninstall siteiso itself.
        self.overlaid = (*OVERLAID, "/usr") if overlay_usr else OVERLAID
        self.proc: subprocess.Popen[str] | None = None
        self.pid = 0
        self.cgroup2 = cgroup2
        cg_mount = host_cgroup2()
        self._cg_private = cg_mount is None
        base = CG_PRIVATE if cg_mount is None else cg_mount
        if cgroup2:
            self.cgroup_root = \
                f"{base}/siteiso-test-{os.getpid()}-{name}-{time.time_ns()}"
            self._cg_inside = self.cgroup_root
        else:
            # What siteiso creates at the root of the hierarchy, as the host
            # sees it; inside, where siteiso mounts it.
            self.cgroup_root = f"{base}/siteiso.slice"
            self._cg_inside = f"{CG_SITEISO}/siteiso.slice"
        self.users: dict[str, User] = {}

    # ---- lifetime -------------------------------------------------------

    def start(self) -> Sandbox:
        if not self.cgroup2 and not self._cg_private and \
                os.path.exists(self.cgroup_root):
            # A siteiso of this host, or another such sandbox: not ours to remove.
            raise RuntimeError(f"{self.cgroup_root} exists: cannot run a sandbox "
                               "without cgroup2 next to its owner")
        cgroups = CG_PRIVATE_MOUNT.format(cgpriv=CG_PRIVATE) if self.cgroup2 \
            else CG_UNMOUNT
        script = SETUP.format(
            sbx=SBX,
            overlaid=" ".join(self.overlaid),
            cgroups=cgroups,
            reaper=REAPER.replace("'", "'\\''"),
        )
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork",
             "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True, cwd="/",
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.proc.kill()
            raise RuntimeError(f"sandbox did not start: {line!r} {err}")
        self.pid = self._child_pid(self.proc.pid)
        if self.cgroup2:
            self.run(["mkdir", "-p", self.cgroup_root])
            conf = f"cgroup_root = {self.cgroup_root}\n"
        else:
            conf = ""
        self.write("/etc/siteiso/siteiso.conf",
                   f"[siteiso]\n{conf}grace_seconds = 1\n")
        return self

    @staticmethod
    def _child_pid(unshare_pid: int) -> int:
        """unshare --fork: the sandbox's PID 1 is unshare's only child."""
        for _ in range(100):
            try:
                kids = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
                pids = kids.read_text().split()
            except FileNotFoundError:
                pids = []
            if pids:
                return int(pids[0])
            time.sleep(0.01)
        raise RuntimeError("sandbox PID 1 not found")

    def stop(self) -> None:
        if self.proc is None:
            return
        # End everything in siteiso's cgroups first, then the PID namespace
        # (its PID 1 dying takes every process inside with it).
        self.run(["sh", "-c", _KILL_CGROUPS.format(root=self._cg_inside)],
                 check=False, timeout=30)
        if self.pid > 0:   # never 0: that would signal our own process group
            os.kill(self.pid, signal.SIGKILL)
        else:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._remove_cgroups()
        self.proc = None

    def _remove_cgroups(self) -> None:
        script = (f"find {shlex.quote(self.cgroup_root)} -depth -type d "
                  "-exec rmdir {} + 2>/dev/null; true")
        if self._cg_private:
            script = f"mkdir -p {CG_PRIVATE} && mount -t cgroup2 none " \
                     f"{CG_PRIVATE} && {script}"
            argv = ["unshare", "--mount", "--propagation", "private",
                    "sh", "-c", script]
        else:
            argv = ["sh", "-c", script]
        for _ in range(50):
            subprocess.run(argv, check=False)
            if not self._cgroup_left():
                return
            time.sleep(0.1)

    def _cgroup_left(self) -> bool:
        if self._cg_private:
            return False
        return os.path.exists(self.cgroup_root)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- running things inside ------------------------------------------

    def argv(self, argv: list[str], user: str | None = None,
             env: dict[str, str] | None = None, cwd: str = "/") -> list[str]:
        inner = list(argv)
        base_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                            "/sbin:/bin", "LANG": "C.UTF-8"}
        if user is not None:
            u = self.users.get(user)
            base_env["HOME"] = u.home if u else "/"
            base_env["USER"] = user
            group = str(u.gid) if u else user
            inner = ["setpriv", f"--reuid={user}", f"--regid={group}",
                     "--init-groups", "--", *inner]
        base_env.update(env or {})
        envs = [f"{k}={v}" for k, v in base_env.items()]
        return ["nsenter", f"--target={self.pid}", "--mount", "--pid", "--net",
                "--ipc", "--uts", f"--wd={cwd}", "--", "env", "-i", *envs, *inner]

    def run(self, argv: list[str], user: str | None = None, check: bool = True,
            input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120, cwd: str = "/") -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(argv, user, env, cwd), input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(
                f"{argv} as {user or 'root'} exited {r.returncode}\n"
                f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def sh(self, script: str, user: str | None = None, check: bool = True,
           **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], user=user, check=check, **kw)  # type: ignore[arg-type]

    def popen(self, argv: list[str], user: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(argv, user, env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # ---- files, through the sandbox's root --------------------------------

    def host_path(self, path: str) -> str:
        return f"/proc/{self.pid}/root{path}"

    def write(self, path: str, content: str, mode: int = 0o644,
              owner: str | None = None) -> None:
        self.run(["mkdir", "-p", os.path.dirname(path)])
        self.run(["sh", "-c", f"cat > {shlex.quote(path)}"], input=content)
        self.run(["chmod", oct(mode)[2:], path])
        if owner:
            self.run(["chown", f"{owner}:{owner}", path])

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).returncode == 0

    # ---- users and sites ----------------------------------------------------

    def useradd(self, name: str, uid: int | None = None) -> User:
        cmd = ["useradd", "-m", "-s", "/bin/bash", "-U"]
        if uid is not None:
            cmd += ["-u", str(uid)]
        self.run([*cmd, name])
        self.run(["chmod", "0711", f"/home/{name}"])
        ids = self.run(["id", "-u", name]).stdout.strip(), \
            self.run(["id", "-g", name]).stdout.strip()
        user = User(name, int(ids[0]), int(ids[1]), f"/home/{name}")
        self.users[name] = user
        return user

    def make_tree(self, user: str, files: dict[str, str]) -> None:
        """Create files (path → content) owned by user, dirs as needed."""
        for path, content in files.items():
            self.run(["mkdir", "-p", os.path.dirname(path)], user=user)
            self.run(["sh", "-c", f"cat > {shlex.quote(path)}"], user=user,
                     input=content)

    def set_domains(self, domains: dict[str, tuple[str, str]]) -> None:
        """Write the embedded panel: domain → (owner, docroot)."""
        import json
        data = {d: {"owner": o, "document_root": r, "is_main": False}
                for d, (o, r) in domains.items()}
        self.write("/etc/siteiso/domains.json", json.dumps(data, indent=1))

    def cagefsctl(self, *args: str, check: bool = False,
                  user: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(["cagefsctl", *args], check=check, user=user)


_KILL_CGROUPS = r"""
root={root}
[ -d "$root" ] || exit 0
find "$root" -name cgroup.kill | while read f; do echo 1 > "$f" 2>/dev/null; done
for i in $(seq 50); do
    left=$(find "$root" -name cgroup.procs -exec cat {{}} + 2>/dev/null | head -1)
    [ -z "$left" ] && break
    sleep 0.1
done
true
"""


def host_snapshot() -> dict[str, object]:
    """What the suite must leave as it found it."""
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(" ".join(line.split()[3:5]) for line in f)
    with open("/etc/passwd", "rb") as f:
        passwd = f.read()
    # Only what siteiso or its tests would leave: the host's own agents
    # create and remove cgroups of their own meanwhile.
    cgroups: list[str] = []
    for dirpath, _dirs, _files in os.walk("/sys/fs/cgroup"):
        if "siteiso" in dirpath:
            cgroups.append(dirpath)
    return {"mounts": mounts, "passwd": passwd, "cgroups": sorted(cgroups)}


# ---- a real Apache inside the sandbox ---------------------------------------

VHOST = """<VirtualHost *:80>
    ServerName {domain}
    DocumentRoot {docroot}
    SuexecUserGroup {user} {user}
    # The panel's own (non-isolated) PHP: suexec + a user wrapper + php-cgi.
    ScriptAlias /php-bin/ {home}/cgi-bin/
    <Directory {home}/cgi-bin>
        Options +ExecCGI
        Require all granted
    </Directory>
    <Directory {docroot}>
        AllowOverride All
        Require all granted
    </Directory>
    AddHandler application/x-httpd-php .php
    Action application/x-httpd-php /php-bin/php-cgi
    # siteiso's include for this domain (present while it is isolated).
    IncludeOptional /etc/apache2/siteiso/{domain}.conf
</VirtualHost>
"""


# The installed module (`siteiso install` puts it in Apache's module
# directory): the product under test, and visible in the sandbox, whose
# /tmp (where a checkout's test venv may live) is private.
MOD_SITEISO = Path(DEBIAN.apache_module)


def start_apache(sbx: Sandbox, sites: dict[str, tuple[str, str]],
                 siteiso_module: bool = True) -> None:
    """Debian's Apache with suexec-custom (docroot /home), mod_cgid,
    mod_actions, mod_fcgid, mod_proxy_fcgi and mod_rewrite (as on hosting
    servers: sites' .htaccess rewrites), one vhost per domain, on the
    sandbox's loopback; with mod_siteiso (the guard of isolated vhosts)
    unless `siteiso_module` is False."""
    sbx.sh("update-alternatives --quiet --set suexec /usr/lib/apache2/suexec-custom"
           " && printf '/home\\npublic_html\\n' > /etc/apache2/suexec/www-data"
           " && a2enmod -q suexec actions cgid fcgid proxy_fcgi rewrite >/dev/null"
           " && a2dissite -q 000-default >/dev/null"
           " && echo 'ServerName localhost' > /etc/apache2/conf-enabled/name.conf")
    if siteiso_module:
        if not MOD_SITEISO.is_file():
            raise RuntimeError(f"{MOD_SITEISO} is missing: siteiso is not installed, "
                               "or was built without apxs (apache2-dev)")
        sbx.write("/etc/apache2/mods-available/siteiso.load",
                  f"LoadModule siteiso_module {MOD_SITEISO}\n")
        sbx.sh("a2enmod -q siteiso >/dev/null")
    else:
        # The host's own siteiso install may have enabled it in /etc.
        sbx.sh("a2dismod -q siteiso >/dev/null 2>&1; true")
    # As on cPanel servers: homes allow .htaccess overrides and symlinks.
    sbx.write("/etc/apache2/conf-enabled/homes.conf",
              "<Directory /home>\n    Options FollowSymLinks\n"
              "    AllowOverride All\n    Require all granted\n</Directory>\n")
    for user in {u for u, _ in sites.values()}:
        home = sbx.users[user].home
        sbx.make_tree(user, {f"{home}/cgi-bin/php-cgi":
                             '#!/bin/sh\nexec /usr/bin/php-cgi "$@"\n'})
        sbx.run(["chmod", "755", f"{home}/cgi-bin", f"{home}/cgi-bin/php-cgi"])
    for domain, (user, docroot) in sites.items():
        home = sbx.users[user].home
        sbx.write(f"/etc/apache2/sites-enabled/{domain}.conf",
                  VHOST.format(domain=domain, docroot=docroot, user=user, home=home))
    sbx.run(["apache2ctl", "start"])
    for _ in range(50):
        if sbx.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1/"],
                   check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("Apache did not start in the sandbox")


def curl(sbx: Sandbox, domain: str, path: str) -> tuple[int, str]:
    """GET http://domain/path from inside the sandbox: (status, body).

    A 503 while Apache finishes a graceful restart (its CGI daemon is being
    replaced) is retried for up to ten seconds, as a browser user would."""
    for _ in range(100):
        r = sbx.run(["curl", "-s", "-w", "\n%{http_code}", "-H", f"Host: {domain}",
                     f"http://127.0.0.1{path}"], check=False)
        body, _, code = r.stdout.rpartition("\n")
        if code != "503":
            break
        time.sleep(0.1)
    return int(code or 0), body
