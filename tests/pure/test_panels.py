"""Panel readers (SPEC §6): cPanel files, the embedded domains.json, and
integration scripts run as real programs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from testlib import cases_dir as find_cases

from siteiso.config import Config
from siteiso.errors import InvalidName, PanelError
from siteiso.panels import (
    CpanelPanel,
    DomainRecord,
    EmbeddedPanel,
    IntegrationPanel,
    PhpVersion,
    get_panel,
)
from siteiso.panels.cpanel import parse_userdata

pytestmark = pytest.mark.pure


@pytest.fixture(scope="module")
def cases() -> Path:
    with contextlib.suppress(FileNotFoundError):
        return find_cases()
    pytest.fail("shared/cases not found (set SITEISO_CASES)")


# -- cPanel ---------------------------------------------------------------


def cpanel_at(root: Path) -> CpanelPanel:
    return CpanelPanel(
        str(root / "etc" / "userdatadomains"),
        str(root / "etc" / "trueuserdomains"),
        str(root / "var" / "cpanel" / "userdata"),
    )


@pytest.fixture
def cpanel_copy(cases: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cpanel"
    shutil.copytree(cases / "cpanel", root)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


JOHN = {
    "example.com": DomainRecord(
        "example.com", "john", "/home/john/public_html", True, "8.2"
    ),
    "shop.example.com": DomainRecord(
        "shop.example.com", "john", "/home/john/public_html/shop", False, "8.1"
    ),
    "other-site.net": DomainRecord(
        "other-site.net", "john", "/home/john/public_html/other-site.net"
    ),
    "other-site.example.com": DomainRecord(
        "other-site.example.com", "john", "/home/john/public_html/other-site.net"
    ),
}


def test_cpanel_lists_every_domain_of_the_server(cases: Path) -> None:
    records = cpanel_at(cases / "cpanel").domains()
    assert records == {
        **JOHN,
        "jane.example.net": DomainRecord(
            "jane.example.net", "jane", "/home/jane/public_html", True, None
        ),
    }


def test_cpanel_addon_is_a_second_name_of_its_subdomains_site(cases: Path) -> None:
    panel = cpanel_at(cases / "cpanel")
    addon = panel.domain("other-site.net")
    sub = panel.domain("other-site.example.com")
    assert addon is not None and sub is not None
    assert addon.docroot == sub.docroot == "/home/john/public_html/other-site.net"
    assert addon.owner == sub.owner == "john"
    assert addon.php_version == sub.php_version
    docroots = {r.docroot for r in panel.domains("john").values()}
    assert len(docroots) == 3  # four names, three sites


def test_cpanel_php_version_comes_from_userdata(cases: Path) -> None:
    panel = cpanel_at(cases / "cpanel")
    assert panel.domain("example.com") == JOHN["example.com"]  # ea-php82
    assert panel.domain("shop.example.com") == JOHN["shop.example.com"]  # ea-php81
    assert panel.php_versions() is None


def test_cpanel_matches_the_cpanel_layout_case(cases: Path) -> None:
    layouts = json.loads((cases / "layouts.json").read_text())["layouts"]
    layout = next(lay for lay in layouts if lay["name"].startswith("cPanel default"))
    records = cpanel_at(cases / "cpanel").domains("john")
    for name, docroot in layout["sites"].items():
        assert records[name].docroot == docroot


def test_cpanel_owner_filter_and_lookup_normalize(cases: Path) -> None:
    panel = cpanel_at(cases / "cpanel")
    assert panel.domains("john") == JOHN
    assert list(panel.domains("jane")) == ["jane.example.net"]
    assert panel.domains("nosuchuser") == {}
    assert panel.domain("Example.COM.") == JOHN["example.com"]
    assert panel.domain("nosuch.example") is None
    with pytest.raises(InvalidName):
        panel.domain("../../etc")
    with pytest.raises(InvalidName):
        panel.domains("-john")


def test_cpanel_without_userdatadomains_reads_main_files(cpanel_copy: Path) -> None:
    (cpanel_copy / "etc" / "userdatadomains").unlink()
    panel = cpanel_at(cpanel_copy)
    # jane has no userdata in the case tree, so only john's sites are found.
    assert panel.domains() == JOHN
    assert panel.domains("john") == JOHN


def test_cpanel_bad_lines_are_skipped_with_a_warning(
    cpanel_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = cpanel_copy / "etc" / "userdatadomains"
    good = index.read_text()
    bad = [
        "../../etc: john==root==sub==example.com==/home/john/x==192.0.2.10:80==",
        "evil.example: ../root==root==sub==example.com==/root==192.0.2.10:80==",
        "weird.example: john==root==alias==example.com==/home/john/w==",
        "rel.example: john==root==sub==example.com==public_html/rel==",
        "nl.example: john==root==sub==example.com==/home/john/a\tb==",
        "not an entry at all",
        "short.example: john==root",
    ]
    index.write_text("\n".join(bad[:3]) + "\n" + good + "\n".join(bad[3:]) + "\n")
    with caplog.at_level(logging.WARNING, logger="siteiso.panels"):
        records = cpanel_at(cpanel_copy).domains()
    assert set(records) == set(JOHN) | {"jane.example.net"}
    assert records["example.com"] == JOHN["example.com"]
    text = caplog.text
    assert "'../../etc'" in text and "contains a slash" in text
    assert "'../root'" in text
    assert "unknown type 'alias'" in text
    assert "not an absolute path" in text
    assert "tab or line break" in text
    assert "not an entry" in text
    assert "\t" not in text


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
def test_cpanel_a_unicode_line_break_in_a_field_forges_no_record(
    cpanel_copy: Path, sep: str
) -> None:
    """john's docroot field holds a character str.splitlines() breaks at,
    followed by a forged entry for jane's domain: it stays one (bad) record
    of john's, and jane's own entry stands."""
    index = cpanel_copy / "etc" / "userdatadomains"
    forged = (f"evil.example: john==root==sub==example.com==/home/john/x{sep}"
              "jane.example.net: john==root==main==jane.example.net=="
              "/home/john/blog==192.0.2.10:80==")
    index.write_text(index.read_text() + forged + "\n")
    records = cpanel_at(cpanel_copy).domains()
    assert records["jane.example.net"].owner == "jane"
    assert records["jane.example.net"].docroot == "/home/jane/public_html"
    assert "evil.example" not in records


def test_cpanel_userdata_owned_by_someone_else_is_skipped(
    cpanel_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shop = cpanel_copy / "var/cpanel/userdata/john/shop.example.com"
    shop.write_text(shop.read_text().replace("user: john", "user: jane"))
    with caplog.at_level(logging.WARNING, logger="siteiso.panels"):
        records = cpanel_at(cpanel_copy).domains("john")
    assert "shop.example.com" not in records
    assert "example.com" in records
    assert "owned by 'jane'" in caplog.text


def test_cpanel_unreadable_index_is_a_panel_error(tmp_path: Path) -> None:
    (tmp_path / "etc" / "userdatadomains").mkdir(parents=True)
    with pytest.raises(PanelError) as e:
        cpanel_at(tmp_path).domains()
    assert "userdatadomains" in e.value.message


def test_userdata_parser_reads_scalars_lists_and_maps() -> None:
    data = parse_userdata(
        "---\n"
        "addon_domains:\n"
        "  other-site.net: other-site.example.com\n"
        "  'quoted.net': \"sub.example.com\"\n"
        "customlog:\n"
        "  -\n"
        "    format: combined\n"
        "    target: /var/log/x\n"
        "main_domain: example.com\n"
        "parked_domains: []\n"
        "sub_domains:\n"
        "  - shop.example.com\n"
        "  - other-site.example.com\n"
        "usecanonicalname: 'Off'\n"
        "# comment\n"
        "junk line without colon\n"
    )
    assert data["addon_domains"] == {
        "other-site.net": "other-site.example.com",
        "quoted.net": "sub.example.com",
    }
    assert data["main_domain"] == "example.com"
    assert data["parked_domains"] == []
    assert data["sub_domains"] == ["shop.example.com", "other-site.example.com"]
    assert data["usecanonicalname"] == "Off"


# -- embedded ---------------------------------------------------------------


def test_embedded_missing_file_means_no_domains(tmp_path: Path) -> None:
    panel = EmbeddedPanel(str(tmp_path / "domains.json"))
    assert panel.domains() == {}
    assert panel.domain("example.com") is None
    assert panel.php_versions() is None


def test_embedded_reads_the_domains_format(tmp_path: Path) -> None:
    path = tmp_path / "domains.json"
    path.write_text(
        json.dumps(
            {
                "Example.com.": {
                    "owner": "john",
                    "document_root": "/home/john/public_html",
                    "is_main": True,
                },
                "bücher.example": {
                    "owner": "john",
                    "document_root": "/home/john/buecher//www/",
                    "php": {"version": "8.3"},
                },
                "jane.example": {"owner": "jane", "document_root": "/home/jane/www"},
            }
        )
    )
    panel = EmbeddedPanel(str(path))
    assert panel.domains("john") == {
        "example.com": DomainRecord(
            "example.com", "john", "/home/john/public_html", True
        ),
        "xn--bcher-kva.example": DomainRecord(
            "xn--bcher-kva.example", "john", "/home/john/buecher/www", False, "8.3"
        ),
    }
    assert panel.domain("BÜCHER.example") == panel.domains()["xn--bcher-kva.example"]
    assert set(panel.domains()) == {
        "example.com",
        "xn--bcher-kva.example",
        "jane.example",
    }


def test_embedded_bad_records_are_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "domains.json"
    good = {"owner": "john", "document_root": "/home/john/public_html"}
    path.write_text(
        json.dumps(
            {
                "good.example": good,
                "../../etc": good,
                "*.example.com": good,
                "owner.example": {**good, "owner": "-root"},
                "noowner.example": {"document_root": "/home/john/x"},
                "rel.example": {**good, "document_root": "www"},
                "dots.example": {**good, "document_root": "/home/john/../jane"},
                "main.example": {**good, "is_main": "yes"},
                "list.example": ["john"],
                "ctl\x1b.example": good,
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="siteiso.panels"):
        records = EmbeddedPanel(str(path)).domains()
    assert list(records) == ["good.example"]
    assert len(caplog.records) == 9
    assert "\x1b" not in caplog.text


def test_embedded_name_given_twice_with_different_owners_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "domains.json"
    path.write_text(
        json.dumps(
            {
                "Example.com": {"owner": "john", "document_root": "/home/john/www"},
                "EXAMPLE.com": {"owner": "jane", "document_root": "/home/jane/www"},
                "ok.example": {"owner": "john", "document_root": "/home/john/ok"},
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="siteiso.panels"):
        records = EmbeddedPanel(str(path)).domains()
    assert list(records) == ["ok.example"]
    assert "listed 2 times with different data: skipping it" in caplog.text


def test_a_mapped_spelling_cannot_take_away_a_canonical_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """john's panel record spells jane's domain with a soft hyphen (UTS 46
    maps it away): jane keeps her domain; before, both records were dropped
    and a regenerate took jane's isolation away."""
    path = tmp_path / "domains.json"
    path.write_text(
        json.dumps(
            {
                "jane.example.net": {"owner": "jane",
                                     "document_root": "/home/jane/www"},
                "jane.exam\u00adple.net": {"owner": "john",
                                           "document_root": "/home/john/www"},
                "JANE.example.net": {"owner": "john",
                                     "document_root": "/home/john/www"},
            }
        )
    )
    with caplog.at_level(logging.WARNING, logger="siteiso.panels"):
        records = EmbeddedPanel(str(path)).domains()
    assert records["jane.example.net"].owner == "jane"
    assert records["jane.example.net"].docroot == "/home/jane/www"
    assert "the canonical spelling is kept" in caplog.text


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not valid JSON"),
        ('["example.com"]', "expected an object of domains"),
        (b"\xff\xfe", "not UTF-8"),
        pytest.param("[" * 200000, "nested too deep", id="deep"),
        pytest.param('{"a.example": ' + "9" * 5000 + "}", "not valid JSON",
                     id="huge-number"),
    ],
)
def test_embedded_broken_file_is_a_clear_error(
    tmp_path: Path, content: str | bytes, why: str
) -> None:
    path = tmp_path / "domains.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(PanelError) as e:
        EmbeddedPanel(str(path)).domains()
    assert str(path) in e.value.message
    assert why in e.value.message


