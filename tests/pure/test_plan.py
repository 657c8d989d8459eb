"""Plans (SPEC §4.1, §4.2) as data: the layout cases and random trees.

`visible()` interprets a plan the way the kernel will apply it: the latest
mount whose target is a prefix of a path decides what that path shows.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteiso.plan import CageInput, SiteInput, app_root, cage_plan, site_plan
from siteiso.plan.ops import render
from siteiso.plan.sites import inside, site_paths
from siteiso.plan.view import Entry, Storage

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
    empty mask/tmpfs, None when it does not exist. A `clone ... sys` takes
    what its path shows at that point of the plan (the skeleton's entries
    come from the staged home); pins show what they cover; symlinks the plan
    makes (in its own tmpfs) are followed."""
    slots: dict[str, str] = {}
    mounts: list[tuple[str, str]] = []      # (target, source or "")
    made: set[str] = set()
    links: dict[str, str] = {}
    for o in ops:
        k, a = o.kind, o.args
        if k == "clone":
            shown = _shown(mounts, made, links, a[1]) if a[2] == "sys" else a[1]
            slots[a[0]] = shown or a[1]
        elif k in ("tmpfs", "mask"):
            mounts.append((a[0], ""))
        elif k in ("mkdir", "touch"):
            made.add(a[0])
        elif k == "symlink":
            links[a[0]] = a[1]
        elif k == "attach":
            mounts.append((a[1], slots.pop(a[0])))
        elif k == "detach":
            mounts = [(t, src) for t, src in mounts if not inside(t, a[0])]
    return _shown(mounts, made, links, path)


def _shown(mounts, made, links, path, depth=0):
    for target, source in reversed(mounts):
        if inside(path, target):
            if source:
                return source + path[len(target):]
            for link, text in links.items():
                if inside(path, link) and inside(link, target) and depth < 8:
                    to = posixpath.join(posixpath.dirname(link), text)
                    to = posixpath.normpath(to) + path[len(link):]
                    return _shown(mounts, made, links, to, depth + 1)
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


# ---- masks cannot be moved: their parents are pinned --------------------------

def unpinned_mask_parents(ops, home: str = HOME) -> list[tuple[str, str]]:
    """(mask, dir) pairs where a directory between a mask in the home and the
    nearest mount point above it is not a mount point: a site could rename it
    and make the next view mask its own decoy instead."""
    mounts = {o.args[0] for o in ops if o.kind in ("tmpfs", "mask", "pin")}
    mounts |= {o.args[1] for o in ops if o.kind == "attach"}
    pins = {o.args[0] for o in ops if o.kind == "pin"}
    bad = []
    for m in (o.args[0] for o in ops if o.kind == "mask" and inside(o.args[0], home)):
        d = posixpath.dirname(m)
        while d in pins:
            d = posixpath.dirname(d)
        if d not in mounts:
            bad.append((m, d))
    return bad


def test_a_deeper_nested_siblings_parents_are_pinned_before_its_mask():
    ops, _ = build({"example.com": f"{HOME}/public_html",
                    "deep.example.com": f"{HOME}/public_html/sub/deep"}, "example.com")
    kinds = [(o.kind, o.args) for o in ops]
    pin = ("pin", (f"{HOME}/public_html/sub",))
    mask = ("mask", (f"{HOME}/public_html/sub/deep", "dir"))
    assert pin in kinds and mask in kinds
    assert kinds.index(pin) < kinds.index(mask)
    # The site's own attach is the mount point above: not pinned again.
    assert ("pin", (f"{HOME}/public_html",)) not in kinds
    assert unpinned_mask_parents(ops) == []
    assert visible(ops, f"{HOME}/public_html/sub/x") == f"{HOME}/public_html/sub/x"
    assert visible(ops, f"{HOME}/public_html/sub/deep/wp-config.php") is None


# ---- home = ro | shared: a read-only skeleton of the listed entries ----------

def entries(*spec: str) -> tuple[Entry, ...]:
    """"name/" a directory, "name@target" a symlink, else a file."""
    out = []
    for e in spec:
        if e.endswith("/"):
            out.append(Entry(e[:-1], "dir"))
        elif "@" in e:
            name, target = e.split("@")
            out.append(Entry(name, "link", target))
        else:
            out.append(Entry(e, "file"))
    return tuple(out)


def build_mode(sites: dict[str, str], name: str, mode: str, listings, hidden=()):
    inputs = [SiteInput(token=f"t{i}", docroot=d, names=(n,), home_mode=mode,
                        hidden=hidden)
              for i, (n, d) in enumerate(sorted(sites.items()))]
    me = next(s for s in inputs if s.names == (name,))
    top = dict(listings).get(HOME, ())
    c = replace(cage_input(entries=tuple(e.name for e in top)), listings=listings)
    return site_plan(c, me, inputs)


HOME_LISTING = ((HOME, entries("public_html/", "blog/", ".bashrc", "notes.txt",
                               "www@public_html", ".ssh/", "mail/", ".my.cnf",
                               "backup-1.4.2026_john.tar", "etc/")
                        + (Entry("fifo", "other"),)),)


