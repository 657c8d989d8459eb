"""Attacks by a hostile isolated site (SPEC §4.2, §4.3), and by the hostile
home the account owner controls while root runs siteiso (§4.4).

Each test is one attack, run for real in the sandbox. Tests named after a
guarantee that fails today show an attack that works; the others pin down
attempts that are blocked (each can fail: the attack is shown to be real, or
the same operation is shown to work where it should).

Processes started in the sandbox here are always bounded by `timeout`, so a
blocked attempt never hangs the suite.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest

pytestmark = pytest.mark.kernel

A = "example.com"           # /home/john/public_html
NESTED = "shop.example.com"  # /home/john/public_html/shop
B = "blog.example.org"       # /home/john/blog
A_SECRET = "/home/john/public_html/wp-config.php"
B_SECRET = "/home/john/blog/wp-config.php"


def isolate(sbx, *domains):
    r = sbx.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0, r.stderr
    r = sbx.cagefsctl("--site-isolation-enable", *domains)
    assert r.returncode == 0, r.stderr


def in_site(sbx, site, script, user="john", timeout=30):
    return sbx.run(["cagefs_enter_site", site, "sh", "-c", script], user=user,
                   check=False, timeout=timeout)


def py_in_site(sbx, site, code, timeout=30):
    return sbx.run(["cagefs_enter_site", site, "python3", "-c", code], user="john",
                   check=False, timeout=timeout)


def start_in_site(sbx, site, code, seconds=15):
    """A python3 program in the site, bounded in time."""
    return sbx.popen(["cagefs_enter_site", site, "timeout", str(seconds),
                      "python3", "-c", code], user="john")


def wait_for(sbx, check, tries=50):
    for _ in range(tries):
        if check():
            return True
        time.sleep(0.1)
    return False


def stop(p):
    p.kill()
    with contextlib.suppress(Exception):   # the sandbox ends it anyway
        p.wait(timeout=5)


# ---- findings: attacks that work today ---------------------------------------

def test_mount_the_host_adds_later_under_run_user_is_not_visible(server):
    """On a systemd host / is shared and logind mounts /run/user/<uid> when
    the owner logs in over SSH — after the views were built. The mount
    propagates into every site view, read-write, with the user's D-Bus and
    `systemd --user` sockets (systemd-run --user: work outside the view).
    The mask for /run/user/<uid> is only planned when it exists at build
    time."""
    server.sh("mount --make-rshared /")   # as every systemd host has it
    isolate(server, A, B)
    server.sh("mkdir -p /run/user/1001 && mount -t tmpfs -o mode=0700,uid=1001,gid=1001"
              " logind /run/user/1001")
    try:
        # What listens on the user's bus runs as john outside every view; here
        # it just answers with something only the account can read.
        bus = ("import socket\n"
               "s = socket.socket(socket.AF_UNIX); s.bind('/run/user/1001/bus')\n"
               "s.listen(); s.settimeout(6)\n"
               "c, _ = s.accept()\n"
               f"c.sendall(open('{B_SECRET}', 'rb').read())\n")
        p = server.popen(["timeout", "8", "python3", "-c", bus], user="john")
        try:
            assert wait_for(server, lambda: server.exists("/run/user/1001/bus"))
            client = ("import socket\n"
                      "s = socket.socket(socket.AF_UNIX); s.settimeout(3)\n"
                      "s.connect('/run/user/1001/bus'); print(s.recv(200))\n")
            r = py_in_site(server, A, client)
            assert "secret-blog" not in r.stdout
            r = in_site(server, A, "touch /run/user/1001/planted && echo planted")
            assert "planted" not in r.stdout
        finally:
            stop(p)
    finally:
        server.sh("umount -l /run/user/1001", check=False)


def test_site_file_names_reach_the_admins_terminal_escaped(server):
    """§4.9 reports a symlink from one site into a sibling at enable and
    regenerate — on root's terminal and in the log. The site names that
    symlink: escape sequences and line breaks in the name come out raw
    (terminal control, forged report lines)."""
    isolate(server, A, B)
    plant = ("import os\n"
             "os.symlink('/home/john/blog/wp-config.php', '/home/john/public_html/"
             "\\x1b]0;owned\\x07\\x1b[2J\\nwarning: nothing to report')\n")
    r = py_in_site(server, A, plant)
    assert r.returncode == 0, r.stderr
    r = server.cagefsctl("--site-isolation-regenerate", "john")
    assert r.returncode == 0, r.stderr
    assert "blog" in r.stderr                    # the link is reported
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr, repr(r.stderr)
    assert "\nwarning: nothing to report" not in r.stderr, repr(r.stderr)


CRON_SHELL = "/opt/siteiso/venv/bin/siteiso-cron-shell"
CRON_MAP = """
from siteiso import accounts, config
from siteiso.service import cron
from siteiso.state import store
from siteiso.views import engine
st, cfg = store.load(), config.load()
a = accounts.lookup("john", cfg)
cron.write_cron_map(a.uid, engine.site_inputs(st, a, cfg), a.home)
"""


def cron_line(sbx, command):
    """What cron does with a crontab line of john's: `$SHELL -c <line>` in
    $HOME, with siteiso's cron shell as SHELL."""
    env = {"HOME": "/home/john", "SHELL": CRON_SHELL, "PATH": "/usr/bin:/bin",
           "LOGNAME": "john"}
    return sbx.run(["sh", "-c", 'cd "$HOME" && exec "$0" -c "$1"', CRON_SHELL,
                    command], user="john", env=env, check=False, timeout=30)