# -- integration scripts ------------------------------------------------------


def write_script(tmp_path: Path, name: str, body: str, python: bool = False) -> Path:
    path = tmp_path / name
    shebang = f"#!{sys.executable}\n" if python else "#!/bin/sh\n"
    path.write_text(shebang + body)
    path.chmod(0o755)
    return path


def integration(
    tmp_path: Path, timeout: float = 10.0, max_output: int | None = None, **scripts: str
) -> IntegrationPanel:
    ini = tmp_path / "integration.ini"
    lines = ["[integration_scripts]"]
    lines += [f"{key} = {value}" for key, value in scripts.items()]
    ini.write_text("\n".join(lines) + "\n")
    if max_output is None:
        return IntegrationPanel(str(ini), timeout=timeout)
    return IntegrationPanel(str(ini), timeout=timeout, max_output=max_output)


def answering(tmp_path: Path, answer: Path | str, name: str = "domains") -> str:
    """A script that records its arguments and prints answer (a file or text)."""
    args = tmp_path / f"{name}.args"
    if isinstance(answer, Path):
        body = (
            f'for a in "$@"; do printf "%s\\n" "$a"; done > "{args}"\ncat "{answer}"\n'
        )
    else:
        src = tmp_path / f"{name}.answer"
        src.write_text(answer)
        body = f'for a in "$@"; do printf "%s\\n" "$a"; done > "{args}"\ncat "{src}"\n'
    return str(write_script(tmp_path, name, body))


