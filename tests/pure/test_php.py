"""Per-domain PHP (SPEC §5) as data: builds found in fake trees, a site's
settings, its ini scan directory and what its view attaches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from siteiso.commands import selector
from siteiso.errors import UsageError
from siteiso.panels.base import DomainRecord, PhpVersion
from siteiso.plan import SiteInput, site_plan
from siteiso.plan.view import PHP_INI_DIR, CageInput, PhpView, Storage
from siteiso.service import php
from siteiso.state import Site

pytestmark = pytest.mark.pure


def everything(_path: str) -> bool:
    return True


def put(root: Path, rel: str, text: str = "", mode: int = 0o644) -> Path:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def link(root: Path, rel: str, target: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(target)


def debian(root: Path, version: str = "8.2", api: str = "20220829") -> None:
    """Debian's layout: php8.2 is the system's php; mbstring, opcache and curl
    enabled for the CLI, xml available, sockets only as a shared object."""
    put(root, f"/usr/bin/php{version}", "#!elf\n", 0o755)
    put(root, f"/usr/bin/php-cgi{version}", "#!elf\n", 0o755)
    link(root, "/usr/bin/php", f"php{version}")
    etc = f"/etc/php/{version}"
    for name in ("mbstring", "xml", "curl", "pdo", "mysqlnd", "pdo_mysql"):
        put(root, f"/usr/lib/php/{api}/{name}.so", "ELF")
        put(root, f"{etc}/mods-available/{name}.ini",
            f"; configuration for php {name} module\n; priority=20\n"
            f"extension={name}.so\n")
    put(root, f"/usr/lib/php/{api}/opcache.so", "ELF zend_extension_entry")
    put(root, f"{etc}/mods-available/opcache.ini",
        "; priority=10\nzend_extension=opcache.so\nopcache.jit=off\n")
    put(root, f"/usr/lib/php/{api}/sockets.so", "ELF")
    put(root, f"/usr/lib/php/{api}/xdebug.so", "ELF ... zend_extension_entry ...")
    for n, name in (("20", "mbstring"), ("10", "opcache"), ("20", "curl")):
        link(root, f"{etc}/cli/conf.d/{n}-{name}.ini",
             f"{root}{etc}/mods-available/{name}.ini")


def alt(root: Path, xy: str = "81") -> Path:
    """A CloudLinux-style build with its own marker setting."""
    d = root / f"opt/alt/php{xy}"
    put(d, "/usr/bin/php", "#!elf81\n", 0o755)
    put(d, "/usr/bin/php-cgi", "#!elf81\n", 0o755)
    for name in ("mbstring", "json", "intl"):
        put(d, f"/usr/lib64/php/modules/{name}.so", "ELF")
    put(d, "/etc/php.d/00-build.ini", "; build marker\nuser_agent=alt-php81\n")
    put(d, "/etc/php.d/20-mbstring.ini", "extension=mbstring.so\n")
    put(d, "/etc/php.d.all/json.ini", "extension=json\n")
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    debian(tmp_path)
    alt(tmp_path)
    # EasyApache 7.4 without php-cgi.
    put(tmp_path, "/opt/cpanel/ea-php74/root/usr/bin/php", "#!elf74\n", 0o755)
    put(tmp_path, "/opt/cpanel/ea-php74/root/usr/lib64/php/modules/gd.so", "ELF")
    put(tmp_path, "/opt/cpanel/ea-php74/root/etc/php.d/20-gd.ini", "extension=gd.so\n")
    return tmp_path


@pytest.fixture
def builds(tree: Path) -> dict[str, php.Build]:
    return php.discover(None, root=str(tree), trust=everything)


# ---- discovery ------------------------------------------------------------------

def test_installed_builds_are_found_in_every_layout(tree, builds):
    assert list(builds) == ["7.4", "8.1", "8.2"]
    b81, b82, b74 = builds["8.1"], builds["8.2"], builds["7.4"]
    assert (b81.identifier, b82.identifier, b74.identifier) == \
        ("alt-php81", "php8.2", "ea-php74")
    assert b81.php == f"{tree}/opt/alt/php81/usr/bin/php"
    assert b81.php_cgi == f"{tree}/opt/alt/php81/usr/bin/php-cgi"
    assert b82.php == f"{tree}/usr/bin/php8.2"
    assert b82.php_cgi == f"{tree}/usr/bin/php-cgi8.2"
    assert b82.ext_dir == f"{tree}/usr/lib/php/20220829"
    assert b74.php_cgi is None


def test_extensions_come_from_ini_files_and_shared_objects(tree, builds):
    b82 = builds["8.2"]
    assert set(b82.extensions) == {"mbstring", "xml", "curl", "pdo", "mysqlnd",
                                   "pdo_mysql", "opcache", "sockets", "xdebug"}
    assert b82.extensions["opcache"].zend
    assert b82.extensions["opcache"].priority == 10
    assert b82.extensions["opcache"].settings == ("opcache.jit=off",)
    assert b82.extensions["xdebug"].zend          # found by its exported entry
    assert not b82.extensions["sockets"].zend
    assert b82.extensions["mbstring"].so == f"{tree}/usr/lib/php/20220829/mbstring.so"
    assert set(builds["8.1"].extensions) == {"mbstring", "json", "intl"}


def test_defaults_are_what_the_default_scan_dir_enables(builds):
    assert builds["8.2"].defaults == ("curl", "mbstring", "opcache")
    assert builds["8.1"].defaults == ("mbstring",)
    # A settings-only ini file of the build is the build's own.
    assert builds["8.1"].settings == ("user_agent=alt-php81",)
    assert builds["8.2"].settings == ()


def test_system_default_is_what_usr_bin_php_resolves_to(tree, builds):
    assert php.default_version(builds, str(tree)) == "8.2"
    os.unlink(tree / "usr/bin/php")
    assert php.default_version(builds, str(tree)) == "8.2"   # the highest
    os.symlink(tree / "opt/alt/php81/usr/bin/php", tree / "usr/bin/php")
    assert php.default_version(builds, str(tree)) == "8.1"


def test_the_panels_answer_replaces_the_probe(tree, cases):
    doc = json.loads((cases / "integration" / "php-ok.json").read_text())
    alt(tree, "82")
    versions = []
    for e in doc["data"]:
        versions.append(PhpVersion(
            identifier=e["identifier"], version=e["version"],
            dir=f"{tree}{e['dir']}", bin=f"{tree}{e['bin']}",
            modules_dir=f"{tree}{e['modules_dir']}", ini=f"{tree}{e['ini']}"))
    put(tree, "/opt/alt/php81/link/conf/default.ini",
        "memory_limit=64M\nextension=intl.so\n")
    found = php.discover(versions, root=str(tree), trust=everything)
    assert list(found) == ["8.1", "8.2"]
    assert found["8.1"].identifier == "alt-php81"
    assert found["8.2"].identifier == "alt-php82"     # not Debian's 8.2
    # The panel's ini is a settings file: its extension lines are not kept.
    assert found["8.1"].settings[0] == "memory_limit=64M"
    assert "extension=intl.so" not in found["8.1"].settings
    # A version the panel names but that is not installed is left out.
    gone = PhpVersion("alt-php70", "7.0", bin=f"{tree}/opt/alt/php70/usr/bin/php")
    assert "7.0" not in php.discover([gone], root=str(tree), trust=everything)


def test_a_build_others_could_write_is_ignored(tree):
    # tmp_path lies below a world-writable /tmp (or is not root's).
    assert php.discover(None, root=str(tree)) == {}
    assert not php.trusted(str(tree / "usr/bin/php8.2"))


def test_system_paths_are_trusted():
    assert php.trusted("/usr/bin") or os.stat("/usr/bin").st_uid != 0


# ---- a site's settings ----------------------------------------------------------

def test_a_new_site_gets_the_panels_version_else_the_users(tree, builds):
    assert php.initial_settings(builds, "8.1", str(tree)) == \
        {"version": "8.1", "extensions": {"8.1": ["mbstring"]}}
    assert php.initial_settings(builds, None, str(tree)) == \
        {"version": "8.2", "extensions": {"8.2": ["curl", "mbstring", "opcache"]}}
    # The panel's version is not installed: the user's.
    assert php.initial_settings(builds, "5.6", str(tree))["version"] == "8.2"


class FakePanel:
    name = "fake"

    def __init__(self, records: dict[str, DomainRecord]) -> None:
        self.records = records

    def domains(self, owner: str | None = None) -> dict[str, DomainRecord]:
        return self.records

    def domain(self, name: str) -> DomainRecord | None:
        return self.records.get(name)

    def php_versions(self) -> list[PhpVersion] | None:
        return None


def test_recorded_settings_win_over_the_panels_version(builds):
    panel = FakePanel({"a.com": DomainRecord("a.com", "john", "/home/john/a",
                                             php_version="8.1")})
    site = Site(token="t", owner="john", uid=1001, docroot="/home/john/a",
                names=["a.com"])
    assert php.site_settings(site, builds, panel)["version"] == "8.1"
    assert php.site_settings(site, builds, panel, records={})["version"] == "8.2"
    site.php = {"version": "8.2", "extensions": {"8.2": ["xml"]}}
    assert php.site_settings(site, builds, panel) == site.php


def test_unknown_version_names_the_installed_ones(builds):
    with pytest.raises(php.PhpError) as e:
        php.set_version({}, "7.3", builds)
    assert e.value.message == \
        "PHP version 7.3 is not installed; installed versions: 7.4, 8.1, 8.2"


def test_a_version_without_php_cgi_is_refused(builds):
    with pytest.raises(php.PhpError, match="7.4 .*has no php-cgi"):
        php.set_version({}, "7.4", builds)


def test_unknown_extension_names_the_available_ones(builds):
    with pytest.raises(php.PhpError) as e:
        php.enable_extensions({}, "8.1", ["mbstring", "nope"], builds)
    assert e.value.message == \
        "PHP 8.1 has no extension nope; available: intl, json, mbstring"
    with pytest.raises(php.PhpError, match="available: intl, json, mbstring"):
        php.disable_extensions({}, "8.1", ["curl"], builds)


def test_extensions_are_kept_per_version(tree, builds):
    s = php.initial_settings(builds, None, str(tree))
    s = php.disable_extensions(s, "8.2", ["opcache", "curl"], builds)
    s = php.enable_extensions(s, "8.2", ["XML"], builds)
    assert php.enabled(s, builds["8.2"]) == ["mbstring", "xml"]
    s = php.set_version(s, "8.1", builds)
    assert s["version"] == "8.1"
    assert php.enabled(s, builds["8.1"]) == ["mbstring"]
    s = php.set_version(s, "8.2", builds)
    assert php.enabled(s, builds["8.2"]) == ["mbstring", "xml"]


def test_enabling_an_extension_enables_what_it_needs(builds):
    s = php.enable_extensions({"version": "8.2", "extensions": {"8.2": []}}, "8.2",
                              ["pdo_mysql"], builds)
    assert php.enabled(s, builds["8.2"]) == ["mysqlnd", "pdo", "pdo_mysql"]


def test_a_version_no_longer_installed_runs_the_default(tree, builds):
    s = {"version": "8.0", "extensions": {"8.0": ["mbstring"]}}
    b, exts = php.effective(s, builds, str(tree))
    assert b.version == "8.2" and exts == ["curl", "mbstring", "opcache"]
    assert s["version"] == "8.0"      # kept for when it comes back


def test_version_names_of_the_panels_are_understood(builds):
    assert php.set_version({}, "alt-php81", builds)["version"] == "8.1"
    assert php.set_version({}, "php82", builds)["version"] == "8.2"


# ---- the ini scan directory -------------------------------------------------------

def test_ini_dir_holds_only_the_sites_extensions(tree, builds):
    files = php.ini_files(builds["8.2"], ["mbstring", "opcache"])
    assert sorted(files) == ["10-opcache.ini", "20-mbstring.ini"]
    assert f"\nextension={tree}/usr/lib/php/20220829/mbstring.so\n" in \
        files["20-mbstring.ini"]
    assert "\nzend_extension=" in files["10-opcache.ini"]
    assert files["10-opcache.ini"].endswith("opcache.jit=off\n")
    files81 = php.ini_files(builds["8.1"], ["json"])
    assert sorted(files81) == ["00-siteiso-build.ini", "20-json.ini"]
    assert "user_agent=alt-php81" in files81["00-siteiso-build.ini"]


def test_ini_dir_is_written_once_per_content(tmp_path, builds):
    lib = str(tmp_path / "lib")
    a = php.write_ini_dir("t1", "8.2", php.ini_files(builds["8.2"], ["xml"]), lib)
    again = php.write_ini_dir("t1", "8.2", php.ini_files(builds["8.2"], ["xml"]), lib)
    b = php.write_ini_dir("t1", "8.2", php.ini_files(builds["8.2"], ["curl"]), lib)
    assert a == again != b
    assert os.listdir(a) == ["20-xml.ini"]
    assert oct(os.stat(a).st_mode & 0o7777) == "0o755"
    assert oct(os.stat(f"{a}/20-xml.ini").st_mode & 0o7777) == "0o644"
    php.collect_garbage("t1", [b], lib)
    assert not os.path.exists(a) and os.path.isdir(b)
    php.write_ini_dir("t2", "8.2", {}, lib)
    php.prune(["t2"], lib)
    assert os.listdir(lib) == ["t2"]
    with pytest.raises(php.SiteisoError):
        php.write_ini_dir("../x", "8.2", {}, lib)


def test_view_replaces_the_system_programs_only_when_they_differ(tree, builds):
    targets = {"php": [f"{tree}/usr/bin/php8.2"],
               "php-cgi": [f"{tree}/usr/bin/php-cgi8.2"], "php-fpm": []}
    assert php.binaries(builds["8.2"], targets) == ()
    assert php.binaries(builds["8.1"], targets) == (
        (f"{tree}/opt/alt/php81/usr/bin/php", f"{tree}/usr/bin/php8.2"),
        (f"{tree}/opt/alt/php81/usr/bin/php-cgi", f"{tree}/usr/bin/php-cgi8.2"))


# ---- the plan -------------------------------------------------------------------

def cage() -> CageInput:
    store = "/home/john/.cagefs/websites/t0"
    return CageInput(
        user="john", uid=1001, gid=1001, home="/home/john",
        hosting_homes=("/home/john", "/home/jane"), home_entries=(),
        passwd="/run/siteiso/views/1001/passwd",
        group="/run/siteiso/views/1001/group", cgroup="/sys/fs/cgroup/x",
        storage=Storage(f"{store}/tmp", f"{store}/var-tmp", f"{store}/shm",
                        f"{store}/sessions", f"{store}/cache"),
        existing=frozenset({"/var/lib/siteiso", "/run/siteiso"}))


def test_site_view_shows_its_ini_dir_and_build_read_only():
    site = SiteInput(token="t0", docroot="/home/john/public_html", names=("a.com",))
    view = PhpView("/var/lib/siteiso/php/t0/8.1-abc",
                   (("/opt/alt/php81/usr/bin/php-cgi", "/usr/bin/php-cgi8.2"),))
    lines = [o.line() for o in site_plan(cage(), site, [site], view)]
    clone_ini = "clone\t220\t/var/lib/siteiso/php/t0/8.1-abc\tsys\tdir"
    clone_bin = "clone\t221\t/opt/alt/php81/usr/bin/php-cgi\tsys\tfile"
    mkdir = f"mkdir\t{PHP_INI_DIR}\t0755"
    # Cloned before /var/lib/siteiso is masked; made before /run/siteiso is
    # read-only; attached read-only.
    assert lines.index(clone_ini) < lines.index("mask\t/var/lib/siteiso\tdir")
    assert lines.index(clone_bin) < lines.index("ro\t/")
    assert lines.index(mkdir) < lines.index("ro\t/run/siteiso")
    assert f"attach\t220\t{PHP_INI_DIR}\tro" in lines
    assert "attach\t221\t/usr/bin/php-cgi8.2\tro" in lines
    plain = [o.line() for o in site_plan(cage(), site, [site])]
    assert not [ln for ln in plain if "\t220\t" in ln or PHP_INI_DIR in ln]


# ---- selectorctl's command line ------------------------------------------------------

def test_selectorctl_needs_a_domain_except_for_list():
    assert selector.parse(["--list"]).list
    args = selector.parse(["--set-user-current=8.1", "--domain", "a.com"])
    assert args.set_user_current == "8.1" and args.domain == "a.com"
    with pytest.raises(UsageError, match="--domain is required"):
        selector.parse(["--user-current"])
    with pytest.raises(UsageError):
        selector.parse(["--list", "--user-current"])
    with pytest.raises(UsageError):
        selector.parse([])