@pytest.mark.parametrize("line", [
    'sh -c "sh /home/john/public_html/cron.sh"',
    "bash -c 'cd /home/john/public_html && sh cron.sh'",
    "eval 'sh /home/john/public_html/cron.sh'",
    "php -r 'include \"/home/john/public_html/cron.php\";'",
    "php -f/home/john/public_html/cron.php",
])
def test_cron_line_running_a_sites_script_runs_in_that_sites_view(server, line):
    """SPEC §7: a crontab line that runs in an isolated site's paths runs in
    that site's view. The classifier reads words: a path inside a quoted
    `sh -c`/`bash -c`/`eval`/`php -r` string, or glued to an option, is not
    seen, the line runs in the user cage, and the site's own script (which
    the site rewrites at will) reads everything of the account."""
    isolate(server, A, B)
    server.run(["/opt/siteiso/venv/bin/python", "-c", CRON_MAP])
    # The site's scripts: the site itself rewrote them.
    r = in_site(server, A, f"printf 'cat {B_SECRET}\\n' >"
                           " /home/john/public_html/cron.sh"
                           f" && printf '<?php readfile(\"{B_SECRET}\");' >"
                           " /home/john/public_html/cron.php")
    assert r.returncode == 0, r.stderr
    r = cron_line(server, line)
    assert "secret-blog" not in r.stdout, (line, r.stdout, r.stderr)


# ---- blocked attempts -----------------------------------------------------------


@pytest.mark.parametrize("line", [
    "sh /home/john/public_html/cron.sh",
    "cd /home/john/public_html && sh cron.sh",
    "cd public_html; sh ./cron.sh",
    'cd "$HOME/public_html" && sh cron.sh',
])
def test_cron_line_naming_a_sites_script_plainly_runs_in_its_view(server, line):
    isolate(server, A, B)
    server.run(["/opt/siteiso/venv/bin/python", "-c", CRON_MAP])
    r = in_site(server, A, f"printf 'cat {B_SECRET}; cat {A_SECRET}\\n' >"
                           " /home/john/public_html/cron.sh")
    assert r.returncode == 0, r.stderr
    r = cron_line(server, line)
    assert "secret-example.com" in r.stdout, (line, r.stdout, r.stderr)  # it ran
    assert "secret-blog" not in r.stdout, (line, r.stdout)