def args_of(tmp_path: Path, name: str = "domains") -> list[str]:
    return (tmp_path / f"{name}.args").read_text().splitlines()


def ok(data: object) -> str:
    return json.dumps({"data": data, "metadata": {"result": "ok"}})


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie nobody reaped)."""
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_integration_domains_ok_case(cases: Path, tmp_path: Path) -> None:
    panel = integration(
        tmp_path, domains=answering(tmp_path, cases / "integration/domains-ok.json")
    )
    assert panel.domains() == {
        "example.com": DomainRecord(
            "example.com", "john", "/home/john/public_html", True, "8.2", "lsapi"
        ),
        "shop.example.com": DomainRecord(
            "shop.example.com", "john", "/home/john/public_html/shop", False, "8.1",
            "fpm",
        ),
    }
    assert args_of(tmp_path) == ["--with-php"]


def test_integration_arguments_are_appended(cases: Path, tmp_path: Path) -> None:
    script = answering(tmp_path, cases / "integration/domains-ok.json")
    panel = integration(tmp_path, domains=f"{script} --fixed 'two words'")
    assert set(panel.domains("john")) == {"example.com", "shop.example.com"}
    assert args_of(tmp_path) == [
        "--fixed",
        "two words",
        "--owner",
        "john",
        "--with-php",
    ]
    record = panel.domain("SHOP.example.com.")
    assert record is not None and record.php_version == "8.1"
    assert args_of(tmp_path) == [
        "--fixed",
        "two words",
        "--name",
        "shop.example.com",
        "--with-php",
    ]


def test_integration_owner_answer_is_filtered_to_that_owner(
    cases: Path, tmp_path: Path
) -> None:
    panel = integration(
        tmp_path, domains=answering(tmp_path, cases / "integration/domains-ok.json")
    )
    # The script ignores --owner; siteiso still returns only jane's domains.
    assert panel.domains("jane") == {}


def test_integration_permission_denied_case(cases: Path, tmp_path: Path) -> None:
    panel = integration(
        tmp_path,
        domains=answering(tmp_path, cases / "integration/domains-denied.json"),
    )
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert e.value.kind == "PermissionDenied"
    assert e.value.message.endswith(
        "answered PermissionDenied: Only the owner or root may list these domains"
    )


def test_integration_not_found_case_means_no_domain(
    cases: Path, tmp_path: Path
) -> None:
    panel = integration(
        tmp_path,
        domains=answering(tmp_path, cases / "integration/domains-notfound.json"),
    )
    assert panel.domain("nosuch.example") is None
    assert panel.domains("nosuchuser") == {}


def test_integration_truncated_case(cases: Path, tmp_path: Path) -> None:
    panel = integration(
        tmp_path,
        domains=answering(tmp_path, cases / "integration/domains-truncated.json"),
    )
    with pytest.raises(PanelError) as e:
        panel.domain("example.com")
    assert "printed truncated JSON" in e.value.message
    assert e.value.kind == ""


def test_integration_php_ok_case(cases: Path, tmp_path: Path) -> None:
    panel = integration(
        tmp_path, php=answering(tmp_path, cases / "integration/php-ok.json", "php")
    )
    assert panel.php_versions() == [
        PhpVersion(
            "alt-php81",
            "8.1",
            "/opt/alt/php81",
            "/opt/alt/php81/usr/bin/php",
            "/opt/alt/php81/usr/lib64/php/modules",
            "/opt/alt/php81/link/conf/default.ini",
        ),
        PhpVersion(
            "alt-php82",
            "8.2",
            "/opt/alt/php82",
            "/opt/alt/php82/usr/bin/php",
            "/opt/alt/php82/usr/lib64/php/modules",
            "/opt/alt/php82/link/conf/default.ini",
        ),
    ]
    assert args_of(tmp_path, "php") == []


def test_integration_without_php_script_does_not_say(tmp_path: Path) -> None:
    panel = integration(tmp_path, domains=answering(tmp_path, ok({})))
    assert panel.php_versions() is None


def test_integration_bad_php_entries_are_skipped(tmp_path: Path) -> None:
    answer = ok(
        [
            {"identifier": "ea-php83"},
            {"identifier": "alt-php74", "version": "7.4", "bin": "relative/php"},
            {"identifier": "custom", "version": "latest"},
            "alt-php80",
        ]
    )
    panel = integration(tmp_path, php=answering(tmp_path, answer, "php"))
    assert panel.php_versions() == [PhpVersion("ea-php83", "8.3")]


@pytest.mark.parametrize(
    "kind", ["InternalAPIError", "PermissionDenied", "BadRequest", "NotFound"]
)
def test_integration_error_kinds_are_reported(tmp_path: Path, kind: str) -> None:
    answer = json.dumps(
        {"data": None, "metadata": {"result": kind, "message": f"{kind} happened"}}
    )
    panel = integration(tmp_path, php=answering(tmp_path, answer, "php"))
    with pytest.raises(PanelError) as e:
        panel.php_versions()
    assert e.value.kind == kind
    assert e.value.message.endswith(f"answered {kind}: {kind} happened")
    assert "panel script php" in e.value.message


def test_integration_error_reported_even_with_nonzero_exit(tmp_path: Path) -> None:
    src = tmp_path / "answer.json"
    src.write_text(
        json.dumps(
            {"data": None, "metadata": {"result": "BadRequest", "message": "no"}}
        )
    )
    script = write_script(tmp_path, "domains", f'cat "{src}"\nexit 1\n')
    with pytest.raises(PanelError) as e:
        integration(tmp_path, domains=str(script)).domains()
    assert e.value.kind == "BadRequest"


def test_integration_message_control_characters_are_escaped(tmp_path: Path) -> None:
    answer = json.dumps(
        {
            "data": None,
            "metadata": {"result": "InternalAPIError", "message": "x\x1b[2Jy\nz"},
        }
    )
    panel = integration(tmp_path, domains=answering(tmp_path, answer))
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert e.value.message.endswith("answered InternalAPIError: x\\x1b[2Jy\\nz")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("hello, I am not JSON\n", "printed something that is not JSON"),
        ("", "printed nothing"),
        ('{"data": {}, "metadata": {"result": "ok"}', "printed truncated JSON"),
        pytest.param("[" * 100000 + "]" * 100000, "nested too deep", id="deep"),
        pytest.param('{"data": ' + "7" * 5000 + ', "metadata": {"result": "ok"}}',
                     "JSON siteiso cannot read", id="huge-number"),
        ('{"data": {}}', "without a metadata object"),
        ('{"metadata": {"result": "ok"}}', "answered ok without data"),
        ('{"data": {}, "metadata": {"result": "maybe"}}', "unknown result 'maybe'"),
        (ok(["example.com"]), "expected an object of domains, got list"),
        (ok(None), "expected an object of domains, got NoneType"),
    ],
)
def test_integration_junk_and_wrong_shapes_are_clear_errors(
    tmp_path: Path, answer: str, why: str
) -> None:
    panel = integration(tmp_path, domains=answering(tmp_path, answer))
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert why in e.value.message
    assert e.value.kind == ""


def test_integration_bad_records_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"owner": "john", "document_root": "/home/john/public_html"}
    answer = ok(
        {
            "example.com": good,
            "example.com/../x": good,
            "bad-owner.example": {**good, "owner": "john;id"},
            "bad-root.example": {**good, "document_root": "/home/john/\n"},
            "bad-php.example": {**good, "php": {"version": "eight"}},
        }
    )
    panel = integration(tmp_path, domains=answering(tmp_path, answer))
    with caplog.at_level(logging.WARNING, logger="siteiso.panels"):
        records = panel.domains()
    assert set(records) == {"example.com", "bad-php.example"}
    assert records["bad-php.example"].php_version is None
    assert "example.com/../x" in caplog.text
    assert "john;id" in caplog.text


def test_integration_crash_names_exit_status_and_stderr(tmp_path: Path) -> None:
    script = write_script(tmp_path, "domains", "echo 'db is down' >&2\nexit 3\n")
    with pytest.raises(PanelError) as e:
        integration(tmp_path, domains=str(script)).domains()
    assert e.value.message.endswith("printed nothing (exit status 3): db is down")


def test_integration_ok_answer_with_nonzero_exit_is_a_failure(tmp_path: Path) -> None:
    src = tmp_path / "answer.json"
    src.write_text(ok({}))
    script = write_script(tmp_path, "domains", f'cat "{src}"\nexit 2\n')
    with pytest.raises(PanelError) as e:
        integration(tmp_path, domains=str(script)).domains()
    assert "failed with exit status 2" in e.value.message


def test_integration_killed_by_signal(tmp_path: Path) -> None:
    script = write_script(tmp_path, "domains", "echo '{\"data\"'\nkill -SEGV $$\n")
    with pytest.raises(PanelError) as e:
        integration(tmp_path, domains=str(script)).domains()
    assert "was killed by signal SIGSEGV" in e.value.message


def test_integration_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    panel = integration(tmp_path, domains=str(tmp_path / "nosuch"))
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert e.value.message.startswith("cannot run panel script domains")
    assert "No such file or directory" in e.value.message


def test_integration_hanging_script_is_killed_with_its_children(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    script = write_script(
        tmp_path,
        "domains",
        f'sleep 1000 &\necho $! > "{pidfile}"\necho "{{"\nwhile :; do sleep 1; done\n',
    )
    panel = integration(tmp_path, timeout=0.5, domains=str(script))
    start = time.monotonic()
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert time.monotonic() - start < 5
    assert "did not finish within 0.5 s and was killed" in e.value.message
    assert gone(int(pidfile.read_text()))


def test_integration_leftover_child_holding_stdout_does_not_block(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    src = tmp_path / "answer.json"
    src.write_text(
        ok({"a.example": {"owner": "john", "document_root": "/home/john/a"}})
    )
    script = write_script(
        tmp_path, "domains", f'sleep 1000 &\necho $! > "{pidfile}"\ncat "{src}"\n'
    )
    panel = integration(tmp_path, timeout=20, domains=str(script))
    start = time.monotonic()
    assert list(panel.domains()) == ["a.example"]
    assert time.monotonic() - start < 5
    assert gone(int(pidfile.read_text()))


def test_integration_stdin_is_dev_null(tmp_path: Path) -> None:
    src = tmp_path / "answer.json"
    src.write_text(ok({}))
    # cat - would wait forever on a terminal or an open pipe.
    script = write_script(tmp_path, "domains", f'cat -\ncat "{src}"\n')
    assert integration(tmp_path, timeout=5, domains=str(script)).domains() == {}


def test_integration_endless_output_is_cut_and_killed(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "domains",
        "import sys\nchunk = 'x' * 65536\nwhile True:\n    sys.stdout.write(chunk)\n",
        python=True,
    )
    panel = integration(
        tmp_path, timeout=30, max_output=4 * 1024 * 1024, domains=str(script)
    )
    start = time.monotonic()
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert time.monotonic() - start < 10
    assert (
        f"printed more than {4 * 1024 * 1024} bytes and was killed" in e.value.message
    )


def test_integration_megabytes_of_valid_answer_are_read(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        "domains",
        "import json\n"
        "data = {f'site{i}.example': {'owner': f'user{i % 1000}',"
        " 'document_root': f'/home/user{i % 1000}/site{i}/public_html',"
        " 'php': {'version': '8.2', 'ini_path': '/opt/alt/php82/link/conf' * 4}}"
        " for i in range(12000)}\n"
        "print(json.dumps({'data': data, 'metadata': {'result': 'ok'}}))\n",
        python=True,
    )
    panel = integration(tmp_path, domains=str(script))
    records = panel.domains()
    assert len(records) == 12000
    assert records["site4321.example"] == DomainRecord(
        "site4321.example",
        "user321",
        "/home/user321/site4321/public_html",
        False,
        "8.2",
    )


def test_integration_ini_problems_are_clear(tmp_path: Path) -> None:
    panel = IntegrationPanel(str(tmp_path / "missing.ini"))
    with pytest.raises(PanelError) as e:
        panel.domains()
    assert "missing.ini" in e.value.message

    ini = tmp_path / "integration.ini"
    ini.write_text("[other]\ndomains = /bin/true\n")
    with pytest.raises(PanelError) as e:
        IntegrationPanel(str(ini)).domains()
    assert "no [integration_scripts] section" in e.value.message

    ini.write_text("[integration_scripts]\nphp = /bin/true\n")
    with pytest.raises(PanelError) as e:
        IntegrationPanel(str(ini)).domains()
    assert "no 'domains' script" in e.value.message

    ini.write_text("[integration_scripts]\ndomains = domains.sh --all\n")
    with pytest.raises(PanelError) as e:
        IntegrationPanel(str(ini)).domains()
    assert "absolute path" in e.value.message


# -- choosing the panel -------------------------------------------------------


def test_get_panel_detects_and_obeys_configuration(tmp_path: Path) -> None:
    ini = tmp_path / "integration.ini"
    udd = tmp_path / "userdatadomains"
    where = {
        "integration_ini": str(ini),
        "userdatadomains": str(udd),
        "trueuserdomains": str(tmp_path / "trueuserdomains"),
        "userdata": str(tmp_path / "userdata"),
        "domains_json": str(tmp_path / "domains.json"),
    }
    assert get_panel(Config(), **where).name == "embedded"
    udd.write_text("")
    assert get_panel(Config(), **where).name == "cpanel"
    ini.write_text("[integration_scripts]\n")
    panel = get_panel(Config(script_timeout=7.0), **where)
    assert isinstance(panel, IntegrationPanel) and panel.timeout == 7.0
    assert get_panel(Config(panel="embedded"), **where).name == "embedded"
    assert get_panel(Config(panel="cpanel"), **where).name == "cpanel"
    with pytest.raises(PanelError):
        get_panel(Config(panel="plesk"), **where)


def test_integration_works_without_pidfd_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    ok_script = answering(tmp_path, ok({}))
    assert integration(tmp_path, domains=ok_script).domains() == {}
    hang = write_script(tmp_path, "hang", "exec >&- 2>&-\nsleep 1000\n")
    with pytest.raises(PanelError) as e:
        integration(tmp_path, timeout=0.3, domains=str(hang)).domains()
    assert "did not finish within 0.3 s" in e.value.message


def test_a_name_listed_twice_for_two_accounts_is_nobodys(tmp_path: Path) -> None:
    """json keeps the last of a repeated key: the panel reader keeps both,
    so a name listed for two accounts is ambiguous, not the last one's."""
    path = tmp_path / "domains.json"
    path.write_text(
        '{"jane.example": {"owner": "jane", "document_root": "/home/jane/www"},\n'
        ' "other.example": {"owner": "john", "document_root": "/home/john/o"},\n'
        ' "jane.example": {"owner": "john", "document_root": "/home/john/www"}}\n')
    panel = EmbeddedPanel(str(path))
    assert panel.domain("jane.example") is None
    assert set(panel.domains()) == {"other.example"}
    # The same entry twice is the same record.
    path.write_text(
        '{"jane.example": {"owner": "jane", "document_root": "/home/jane/www"},\n'
        ' "jane.example": {"owner": "jane", "document_root": "/home/jane/www"}}\n')
    rec = EmbeddedPanel(str(path)).domain("jane.example")
    assert rec is not None and rec.owner == "jane"


def test_an_idns_a_label_and_u_label_are_both_its_own_spellings() -> None:
    from siteiso.names import plain_spelling
    a = "xn--bcher-kva.example"
    assert plain_spelling(a, a) and plain_spelling("bücher.example", a)
    assert not plain_spelling("Bücher.example", a)
    assert not plain_spelling("bü\u00adcher.example", a)
    assert not plain_spelling("example.com.", "example.com")
