"""Names are data (SPEC §4.6): every verdict of shared/cases/names.txt, and the
user name and docroot rules."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from testlib import cases_dir as find_cases

from siteiso.errors import InvalidName
from siteiso.names import normalize_domain, validate_docroot, validate_username

pytestmark = pytest.mark.pure


def cases_dir() -> Path | None:
    with contextlib.suppress(FileNotFoundError):
        return find_cases()
    return None


def load_name_cases() -> list[object]:
    """(name, verdict) pairs; one failing param if the file is missing, so
    that a lost case file fails the run instead of skipping it."""
    base = cases_dir()
    path = base / "names.txt" if base else None
    if path is None or not path.is_file():
        return [pytest.param(None, None, id="names.txt-missing")]
    cases: list[object] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            name, _, verdict = line.rpartition("\t")
            cases.append(pytest.param(name, verdict, id=f"line{lineno}:{name!r}"))
    return cases


NAME_CASES = load_name_cases()


def test_names_txt_has_cases() -> None:
    assert len(NAME_CASES) >= 10, "shared/cases/names.txt is missing or empty"


@pytest.mark.parametrize(("name", "verdict"), NAME_CASES)
def test_domain_name_verdict(name: str | None, verdict: str | None) -> None:
    if name is None or verdict is None:
        pytest.fail("shared/cases/names.txt not found (set SITEISO_CASES)")
    if verdict == "error":
        with pytest.raises(InvalidName) as e:
            normalize_domain(name)
        assert repr(name)[:40] in e.value.message
        assert "invalid domain name" in e.value.message
    elif verdict == "ok":
        assert normalize_domain(name) == name
    else:
        assert verdict.startswith("ok:"), f"unknown verdict {verdict!r}"
        assert normalize_domain(name) == verdict[3:]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ＥＸＡＭＰＬＥ。com", "example.com"),  # full-width forms map (UTS 46)
        ("faß.de", "xn--fa-hia.de"),  # non-transitional: ß stays
        ("xn--bcher-kva.example.", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
    ],
)
def test_domain_is_mapped_to_its_a_label(name: str, expected: str) -> None:
    assert normalize_domain(name) == expected


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("exa／mple.com", "slash"),  # a full-width slash is still a slash
        ("example.com\x00", "NUL"),
        ("example.com\n", "line break"),
        ("ex\x1b[31mample.com", "control character"),
        ("example.com..", "'..'"),
        ("example-.com", "hyphen"),
        ("ex$ample.com", "'$'"),
        ("ex_ample.com", "'_'"),
        ("xn--zz.example", "A-label"),
        ("192.0.2.10", "all digits"),
        (".", "empty label"),
        ("a" * 2000, "too long"),
        (".".join(["a" * 63] * 4) + ".example", "longer than 253"),
    ],
)
def test_bad_domain_is_refused_with_reason(name: str, why: str) -> None:
    with pytest.raises(InvalidName) as e:
        normalize_domain(name)
    assert why in e.value.message


def test_message_never_holds_raw_control_characters() -> None:
    for bad in ("a\x1b]0;pwned\x07.com", "a\rb.com", "a\x7f.com", "a\u2028.com"):
        with pytest.raises(InvalidName) as e:
            normalize_domain(bad)
        assert e.value.message.isprintable(), e.value.message


def test_domain_must_be_a_string() -> None:
    with pytest.raises(InvalidName):
        normalize_domain(b"example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "user", ["john", "j0hn", "web_1", "a.b", "A-b", "_svc", "x" * 32]
)
def test_username_accepted(user: str) -> None:
    assert validate_username(user) == user


@pytest.mark.parametrize(
    ("user", "why"),
    [
        ("", "empty"),
        ("-john", "starts with '-'"),
        ("x" * 33, "longer than 32"),
        ("jo hn", "only letters"),
        ("john/../root", "only letters"),
        ("john\n", "line break"),
        ("jo\x00hn", "NUL"),
        ("..", "not a user name"),
        ("1000", "not a user name"),
        ("jöhn", "only letters"),
        ("machine$", "only letters"),
    ],
)
def test_username_refused(user: str, why: str) -> None:
    with pytest.raises(InvalidName) as e:
        validate_username(user)
    assert why in e.value.message
    assert e.value.message.isprintable()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/john/public_html", "/home/john/public_html"),
        ("/home/john//public_html/", "/home/john/public_html"),
        ("/home/john/./shop/public", "/home/john/shop/public"),
        (
            "/home/john/sites/b.example/www/blog/c",
            "/home/john/sites/b.example/www/blog/c",
        ),
        ("/home/john/päge", "/home/john/päge"),
    ],
)
def test_docroot_is_normalized(path: str, expected: str) -> None:
    assert validate_docroot(path, "/home/john") == expected


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("public_html", "not an absolute path"),
        ("", "empty"),
        ("/home/john/../jane/public_html", "'..'"),
        ("/home/john/public_html/..", "'..'"),
        ("/home/john", "not inside the home directory"),
        ("/home/john/", "not inside the home directory"),
        ("/home/johnny/public_html", "not inside the home directory"),
        ("/var/www/html", "not inside the home directory"),
        ("/home/john/a\tb", "tab or line break"),
        ("/home/john/a\nb", "tab or line break"),
        ("/home/john/a\x00b", "NUL"),
        ("/home/john/a\x1bb", "control character"),
        ("/home/john/" + "a" * 5000, "too long"),
    ],
)
def test_docroot_refused(path: str, why: str) -> None:
    with pytest.raises(InvalidName) as e:
        validate_docroot(path, "/home/john")
    assert why in e.value.message
    assert e.value.message.isprintable()


def test_docroot_home_must_be_clean() -> None:
    with pytest.raises(InvalidName) as e:
        validate_docroot("/home/john/public_html", "home/john")
    assert "home directory" in e.value.message
    assert validate_docroot("/home/john/www", "/home//john/") == "/home/john/www"


def test_cases_copy_matches_the_shared_cases():
    from testlib import cases_copy_differs
    assert cases_copy_differs() == [], "refresh tests/cases from ../shared/cases"