def test_site_cannot_reach_a_siblings_abstract_unix_socket(server):
    """Abstract sockets live in the shared network namespace; the Landlock
    scope (Linux >= 6.12) must keep a sibling's out of reach, by stream
    connect and by datagram."""
    isolate(server, A, B)
    # B's program binds, shows the socket answers (a child of its own), and
    # keeps it open.
    listen = ("import socket, os, time\n"
              "s = socket.socket(socket.AF_UNIX)\n"
              "s.bind('\\0siteiso-attack-b'); s.listen()\n"
              "d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
              "d.bind('\\0siteiso-attack-b-dgram')\n"
              "c = socket.socket(socket.AF_UNIX); c.connect('\\0siteiso-attack-b')\n"
              "open('/tmp/up', 'w').close(); time.sleep(10)\n")
    p = start_in_site(server, B, listen)
    try:
        assert wait_for(server, lambda: in_site(server, B, "test -e /tmp/up")
                        .returncode == 0)
        # The names are really bound (seen from the sandbox's root).
        bound = server.run(["cat", "/proc/net/unix"]).stdout
        assert "@siteiso-attack-b" in bound
        client = ("import socket\n"
                  "s = socket.socket(socket.AF_UNIX)\n"
                  "try:\n"
                  "    s.connect('\\0siteiso-attack-b'); print('connected')\n"
                  "except OSError as e: print('refused', e)\n"
                  "d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                  "try:\n"
                  "    d.sendto(b'x', '\\0siteiso-attack-b-dgram'); print('sent')\n"
                  "except OSError as e: print('refused', e)\n")
        r = server.run(["python3", "-c", client], user="john", check=False)
        assert "connected" in r.stdout and "sent" in r.stdout, r.stdout  # real
        r = py_in_site(server, A, client)
        assert "connected" not in r.stdout and "sent" not in r.stdout, r.stdout
    finally:
        stop(p)


def test_sites_do_not_share_sysv_ipc_posix_mqueues_or_dev_shm(server):
    isolate(server, A, B)
    make = ("import ctypes, os, time\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "assert libc.shmget(0x5157, 4096, 0o1600) >= 0\n"
            "assert libc.msgget(0x5157, 0o1600) >= 0\n"
            "open('/dev/shm/b-only', 'w').write('b-shm')\n"
            "open('/tmp/up', 'w').close()\n"
            "time.sleep(10)\n")
    p = start_in_site(server, B, make)
    try:
        assert wait_for(server, lambda: in_site(server, B, "test -e /tmp/up")
                        .returncode == 0)
        look = ("import ctypes, os\n"
                "libc = ctypes.CDLL(None, use_errno=True)\n"
                "print('shm', libc.shmget(0x5157, 0, 0))\n"
                "print('msg', libc.msgget(0x5157, 0))\n"
                "print('devshm', os.path.exists('/dev/shm/b-only'))\n")
        r = py_in_site(server, B, look)
        assert "shm -1" not in r.stdout and "devshm True" in r.stdout, r.stdout
        r = py_in_site(server, A, look)
        assert "shm -1" in r.stdout and "msg -1" in r.stdout, r.stdout
        assert "devshm False" in r.stdout, r.stdout
    finally:
        stop(p)


def test_site_cannot_signal_or_trace_sibling_processes(server):
    isolate(server, A, B)
    p = start_in_site(server, B, "import time; open('/tmp/up','w').close(); "
                                 "time.sleep(12)")
    try:
        assert wait_for(server, lambda: in_site(server, B, "test -e /tmp/up")
                        .returncode == 0)
        host_pids = [int(x) for x in server.run(
            ["pgrep", "-u", "john", "-f", "time.sleep.12"]).stdout.split()]
        assert host_pids
        attack = ("import os, signal, ctypes\n"
                  "libc = ctypes.CDLL(None, use_errno=True)\n"
                  f"pids = {host_pids!r}\n"
                  "for pid in pids:\n"
                  "    for how in ('kill', 'pidfd', 'ptrace'):\n"
                  "        try:\n"
                  "            if how == 'kill': os.kill(pid, signal.SIGSTOP)\n"
                  "            elif how == 'pidfd': os.pidfd_open(pid)\n"
                  "            elif libc.ptrace(16, pid, 0, 0) != 0:\n"
                  "                raise OSError(ctypes.get_errno(), 'ptrace')\n"
                  "            print('REACHED', how, pid)\n"
                  "        except OSError: pass\n"
                  "try:\n"
                  "    os.kill(-1, signal.SIGSTOP)\n"
                  "except OSError: pass\n")
        r = py_in_site(server, A, attack)
        assert "REACHED" not in r.stdout, r.stdout
        time.sleep(0.3)
        states = server.run(["ps", "-o", "stat=", "-p",
                             ",".join(map(str, host_pids))], check=False).stdout
        assert "T" not in states, states       # nothing of B was stopped
        assert p.poll() is None                 # and B's process still runs
    finally:
        stop(p)


