"""Names are data (SPEC §4.6): domains, user names and docroots are validated
here, before anything else looks at them.

Every function returns the canonical form or raises InvalidName with a
message that names the bad input. Inputs are quoted with repr(), so a control
character, an escape sequence or a line break never reaches a terminal or a
log raw. This module does string checks only; resolving a docroot on disk is
done with descriptors elsewhere (§4.4).
"""

from __future__ import annotations

import re
import unicodedata

import idna

from siteiso.errors import InvalidName

MAX_NAME = 253
MAX_LABEL = 63
MAX_USERNAME = 32
# Linux PATH_MAX, terminating NUL included.
MAX_PATH = 4095

# Longer input is refused before any IDNA work is done on it.
_MAX_INPUT = 1024

# Characters refused with a message of their own: they are what shell, path
# and wildcard injection is made of.
_FORBIDDEN = {
    "/": "a slash",
    "\\": "a backslash",
    "*": "a wildcard '*'",
    ";": "a ';'",
    "%": "a '%'",
    " ": "a space",
}

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
_USERNAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")


def quote(value: object, limit: int = 80) -> str:
    """repr() of a value, cut to about limit characters: safe for messages."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    text = repr(value)
    if len(text) > limit + 2:
        return text[:limit] + "..."
    return text


def _bad_char(s: str) -> str | None:
    """Describe the first character that no name or path may hold."""
    for c in s:
        if c == "\0":
            return "a NUL character"
        if c in "\t\n\r":
            return "a tab or line break"
        if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp"):
            return f"the control character {c!r}"
    return None


def _plain_ascii_name(s: str) -> str | None:
    """The canonical form of an ordinary ASCII host name, or None to take the
    full IDNA path (which also words the refusals).

    For letters, digits and inner hyphens UTS 46 only lower-cases, and IDNA
    2008 only refuses '--' in the third and fourth place (xn-- included, so
    A-labels are checked by idna), so this gives the same answer, faster.
    """
    if not s.isascii() or len(s) > MAX_NAME + 1:
        return None
    name = s.lower()
    if name.endswith("."):
        name = name[:-1]
    labels = name.split(".")
    for label in labels:
        if len(label) > MAX_LABEL or label[2:4] == "--":
            return None
        if not _LDH_LABEL.match(label):
            return None
    if len(name) > MAX_NAME or labels[-1].isdigit():
        return None
    return name


def plain_spelling(given: str, canonical: str) -> bool:
    """Whether `given` spells the canonical name as a panel legitimately
    would: the A-label form itself, or its U-label form (lower case, no
    trailing dot), not a spelling that only maps to it (upper case, soft
    hyphens, full-width letters)."""
    if given == canonical:
        return True
    try:
        return given == idna.decode(canonical)
    except (idna.IDNAError, UnicodeError):
        return False


def normalize_domain(s: str) -> str:
    """Return the canonical form of a domain name: the A-label, lower case, no
    trailing dot (IDNA 2008 with UTS 46 mapping, non-transitional).

    Raises InvalidName for anything that is not a host name.
    """
    if not isinstance(s, str):
        raise InvalidName(f"invalid domain name {quote(s)}: not a string")
    fast = _plain_ascii_name(s)
    if fast is not None:
        return fast
    shown = quote(s)
    if not s:
        raise InvalidName("invalid domain name '': empty")
    if len(s) > _MAX_INPUT:
        raise InvalidName(f"invalid domain name {shown}: too long")
    bad = _bad_char(s)
    if bad:
        raise InvalidName(f"invalid domain name {shown}: contains {bad}")

    # UTS 46 mapping first (case folding, full-width forms, ideographic full
    # stops), so that a full-width slash or dot is judged as what it becomes.
    try:
        mapped = idna.uts46_remap(s, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError) as e:
        raise InvalidName(f"invalid domain name {shown}: {e}") from None

    for c in mapped:
        if c in _FORBIDDEN:
            raise InvalidName(f"invalid domain name {shown}: contains {_FORBIDDEN[c]}")
        if c.isascii() and not (c.isalnum() or c in ".-"):
            raise InvalidName(
                f"invalid domain name {shown}: contains the character {c!r}"
            )
    bad = _bad_char(mapped)
    if bad:
        raise InvalidName(f"invalid domain name {shown}: contains {bad}")
    if ".." in mapped:
        raise InvalidName(f"invalid domain name {shown}: contains '..'")

    # One trailing dot is the root; "example.com.." is an empty label.
    if mapped.endswith("."):
        mapped = mapped[:-1]
    labels = mapped.split(".")
    for label in labels:
        if not label:
            raise InvalidName(f"invalid domain name {shown}: empty label")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidName(
                f"invalid domain name {shown}: label {quote(label)} "
                "starts or ends with a hyphen"
            )
        if label.isascii() and len(label) > MAX_LABEL:
            raise InvalidName(
                f"invalid domain name {shown}: label {quote(label)} is longer "
                f"than {MAX_LABEL} characters"
            )
    if mapped.isascii() and len(mapped) > MAX_NAME:
        raise InvalidName(
            f"invalid domain name {shown}: longer than {MAX_NAME} characters"
        )

    try:
        encoded = idna.encode(
            mapped, uts46=True, std3_rules=True, transitional=False
        ).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise InvalidName(f"invalid domain name {shown}: {e}") from None

    # idna's own checks cover these; checking the A-labels again keeps the
    # guarantee in one place whatever version of idna is installed.
    alabels = encoded.split(".")
    for label in alabels:
        if not label:
            raise InvalidName(f"invalid domain name {shown}: empty label")
        if len(label) > MAX_LABEL:
            raise InvalidName(
                f"invalid domain name {shown}: label {quote(label)} is longer "
                f"than {MAX_LABEL} characters"
            )
        if not _LDH_LABEL.match(label):
            raise InvalidName(f"invalid domain name {shown}: bad label {quote(label)}")
    if len(encoded) > MAX_NAME:
        raise InvalidName(
            f"invalid domain name {shown}: longer than {MAX_NAME} characters"
        )
    if alabels[-1].isdigit():
        # "192.0.2.10" passes LDH rules but is an address, not a site name.
        raise InvalidName(f"invalid domain name {shown}: the last label is all digits")
    return encoded


def validate_username(s: str) -> str:
    """Return s if it is a user name that useradd accepts portably.

    POSIX portable characters (letters, digits, '.', '_', '-'), not starting
    with '-', at most 32 characters, not '.', '..' or all digits (it would
    read as a uid). Case is kept: user names are case-sensitive.
    """
    if not isinstance(s, str):
        raise InvalidName(f"invalid user name {quote(s)}: not a string")
    shown = quote(s)
    if not s:
        raise InvalidName("invalid user name '': empty")
    bad = _bad_char(s)
    if bad:
        raise InvalidName(f"invalid user name {shown}: contains {bad}")
    if len(s) > MAX_USERNAME:
        raise InvalidName(
            f"invalid user name {shown}: longer than {MAX_USERNAME} characters"
        )
    if s.startswith("-"):
        raise InvalidName(f"invalid user name {shown}: starts with '-'")
    if s in (".", "..") or s.isdigit():
        raise InvalidName(f"invalid user name {shown}: not a user name")
    if not _USERNAME.match(s):
        raise InvalidName(
            f"invalid user name {shown}: only letters, digits, '.', '_' and '-' "
            "are allowed"
        )
    return s


def validate_path(path: str, what: str = "path") -> str:
    """Return the normalized form of a clean absolute path.

    Refuses relative paths, NUL, control characters (TAB and line breaks
    included), '..' components and over-long paths; drops '.' components,
    repeated and trailing slashes. Pure string work: nothing is resolved.
    """
    if not isinstance(path, str):
        raise InvalidName(f"invalid {what} {quote(path)}: not a string")
    shown = quote(path)
    if not path:
        raise InvalidName(f"invalid {what} '': empty")
    bad = _bad_char(path)
    if bad:
        raise InvalidName(f"invalid {what} {shown}: contains {bad}")
    if not path.startswith("/"):
        raise InvalidName(f"invalid {what} {shown}: not an absolute path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidName(f"invalid {what} {shown}: contains '..'")
    clean = "/" + "/".join(parts)
    if len(clean.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise InvalidName(f"invalid {what} {shown}: too long")
    return clean


def validate_docroot(path: str, home: str) -> str:
    """Return the normalized docroot if it is a clean absolute path strictly
    under home (itself a clean absolute path).

    String validation only: symlinks and the real owner are checked on
    descriptors when the docroot is resolved.
    """
    clean_home = validate_path(home, "home directory")
    clean = validate_path(path, "docroot")
    prefix = clean_home if clean_home == "/" else clean_home + "/"
    if clean == clean_home or not clean.startswith(prefix):
        raise InvalidName(
            f"invalid docroot {quote(path)}: not inside the home directory "
            f"{quote(clean_home)}"
        )
    return clean
