"""Hostile homes (SPEC §4.4): what root does with paths a user controls.

Every test builds a home under tmp_path. As root the home belongs to a
made-up uid, so a chown that escaped would show; otherwise it belongs to
the caller. Tests that must chown to another uid are `kernel` tests.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteiso import _sys, sysapi
from siteiso.errors import UnsafePath
from siteiso.service import apache

ROOT = os.geteuid() == 0
# As root: an owner nobody else uses, so a stray chown would be visible.
UID = 4321 if ROOT else os.getuid()
GID = 4321 if ROOT else os.getgid()

needs_root = pytest.mark.skipif(not ROOT, reason="chown to another uid needs root")


def own(*paths: Path) -> None:
    for p in paths:
        os.lchown(p, UID, GID)


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    own(path)
    return path


def symlink(path: Path, target: str | Path) -> Path:
    path.symlink_to(target)
    own(path)
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return mkdir(tmp_path / "home" / "john")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the home that nothing may touch (root-owned)."""
    d = tmp_path / "outside"
    d.mkdir()
    os.chmod(d, 0o755)
    return d


@pytest.fixture
def home_fd(home: Path) -> Iterator[int]:
    fd = sysapi.open_home(str(home), UID)
    yield fd
    os.close(fd)


def snapshot(d: Path) -> tuple[int, int, int, list[str]]:
    st = os.lstat(d)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), sorted(os.listdir(d))