SYSCALLS = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 0 if r >= 0 else ctypes.get_errno()
buf = ctypes.create_string_buffer(256)
addr = ctypes.addressof(buf)
out = {
  "io_uring_setup": call(425, 1, addr),
  "bpf": call(321, 0, addr, 64),
  "userfaultfd": call(323, 1),
  "perf_event_open": call(298, addr, 0, -1, -1, 0),
  "add_key": call(248, ctypes.addressof(ctypes.create_string_buffer(b"user")),
                  ctypes.addressof(ctypes.create_string_buffer(b"k")), addr, 1, -2),
  "keyctl": call(250, 0, -3, 0),
  "setns": call(308, os.open("/proc/self/ns/mnt", os.O_RDONLY), 0),
  "unshare_user": call(272, 0x10000000),
  "unshare_mnt": call(272, 0x00020000),
  "clone3": call(435, addr, 0),
  "fsopen": call(430, ctypes.addressof(ctypes.create_string_buffer(b"tmpfs")), 0),
  "open_tree": call(428, -100, ctypes.addressof(ctypes.create_string_buffer(b"/")), 1),
  "x32_getpid": call(0x40000000 | 39),
}
print(out)
"""


def test_seccomp_refuses_namespaces_mounts_and_kernel_attack_surface(server):
    isolate(server, A)
    # Outside the view (as the account) the same program gets through the
    # filter for at least some calls: the probe itself works.
    r = server.run(["python3", "-c", SYSCALLS], user="john", check=False)
    outside = eval(r.stdout)  # noqa: S307 - our own program's dict
    assert outside["clone3"] == 22, outside   # EINVAL from the kernel itself
    r = py_in_site(server, A, SYSCALLS)
    got = eval(r.stdout)  # noqa: S307
    eperm = ("io_uring_setup", "bpf", "userfaultfd", "perf_event_open", "add_key",
             "keyctl", "setns", "unshare_user", "unshare_mnt", "fsopen", "open_tree")
    for name in eperm:
        assert got[name] == 1, (name, got)     # EPERM from the filter
    assert got["clone3"] == 38 and got["x32_getpid"] == 38, got   # ENOSYS


def test_entry_from_inside_a_site_refuses_siblings_cage_and_handler_tokens(server):
    isolate(server, A, B)
    st = json.loads(server.read("/var/lib/siteiso/state.json"))
    b_token = next(t for t, s in st["sites"].items() if B in s["names"])
    entry = "/usr/libexec/siteiso/siteiso-enter"
    attempts = [
        f"{entry} handler {b_token} cat {B_SECRET}",
        f"DOCUMENT_ROOT=/home/john/blog SCRIPT_FILENAME={B_SECRET} "
        f"{entry} handler {b_token} cat {B_SECRET}",
        f"{entry} cage cat {B_SECRET}",
        f"{entry} enter /home/john/blog cat {B_SECRET}",
        f"{entry} enter /home/john/blog/ cat {B_SECRET}",
        f"{entry} enter BLOG.EXAMPLE.ORG. cat {B_SECRET}",
        f"{entry} enter /home/john/public_html/../blog cat {B_SECRET}",
        f"{entry} enter {A},{B} cat {B_SECRET}",
    ]
    for cmd in attempts:
        r = in_site(server, A, cmd)
        assert "secret-blog" not in r.stdout, cmd
        assert r.returncode == 125, (cmd, r.returncode, r.stderr)
    # The same entry from inside, for the site itself, works.
    r = in_site(server, A, f"{entry} enter {A} cat {A_SECRET}")
    assert "secret-example.com" in r.stdout, r.stderr


@pytest.mark.parametrize("limit", ["--nofile=4", "--nproc=0", "--as=8000000"])
def test_entry_fails_closed_under_hostile_rlimits(server, limit):
    """Resource limits chosen by the caller make the entry fail, never run
    the command somewhere else (the cage, the host) instead."""
    isolate(server, A, B)
    r = in_site(server, A, f"prlimit {limit} cagefs_enter_site {A} "
                           f"sh -c 'cat {B_SECRET}; touch /home/john/public_html/ran'")
    assert "secret-blog" not in r.stdout
    # Either the entry refused (125), or the command ran in A's own view.
    if server.exists("/home/john/public_html/ran"):
        assert r.returncode != 0 or "secret-blog" not in r.stdout
    r = server.run(["prlimit", limit, "cagefs_enter_site", B, "sh", "-c",
                    "cat /proc/self/mountinfo | grep -c ' /home/john/public_html '"],
                   user="john", check=False)
    assert r.stdout.strip() in ("", "0"), r.stdout


def test_site_cannot_move_itself_into_another_cgroup_or_change_limits(server):
    isolate(server, A, B)
    r = in_site(server, A,
                "for f in $(find /sys/fs/cgroup -name cgroup.procs 2>/dev/null"
                " | head -200);"
                " do echo $$ > $f 2>/dev/null && echo MOVED $f; done;"
                " for f in $(find /sys/fs/cgroup -name pids.max 2>/dev/null"
                " | head -50);"
                " do echo max > $f 2>/dev/null && echo RAISED $f; done; true")
    assert "MOVED" not in r.stdout and "RAISED" not in r.stdout, r.stdout


def test_site_cannot_chdir_or_fd_through_proc_of_the_holder(server):
    isolate(server, A, B)
    r = in_site(server, A, "ls /proc/1/root/ 2>&1; ls /proc/1/cwd/ 2>&1;"
                           " ls -l /proc/1/fd/ 2>&1; cat /proc/1/environ 2>&1; true")
    # PID 1 is the root-owned holder: none of its links may be followed.
    for leak in ("home", "siteiso", "PATH="):
        assert leak not in r.stdout, r.stdout


# ---- masks stay where the plan put them; hidden entries stay hidden ---------------

def test_site_cannot_take_over_a_deeper_nested_siblings_docroot(sandbox):
    """A sibling nested two levels down (public_html/sub/deep): the parent
    site renames the directory holding the masked docroot (sub -> sub2) and
    makes a decoy sub/deep, so that the next rebuild masks the decoy and
    shows the sibling's tree at sub2/deep (and the sibling's vhost serves
    the decoy). Every directory between a mask and the mount above it is a
    mount point in the view: the rename fails (EBUSY). The owner, outside
    every view, can still rename it; the parent still writes in sub."""
    s = sandbox
    s.useradd("john")
    s.make_tree("john", {
        "/home/john/public_html/index.php": "<?php echo 'a';\n",
        "/home/john/public_html/sub/deep/wp-config.php": "<?php $pw = 'secret-deep';\n",
    })
    s.set_domains({A: ("john", "/home/john/public_html"),
                   "deep.example.com": ("john", "/home/john/public_html/sub/deep")})
    isolate(s, A, "deep.example.com")
    r = in_site(s, A, "cat /home/john/public_html/sub/deep/wp-config.php")
    assert "secret-deep" not in r.stdout
    r = in_site(s, A, "cd /home/john/public_html && mv sub sub2 && mkdir -p sub/deep"
                      " && echo '<?php echo \"decoy\";' > sub/deep/index.php")
    assert r.returncode != 0 and "busy" in r.stderr, (r.stdout, r.stderr)
    for attempt in ("rmdir sub", "mv sub/deep sub/deep2", "rm -rf sub",
                    "python3 -c 'import os; os.rename(\"sub\", \"x\")'"):
        r = in_site(s, A, f"cd /home/john/public_html && {attempt}")
        assert r.returncode != 0, attempt
    # Legit use of the parent's own tree around the mask goes on.
    r = in_site(s, A, "cd /home/john/public_html/sub && echo mine > own.txt &&"
                      " mkdir d && mv d d2 && rmdir d2 && cat own.txt")
    assert r.stdout == "mine\n", r.stderr
    r = s.cagefsctl("--remount", "john")
    assert r.returncode == 0, r.stderr
    r = in_site(s, A, "cat /home/john/public_html/sub/deep/wp-config.php")
    assert "secret-deep" not in r.stdout
    r = s.run(["cagefs_enter_site", "deep.example.com", "cat",
               "/home/john/public_html/sub/deep/wp-config.php"], user="john",
              check=False)
    assert "secret-deep" in r.stdout, r.stderr
    # The account owner over SSH (outside every view) moves its own tree.
    s.run(["mv", "/home/john/public_html/sub", "/home/john/public_html/sub2"],
          user="john")
    assert s.exists("/home/john/public_html/sub2/deep/wp-config.php")


def _john_entries(sbx):
    """A home whose owner keeps secrets and ordinary files side by side."""
    sbx.make_tree("john", {"/home/john/notes.txt": "notes\n",
                           "/home/john/data/report.csv": "a,b\n"})


def test_ro_home_keeps_hidden_entries_hidden_when_they_appear_later(server):
    """home = ro: the rest of the home is visible read-only, "in every mode
    these stay hidden" (~/.my.cnf, ~/mail, backups, ...), also when they are
    made after the view was built: the home's top level in the view is a
    read-only skeleton of the entries it had, where hidden names never get
    a place."""
    server.sh("echo 'home = ro' >> /etc/siteiso/siteiso.conf")
    _john_entries(server)
    isolate(server, A, B)
    server.make_tree("john", {
        "/home/john/.my.cnf": "[client]\npassword=db-secret-later\n",
        "/home/john/backup-12.4.2026_john.tar": "full-account-backup-later\n",
        "/home/john/mail/new/1": "mail-secret-later\n",
        "/home/john/later.txt": "made later\n",
    })
    secrets = ("/home/john/.my.cnf /home/john/backup-12.4.2026_john.tar"
               " /home/john/mail/new/1")
    r = in_site(server, A, f"cat {secrets}")
    for leak in ("db-secret-later", "full-account-backup-later", "mail-secret-later"):
        assert leak not in r.stdout, r.stdout
    # The rest of the home is there, read-only; the site's docroot writable.
    r = in_site(server, A, "cat /home/john/notes.txt /home/john/data/report.csv")
    assert r.stdout == "notes\na,b\n", r.stderr
    r = in_site(server, A, "echo x >> /home/john/notes.txt; touch /home/john/new;"
                           " echo x > /home/john/public_html/ok.txt && echo wrote")
    assert r.stdout == "wrote\n" and "Read-only" in r.stderr, (r.stdout, r.stderr)
    assert server.read("/home/john/notes.txt") == "notes\n"
    # A new ordinary entry appears with the next regenerate; secrets do not.
    assert in_site(server, A, "cat /home/john/later.txt").returncode != 0
    r = server.cagefsctl("--site-isolation-regenerate", "john")
    assert r.returncode == 0, r.stderr
    r = in_site(server, A, f"cat /home/john/later.txt; cat {secrets}")
    assert r.stdout == "made later\n", (r.stdout, r.stderr)
    # The owner, outside every view, sees and changes everything.
    assert "db-secret-later" in server.run(["cat", "/home/john/.my.cnf"],
                                           user="john").stdout


def test_ro_home_hides_configured_nested_paths_made_later(server):
    """`hidden` in siteiso.conf may name a path below the top level
    (private/keys): its directory becomes a read-only skeleton too, so keys
    made there later are not shown, while the rest of private/ is."""
    server.sh("printf 'home = ro\\nhidden = private/keys, .env.prod\\n'"
              " >> /etc/siteiso/siteiso.conf")
    server.make_tree("john", {"/home/john/private/readme": "readme\n"})
    isolate(server, A, B)
    server.make_tree("john", {"/home/john/private/keys/id": "key-secret-later\n",
                              "/home/john/.env.prod": "env-secret-later\n"})
    r = in_site(server, A, "cat /home/john/private/readme /home/john/private/keys/id"
                           " /home/john/.env.prod")
    assert r.stdout == "readme\n", (r.stdout, r.stderr)


def test_shared_home_site_cannot_create_ssh_authorized_keys(server):
    """home = shared ("shared files are not isolated") still keeps ~/.ssh
    hidden in every mode: a site cannot make ~/.ssh (the home's top level is
    a read-only skeleton: EROFS) and log in over SSH as the account. It
    still writes in the entries the home has."""
    server.sh("echo 'home = shared' >> /etc/siteiso/siteiso.conf")
    _john_entries(server)
    assert not server.exists("/home/john/.ssh")
    isolate(server, A, B)
    r = in_site(server, A, "mkdir -p /home/john/.ssh &&"
                           " echo 'ssh-ed25519 AAAA attacker'"
                           " >> /home/john/.ssh/authorized_keys && echo planted")
    assert "planted" not in r.stdout
    assert not server.exists("/home/john/.ssh/authorized_keys")
    r = in_site(server, A, "mv /home/john/data /home/john/.ssh || echo refused")
    assert "refused" in r.stdout and not server.exists("/home/john/.ssh")
    # Shared: the existing entries are the site's to change.
    r = in_site(server, A, "echo more >> /home/john/notes.txt &&"
                           " echo x > /home/john/data/new.csv && echo wrote")
    assert r.stdout == "wrote\n", r.stderr
    assert server.read("/home/john/notes.txt") == "notes\nmore\n"
    # The owner over SSH makes ~/.ssh; no site sees it.
    server.make_tree("john", {"/home/john/.ssh/authorized_keys": "ssh-ed25519 AAAA\n"})
    assert in_site(server, B, "ls -a /home/john/.ssh/").stdout == ""
    r = server.cagefsctl("--remount", "john")
    assert r.returncode == 0, r.stderr
    r = in_site(server, B, "cat /home/john/.ssh/authorized_keys")
    assert "AAAA" not in r.stdout


@pytest.mark.parametrize("mode", ["ro", "shared"])
def test_site_nested_in_a_siblings_docroot_works_with_a_visible_home(server, mode):
    """ro/shared: the parent's docroot is another site's path, so it is
    hidden from the nested site, except the way to its own docroot."""
    server.sh(f"echo 'home = {mode}' >> /etc/siteiso/siteiso.conf")
    isolate(server, A, NESTED, B)
    r = in_site(server, NESTED, "cat /home/john/public_html/shop/wp-config.php")
    assert "secret-shop.example.com" in r.stdout, r.stderr
    r = in_site(server, NESTED, "cat /home/john/public_html/wp-config.php; test -e"
                                " /home/john/public_html/index.php || echo none")
    assert r.stdout == "none\n", r.stdout
    r = in_site(server, A, "cat /home/john/public_html/shop/wp-config.php")
    assert "secret-shop" not in r.stdout


# ---- hostile home ---------------------------------------------------------------

def test_docroot_swapped_for_a_fifo_or_device_fails_enable_without_hanging(server):
    server.run(["mv", "/home/john/blog", "/home/john/blog.old"], user="john")
    server.run(["mkfifo", "/home/john/blog"], user="john")
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = server.run(["cagefsctl", "--site-isolation-enable", B], check=False, timeout=60)
    assert r.returncode == 1
    assert "No users" in server.cagefsctl("--site-isolation-list").stdout


def test_site_shm_storage_swapped_for_a_symlink_is_refused(server):
    """The owner turns a site's /dev/shm storage into a symlink to another
    account: the remount fails, nothing of jane's is chowned or mounted."""
    isolate(server, A)
    st = json.loads(server.read("/var/lib/siteiso/state.json"))
    token = next(t for t, s in st["sites"].items() if A in s["names"])
    store = f"/home/john/.cagefs/websites/{token}"
    server.run(["rm", "-rf", f"{store}/shm"], user="john")
    server.run(["ln", "-s", "/home/jane", f"{store}/shm"], user="john")
    r = server.cagefsctl("--remount", "john")
    assert r.returncode == 1
    assert server.run(["stat", "-c", "%U %a", "/home/jane"]).stdout.split()[0] == "jane"


