"""siteiso._core.build_views: many views built at once from C (the batch
call the engine uses), against the real holder program."""

from __future__ import annotations

import json

import pytest

from siteiso import paths

pytestmark = pytest.mark.kernel

A = "example.com"
B = "blog.example.org"

BUILD = """
import json, sys
from siteiso import _core
plans = [open(p, "rb").read() for p in sys.argv[1:]]
plans.append(b"version\\t1\\nbogus\\n")
print(json.dumps(_core.build_views("{holder}", plans, parallel=2)))
"""


def ns(sbx, pid, kind):
    return sbx.run(["readlink", f"/proc/{pid}/ns/{kind}"]).stdout.strip()


def test_batch_builds_every_view_and_reports_each_failure(server):
    s = server
    assert s.cagefsctl("--site-isolation-allow-all").returncode == 0
    r = s.cagefsctl("--site-isolation-enable", A, B)
    assert r.returncode == 0, r.stderr
    uid = s.users["john"].uid
    plans = sorted(p for p in s.run(["ls", f"{paths.VIEWS}/{uid}"]).stdout.split()
                   if p.endswith(".plan"))
    assert len(plans) == 3          # the cage and two sites
    files = [f"{paths.VIEWS}/{uid}/{p}" for p in plans]
    r = s.run([f"{paths.OPT}/venv/bin/python", "-c",
               BUILD.format(holder=paths.HOLDER), *files])
    results = json.loads(r.stdout)
    try:
        assert len(results) == 4
        pids = [pid for pid, err in results[:3]]
        assert all(pid > 0 for pid in pids), results
        assert all(err == "" for _, err in results[:3])
        # The malformed plan: no holder, the holder program's own message.
        assert results[3][0] == 0
        assert results[3][1].startswith("siteiso-holder: cannot parse plan")
        # Each new holder is its own view: a mount namespace of its own,
        # not the host's; a site's holder is PID 1 of its PID namespace.
        mnts = {ns(s, pid, "mnt") for pid in pids}
        assert len(mnts) == 3 and ns(s, 1, "mnt") not in mnts
        for plan, pid in zip(plans, pids, strict=True):
            if plan == "cage.plan":
                continue
            status = s.read(f"/proc/{pid}/status")
            nspid = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
            assert nspid.split()[-1] == "1"
    finally:
        for pid, _ in results:
            if pid > 0:
                s.run(["kill", "-KILL", str(pid)], check=False)
