"""siteisod's php-fpm supervision decisions, without processes."""

from __future__ import annotations

import pytest

from siteiso.service import fpm, supervise

pytestmark = pytest.mark.pure

CG = "/sys/fs/cgroup/siteiso.slice/user-0/site-abc/fpm"


def test_a_master_that_keeps_dying_is_restarted_ever_more_slowly():
    sup = supervise.FpmSupervisor()
    delays = []
    for _ in range(6):
        sup._died("abc", CG)
        when, _ = sup.due["abc"]
        delays.append(when)
    gaps = [d - delays[0] for d in delays]
    assert gaps[supervise.CRASH_BUDGET] - gaps[supervise.CRASH_BUDGET - 1] >= 4
    assert gaps[5] - gaps[4] > gaps[4] - gaps[3]
    assert all(g <= supervise.MAX_BACKOFF + 1 for g in gaps)


def test_a_master_stopped_or_replaced_on_purpose_is_left_alone(monkeypatch):
    sup = supervise.FpmSupervisor()
    sup.due["gone"] = (0.0, CG)
    sup.due["replaced"] = (0.0, CG)
    sup.due["dead"] = (0.0, CG)
    alive = fpm.Master(1, 1, 1, 1, "h", CG)
    dead = fpm.Master(2, 2, 2, 2, "h", CG)
    records = {"gone": None, "replaced": alive, "dead": dead}
    monkeypatch.setattr(fpm, "read_record", records.get)
    monkeypatch.setattr(fpm.Master, "alive", lambda m: m is alive)
    # uid 0's name stands in for the site's owner
    assert sup.take_due() == {"root"}
    assert sup.due == {}


def test_the_owner_comes_from_the_cgroup_path_only():
    assert supervise._owner(CG) == "root"
    assert supervise._owner("/sys/fs/cgroup/elsewhere/fpm") is None
    assert supervise._owner("/x/user-0/site-../fpm") is None
