"""Enable ends the site's processes started before isolation, and only
those (SPEC §8 "Restart")."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kernel


def start(sbx, user, cwd, env=None):
    """A long-running process as user with that cwd; its pid in the sandbox."""
    p = sbx.popen(["sh", "-c", f"cd {cwd} && echo $$ && exec sleep 600"],
                  user=user, env=env)
    assert p.stdout is not None
    pid = p.stdout.readline().strip()
    assert pid.isdigit(), p.stderr.read() if p.stderr else ""
    return p, pid


def alive(sbx, pid):
    return sbx.run(["kill", "-0", pid], check=False).returncode == 0


def test_enable_ends_exactly_the_sites_old_processes(server):
    procs = {
        "site-cwd": start(server, "john", "/home/john/public_html"),
        "site-docroot-env": start(server, "john", "/home/john",
                                  env={"DOCUMENT_ROOT": "/home/john/public_html"}),
        "nested-sibling": start(server, "john", "/home/john/public_html/shop"),
        "sibling": start(server, "john", "/home/john/blog"),
        "home": start(server, "john", "/home/john"),
        "other-user": start(server, "jane", "/home/jane/public_html"),
    }
    try:
        assert all(alive(server, pid) for _, pid in procs.values())
        assert server.cagefsctl("--site-isolation-allow-all").returncode == 0
        r = server.cagefsctl("--site-isolation-enable", "example.com")
        assert r.returncode == 0, r.stderr
        state = {name: alive(server, pid) for name, (_, pid) in procs.items()}
        assert state == {"site-cwd": False, "site-docroot-env": False,
                         "nested-sibling": True, "sibling": True, "home": True,
                         "other-user": True}
    finally:
        for p, _ in procs.values():
            p.kill()
            p.wait()