def _holder_pids(sbx, user):
    uid = sbx.users[user].uid
    text = sbx.run(["cat", f"/run/siteiso/index/{uid}"], check=False).stdout
    return sorted(line.split("\t")[2] for line in text.splitlines()
                  if line.startswith(("site\t", "cage\t")))


def test_docroot_resolving_to_a_control_character_changes_nothing(server):
    """Hostile home: the panel's docroot is clean (~/blog) but a symlink
    leading to a directory whose name holds a line break. SPEC §4.6: bad
    input gets a clear error and changes nothing. Today the error comes after
    the site was recorded: it is listed as isolated, without a view (its PHP
    still runs outside any view), and every later command for the account
    fails on it."""
    server.run(["mv", "/home/john/blog", "/home/john/x\ny"], user="john")
    server.run(["ln", "-s", "/home/john/x\ny", "/home/john/blog"], user="john")
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = server.cagefsctl("--site-isolation-enable", B)
    assert r.returncode == 1
    listed = server.cagefsctl("--site-isolation-list").stdout
    assert B not in listed, listed                  # nothing changed
    r = server.cagefsctl("--site-isolation-enable", A)
    assert r.returncode == 0, r.stderr              # the account still works


def test_one_hostile_home_does_not_stop_remount_all_for_other_accounts(server):
    """The owner of john swaps an isolated docroot for a symlink: john's
    views cannot be rebuilt (right), but `--remount-all` must still rebuild
    every other account's views (jane's)."""
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = server.cagefsctl("--site-isolation-enable", B, "jane.example.net")
    assert r.returncode == 0, r.stderr
    server.run(["mv", "/home/john/blog", "/home/john/blog.real"], user="john")
    server.run(["ln", "-s", "/home/john/blog.real", "/home/john/blog"], user="john")
    before = _holder_pids(server, "jane")
    server.cagefsctl("--remount-all")
    after = _holder_pids(server, "jane")
    assert before and after and not set(before) & set(after), (before, after)


