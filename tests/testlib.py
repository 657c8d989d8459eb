"""Shared by the kernel and web tiers: a small hosting server (two accounts,
four domains), the recorded-state paths, and cagefsctl helpers."""

from __future__ import annotations

import filecmp
import json
import os
import time
from pathlib import Path

from harness import Sandbox

FLAG = "/opt/cloudlinux/flags/enabled-flags.d/website-isolation.flag"
ALLOW_ALL = "/etc/cagefs/site-isolation.mode.allow_all"
DENY_ALL = "/etc/cagefs/site-isolation.mode.deny_all"
DENIED = "/etc/cagefs/site-isolation.users.denied"
ALLOWED = "/etc/cagefs/site-isolation.users.allowed"

DOMAINS = {
    "example.com": ("john", "/home/john/public_html"),
    "shop.example.com": ("john", "/home/john/public_html/shop"),
    "blog.example.org": ("john", "/home/john/blog"),
    "jane.example.net": ("jane", "/home/jane/public_html"),
}


def make_server(sbx: Sandbox) -> Sandbox:
    sbx.useradd("john")
    sbx.useradd("jane")
    sbx.useradd("sysacct", uid=500)
    files = {}
    for domain, (owner, docroot) in DOMAINS.items():
        tree = files.setdefault(owner, {})
        tree[f"{docroot}/index.php"] = f"<?php echo '{domain}';\n"
        tree[f"{docroot}/wp-config.php"] = f"<?php $pw = 'secret-{domain}';\n"
    for owner, tree in files.items():
        sbx.make_tree(owner, tree)
    sbx.set_domains(DOMAINS)
    return sbx


def ok(sbx, *args):
    r = sbx.cagefsctl(*args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def fails(sbx, *args, code=1):
    r = sbx.cagefsctl(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    return r.stderr.strip()


def listing(sbx):
    """--site-isolation-list --json: user -> isolated domains."""
    return json.loads(ok(sbx, "--site-isolation-list", "--json"))["users"]


def entered(sbx, site, user, *cmd):
    """Whether `cagefs_enter_site site cmd` (default: true) as user works."""
    r = sbx.run(["cagefs_enter_site", site, *(cmd or ["true"])], user=user,
                check=False)
    return r.returncode == 0


def state(sbx):
    """The recorded state as the seed's paths show it."""
    def ls(d):
        r = sbx.run(["ls", "-1", d], check=False)
        return sorted(r.stdout.split()) if r.returncode == 0 else None
    return {
        "flag": sbx.exists(FLAG),
        "allow_all": sbx.exists(ALLOW_ALL),
        "deny_all": sbx.exists(DENY_ALL),
        "denied": ls(DENIED),
        "allowed": ls(ALLOWED),
    }


def cases_dir() -> Path:
    """The hosting cases: $SITEISO_CASES, else the team's ../shared/cases
    beside the checkout, else the copy kept in tests/cases (what a clean
    clone in CI has)."""
    env = os.environ.get("SITEISO_CASES")
    here = Path(__file__).resolve().parent
    for candidate in (Path(env) if env else None,
                      here.parents[1] / "shared" / "cases", here / "cases"):
        if candidate is not None and (candidate / "names.txt").is_file():
            return candidate
    raise FileNotFoundError("the hosting cases are missing (tests/cases)")


def cases_copy_differs() -> list[str]:
    """Files of ../shared/cases that the tests/cases copy lacks or differs in."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "cases"
    if not shared.is_dir():
        return []
    diff: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        diff.extend(prefix + n for n in cmp.left_only + cmp.diff_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")
    walk(filecmp.dircmp(shared, Path(__file__).resolve().parent / "cases"), "")
    return diff


# ---- siteisod --------------------------------------------------------------------

SOCK = "/run/siteiso/user.sock"
PIDFILE = "/run/siteiso/siteisod.pid"


def wait_for(cond, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_daemon(sbx):
    """Start siteisod; return once it runs (and, with the flag, answers)."""
    stale = sbx.read(PIDFILE).strip() if sbx.exists(PIDFILE) else ""
    proc = sbx.popen(["siteiso", "daemon"])

    def running():
        r = sbx.sh(f'p=$(cat {PIDFILE}) && [ "$p" != "{stale}" ] && kill -0 "$p"',
                   check=False)
        return r.returncode == 0 or proc.poll() is not None

    wait_for(running, "the pidfile")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    if sbx.exists("/opt/cloudlinux/flags/enabled-flags.d/website-isolation.flag"):
        probe = f"import socket; socket.socket(socket.AF_UNIX).connect({SOCK!r})"
        wait_for(lambda: sbx.run(["python3", "-c", probe], check=False)
                 .returncode == 0, "the user socket")
    return proc


def daemon_pid(sbx):
    return int(sbx.read(PIDFILE))


def stop_daemon(sbx, proc):
    sbx.run(["kill", str(daemon_pid(sbx))])
    proc.wait(timeout=30)


def run_handler(sbx, token, docroot, script, *argv, user="john"):
    """What suexec runs for a request (the CGI chain: Action + ScriptAlias):
    the entry in handler mode with the request's environment."""
    return sbx.run(["/usr/libexec/siteiso/siteiso-enter", "handler", token, *argv],
                   user=user, check=False,
                   env={"DOCUMENT_ROOT": docroot, "REDIRECT_STATUS": "200",
                        "SCRIPT_FILENAME": f"{docroot}/index.php",
                        "PATH_TRANSLATED": script})
