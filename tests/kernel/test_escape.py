"""Escape attempts from one isolated site into another (SPEC §4.3, §4.4).

Every test is a real attempt that must fail; where it makes sense the same
attempt is first shown to work without isolation, so the test can fail.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.kernel

A = "example.com"          # /home/john/public_html
NESTED = "shop.example.com"  # /home/john/public_html/shop
B = "blog.example.org"      # /home/john/blog
B_SECRET = "/home/john/blog/wp-config.php"
NESTED_SECRET = "/home/john/public_html/shop/wp-config.php"
A_SECRET = "/home/john/public_html/wp-config.php"


def isolate(sbx, *domains):
    assert sbx.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = sbx.cagefsctl("--site-isolation-enable", *domains)
    assert r.returncode == 0, r.stderr


def enter(sbx, site, *cmd, check=False, user="john", env=None):
    return sbx.run(["cagefs_enter_site", site, *cmd], user=user, check=check,
                   env=env)


def in_site(sbx, site, script, user="john"):
    return enter(sbx, site, "sh", "-c", script, user=user)


@pytest.fixture
def iso(server):
    isolate(server, A, NESTED, B)
    return server


def test_own_files_are_there(iso):
    r = enter(iso, A, "cat", A_SECRET)
    assert r.returncode == 0 and "secret-example.com" in r.stdout
    r = enter(iso, B, "cat", B_SECRET)
    assert r.returncode == 0 and "secret-blog.example.org" in r.stdout


def test_sibling_files_do_not_exist(iso):
    for site, path in ((A, B_SECRET), (A, NESTED_SECRET), (NESTED, A_SECRET),
                       (B, A_SECRET), (B, NESTED_SECRET)):
        r = enter(iso, site, "cat", path)
        assert r.returncode != 0, (site, path, r.stdout)


def test_nested_sibling_directory_is_empty_and_read_only(iso):
    r = enter(iso, A, "ls", "-A", "/home/john/public_html/shop")
    assert r.returncode == 0 and r.stdout == ""
    r = enter(iso, A, "touch", "/home/john/public_html/shop/x")
    assert r.returncode != 0


def test_other_users_homes_do_not_exist(iso):
    r = in_site(iso, A, "ls /home")
    assert r.stdout.split() == ["john"]
    r = in_site(iso, A, "grep -c jane /etc/passwd")
    assert r.stdout.strip() == "0"


def test_escape_through_proc_of_a_sibling_process(iso):
    # A long-running process in B, and its pid on the host.
    p = iso.popen(["cagefs_enter_site", B, "sleep", "60"], user="john")
    try:
        time.sleep(0.5)
        pids = iso.run(["pgrep", "-u", "john", "-x", "sleep"]).stdout.split()
        assert pids
        for pid in pids:
            script = f"cat /proc/{pid}/root{B_SECRET}; ls /proc/{pid}/cwd"
            r = in_site(iso, A, script)
            assert "secret-blog" not in r.stdout
        # Only A's own processes are visible in A's /proc.
        r = in_site(iso, A, "ls /proc | grep -E '^[0-9]+$' | wc -l")
        assert int(r.stdout) <= 4
    finally:
        p.kill()
        p.wait()


def test_escape_through_symlink_and_dotdot(iso):
    r = in_site(iso, A, f"ln -s {B_SECRET} /home/john/public_html/l && "
                        "cat /home/john/public_html/l")
    assert "secret-blog" not in r.stdout
    r = enter(iso, A, "cat", "/home/john/public_html/../blog/wp-config.php")
    assert r.returncode != 0 and "secret-blog" not in r.stdout


def test_escape_through_mount_and_user_namespace(iso):
    for script in ("mount --bind /home/john /tmp && cat /tmp/blog/wp-config.php",
                   "unshare -Urm true", "unshare -m true",
                   "python3 -c 'import os; os.unshare(0x10000000)'"):
        r = in_site(iso, A, script)
        assert r.returncode != 0, script
        assert "secret-blog" not in r.stdout


def test_inherited_descriptor_and_cwd_do_not_leak(iso):
    script = (f"exec 7<{B_SECRET}; cd /home/john/blog && "
              f"cagefs_enter_site {A} sh -c 'cat <&7; cat wp-config.php; "
              "ls -l /proc/self/fd; pwd'")
    r = iso.sh(script, user="john", check=False)
    assert "secret-blog" not in r.stdout
    assert "/home/john/blog" not in r.stdout


def test_sibling_unix_socket_is_unreachable(iso):
    server = ("import socket,os,time; s=socket.socket(socket.AF_UNIX);"
              "s.bind('/home/john/blog/b.sock'); s.listen(); time.sleep(30)")
    p = iso.popen(["cagefs_enter_site", B, "python3", "-c", server], user="john")
    try:
        for _ in range(50):
            if iso.exists("/home/john/blog/b.sock"):
                break
            time.sleep(0.1)
        client = ("import socket; s=socket.socket(socket.AF_UNIX);"
                  "s.connect('/home/john/blog/b.sock'); print('connected')")
        r = enter(iso, A, "python3", "-c", client)
        assert "connected" not in r.stdout
        r = enter(iso, B, "python3", "-c", client)
        assert "connected" in r.stdout   # the socket is real
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("program", ["crontab -l", "at now", "batch",
                                     "systemd-run --user true",
                                     "cagefsctl-user site-isolation-list"])
def test_programs_that_start_work_elsewhere_are_unavailable(iso, program):
    r = in_site(iso, A, f"echo true | {program}")
    assert r.returncode != 0


def test_site_cannot_enter_a_sibling_but_may_reenter_itself(iso):
    r = enter(iso, A, "cagefs_enter_site", B, "cat", B_SECRET)
    assert r.returncode != 0 and "secret-blog" not in r.stdout
    r = enter(iso, A, "cagefs_enter_site", A, "cat", A_SECRET)
    assert r.returncode == 0, r.stderr


def test_root_is_refused(iso):
    r = iso.run(["cagefs_enter_site", A, "id"], check=False)
    assert r.returncode != 0


def test_other_user_cannot_enter_johns_site(iso):
    r = enter(iso, A, "cat", A_SECRET, user="jane")
    assert r.returncode == 125 and "secret" not in r.stdout
    assert r.stderr == (f"siteiso-enter: cannot enter {A}: not one of your "
                        f"isolated sites (uid {iso.users['jane'].uid} has none)\n")


def test_a_short_command_line_gets_the_commands_own_usage(iso):
    for argv in ([], [A]):
        r = iso.run(["cagefs_enter_site", *argv], user="john", check=False)
        assert r.returncode == 125
        assert r.stderr == ("usage: cagefs_enter_site <docroot|domain> <command> "
                            "[args...]\n")


def test_exit_status_and_signals_pass_through(iso):
    assert enter(iso, A, "sh", "-c", "exit 7").returncode == 7
    r = enter(iso, A, "sh", "-c", "kill -TERM $$")
    assert r.returncode in (-15, 143)


def test_failed_namespace_entry_never_runs_the_command(iso):
    holders = iso.read(f"/run/siteiso/index/{iso.users['john'].uid}")
    pids = [line.split("\t")[2] for line in holders.splitlines()
            if line.startswith("site\t")]
    for pid in pids:
        iso.run(["kill", "-9", pid])
    time.sleep(0.3)
    r = enter(iso, A, "touch", "/home/john/public_html/ran")
    assert r.returncode != 0
    assert not iso.exists("/home/john/public_html/ran")


def test_seccomp_and_core_limit(iso):
    r = in_site(iso, A, "ulimit -c")
    assert r.stdout.strip() == "0"


# ---- hostile homes ------------------------------------------------------------

def test_cagefs_dir_symlinked_to_etc_is_never_followed(server):
    server.run(["ln", "-s", "/etc", "/home/john/.cagefs"], user="john")
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    before = server.run(["ls", "-la", "/etc"]).stdout
    r = server.cagefsctl("--site-isolation-enable", A)
    assert r.returncode == 1
    assert ".cagefs" in r.stderr
    assert server.run(["ls", "-la", "/etc"]).stdout == before
    assert not server.exists("/etc/websites")


def test_site_tmp_swapped_for_a_symlink_before_remount(iso):
    st = iso.read("/var/lib/siteiso/state.json")
    import json
    token = next(t for t, s in json.loads(st)["sites"].items() if A in s["names"])
    tmp = f"/home/john/.cagefs/websites/{token}/tmp"
    iso.run(["rm", "-rf", tmp], user="john")
    iso.run(["ln", "-s", "/home/jane", tmp], user="john")
    r = iso.cagefsctl("--remount", "john")
    assert r.returncode == 1 and "symlink" in r.stderr
    assert iso.run(["ls", "-A", "/home/jane"]).stdout == \
        iso.run(["ls", "-A", "/home/jane"]).stdout
    assert iso.run(["stat", "-c", "%U", "/home/jane"]).stdout.strip() == "jane"
    # The old view keeps working; nothing of jane's is in it.
    r = in_site(iso, A, "ls /tmp; ls /home")
    assert "jane" not in r.stdout


def test_site_tmp_replaced_by_a_fifo(iso):
    import json
    st = json.loads(iso.read("/var/lib/siteiso/state.json"))
    token = next(t for t, s in st["sites"].items() if B in s["names"])
    tmp = f"/home/john/.cagefs/websites/{token}/tmp"
    iso.run(["rm", "-rf", tmp], user="john")
    iso.run(["mkfifo", tmp], user="john")
    r = iso.run(["cagefsctl", "--remount", "john"], check=False, timeout=60)
    assert r.returncode == 1


def test_docroot_swapped_for_symlink_to_another_home(server):
    server.run(["mv", "/home/john/blog", "/home/john/blog.old"], user="john")
    server.run(["ln", "-s", "/home/jane/public_html", "/home/john/blog"], user="john")
    assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = server.cagefsctl("--site-isolation-enable", B)
    assert r.returncode == 1
    assert server.cagefsctl("--site-isolation-list").stdout.startswith("No users")


def test_sibling_abstract_unix_socket_is_unreachable(iso):
    server = ("import socket,time; s=socket.socket(socket.AF_UNIX);"
              "s.bind('\\0siteiso-test-b'); s.listen(); print('up', flush=True);"
              "time.sleep(30)")
    p = iso.popen(["cagefs_enter_site", B, "python3", "-c", server], user="john")
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        client = ("import socket; s=socket.socket(socket.AF_UNIX);"
                  "s.connect('\\0siteiso-test-b'); print('connected')")
        r = enter(iso, A, "python3", "-c", client)
        assert "connected" not in r.stdout
        # Outside every view (the account itself) the socket is real.
        r = iso.run(["python3", "-c", client], user="john", check=False)
        assert "connected" in r.stdout
    finally:
        p.kill()
        p.wait()


def test_mount_added_later_on_a_shared_host_is_not_visible(server):
    # systemd hosts mount / shared: a new mount would propagate to slaves.
    server.sh("mount --make-rshared /")
    isolate(server, A, B)
    iso = server
    iso.sh("mkdir -p /run/user/1001 /srv/late && "
           "mount -t tmpfs -o mode=0700,uid=1001 late /run/user/1001 && "
           "echo bus > /run/user/1001/bus && mount -t tmpfs late2 /srv/late && "
           "echo secret > /srv/late/s")
    try:
        r = in_site(iso, A, "ls -A /run/user/1001 /srv/late; cat /srv/late/s")
        assert "bus" not in r.stdout and "secret" not in r.stdout
    finally:
        iso.sh("umount /run/user/1001; umount /srv/late", check=False)