@pytest.mark.parametrize("mode", ["ro", "shared"])
def test_ro_and_shared_homes_bind_only_the_listed_visible_entries(mode):
    ops = build_mode({"a.example": f"{HOME}/public_html",
                      "b.example": f"{HOME}/blog"}, "a.example", mode, HOME_LISTING)
    for p in (".bashrc", "notes.txt", "public_html/index.php"):
        assert sees(ops, f"{HOME}/{p}"), p
    assert visible(ops, f"{HOME}/www/index.php") == f"{HOME}/public_html/index.php"
    # Hidden entries never exist, whether they existed when it was built ...
    for p in (".ssh/authorized_keys", "mail/new/1", ".my.cnf",
              "backup-1.4.2026_john.tar", "etc/passwd"):
        assert visible(ops, f"{HOME}/{p}") in (None, ""), p
    # ... or appeared later (not listed): nothing is there to see.
    for p in (".pgpass", "backup-2.4.2026_john.tar", "later.txt", ".ssh"):
        assert visible(ops, f"{HOME}/{p}") is None, p
    # The sibling's docroot, an entry of the home, is masked; its files gone.
    assert visible(ops, f"{HOME}/blog/wp-config.php") is None
    # The skeleton is read-only; the entries are ro or rw per mode.
    entry = {o.args[1]: o.args[2] for o in ops if o.kind == "attach"
             and o.args[0] == "251"}
    assert entry[f"{HOME}/notes.txt"] == ("ro" if mode == "ro" else "rw")
    assert ("ro", (HOME,)) in [(o.kind, o.args) for o in ops]
    assert visible(ops, f"{HOME}/fifo") is None       # neither a file nor a directory
    assert unpinned_mask_parents(ops) == []


def test_a_ro_home_without_a_listing_is_empty():
    """The engine could not list the home: nothing of it is bound (and the
    holder refuses to attach the docroot onto a path that does not exist:
    the build fails closed rather than show the home unfiltered)."""
    ops = build_mode({"a.example": f"{HOME}/public_html"}, "a.example", "ro", ())
    assert visible(ops, f"{HOME}/notes.txt") is None
    assert not any(o.kind == "clone" and o.args[2] == "sys"
                   and o.args[1].startswith(f"{HOME}/") for o in ops)


def test_configured_nested_hidden_paths_are_hidden_when_they_appear_later():
    listings = ((HOME, HOME_LISTING[0][1] + entries("private/")),
                (f"{HOME}/private", entries("keys/", "notes/")))
    for mode in ("ro", "shared"):
        ops = build_mode({"a.example": f"{HOME}/public_html"}, "a.example", mode,
                         listings, hidden=("private/keys", "private/later"))
        assert sees(ops, f"{HOME}/private/notes/x")
        for p in ("private/keys/id", "private/later/id", "private/new.txt"):
            assert visible(ops, f"{HOME}/{p}") is None, (mode, p)
        assert ("tmpfs", (f"{HOME}/private", "0750", "1001", "1001", "rw")) in \
            [(o.kind, o.args) for o in ops]
    # private mode: a configured hidden path inside the site's own tree is
    # masked, and its parents pinned.
    inputs = [SiteInput("t0", f"{HOME}/app/public", ("a.example",),
                        hidden=("app/config/secret",))]
    ops = site_plan(cage_input(), inputs[0], inputs)
    assert ("mask", (f"{HOME}/app/config/secret", "dir")) in \
        [(o.kind, o.args) for o in ops]
    assert unpinned_mask_parents(ops) == []


def test_symlinked_docroot_exists_in_a_private_view_at_its_configured_path():
    site = SiteInput("t0", f"{HOME}/sites/blog", ("blog.example",),
                     configured=(f"{HOME}/blog",))
    other = SiteInput("t1", f"{HOME}/public_html", ("a.example",))
    ops = site_plan(cage_input(), site, [site, other])
    assert visible(ops, f"{HOME}/blog/index.php") == f"{HOME}/sites/blog/index.php"
    assert ("symlink", (f"{HOME}/blog", f"{HOME}/sites/blog")) in \
        [(o.kind, o.args) for o in ops]
    # Never made inside a tree of the user's that the view attaches.
    inside_own = SiteInput("t0", f"{HOME}/sites/blog", ("blog.example",),
                           configured=(f"{HOME}/sites/blog/self",))
    ops = site_plan(cage_input(), inside_own, [inside_own])
    assert not any(o.kind == "symlink" for o in ops)


listing_names = st.sampled_from(["public_html", "www", "a", "b", "sites", ".ssh",
                                 "mail", ".my.cnf", "backup-x.tar", "etc", "notes",
                                 ".cagefs", "logs"])


@settings(max_examples=200, deadline=None)
@given(st.lists(docroot, min_size=2, max_size=4, unique=True),
       st.lists(listing_names, max_size=8, unique=True),
       st.sampled_from(["private", "ro", "shared"]))
def test_any_mode_hides_siblings_and_hidden_names_and_pins_masks(docroots, names, mode):
    tops = {d.split("/")[3] for d in docroots}
    listing = ((HOME, tuple(Entry(n, "dir") for n in sorted(tops | set(names)))),)
    inputs = [SiteInput(token=f"t{i}", docroot=d, names=(f"s{i}.example",),
                        home_mode=mode) for i, d in enumerate(docroots)]
    c = replace(cage_input(entries=tuple(sorted(tops | set(names)))), listings=listing)
    for me in inputs:
        ops = site_plan(c, me, inputs)
        assert unpinned_mask_parents(ops) == [], (me.docroot, mode)
        mine = site_paths(me, HOME, inputs)
        for p in mine:
            assert sees(ops, p + "/own-file") or any(
                inside(p + "/own-file", o.docroot) for o in inputs if o is not me)
        for other in inputs:
            if other is me:
                continue
            for p in site_paths(other, HOME, inputs):
                assert visible(ops, p + "/secret.php") in (None, ""), (me.docroot, p)
        for hidden in (".ssh", "mail", ".my.cnf", "backup-x.tar", "etc", "logs"):
            if not any(inside(f"{HOME}/{hidden}", q) for q in mine):
                assert visible(ops, f"{HOME}/{hidden}/x") in (None, ""), (mode, hidden)
