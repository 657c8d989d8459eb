"""FastCGI (mod_fcgid) for isolated sites, through a real Apache (SPEC §8):
suexec runs the site's wrapper, the wrapper the entry in handler mode, and
the persistent php-cgi lives in the site's view."""

from __future__ import annotations

import pytest
from conftest_handlers import (
    A_ROOT,
    A_SECRET,
    B_ROOT,
    B_SECRET,
    NESTED,
    NESTED_SECRET,
    A,
    B,
    disable,
    enable,
    host_pidns,
    php_pidns,
    processes,
    serving_process,
    set_handler,
    site_record,
    wait_gone,
)

pytestmark = pytest.mark.web

ENTRY = "/usr/libexec/siteiso/siteiso-enter"


@pytest.fixture
def fweb(web):
    set_handler(web.sbx, "fcgid")
    return web


def test_include_uses_the_sites_fcgid_wrapper(fweb):
    enable(fweb.sbx, A)
    token = site_record(fweb.sbx, "john", A_ROOT).token
    text = fweb.sbx.read(f"/etc/apache2/siteiso/{A}.conf")
    assert f'FcgidWrapper "/home/john/.cagefs/wrappers/{token}/php-fcgi" .php' in text
    assert "AddHandler fcgid-script .php" in text


def test_php_is_persistent_runs_as_the_user_in_the_sites_own_pid_namespace(fweb):
    sbx = fweb.sbx
    enable(sbx, A, B)
    assert fweb.get(A, "/index.php") == (200, "hello from a.example")
    rec = site_record(sbx, "john", A_ROOT)
    first = fweb.probe(A, "env")
    assert first["out"]["uid"] == sbx.users["john"].uid
    # FastCGI: the same process serves the next request.
    assert fweb.probe(A, "env")["out"]["pid"] == first["out"]["pid"]
    assert php_pidns(fweb, A) == rec.pidns != host_pidns(sbx)
    php = serving_process(sbx, rec.pidns, first["out"]["pid"])
    assert php.name == "php-cgi" and php.uid == sbx.users["john"].uid
    assert php.cgroup.endswith(f"/site-{rec.token}")
    ps = fweb.probe(A, "exec", "ls /proc | grep -c '^[0-9]'")
    assert int(ps["out"]) < 10  # only the site's own processes
    # b has its own view, its own persistent PHP.
    assert php_pidns(fweb, B) == site_record(sbx, "john", B_ROOT).pidns != rec.pidns


def test_isolated_sites_cannot_read_each_others_files(fweb):
    enable(fweb.sbx, A, B, NESTED)
    for op in ("read", "include"):
        for target in (B_SECRET, NESTED_SECRET, "/home/john/b.example/.env"):
            r = fweb.probe(A, op, target)
            assert not r["ok"], (op, target, r)
        assert not fweb.probe(B, op, A_SECRET)["ok"]
        assert not fweb.probe(NESTED, op, A_SECRET)["ok"]
    assert fweb.probe(B, "read", "/home/john/b.example/.env")["ok"]  # its own app root
    assert fweb.probe(A, "write", f"{A_ROOT}/new.txt")["ok"]


def test_nested_site_through_the_parent_vhost_fails_closed(fweb):
    enable(fweb.sbx, A, NESTED)
    assert fweb.get(NESTED, "/index.php") == (200, "hello from nested.example")
    code, body = fweb.get(A, "/nested/wp-config.php")
    assert "secret-of-nested.example" not in body
    assert code != 200


def test_disable_restores_the_panels_handler_and_ends_persistent_php(fweb):
    sbx = fweb.sbx
    enable(sbx, A, B)
    rec = site_record(sbx, "john", A_ROOT)
    a_php = serving_process(sbx, rec.pidns, fweb.probe(A, "env")["out"]["pid"])
    assert not fweb.probe(A, "read", B_SECRET)["ok"]

    disable(sbx, A)
    assert fweb.get(A, "/index.php") == (200, "hello from a.example")
    # The panel's CGI again: outside every view, reaching the sibling.
    assert fweb.probe(A, "read", B_SECRET)["ok"]
    assert php_pidns(fweb, A) == host_pidns(sbx)
    assert wait_gone(sbx, [a_php]) == []
    assert not [p for p in processes(sbx) if p.pidns == rec.pidns]
    # b is still isolated (Apache's graceful restart may have renewed its
    # php-cgi; mod_fcgid does that for every process).
    assert php_pidns(fweb, B) == site_record(sbx, "john", B_ROOT).pidns
    assert not fweb.probe(B, "read", A_SECRET)["ok"]


def test_handler_entry_without_document_root_needs_a_fastcgi_spawn(fweb):
    """mod_fcgid starts the application before any request: no DOCUMENT_ROOT,
    the listening socket on fd 0. Only that start is let through."""
    sbx = fweb.sbx
    enable(sbx, A)
    token = site_record(sbx, "john", A_ROOT).token
    spawn = (
        "import os, socket, sys\n"
        "kind = sys.argv[1]\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "if kind != 'plain':\n"
        "    s.bind('/tmp/fcgi-%d' % os.getpid())\n"
        "if kind == 'listening':\n"
        "    s.listen(1)\n"
        "os.dup2(s.fileno(), 0)\n"
        f"os.execv('{ENTRY}', ['siteiso-enter', 'handler', '{token}', '/bin/true'])\n"
    )

    def run(kind: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        r = sbx.run(["python3", "-c", spawn, kind], user="john", check=False, env=env)
        return r.returncode, r.stderr

    assert run("listening") == (0, "")
    code, err = run("bound")  # a socket, but not listening: not a spawn
    assert code == 125 and "DOCUMENT_ROOT is not set" in err
    code, err = run("plain")
    assert code == 125 and "DOCUMENT_ROOT is not set" in err
    # A spawn naming a script is a request: the usual rules apply.
    code, err = run("listening", {"SCRIPT_FILENAME": B_SECRET})
    assert code == 125 and "DOCUMENT_ROOT is not set" in err
    # DOCUMENT_ROOT, when given, must be the site's even on a spawn.
    code, err = run("listening", {"DOCUMENT_ROOT": B_ROOT})
    assert code == 125 and "is not its docroot" in err
    assert run("listening", {"DOCUMENT_ROOT": A_ROOT}) == (0, "")
