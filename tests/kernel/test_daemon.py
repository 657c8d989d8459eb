"""siteisod and cagefsctl-user (SPEC §3, §7): the user socket, its callers and
its bounds, on a sandboxed server with a real daemon."""

from __future__ import annotations

import json
import time

import pytest
from testlib import PIDFILE, SOCK, daemon_pid, start_daemon, stop_daemon, wait_for

pytestmark = pytest.mark.kernel

INSIDE = "Website isolation cannot be changed from inside an isolated site"
NOT_FOUND = "Please specify existing domain name and try again"

# One request on the socket, from a descriptor or a path given in argv[1].
CLIENT = r"""
import json, socket, sys
where = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(where)
try:
    s.sendall(sys.argv[2].encode() + b"\n")
except BrokenPipeError:     # answered and closed before all of it was read
    pass
answer = b""
try:
    while not answer.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
except ConnectionResetError:
    pass
print(answer.decode().strip())
"""
LIST = json.dumps({"command": "site-isolation-list"})
DISABLE_A = json.dumps({"command": "site-isolation-disable",
                        "domains": ["example.com"]})


# ---- helpers -------------------------------------------------------------------

def admin(sbx, *args):
    r = sbx.cagefsctl(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def siteisod(server):
    admin(server, "--site-isolation-allow-all")
    proc = start_daemon(server)
    yield proc
    if proc.poll() is None:
        stop_daemon(server, proc)
    # Without syslog, warnings (a refused caller) go to stderr; tracebacks never.
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def user_cmd(sbx, user, *args):
    r = sbx.run(["cagefsctl-user", *args], user=user, check=False)
    return r.returncode, r.stdout


def answer(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def isolated(sbx):
    return json.loads(admin(sbx, "--site-isolation-list", "--json"))["users"]


def holders(sbx, user):
    uid = sbx.users[user].uid
    lines = sbx.read(f"/run/siteiso/index/{uid}").splitlines()[1:]
    return [dict(zip(("kind", "token", "pid", "start"), ln.split("\t")[:4],
                     strict=True)) for ln in lines]


def holder(sbx, user, kind):
    return next(h for h in holders(sbx, user) if h["kind"] == kind)


def through_descriptor(sbx, nsenter_args, request, user="john", prefix=""):
    """Run CLIENT as user, handed an O_PATH descriptor of the socket (as a
    leaked descriptor would be), after the given nsenter into a view."""
    script = (
        "import os, subprocess, sys\n"
        f"fd = os.open({SOCK!r}, os.O_PATH)\n"
        f"argv = {nsenter_args!r} + ['setpriv', '--reuid={user}', "
        f"'--regid={user}', '--init-groups', 'python3', '-c', {CLIENT!r}, "
        f"'/proc/self/fd/%d' % fd, {request!r}]\n"
        "r = subprocess.run(argv, pass_fds=[fd], capture_output=True, text=True)\n"
        "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
        "sys.exit(r.returncode)\n")
    r = sbx.run(["sh", "-c", f'{prefix}exec python3 -c "$0"', script], check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def ctx_switches(sbx, pid):
    total = 0
    for task in sbx.run(["ls", f"/proc/{pid}/task"]).stdout.split():
        for line in sbx.read(f"/proc/{pid}/task/{task}/status").splitlines():
            if "ctxt_switches" in line:
                total += int(line.split()[1])
    return total


# ---- the user commands -----------------------------------------------------------

def test_user_enables_lists_and_disables_own_domains(server, siteisod):
    assert user_cmd(server, "john", "site-isolation-list") == \
        (0, '{"result": "success", "enabled_sites": []}\n')
    assert user_cmd(server, "john", "site-isolation-enable", "--domain",
                    "example.com,Blog.Example.org.") == \
        (0, '{"result": "success", "enabled_sites": ["blog.example.org", '
            '"example.com"]}\n')
    assert isolated(server) == {"john": ["blog.example.org", "example.com"]}
    # The same views as an admin's enable: john can enter them.
    r = server.run(["cagefs_enter_site", "blog.example.org", "cat",
                    "/home/john/blog/index.php"], user="john", check=False)
    assert r.returncode == 0 and "blog.example.org" in r.stdout
    assert user_cmd(server, "john", "site-isolation-disable", "--domain",
                    "example.com") == \
        (0, '{"result": "success", "enabled_sites": ["blog.example.org"]}\n')
    assert user_cmd(server, "john", "site-isolation-list") == \
        (0, '{"result": "success", "enabled_sites": ["blog.example.org"]}\n')
    assert isolated(server) == {"john": ["blog.example.org"]}


def test_user_cannot_touch_another_users_domain(server, siteisod):
    code, out = user_cmd(server, "john", "site-isolation-enable", "--domain",
                         "example.com,jane.example.net")
    assert (code, answer(out)) == (1, {"result": "error", "message": NOT_FOUND})
    assert isolated(server) == {}
    admin(server, "--site-isolation-enable", "jane.example.net")
    code, out = user_cmd(server, "john", "site-isolation-disable", "--domain",
                         "jane.example.net")
    assert (code, answer(out)) == (1, {"result": "error", "message": NOT_FOUND})
    assert isolated(server) == {"jane": ["jane.example.net"]}
    assert user_cmd(server, "john", "site-isolation-list") == \
        (0, '{"result": "success", "enabled_sites": []}\n')


def test_unknown_domain_is_an_error(server, siteisod):
    code, out = user_cmd(server, "john", "site-isolation-enable", "--domain",
                         "nosuch.example")
    assert (code, answer(out)) == (1, {"result": "error", "message": NOT_FOUND})


def test_denied_user_gets_the_admin_error(server, siteisod):
    admin(server, "--site-isolation-deny", "jane")
    code, out = user_cmd(server, "jane", "site-isolation-enable", "--domain",
                         "jane.example.net")
    assert (code, answer(out)) == (1, {
        "result": "error",
        "message": "Website isolation is not allowed for user jane"})
    assert isolated(server) == {}
    # john is still allowed.
    assert user_cmd(server, "john", "site-isolation-enable", "--domain",
                    "example.com")[0] == 0


def test_root_and_system_accounts_are_not_served(server, siteisod):
    code, out = user_cmd(server, None, "site-isolation-list")
    assert (code, answer(out)) == (1, {
        "result": "error", "message": "User root is not a hosting account"})


def test_socket_is_served_while_the_flag_exists(server):
    proc = start_daemon(server)
    try:
        assert not server.exists(SOCK)
        code, out = user_cmd(server, "john", "site-isolation-list")
        assert (code, answer(out)) == (1, {
            "result": "error", "message": "Website isolation is not enabled"})
        admin(server, "--site-isolation-allow-all")
        wait_for(lambda: server.exists(SOCK), "the socket after allow-all")
        assert server.run(["stat", "-c", "%a %U", SOCK]).stdout == "666 root\n"
        assert user_cmd(server, "john", "site-isolation-list")[0] == 0
        admin(server, "--site-isolation-deny-all")
        wait_for(lambda: not server.exists(SOCK), "the socket to go after deny-all")
        # The flag's directories removed and made again: still followed.
        server.run(["rm", "-rf", "/opt/cloudlinux"])
        admin(server, "--site-isolation-allow-all")
        wait_for(lambda: server.exists(SOCK), "the socket after a new flag tree")
    finally:
        stop_daemon(server, proc)


# ---- callers inside a site ---------------------------------------------------------

def test_site_cannot_switch_its_isolation_off(server, siteisod):
    admin(server, "--site-isolation-enable", "example.com")
    r = server.run(["cagefs_enter_site", "example.com", "cagefsctl-user",
                    "site-isolation-disable", "--domain", "example.com"],
                   user="john", check=False)
    assert r.returncode != 0
    probe = ("import os, socket\n"
             f"print(os.path.exists({SOCK!r}))\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect({SOCK!r}); print('connected')\n"
             "except OSError as e:\n    print(type(e).__name__)\n")
    r = server.run(["cagefs_enter_site", "example.com", "python3", "-c", probe],
                   user="john", check=False)
    assert r.stdout.split() == ["False", "FileNotFoundError"], r.stderr
    assert isolated(server) == {"john": ["example.com"]}


@pytest.mark.parametrize("how", ["pid+mount namespaces", "pid namespace", "cgroup"])
def test_leaked_socket_descriptor_is_refused_inside_a_site(server, siteisod, how):
    admin(server, "--site-isolation-enable", "example.com")
    site = holder(server, "john", "site")
    nsenter, prefix = [], ""
    if how == "pid+mount namespaces":
        nsenter = ["nsenter", f"--target={site['pid']}", "--mount", "--pid", "--"]
    elif how == "pid namespace":
        nsenter = ["nsenter", f"--target={site['pid']}", "--pid", "--"]
    else:
        cg = (f"{server.cgroup_root}/siteiso.slice/user-{server.users['john'].uid}"
              f"/site-{site['token']}")
        prefix = f"echo $$ > {cg}/cgroup.procs && "
    assert through_descriptor(server, nsenter, DISABLE_A, prefix=prefix) == \
        {"result": "error", "message": INSIDE}
    assert isolated(server) == {"john": ["example.com"]}


HANDED_ON = r"""
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
parent = os.getpid()
if os.fork():
    os._exit(0)                 # the process that connected is gone ...
while os.getppid() == parent:
    time.sleep(0.01)
s.sendall(sys.argv[2].encode() + b"\n")    # ... its child asks
print(s.makefile().readline().strip())
"""


def test_caller_that_cannot_be_seen_is_refused(server, siteisod):
    admin(server, "--site-isolation-enable", "example.com")
    r = server.run(["python3", "-c", HANDED_ON, SOCK, DISABLE_A], user="john")
    got = json.loads(r.stdout)
    assert got["result"] == "error"
    assert got["message"].startswith("siteisod cannot"), got
    assert isolated(server) == {"john": ["example.com"]}


def test_caller_in_the_user_cage_is_served(server, siteisod):
    admin(server, "--site-isolation-enable", "example.com")
    cage = holder(server, "john", "cage")
    nsenter = ["nsenter", f"--target={cage['pid']}", "--mount", "--"]
    assert through_descriptor(server, nsenter, LIST) == \
        {"result": "success", "enabled_sites": ["example.com"]}


# ---- bounds ------------------------------------------------------------------

SLOW_CLIENTS = r"""
import socket, sys, time
silent = socket.socket(socket.AF_UNIX); silent.connect(sys.argv[1])
junk = socket.socket(socket.AF_UNIX); junk.connect(sys.argv[1])
junk.sendall(b"\x00\xff{not json")        # and never a newline
start = time.monotonic()
print("ready", flush=True)
for name, s in (("silent", silent), ("junk", junk)):
    s.settimeout(30)
    data = s.recv(100)
    print(name, repr(data), round(time.monotonic() - start, 1), flush=True)
"""


def test_slow_and_junk_clients_block_nobody(server, siteisod):
    slow = server.popen(["python3", "-c", SLOW_CLIENTS, SOCK], user="jane")
    assert slow.stdout is not None
    assert slow.stdout.readline() == "ready\n"
    start = time.monotonic()
    assert user_cmd(server, "john", "site-isolation-list")[0] == 0
    assert time.monotonic() - start < 3
    out = server.run(["python3", "-c", CLIENT, SOCK, "{garbage"], user="jane")
    assert json.loads(out.stdout) == {"result": "error",
                                      "message": "invalid request: not a JSON line"}
    # Both are dropped, without an answer, after the request timeout.
    lines = [slow.stdout.readline().split() for _ in range(2)]
    slow.wait(timeout=30)
    assert [(ln[0], ln[1]) for ln in lines] == [("silent", "b''"), ("junk", "b''")]
    assert all(3 <= float(ln[2]) <= 10 for ln in lines), lines


def test_oversized_request_is_refused(server, siteisod):
    big = json.dumps({"command": "site-isolation-enable",
                      "domains": ["example.com"] + ["x" * 60 + ".example"] * 80})
    assert len(big) > 4096
    out = server.run(["python3", "-c", CLIENT, SOCK, big], user="john")
    assert json.loads(out.stdout) == {
        "result": "error", "message": "request too large (more than 4096 bytes)"}
    assert isolated(server) == {}


RATE = r"""
import json, socket, sys
refused = 0
for _ in range(80):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
    try:
        s.sendall(b'{"command": "site-isolation-list"}\n')
    except BrokenPipeError:
        pass
    a = b""
    while not a.endswith(b"\n"):
        c = s.recv(4096)
        if not c:
            break
        a += c
    s.close()
    refused += "too many requests" in json.loads(a).get("message", "")
print(refused)
"""


def test_requests_are_rate_limited_per_user(server, siteisod):
    r = server.run(["python3", "-c", RATE, SOCK], user="jane")
    assert int(r.stdout) >= 20
    # Another user is not affected.
    assert user_cmd(server, "john", "site-isolation-list")[0] == 0


# ---- restart, idle ----------------------------------------------------------------

def test_restarting_the_daemon_stops_no_site(server, siteisod):
    assert user_cmd(server, "john", "site-isolation-enable", "--domain",
                    "example.com")[0] == 0
    before = holder(server, "john", "site")
    r = server.run(["siteiso", "daemon"], check=False)
    assert r.returncode == 1 and "siteisod is already running" in r.stderr
    stop_daemon(server, siteisod)
    assert not server.exists(PIDFILE) and not server.exists(SOCK)
    r = server.run(["cagefs_enter_site", "example.com", "cat",
                    "/home/john/public_html/index.php"], user="john", check=False)
    assert r.returncode == 0 and "example.com" in r.stdout, r.stderr
    again = start_daemon(server)
    assert holder(server, "john", "site") == before
    assert user_cmd(server, "john", "site-isolation-list") == \
        (0, '{"result": "success", "enabled_sites": ["example.com"]}\n')
    # Killed outright: the stale socket and pidfile do not stop the next one.
    server.run(["kill", "-KILL", str(daemon_pid(server))])
    again.wait(timeout=30)
    code, out = user_cmd(server, "john", "site-isolation-list")
    assert (code, answer(out)["message"]) == (1, "siteisod is not running: ask "
                                              "the server administrator to start "
                                              "it (siteiso daemon)")
    third = start_daemon(server)
    try:
        assert user_cmd(server, "john", "site-isolation-list")[0] == 0
        assert holder(server, "john", "site") == before
    finally:
        stop_daemon(server, third)


def test_idle_daemon_does_not_wake_up(server, siteisod):
    assert user_cmd(server, "john", "site-isolation-enable", "--domain",
                    "example.com")[0] == 0
    pid = daemon_pid(server)
    time.sleep(0.5)
    before = ctx_switches(server, pid)
    assert before > 0
    time.sleep(3)
    assert ctx_switches(server, pid) == before


def test_doctor_says_whether_siteisod_runs(server):
    def row():
        out = server.run(["siteiso", "doctor"], check=False).stdout
        (line,) = [ln for ln in out.splitlines() if ln.split()[1:2] == ["siteisod"]]
        return line
    assert row().startswith("WARNING siteisod ")
    proc = start_daemon(server)
    try:
        line = row()
        assert line.startswith("ok      siteisod ")
        assert line.endswith(f"running (pid {daemon_pid(server)})")
    finally:
        stop_daemon(server, proc)