def same_file(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ---- resolve_docroot ------------------------------------------------------


@pytest.mark.pure
def test_docroot_through_symlink_leaving_home_is_refused(
    home: Path, outside: Path
) -> None:
    mkdir(outside / "shop")
    symlink(home / "sites", outside)

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/sites/shop", UID)
    assert f"the symlink {home}/sites -> {outside}" in e.value.message
    assert "outside the home" in e.value.message


@pytest.mark.pure
def test_docroot_through_relative_symlink_climbing_out_is_refused(
    home: Path, outside: Path
) -> None:
    mkdir(outside / "shop")
    symlink(home / "sites", "../../outside")

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/sites/shop", UID)
    assert "leads out of the home" in e.value.message


@pytest.mark.pure
def test_docroot_through_symlink_inside_home_is_followed_once(home: Path) -> None:
    real = mkdir(home / "domains" / "shop.example" / "public_html")
    symlink(home / "www", "domains/shop.example")

    path, fd = sysapi.resolve_docroot(str(home), f"{home}/www/public_html", UID)
    try:
        assert path == str(real)
        assert same_file(fd, real)
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH
    finally:
        os.close(fd)


@pytest.mark.pure
def test_docroot_that_is_an_absolute_symlink_inside_home_is_canonical(
    home: Path,
) -> None:
    real = mkdir(home / "apps" / "blog")
    symlink(home / "public_html", f"{home}/apps/./blog/")

    path, fd = sysapi.resolve_docroot(str(home), f"{home}/public_html", UID)
    os.close(fd)
    assert path == str(real)


@pytest.mark.pure
def test_docroot_symlink_with_dotdot_staying_inside_is_followed(home: Path) -> None:
    real = mkdir(home / "shop" / "public")
    mkdir(home / "links")
    symlink(home / "links" / "shop", "../shop/public")

    path, fd = sysapi.resolve_docroot(str(home), f"{home}/links/shop", UID)
    os.close(fd)
    assert path == str(real)


@pytest.mark.pure
def test_fifo_where_docroot_expected_is_refused(home: Path) -> None:
    os.mkfifo(home / "public_html")
    own(home / "public_html")

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/public_html", UID)
    assert f"{home}/public_html is a FIFO, not a directory" in e.value.message


@pytest.mark.pure
def test_file_where_docroot_expected_is_refused(home: Path) -> None:
    mkdir(home / "site")
    (home / "site" / "public").write_text("not a directory")
    own(home / "site" / "public")

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/site/public", UID)
    assert "is a regular file, not a directory" in e.value.message


@pytest.mark.pure
def test_dangling_docroot_link_is_refused(home: Path) -> None:
    symlink(home / "public_html", "gone")

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/public_html", UID)
    assert f"the symlink {home}/public_html -> gone dangles" in e.value.message


@pytest.mark.pure
def test_symlink_loop_in_docroot_is_refused(home: Path) -> None:
    symlink(home / "a", "b")
    symlink(home / "b", "a")

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/a", UID)
    assert f"more than {sysapi.MAX_SYMLINKS} symlinks" in e.value.message


@pytest.mark.pure
@pytest.mark.parametrize(
    "docroot",
    ["/etc", "{home}/../jane/public_html", "{home}", "public_html", "{home}x/www"],
)
def test_docroot_not_inside_home_is_refused(home: Path, docroot: str) -> None:
    with pytest.raises(UnsafePath):
        sysapi.resolve_docroot(str(home), docroot.format(home=home), UID)


@pytest.mark.kernel
@needs_root
def test_docroot_owned_by_someone_else_is_refused(home: Path) -> None:
    mkdir(home / "public_html")
    os.chown(home / "public_html", 0, 0)

    with pytest.raises(UnsafePath) as e:
        sysapi.resolve_docroot(str(home), f"{home}/public_html", UID)
    assert f"refusing {home}/public_html: it is owned by root" in e.value.message


# ---- open_beneath -----------------------------------------------------------


@pytest.mark.pure
def test_open_beneath_names_the_path_and_the_problem(home: Path, home_fd: int) -> None:
    mkdir(home / ".cagefs" / "websites" / "3f2a")
    symlink(home / ".cagefs" / "websites" / "3f2a" / "tmp", "/tmp")
    owner = sysapi._user_name(UID)

    with pytest.raises(UnsafePath) as e:
        sysapi.open_beneath(home_fd, ".cagefs/websites/3f2a/tmp", want="dir", uid=UID)
    assert e.value.message == (
        f"refusing {home}/.cagefs/websites/3f2a/tmp: it is a symlink "
        f"(expected a directory owned by {owner})"
    )


@pytest.mark.pure
def test_open_beneath_refuses_symlink_in_the_middle(
    home: Path, home_fd: int, outside: Path
) -> None:
    mkdir(outside / "tmp")
    symlink(home / ".cagefs", outside)

    with pytest.raises(UnsafePath) as e:
        sysapi.open_beneath(home_fd, ".cagefs/tmp", want="dir", uid=UID)
    assert f"{home}/.cagefs is a symlink" in e.value.message


@pytest.mark.pure
def test_open_beneath_refuses_fifo_and_wrong_type(home: Path, home_fd: int) -> None:
    os.mkfifo(home / "tmp")
    own(home / "tmp")
    mkdir(home / "php.ini")

    with pytest.raises(UnsafePath) as e:
        sysapi.open_beneath(home_fd, "tmp", want="dir", uid=UID)
    assert "it is a FIFO" in e.value.message
    with pytest.raises(UnsafePath) as e:
        sysapi.open_beneath(home_fd, "php.ini", want="file", uid=UID)
    assert "it is a directory (expected a regular file" in e.value.message


@pytest.mark.pure
def test_open_beneath_refuses_climbing_out(home: Path, home_fd: int) -> None:
    with pytest.raises(UnsafePath) as e:
        sysapi.open_beneath(home_fd, "../john", want="dir", uid=UID)
    assert "leads out of" in e.value.message


@pytest.mark.pure
def test_open_beneath_checks_the_owner(home: Path, home_fd: int) -> None:
    mkdir(home / "public_html")

    with pytest.raises(UnsafePath) as e:
        sysapi.open_beneath(home_fd, "public_html", want="dir", uid=UID + 1)
    assert "it is owned by" in e.value.message


@pytest.mark.pure
def test_open_beneath_reopens_a_file_for_reading(home: Path, home_fd: int) -> None:
    (home / "php.ini").write_text("memory_limit = 64M\n")
    own(home / "php.ini")

    fd = sysapi.open_beneath(
        home_fd, "php.ini", want="file", uid=UID, flags=os.O_RDONLY
    )
    try:
        assert os.read(fd, 100) == b"memory_limit = 64M\n"
    finally:
        os.close(fd)


@pytest.mark.pure
def test_openat2_raises_oserror_with_errno_and_path(home: Path, home_fd: int) -> None:
    symlink(home / "link", ".")

    with pytest.raises(OSError) as e:
        sysapi.openat2(home_fd, "link", os.O_PATH, resolve=sysapi.RESOLVE_HOME)
    assert e.value.errno == 40  # ELOOP
    assert e.value.filename == "link"


@pytest.mark.pure
def test_resolve_constants_match_the_headers() -> None:
    lib = _sys.lib
    assert sysapi.RESOLVE_NO_XDEV == lib.RESOLVE_NO_XDEV
    assert sysapi.RESOLVE_NO_MAGICLINKS == lib.RESOLVE_NO_MAGICLINKS
    assert sysapi.RESOLVE_NO_SYMLINKS == lib.RESOLVE_NO_SYMLINKS
    assert sysapi.RESOLVE_BENEATH == lib.RESOLVE_BENEATH
    assert sysapi.RESOLVE_IN_ROOT == lib.RESOLVE_IN_ROOT
    assert sysapi.CLOSE_RANGE_CLOEXEC == lib.CLOSE_RANGE_CLOEXEC
    assert sysapi.SECCOMP_RET_ERRNO == lib.SECCOMP_RET_ERRNO
    assert sysapi.SECCOMP_RET_KILL_PROCESS == lib.SECCOMP_RET_KILL_PROCESS


# ---- ensure_dir_beneath -----------------------------------------------------


@pytest.mark.pure
def test_storage_is_never_created_through_a_planted_symlink(
    home: Path, home_fd: int, outside: Path
) -> None:
    symlink(home / ".cagefs", outside)
    before = snapshot(outside)

    with pytest.raises(UnsafePath) as e:
        sysapi.ensure_dir_beneath(home_fd, ".cagefs/websites/3f2a/tmp", UID, GID, 0o700)
    assert f"refusing {home}/.cagefs: it is a symlink" in e.value.message
    assert snapshot(outside) == before


@pytest.mark.pure
def test_storage_leaf_symlink_is_not_followed(
    home: Path, home_fd: int, outside: Path
) -> None:
    site = mkdir(home / ".cagefs" / "websites" / "3f2a")
    symlink(site / "tmp", outside)
    before = snapshot(outside)

    with pytest.raises(UnsafePath):
        sysapi.ensure_dir_beneath(
            home_fd, ".cagefs/websites/3f2a/tmp", UID, GID, 0o1777
        )
    assert snapshot(outside) == before
    assert os.path.islink(site / "tmp")


@pytest.mark.pure
def test_dangling_planted_symlink_creates_nothing_outside(
    home: Path, home_fd: int, outside: Path
) -> None:
    site = mkdir(home / ".cagefs" / "websites" / "3f2a")
    symlink(site / "sessions", outside / "new")

    with pytest.raises(UnsafePath):
        sysapi.ensure_dir_beneath(
            home_fd, ".cagefs/websites/3f2a/sessions", UID, GID, 0o700
        )
    assert not os.path.lexists(outside / "new")


@pytest.mark.pure
def test_storage_refuses_a_fifo_where_a_directory_belongs(
    home: Path, home_fd: int
) -> None:
    mkdir(home / ".cagefs")
    os.mkfifo(home / ".cagefs" / "websites")
    own(home / ".cagefs" / "websites")

    with pytest.raises(UnsafePath) as e:
        sysapi.ensure_dir_beneath(home_fd, ".cagefs/websites/3f2a", UID, GID, 0o700)
    assert "it is a FIFO" in e.value.message


@pytest.mark.pure
def test_storage_is_created_with_owner_and_mode(home: Path, home_fd: int) -> None:
    fd = sysapi.ensure_dir_beneath(
        home_fd, ".cagefs/websites/3f2a/tmp", UID, GID, 0o1733
    )
    try:
        assert same_file(fd, home / ".cagefs/websites/3f2a/tmp")
    finally:
        os.close(fd)
    for rel in (".cagefs", ".cagefs/websites", ".cagefs/websites/3f2a/tmp"):
        st = os.lstat(home / rel)
        assert stat.S_ISDIR(st.st_mode)
        assert (st.st_uid, st.st_gid) == (UID, GID)
        assert stat.S_IMODE(st.st_mode) == 0o1733

    # A second call finds everything in place and changes nothing.
    os.close(
        sysapi.ensure_dir_beneath(home_fd, ".cagefs/websites/3f2a/tmp", UID, GID, 0o700)
    )
    assert stat.S_IMODE(os.lstat(home / ".cagefs").st_mode) == 0o1733


@pytest.mark.kernel
@needs_root
def test_storage_refuses_a_directory_owned_by_someone_else(
    home: Path, home_fd: int
) -> None:
    d = mkdir(home / ".cagefs")
    os.chown(d, 0, 0)

    with pytest.raises(UnsafePath) as e:
        sysapi.ensure_dir_beneath(home_fd, ".cagefs/websites", UID, GID, 0o700)
    assert "it is owned by root" in e.value.message
    assert os.listdir(d) == []


def tree(d: Path) -> list[tuple[str, int, int, int]]:
    out = []
    for root, dirs, files in os.walk(d):
        for n in sorted(dirs + files):
            st_ = os.lstat(os.path.join(root, n))
            out.append((os.path.join(root, n), st_.st_uid, st_.st_mode, st_.st_ino))
    return sorted(out)


# ---- ensure_dir_beneath's fast path ----------------------------------------


@pytest.mark.pure
def test_fast_path_refuses_a_complete_user_tree_reached_through_a_symlink(
    home: Path, home_fd: int, outside: Path
) -> None:
    # Everything the fast path checks at the end is right (a directory of
    # the user's), but the path to it leaves the home through a symlink.
    mkdir(outside / "websites" / "3f2a" / "tmp")
    symlink(home / ".cagefs", outside)
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
    return mkdir(home / ".cagefs" / "wrappers" / "3f2a")


def _dir_fd(d: Path) -> int:
    return os.open(d, os.O_PATH | os.O_DIRECTORY)


@pytest.mark.pure
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


@pytest.mark.pure
def test_hard_linked_wrapper_with_the_right_text_is_replaced(home: Path) -> None:
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
