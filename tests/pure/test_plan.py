"""Plans (SPEC §4.1, §4.2) as data: the layout cases and random trees.

`visible()` interprets a plan the way the kernel will apply it: the latest
mount whose target is a prefix of a path decides what that path shows.
"""

from __future__ import annotations

import json
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteiso.plan import CageInput, SiteInput, app_root, cage_plan, site_plan
from siteiso.plan.ops import render
from siteiso.plan.sites import inside, site_paths
from siteiso.plan.view import Storage

pytestmark = pytest.mark.pure

HOME = "/home/john"


def cage_input(home: str = HOME, entries: tuple[str, ...] = ()) -> CageInput:
    store = f"{home}/.cagefs/websites/t"
    return CageInput(
        user="john", uid=1001, gid=1001, home=home,
        hosting_homes=(home, "/home/jane", "/home2/bob"),
        home_entries=entries, passwd="/run/siteiso/views/1001/passwd",
        group="/run/siteiso/views/1001/group", cgroup="/sys/fs/cgroup/x",
        storage=Storage(f"{store}/tmp", f"{store}/var-tmp", f"{store}/shm",
                        f"{store}/sessions", f"{store}/cache"),
        existing=frozenset({"/var/lib/siteiso", "/run/siteiso", "/usr/bin/crontab",
                            "/var/lib/php/sessions"}))


def visible(ops, path: str) -> str | None:
    """What a path shows in the view: the real path behind it, '' for an
    empty mask/tmpfs, None when it does not exist."""
    slots: dict[str, str] = {}
    mounts: list[tuple[str, str]] = []      # (target, source or "")
    made: set[str] = set()
    for o in ops:
        k, a = o.kind, o.args
        if k == "clone":
            slots[a[0]] = a[1]
        elif k in ("tmpfs", "mask"):
            mounts.append((a[0], ""))
        elif k == "mkdir":
            made.add(a[0])
        elif k == "attach":
            mounts.append((a[1], slots[a[0]]))
    for target, source in reversed(mounts):
        if inside(path, target):
            if source:
                return source + path[len(target):]
            if path == target or any(inside(m, path) for m in made):
                return ""
            return None
    return path   # the host's own tree


def sees(ops, path: str) -> bool:
    return visible(ops, path) == path


def build(sites: dict[str, str], name: str, mode: str = "private"):
    inputs = [SiteInput(token=f"t{i}", docroot=d, names=(n,), home_mode=mode)
              for i, (n, d) in enumerate(sorted(sites.items()))]
    me = next(s for s in inputs if s.names == (name,))
    return site_plan(cage_input(), me, inputs), inputs


def load_layouts(cases):
    return json.loads((cases / "layouts.json").read_text())["layouts"]


def test_layout_cases(cases):
    checked = 0
    for layout in load_layouts(cases):
        if "expect" in layout or "setup" in layout:
            continue   # these need the machine (tests/kernel/test_layouts.py)
        sites = layout["sites"]
        for name in sites:
            ops, inputs = build(sites, name)
            for p in layout.get("sees", {}).get(name, []):
                assert sees(ops, p), (layout["name"], name, p)
                checked += 1
            for p in layout.get("blind", {}).get(name, []):
                assert visible(ops, p) in (None, ""), (layout["name"], name, p)
                checked += 1
        for name, want in layout.get("app_roots", {}).items():
            me = next(s for s in inputs if s.names == (name,))
            assert app_root(me.docroot, HOME,
                            [s.docroot for s in inputs if s is not me]) == want
    assert checked > 20


def test_nested_sibling_is_present_empty_and_read_only():
    ops, _ = build({"example.com": f"{HOME}/public_html",
                    "shop.example.com": f"{HOME}/public_html/shop"}, "example.com")
    assert visible(ops, f"{HOME}/public_html/shop") == ""
    assert ("mask", (f"{HOME}/public_html/shop", "dir")) in \
        [(o.kind, o.args) for o in ops]


