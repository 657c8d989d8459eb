"""../shared/cases/layouts.json on real views, through cagefs_enter_site."""

from __future__ import annotations

import json
import posixpath

import pytest

pytestmark = pytest.mark.kernel


def layouts(cases):
    return json.loads((cases / "layouts.json").read_text())["layouts"]


def build(sbx, layout):
    sbx.useradd("john")
    files = {}
    for docroot in layout["sites"].values():
        if docroot.startswith("/home/john/"):
            files[f"{docroot}/index.php"] = "<?php\n"
    for group in ("sees", "blind"):
        for paths in layout.get(group, {}).values():
            for p in paths:
                files[p] = f"file {p}\n"
    if "setup" in layout:
        sbx.run(["mkdir", "-p", "/home/john/real/www/sym.example"], user="john")
        sbx.run(["ln", "-s", "/home/john/real/www", "/home/john/www-link"],
                user="john")
        files["/home/john/real/www/sym.example/index.php"] = "<?php\n"
    sbx.make_tree("john", files)
    sbx.set_domains({d: ("john", r) for d, r in layout["sites"].items()})
    assert sbx.cagefsctl("--site-isolation-allow-all").returncode == 0


def visible(sbx, site, path):
    r = sbx.run(["cagefs_enter_site", site, "cat", path], user="john", check=False)
    return r.returncode == 0 and r.stdout == f"file {path}\n"


@pytest.mark.parametrize("i", range(6))
def test_layout_case(sandbox, cases, i):
    all_layouts = layouts(cases)
    if i >= len(all_layouts):
        pytest.fail(f"layouts.json has only {len(all_layouts)} layouts")
    layout = all_layouts[i]
    build(sandbox, layout)
    names = list(layout["sites"])
    r = sandbox.cagefsctl("--site-isolation-enable", *names)
    expect = layout.get("expect", "")
    if "refused" in expect:
        assert r.returncode == 1 and r.stderr
        assert sandbox.cagefsctl("--site-isolation-list").stdout.startswith("No users")
        return
    assert r.returncode == 0, r.stderr
    st = json.loads(sandbox.read("/var/lib/siteiso/state.json"))
    if "one site with two names" in expect:
        assert len(st["sites"]) == 1
        assert sorted(next(iter(st["sites"].values()))["names"]) == sorted(names)
        r = sandbox.run(["cagefs_enter_site", names[1], "test", "-e",
                         layout["sites"][names[0]] + "/index.php"], user="john",
                        check=False)
        assert r.returncode == 0
        return
    if "setup" in layout:
        (site,) = st["sites"].values()
        assert site["docroot"] == "/home/john/real/www/sym.example"
        for name in names:
            r = sandbox.run(["cagefs_enter_site", name, "test", "-e",
                             "/home/john/real/www/sym.example/index.php"],
                            user="john", check=False)
            assert r.returncode == 0
        return
    for site, paths in layout.get("sees", {}).items():
        for p in paths:
            assert visible(sandbox, site, p), (site, p)
    for site, paths in layout.get("blind", {}).items():
        for p in paths:
            assert not visible(sandbox, site, p), (site, p)
    for site, root in layout.get("app_roots", {}).items():
        if root:
            probe = posixpath.join(root, "app-root-probe")
            sandbox.make_tree("john", {probe: f"file {probe}\n"})
            assert visible(sandbox, site, probe), (site, root)