def test_inherited_pidfd_on_stdin_does_not_lead_out_of_the_view(server):
    """The entry refuses a directory on fds 0-2, but not a pidfd: a command
    started with a pidfd of an outside process on stdin could take that
    process's descriptors (pidfd_getfd: same uid). Landlock's ptrace scope
    (a domain cannot reach processes outside it) is what stops it; on a
    kernel without Landlock ABI 6 this test fails."""
    isolate(server, A, B)
    outer = (
        "import os\n"
        "d = os.open('/home/john/blog', os.O_RDONLY | os.O_DIRECTORY)\n"
        "os.set_inheritable(d, False)\n"
        "os.dup2(os.pidfd_open(os.getpid()), 0)\n"
        "inner = ('import ctypes, os\\n'\n"
        "         'libc = ctypes.CDLL(None, use_errno=True)\\n'\n"
        "         'fd = libc.syscall(438, 0, %d, 0)\\n'\n"
        "         'print(\"got\", fd)\\n'\n"
        "         'print(os.listdir(fd) if fd >= 0 else \"\")\\n' % d)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    os.execvp('cagefs_enter_site', ['cagefs_enter_site', '{A}', 'python3',"
        " '-c', inner])\n"
        "os.waitpid(pid, 0)\n")
    r = server.run(["python3", "-c", outer], user="john", check=False, timeout=30)
    assert "got" in r.stdout, r.stderr            # the attempt ran in the site
    assert "wp-config.php" not in r.stdout, r.stdout
    assert "got -1" in r.stdout, r.stdout