def test_always_hidden_stay_hidden_in_every_mode():
    for mode in ("private", "ro", "shared"):
        ops, _ = build({"a.example": f"{HOME}/a/public"}, "a.example", mode)
        for hidden in (".ssh", ".cagefs", "mail", ".my.cnf", "etc", "logs"):
            assert visible(ops, f"{HOME}/{hidden}/x") in (None, ""), (mode, hidden)


def test_private_tmp_and_sessions_come_from_site_storage():
    ops, _ = build({"a.example": f"{HOME}/a"}, "a.example")
    assert visible(ops, "/tmp/x") == f"{HOME}/.cagefs/websites/t/tmp/x"
    assert visible(ops, "/var/lib/php/sessions/s") == \
        f"{HOME}/.cagefs/websites/t/sessions/s"
    assert visible(ops, "/dev/shm/x") == f"{HOME}/.cagefs/websites/t/shm/x"


def test_other_homes_do_not_exist():
    ops, _ = build({"a.example": f"{HOME}/a"}, "a.example")
    assert visible(ops, "/home/jane/public_html") is None
    assert visible(ops, "/home2/bob/x") is None
    cage = cage_plan(cage_input())
    assert visible(cage, "/home/jane") is None
    assert sees(cage, f"{HOME}/anything")


def test_state_and_programs_are_masked():
    ops, _ = build({"a.example": f"{HOME}/a"}, "a.example")
    assert visible(ops, "/var/lib/siteiso/state.json") is None
    assert visible(ops, "/usr/bin/crontab") == ""  # /dev/null, not crontab
    assert sees(ops, "/usr/bin/php")


def test_plan_text_rejects_control_characters():
    ops, _ = build({"a.example": f"{HOME}/a\tb"}, "a.example")
    with pytest.raises(Exception, match="control character"):
        render(ops)


# ---- random docroot trees ---------------------------------------------------

segment = st.sampled_from(["public_html", "www", "public", "shop", "blog", "a",
                           "b", "sites", "app", "web", "htdocs", "c.example"])
docroot = st.lists(segment, min_size=1, max_size=4).map(
    lambda parts: posixpath.join(HOME, *parts))


@settings(max_examples=300, deadline=None)
@given(st.lists(docroot, min_size=2, max_size=5, unique=True), st.data())
def test_no_site_sees_another_sites_paths(docroots, data):
    sites = {f"s{i}.example": d for i, d in enumerate(docroots)}
    inputs = [SiteInput(token=f"t{i}", docroot=d, names=(n,))
              for i, (n, d) in enumerate(sites.items())]
    for me in inputs:
        ops = site_plan(cage_input(), me, inputs)
        mine = site_paths(me, HOME, inputs)
        for p in mine:
            # Own paths are visible at their real path, unless a sibling
            # nested inside them covers that exact place.
            assert sees(ops, p + "/own-file") or any(
                inside(p + "/own-file", o.docroot) for o in inputs if o is not me)
        for other in inputs:
            if other is me:
                continue
            for p in site_paths(other, HOME, inputs):
                probe = p + "/secret.php"
                assert visible(ops, probe) in (None, ""), (me.docroot, p)


@settings(max_examples=200, deadline=None)
@given(st.lists(docroot, min_size=1, max_size=5, unique=True))
def test_site_paths_of_different_sites_never_overlap_except_nesting(docroots):
    inputs = [SiteInput(token=f"t{i}", docroot=d) for i, d in enumerate(docroots)]
    for a in inputs:
        for b in inputs:
            if a is b:
                continue
            for pa in site_paths(a, HOME, inputs):
                for pb in site_paths(b, HOME, inputs):
                    # One may contain the other only through docroots nested
                    # in docroots, never through an app root.
                    if inside(pb, pa):
                        assert pa in (a.docroot,) or inside(b.docroot, pa)
