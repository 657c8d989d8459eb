"""Review of the remount-all performance commits (461a18d, db571f5): what
their shortcuts must still refuse.

- ensure_dir_beneath's fast path (one openat2 of the whole path) must not
  take a complete, user-owned tree reached through a symlink.
- A wrapper skipped because it is "already right" must really be the
  wrapper root wrote: a FIFO does not block root, a hard-linked copy with
  the right text is replaced, not kept.
- A view's passwd and group list no hosting account of another uid, even
  where passwd has the same name twice (which the property test in
  test_identity.py never generates).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteiso import sysapi
from siteiso.accounts import Account
from siteiso.errors import UnsafePath
from siteiso.service import apache
from siteiso.views.engine import HostFacts, _Identities

pytestmark = pytest.mark.pure

ROOT = os.geteuid() == 0
UID = 4321 if ROOT else os.getuid()
GID = 4321 if ROOT else os.getgid()


def own(*paths: Path) -> None:
    for p in paths:
        os.lchown(p, UID, GID)


def mkdirs(base: Path, rel: str) -> Path:
    p = base
    for name in rel.split("/"):
        p = p / name
        p.mkdir(exist_ok=True)
        own(p)
    return p


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home" / "john"
    h.mkdir(parents=True)
    own(h)
    return h


@pytest.fixture
def home_fd(home: Path) -> Iterator[int]:
    fd = sysapi.open_home(str(home), UID)
    yield fd
    os.close(fd)


def tree(d: Path) -> list[tuple[str, int, int, int]]:
    out = []
    for root, dirs, files in os.walk(d):
        for n in sorted(dirs + files):
            st_ = os.lstat(os.path.join(root, n))
            out.append((os.path.join(root, n), st_.st_uid, st_.st_mode, st_.st_ino))
    return sorted(out)


# ---- ensure_dir_beneath's fast path ----------------------------------------


def test_fast_path_refuses_a_complete_user_tree_reached_through_a_symlink(
    home: Path, home_fd: int, tmp_path: Path
) -> None:
    # Everything the fast path checks at the end is right (a directory of
    # the user's), but the path to it leaves the home through a symlink.
    outside = tmp_path / "outside"
    outside.mkdir()
    mkdirs(outside, "websites/3f2a/tmp")
    (home / ".cagefs").symlink_to(outside)
    os.lchown(home / ".cagefs", UID, GID)
    before = tree(outside)

    with pytest.raises(UnsafePath):
        sysapi.ensure_dir_beneath(home_fd, ".cagefs/websites/3f2a/tmp", UID, GID,
                                  0o1777)
    with pytest.raises(UnsafePath):
        sysapi.ensure_dir_beneath(home_fd, ".cagefs/websites/3f2a/tmp/new", UID,
                                  GID, 0o700)
    assert tree(outside) == before


# ---- wrappers kept when "the same" -----------------------------------------


def _wrapper_dir(home: Path) -> Path:
    return mkdirs(home, ".cagefs/wrappers/3f2a")


def _dir_fd(d: Path) -> int:
    return os.open(d, os.O_PATH | os.O_DIRECTORY)


def test_fifo_at_the_wrapper_path_does_not_block_root_and_is_replaced(
    home: Path,
) -> None:
    d = _wrapper_dir(home)
    os.mkfifo(d / "php-cgi", 0o755)
    own(d / "php-cgi")
    text = "#!/bin/sh\nexec true\n"
    fd = _dir_fd(d)
    done = threading.Event()

    def write() -> None:
        apache._write_file(fd, "php-cgi", text, UID, GID)
        done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    t.join(5)
    try:
        assert done.is_set(), "root blocked on a FIFO placed at the wrapper path"
        st_ = os.lstat(d / "php-cgi")
        assert stat.S_ISREG(st_.st_mode)
        assert (d / "php-cgi").read_text() == text
    finally:
        if not done.is_set():   # unblock the writer before leaving
            with open(d / "php-cgi", "w"):
                pass
            t.join(5)
        os.close(fd)


def test_hard_linked_wrapper_with_the_right_text_is_replaced(
    home: Path, tmp_path: Path
) -> None:
    d = _wrapper_dir(home)
    text = "#!/bin/sh\nexec true\n"
    (d / "php-cgi").write_text(text)
    os.chmod(d / "php-cgi", 0o755)
    own(d / "php-cgi")
    # A second name for the same inode elsewhere in the home (a site's
    # tree): whoever writes through it would change the wrapper.
    os.link(d / "php-cgi", home / "copy")
    kept = os.stat(home / "copy").st_ino
    fd = _dir_fd(d)
    try:
        apache._write_file(fd, "php-cgi", text, UID, GID)
    finally:
        os.close(fd)
    st_ = os.lstat(d / "php-cgi")
    assert st_.st_ino != kept and st_.st_nlink == 1
    assert (st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode)) == (UID, GID, 0o755)

    # The right inode, alone: kept as it is (the point of the shortcut).
    fd = _dir_fd(d)
    try:
        apache._write_file(fd, "php-cgi", text, UID, GID)
    finally:
        os.close(fd)
    assert os.lstat(d / "php-cgi").st_ino == st_.st_ino


# ---- passwd and group of the views ------------------------------------------


names = st.sampled_from(["u0", "u1", "u2", "u3", "root", "mail"])


@st.composite
def hosts_with_duplicate_names(draw):
    entries = draw(st.lists(st.tuples(names, st.integers(0, 4), st.integers(0, 4)),
                            min_size=1, max_size=10))
    passwd = tuple(pwd.struct_passwd((n, "x", 1000 + u, 1000 + g, "", f"/home/{n}",
                                      "/bin/sh")) for n, u, g in entries)
    # As accounts.hosting_accounts: every passwd entry whose uid is in the
    # hosting range is an account, duplicate names included.
    hosting_uids = draw(st.sets(st.integers(1000, 1004)))
    hosting = tuple(Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir)
                    for p in passwd if p.pw_uid in hosting_uids)
    groups = tuple(grp.struct_group((f"g{gid}", "x", 1000 + gid,
                                     draw(st.lists(names, max_size=4))))
                   for gid in draw(st.lists(st.integers(0, 4), max_size=6)))
    return HostFacts(hosting=hosting, passwd=passwd, groups=groups,
                     existing=frozenset(), real=())


@settings(max_examples=300, deadline=None)
@given(hosts_with_duplicate_names())
def test_a_view_lists_no_hosting_account_of_another_uid(host: HostFacts) -> None:
    ids = _Identities(host)
    hosting_uids = {a.uid for a in host.hosting}
    for acct in host.hosting:
        # Names that are only other uids' hosting accounts.
        foreign = ({a.name for a in host.hosting if a.uid != acct.uid}
                   - {a.name for a in host.hosting if a.uid == acct.uid})
        foreign_gids = ({a.gid for a in host.hosting if a.uid != acct.uid}
                        - {a.gid for a in host.hosting if a.uid == acct.uid})
        for line in ids.passwd_for(acct.uid):
            name, _, uid, *_ = line.split(":")
            assert name not in foreign, line
            if name in {a.name for a in host.hosting}:
                assert int(uid) == acct.uid or int(uid) not in hosting_uids, line
        for line in ids.group_for(acct.uid, acct.gid):
            _, _, gid, members = line.split(":")
            assert int(gid) not in foreign_gids, line
            assert not set(filter(None, members.split(","))) & foreign, line
