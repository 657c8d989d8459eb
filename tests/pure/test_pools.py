"""The host's php-fpm pools as data (siteiso.service.pools): which ones an
account can use, and what hides their sockets in its site views."""

from __future__ import annotations

import os

import pytest

from siteiso.service import pools

pytestmark = pytest.mark.pure

HOMES = ("/home/john", "/home/jane")
JOHN = {"john": 1001}

POOL_D = """; a hand-made pool file
[global]
error_log = /var/log/x.log

[john]
user = john
group = john
listen = /run/php/$pool.sock     ; inline comment
listen.owner = john
listen.group = www-data

[www]
user = www-data
listen = "/run/php/php8.2-fpm.sock"
listen.owner = www-data
listen.group = www-data

[tcp]
user = john
listen = 127.0.0.1:9001

[garbage
this is not ini
= nothing
"""


def by_name(text: str) -> dict[str, pools.Pool]:
    return {p.name: p for p in pools.parse(text, "/etc/php/8.2/fpm/pool.d/x.conf")}


def test_parse_reads_pools_and_skips_global_and_junk():
    found = by_name(POOL_D)
    assert set(found) == {"john", "www", "tcp"}
    assert found["john"].listen == "/run/php/john.sock"       # $pool, comment
    assert found["www"].listen == "/run/php/php8.2-fpm.sock"  # quotes
    assert found["john"].mode == 0o660 and found["tcp"].owner == "john"
    assert not found["tcp"].unix


def test_who_can_use_a_pool():
    found = by_name(POOL_D)
    assert pools.reachable_by(found["john"], "john", 1001, JOHN)
    assert not pools.reachable_by(found["www"], "john", 1001, JOHN)
    # A member of the socket's group, a world-writable socket, an ACL.
    assert pools.reachable_by(found["www"], "john", 1001, {**JOHN, "www-data": 33})
    assert pools.reachable_by(pools.parse("[w]\nuser=x\nlisten=/run/php/w.sock\n"
                                          "listen.mode = 0666\n", "f")[0],
                              "john", 1001, JOHN)
    assert pools.reachable_by(pools.parse("[w]\nuser=x\nlisten=/run/php/w.sock\n"
                                          "listen.acl_users = a, john\n", "f")[0],
                              "john", 1001, JOHN)
    assert pools.reachable_by(pools.parse("[w]\nuser = 1001\nlisten=/run/w\n", "f")[0],
                              "john", 1001, JOHN)


@pytest.mark.parametrize(("listen", "mask"), [
    ("/run/php/john.sock", ("/run/php", "dir")),
    ("/run/php-fpm/john.sock", ("/run/php-fpm", "dir")),
    ("/opt/cpanel/ea-php82/root/usr/var/run/php-fpm/ab12.sock",
     ("/opt/cpanel/ea-php82/root/usr/var/run/php-fpm", "dir")),
    # Directories a view needs, or not php's: only the socket.
    ("/run/john.sock", ("/run/john.sock", "file")),
    ("/run/mysqld/php.sock", ("/run/mysqld/php.sock", "file")),
    ("/var/lib/php/john.sock", ("/var/lib/php/john.sock", "file")),
    ("/etc/php/8.2/fpm/x.sock", ("/etc/php/8.2/fpm/x.sock", "file")),
    # Nothing to do, or nothing root may do.
    ("/tmp/john.sock", None),
    ("/home/john/php.sock", None),
    ("/home/jane/../john/php.sock", None),
    ("127.0.0.1:9000", None),
    ("9000", None),
])
def test_mask_for(listen, mask):
    pool = pools.Pool("f", "p", "john", "john", listen, "john", "john", 0o660, (), ())
    got = pools.mask_for(pool, HOMES)
    assert (got and (got.path, got.kind)) == mask if mask else got is None


def test_mask_resolves_system_symlinks_but_never_into_a_home(tmp_path, monkeypatch):
    monkeypatch.setattr(pools, "_PRIVATE", ())     # tmp_path is below /tmp
    run = tmp_path / "run"
    (run / "php").mkdir(parents=True)
    os.symlink(run, tmp_path / "varrun")
    pool = pools.Pool("f", "p", "john", "john", f"{tmp_path}/varrun/php/j.sock",
                      "john", "john", 0o660, (), ())
    got = pools.mask_for(pool, HOMES)
    assert got is not None and got.path.startswith(str(run))
    home = tmp_path / "home" / "john"
    home.mkdir(parents=True)
    os.symlink(home, tmp_path / "sneaky")
    pool = pools.Pool("f", "p", "john", "john", f"{tmp_path}/sneaky/j.sock",
                      "john", "john", 0o660, (), ())
    assert pools.mask_for(pool, (str(home),)) is None


def test_masks_for_an_account_keep_only_its_pools_without_duplicates():
    text = POOL_D + "[john2]\nuser = john\nlisten = /run/php/john2.sock\n"
    masks = pools.masks_for(pools.parse(text, "f"), "john", 1001, JOHN, HOMES)
    assert masks == (pools.Mask("/run/php", "dir"),)
    assert pools.masks_for(pools.parse(text, "f"), "jane", 1002, {"jane": 1002},
                           HOMES) == ()


def test_read_skips_files_that_are_not_roots_regular_files(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("[a]\nuser = john\nlisten = /run/php/a.sock\n")
    (tmp_path / "dir.conf").mkdir()
    os.symlink(good, tmp_path / "link.conf")
    (tmp_path / "bin.conf").write_bytes(b"\xff\xfe\n[x]\nuser=\xffjohn\n")
    found, skipped = pools.read([f"{tmp_path}/*.conf", f"{tmp_path}/none/*.conf"])
    names = sorted(p.name for p in found)
    if os.geteuid() == 0:
        assert names == ["a", "x"]
        assert sorted(os.path.basename(s) for s in skipped) == ["dir.conf", "link.conf"]
    else:
        assert names == [] and len(skipped) == 4


def test_doctor_names_what_views_cannot_hide():
    text = ("[tcp]\nuser = john\nlisten = 127.0.0.1:9001\n"
            "[home]\nuser = john\nlisten = /home/john/php.sock\n"
            "[shared]\nuser = john\nlisten = /run/john.sock\n"
            "[fine]\nuser = john\nlisten = /run/php/john.sock\n"
            "[other]\nuser = www-data\nlisten = 127.0.0.1:9000\n")
    out = pools.problems(pools.parse(text, "f"), [("john", 1001, "/home/john")])
    assert len(out) == 3
    assert "TCP 127.0.0.1:9001" in out[0] and "in a home" in out[1]
    assert "shared directory" in out[2]
