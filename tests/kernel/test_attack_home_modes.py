"""Attacks from a hostile site owner on the home modes, docroot aliases and
batch converges (review of session 2); each was first shown to work, then
closed."""

from __future__ import annotations

import pytest
from test_attack_site_escape import A, B, in_site, isolate
from testlib import run_handler

pytestmark = pytest.mark.kernel

JANE = "jane.example.net"


def _ro_home(sbx, mode="ro"):
    sbx.sh(f"echo 'home = {mode}' >> /etc/siteiso/siteiso.conf")


def test_undecodable_home_entry_name_does_not_stop_other_accounts_converge(server):
    """home = ro: john names a file in his home with a byte that is not
    UTF-8. The skeleton puts the name in his plan; the plan is encoded in the
    builder thread (UnicodeEncodeError, not a SiteisoError), which escapes
    the per-user _step and aborts the whole converge: jane's (a different
    account's) views are not rebuilt, and the holders her batch started in
    the background are never indexed (they pile up, one set per converge)."""
    _ro_home(server)
    isolate(server, A, B, JANE)
    server.make_tree("jane", {"/home/jane/later.txt": "jane later\n"})
    server.sh("touch \"$(printf '/home/john/bad-\\377-name')\"", user="john")
    for _ in range(3):
        r = server.run(["cagefsctl", "--remount-all"], check=False, timeout=120)
    jane = in_site(server, JANE, "cat /home/jane/later.txt", user="jane")
    assert jane.stdout == "jane later\n", (jane.stdout, jane.stderr, r.stderr[-600:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    # Jane's holders the aborted converges started (no index names them)
    # must not pile up: a cage and one site, a holder each.
    holders = server.sh("for f in $(find /sys/fs/cgroup -name cgroup.procs"
                        " -path '*siteiso.slice/user-1002/*'); do"
                        " for p in $(cat $f); do stat -c %u /proc/$p; done;"
                        " done | grep -c '^0$'",
                        check=False).stdout.strip()
    assert holders == "2", holders


def _token(sbx, domain):
    import json
    st = json.loads(sbx.read("/var/lib/siteiso/state.json"))
    return next(t for t, s in st["sites"].items() if domain in s["names"])


def test_shared_home_site_cannot_repoint_a_siblings_docroot_alias(server):
    """home = shared; the panel names blog.example.org's docroot by a symlink
    in an ordinary directory of the home (~/www/blog -> ~/sites/blog). The
    index records ~/www/blog as an alias, and the entry accepts it as
    DOCUMENT_ROOT. ~/www is bound read-write in every site view, so site A
    re-points ~/www/blog at a directory of its own with its PHP in it; the
    next request for B (before any regenerate) runs A's script in B's view,
    where B's wp-config.php is."""
    server.make_tree("john", {"/home/john/sites/blog/index.php": "<?php echo 'blog';\n",
                              "/home/john/sites/blog/wp-config.php":
                                  "<?php $pw = 'secret-of-blog';\n",
                              "/home/john/www/readme": "www\n"})
    server.run(["ln", "-s", "/home/john/sites/blog", "/home/john/www/blog"],
               user="john")
    domains = {A: ("john", "/home/john/public_html"),
               B: ("john", "/home/john/www/blog"),
               JANE: ("jane", "/home/jane/public_html")}
    server.set_domains(domains)
    _ro_home(server, "shared")
    isolate(server, A, B)
    b = _token(server, B)
    r = in_site(server, A, "cat /home/john/sites/blog/wp-config.php")
    assert "secret-of-blog" not in r.stdout          # B is hidden from A's view
    # The alias runs through a link in a directory sites can write: it is not
    # recorded, and the entry refuses it (fails closed) — the resolved
    # docroot keeps working.
    ok = run_handler(server, b, "/home/john/www/blog", "/home/john/www/blog/index.php",
                  "php-cgi", "-q")
    assert ok.returncode != 0 and "is not its docroot" in ok.stderr, ok.stderr
    ok = run_handler(server, b, "/home/john/sites/blog",
                     "/home/john/sites/blog/index.php", "php-cgi", "-q")
    assert ok.stdout == "blog", (ok.stdout, ok.stderr)
    # Site A, inside its own view, plants its script and re-points the link.
    r = in_site(server, A, "mkdir -p /home/john/www/evil && printf '%s' "
                "\"<?php echo @file_get_contents("
                "'/home/john/sites/blog/wp-config.php');\""
                " > /home/john/www/evil/x.php && ln -sfn /home/john/www/evil"
                " /home/john/www/blog && echo repointed")
    repointed = "repointed" in r.stdout
    r = run_handler(server, b, "/home/john/www/blog", "/home/john/www/blog/x.php",
                 "php-cgi", "-q")
    # (In shared mode the link is a shared file: re-pointing it is allowed.)
    assert "secret-of-blog" not in r.stdout, (repointed, r.stdout, r.stderr)


def test_shared_home_site_cannot_move_the_parent_of_a_nested_siblings_docroot(server):
    """home = shared; B's docroot lies two levels down in an ordinary entry
    of the home (~/sites/x/blog). Site A renames ~/sites/x away and leaves a
    decoy ~/sites/x/blog of its own: the next view would mask the decoy and
    show B's tree under the new name, and B's record would name A's decoy.
    The `pin` op makes ~/sites/x a mount point in A's view (EBUSY)."""
    server.make_tree("john", {"/home/john/sites/x/blog/index.php": "<?php echo 'b';\n",
                              "/home/john/sites/x/blog/wp-config.php":
                                  "<?php $pw = 'secret-of-blog';\n"})
    server.set_domains({A: ("john", "/home/john/public_html"),
                        B: ("john", "/home/john/sites/x/blog"),
                        JANE: ("jane", "/home/jane/public_html")})
    _ro_home(server, "shared")
    isolate(server, A, B)
    r = in_site(server, A, "mv /home/john/sites/x /home/john/sites/y && "
                           "mkdir -p /home/john/sites/x/blog && echo moved")
    assert "moved" not in r.stdout, r.stdout
    assert server.cagefsctl("--site-isolation-regenerate", "john").returncode == 0
    r = in_site(server, A, "cat /home/john/sites/*/blog/wp-config.php")
    assert "secret-of-blog" not in r.stdout, r.stdout


def test_ro_home_fifo_and_symlink_entries_do_not_hang_or_leak(server):
    """home = ro; the owner plants a FIFO and a symlink to a sibling's
    secret at the home's top level. The converge neither hangs on the FIFO
    (root lists with lstat) nor lets the recreated symlink reach B."""
    _ro_home(server)
    server.run(["mkfifo", "/home/john/pipe"], user="john")
    server.run(["ln", "-s", "/home/john/blog/wp-config.php", "/home/john/b-secret"],
               user="john")
    isolate(server, A, B)
    r = in_site(server, A, "ls -la /home/john/; cat /home/john/b-secret")
    assert "secret-blog" not in r.stdout and "pipe" not in r.stdout, r.stdout
    assert "b-secret" in r.stdout, r.stdout


def test_shared_home_many_entries_do_not_stop_another_accounts_converge(server):
    """home = shared; john fills his home with 20000 entries: his views bind
    each one (a mount per entry). Whatever that costs john, jane's views
    are still rebuilt by the same --remount-all."""
    _ro_home(server, "shared")
    isolate(server, A, B, JANE)
    server.sh("cd /home/john && mkdir many && cd many && seq 1 20000 | "
              "sed 's/^/f/' | xargs touch && mv f* .. 2>/dev/null;"
              " cd .. && rmdir many", user="john")
    server.make_tree("jane", {"/home/jane/later.txt": "jane later\n"})
    server.run(["cagefsctl", "--remount-all"], check=False, timeout=600)
    r = in_site(server, JANE, "cat /home/jane/later.txt", user="jane")
    assert r.stdout == "jane later\n", (r.stdout, r.stderr)


def test_shared_home_site_cannot_plant_code_the_owners_login_runs(server):
    """home = shared binds every top-level entry read-write, ~/.bashrc and
    ~/.profile included. SPEC §4.2: "A site never writes anything that code
    outside that site executes". Site A appends to ~/.bashrc; the owner's
    next login shell (outside every view) runs it and copies B's
    wp-config.php into A's docroot."""
    _ro_home(server, "shared")
    assert server.exists("/home/john/.bashrc")
    isolate(server, A, B)
    in_site(server, A, "echo 'cat /home/john/blog/wp-config.php >"
                       " /home/john/public_html/leak.txt 2>/dev/null'"
                       " >> /home/john/.bashrc")
    server.run(["bash", "-i", "-c", "true"], user="john", check=False, timeout=30)
    r = in_site(server, A, "cat /home/john/public_html/leak.txt")
    assert "secret-blog" not in r.stdout, r.stdout