def test_site_cannot_read_the_account_owners_terminal(server):
    """The view shares the host's devpts: every pty of the account (the
    owner's SSH session, a `cagefs_enter_site` shell of a sibling) is
    /dev/pts/N, owned by the user, mode 0600 — a site opens it and reads
    what is typed there (passwords), or writes into it."""
    isolate(server, A, B)
    owner = ("import pty, os, time\n"
             "m, s = pty.openpty()\n"
             "print(os.ttyname(s), flush=True)\n"
             "time.sleep(1.5)\n"
             "os.write(m, b'mysql-root-password-typed\\n')\n"
             "time.sleep(3)\n")
    # The owner's terminal: a pty of john's, outside every view.
    p = server.popen(["timeout", "8", "python3", "-c", owner], user="john")
    try:
        tty = p.stdout.readline().strip()
        assert tty.startswith("/dev/pts/"), tty
        r = in_site(server, A, f"timeout 4 head -1 {tty}")
        assert "mysql-root-password-typed" not in r.stdout
        r = in_site(server, A, f"ls /dev/pts; echo INJECTED > {tty} && echo wrote")
        assert "wrote" not in r.stdout, r.stdout
    finally:
        stop(p)


def test_a_site_still_gets_terminals_of_its_own(server):
    isolate(server, A, B)
    r = in_site(server, A, "python3 -c 'import os, pty; m, s = pty.openpty(); "
                           "print(os.ttyname(s))'")
    assert r.returncode == 0 and r.stdout.startswith("/dev/pts/"), r.stderr
