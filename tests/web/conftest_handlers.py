"""Helpers of the FastCGI and FPM handler tests (test_fcgid.py, test_fpm.py).

The `web` fixture of conftest.py gives a real Apache with john's and jane's
sites; these helpers switch siteiso's handler and look at the processes
behind a site from the sandbox's root: its index record, its php-fpm
record, and every process with its PID namespace, uid, cgroup and start
time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from harness import Sandbox

A, NESTED, B, JANE = "a.example", "nested.example", "b.example", "jane.example"
A_ROOT = "/home/john/public_html"
B_ROOT = "/home/john/b.example/www"
B_SECRET = f"{B_ROOT}/wp-config.php"
A_SECRET = f"{A_ROOT}/wp-config.php"
NESTED_SECRET = f"{A_ROOT}/nested/wp-config.php"

# Every process the sandbox's root sees, as JSON.
_PROCS = r"""
import json, os
out = []
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        status = open(f"/proc/{p}/status").read()
        stat = open(f"/proc/{p}/stat").read()
        pidns = os.stat(f"/proc/{p}/ns/pid").st_ino
        cgroup = open(f"/proc/{p}/cgroup").read()
        cmd = open(f"/proc/{p}/cmdline").read().replace("\0", " ").strip()
    except OSError:
        continue
    f = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    out.append({"pid": int(p), "name": f["Name"], "cmd": cmd,
                "nspid": [int(x) for x in f["NSpid"].split()],
                "uid": int(f["Uid"].split()[0]), "pidns": pidns,
                "start": int(stat.rsplit(")", 1)[1].split()[19]),
                "cgroup": [ln.split(":", 2)[2] for ln in cgroup.splitlines()
                           if ln.startswith("0::")][0]})
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Proc:
    pid: int          # as the sandbox's root sees it
    name: str
    cmd: str
    nspid: list[int]  # innermost last
    uid: int
    pidns: int
    start: int
    cgroup: str


@dataclass(frozen=True)
class Record:
    token: str
    pid: int
    start: int
    pidns: int
    docroot: str


def set_handler(sbx: Sandbox, handler: str) -> None:
    sbx.sh(f"echo 'handler = {handler}' >> /etc/siteiso/siteiso.conf")


def enable(sbx: Sandbox, *domains: str) -> None:
    r = sbx.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0, r.stderr
    r = sbx.cagefsctl("--site-isolation-enable", *domains)
    assert r.returncode == 0, r.stderr


def disable(sbx: Sandbox, *domains: str) -> None:
    r = sbx.cagefsctl("--site-isolation-disable", *domains)
    assert r.returncode == 0, r.stderr


def processes(sbx: Sandbox) -> list[Proc]:
    return [Proc(**p) for p in json.loads(sbx.run(["python3", "-c", _PROCS]).stdout)]


def alive(sbx: Sandbox, p: Proc) -> bool:
    return any(q.pid == p.pid and q.start == p.start for q in processes(sbx))


def wait_gone(sbx: Sandbox, procs: list[Proc], timeout: float = 10) -> list[Proc]:
    """The processes of `procs` still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = {(q.pid, q.start) for q in processes(sbx)}
        left = [p for p in procs if (p.pid, p.start) in now]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def site_record(sbx: Sandbox, user: str, docroot: str) -> Record:
    uid = sbx.users[user].uid
    for line in sbx.read(f"/run/siteiso/index/{uid}").splitlines():
        f = line.split("\t")
        if f[0] == "site" and f[6] == docroot:
            return Record(f[1], int(f[2]), int(f[3]), int(f[4]), f[6])
    raise AssertionError(f"no site record for {docroot}")


def host_pidns(sbx: Sandbox) -> int:
    return int(sbx.run(["stat", "-L", "-c", "%i", "/proc/1/ns/pid"]).stdout)


def php_pidns(web: Any, domain: str) -> int:
    """The PID namespace the domain's PHP runs in, as PHP itself reads it."""
    r = web.probe(domain, "exec", "readlink /proc/self/ns/pid")
    assert r["ok"], r
    return int(r["out"].strip().removeprefix("pid:[").removesuffix("]"))


def serving_process(sbx: Sandbox, pidns: int, nspid: int) -> Proc:
    """The process that has pid `nspid` inside PID namespace `pidns`."""
    for p in processes(sbx):
        if p.pidns == pidns and p.nspid[-1] == nspid:
            return p
    raise AssertionError(f"no process {nspid} in PID namespace {pidns}")
