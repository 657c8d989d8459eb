"""What every panel reader returns, and the checks every record goes through.

A reader turns a panel's own data into DomainRecords. Each record is
validated on the way in (§4.6): one bad record is logged and skipped, it
never stops the rest of the read and never gets through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from siteiso.errors import InvalidName
from siteiso.names import (
    normalize_domain,
    plain_spelling,
    quote,
    validate_path,
    validate_username,
)

log = logging.getLogger("siteiso.panels")

# "8.2", "7.4", "8.3.1": what selectorctl and the panels call a version.
_VERSION = re.compile(r"[0-9]{1,2}(?:\.[0-9]{1,3}){1,2}\Z")
# "ea-php82", "alt-php74", "php81": the panels' names for a PHP build.
_PHP_ID = re.compile(r"(?:[a-z]+-)?php([0-9])([0-9]{1,2})\Z")

# Bound on the panel files siteiso reads whole (domains.json, userdata).
MAX_FILE = 64 * 1024 * 1024


@dataclass(frozen=True)
class DomainRecord:
    name: str  # normalized
    owner: str
    docroot: str  # as the panel gives it (validated string)
    is_main: bool = False
    php_version: str | None = None  # the panel's per-domain PHP version, "8.2"
    # The panel's PHP handler when it says (integration `php.handler`):
    # "lsapi", "fpm", "cgi"…; siteiso warns where it cannot isolate it.
    php_handler: str | None = None
    # Did the panel spell the name in its canonical form? (Not data: two
    # spellings of one name with the same data are the same record.)
    canonical: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class PhpVersion:
    """One PHP build the panel offers (integration `php` script)."""

    identifier: str  # "alt-php82"
    version: str  # "8.2"
    dir: str | None = None
    bin: str | None = None
    modules_dir: str | None = None
    ini: str | None = None


class Panel(Protocol):
    name: str

    def domains(self, owner: str | None = None) -> dict[str, DomainRecord]: ...

    def domain(self, name: str) -> DomainRecord | None: ...

    def php_versions(self) -> list[PhpVersion] | None: ...


def clean_text(text: str, limit: int = 500) -> str:
    """Text from outside (a panel's message, a script's stderr) made safe to
    print: non-printable characters escaped, cut to limit characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    if len(text) > limit:
        out += "..."
    return out


def php_version_of(value: str | None) -> str | None:
    """A panel's PHP version or build name as "X.Y"; None for none, "inherit"
    or anything unrecognized."""
    if not value:
        return None
    value = value.strip().lower()
    if _VERSION.match(value):
        return value
    m = _PHP_ID.match(value)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return None


def make_record(
    source: str,
    name: object,
    owner: object,
    docroot: object,
    is_main: object = False,
    php_version: str | None = None,
    php_handler: str | None = None,
) -> DomainRecord | None:
    """Validate one record; log and return None if any part of it is bad."""
    try:
        if not isinstance(name, str):
            raise InvalidName(f"invalid domain name {quote(name)}: not a string")
        if not isinstance(owner, str):
            raise InvalidName(f"invalid user name {quote(owner)}: not a string")
        if not isinstance(docroot, str):
            raise InvalidName(f"invalid docroot {quote(docroot)}: not a string")
        if not isinstance(is_main, bool):
            raise InvalidName(f"is_main is {quote(is_main)}, not true or false")
        canonical = normalize_domain(name)
        record = DomainRecord(
            name=canonical,
            owner=validate_username(owner),
            docroot=validate_path(docroot, "docroot"),
            is_main=is_main,
            php_version=php_version,
            php_handler=php_handler,
            canonical=plain_spelling(name, canonical),
        )
    except InvalidName as e:
        log.warning("%s: skipping domain %s: %s", source, quote(name), e.message)
        return None
    return record


def collect(source: str, records: Iterable[DomainRecord]) -> dict[str, DomainRecord]:
    """Records by name. A name given twice with different data is ambiguous
    (which owner, which docroot?) and is dropped, not guessed, unless exactly
    one of them spells it canonically: a mapped spelling ("Ex\u00adample.com",
    full-width letters) must not take away, or cancel, the record of the
    name as the panel really gives it."""
    groups: dict[str, list[DomainRecord]] = {}
    for record in records:
        same = groups.setdefault(record.name, [])
        if record not in same:
            same.append(record)
    out: dict[str, DomainRecord] = {}
    for name, found in groups.items():
        if len(found) > 1:
            plain = [r for r in found if r.canonical]
            log.warning("%s: domain %s is listed %d times with different data: %s",
                        source, quote(name), len(found),
                        "the canonical spelling is kept" if len(plain) == 1
                        else "skipping it")
            found = plain
        if len(found) == 1:
            out[name] = found[0]
    return out


def _php_of_entry(source: str, name: str, entry: dict[str, object]) -> str | None:
    php = entry.get("php")
    if php is None:
        return None
    if isinstance(php, dict):
        for key in ("version", "php_version_id"):
            value = php.get(key)
            if isinstance(value, str) and php_version_of(value):
                return php_version_of(value)
    log.warning(
        "%s: domain %s: ignoring unrecognized PHP version %s",
        source,
        quote(name),
        quote(php),
    )
    return None


def _handler_of_entry(entry: dict[str, object]) -> str | None:
    php = entry.get("php")
    handler = php.get("handler") if isinstance(php, dict) else None
    if isinstance(handler, str) and handler.isascii() and handler.isalnum():
        return handler.lower()
    return None


class JsonObject(dict[str, object]):
    """A JSON object that keeps every value of a key given more than once
    (json keeps only the last): a panel listing one name twice, for two
    accounts, is ambiguous, not the last account's."""

    repeated: dict[str, list[object]]


def json_object(pairs: list[tuple[str, object]]) -> JsonObject:
    """json.loads' object_pairs_hook for panel data."""
    obj = JsonObject()
    obj.repeated = {}
    for key, value in pairs:
        if key in obj:
            obj.repeated.setdefault(key, [obj[key]]).append(value)
        obj[key] = value
    return obj


def parse_domains_data(source: str, data: object) -> dict[str, DomainRecord]:
    """Records from the integration-scripts `domains` format:
    {"example.com": {"owner": "john", "document_root": "/home/john/public_html",
    "is_main": true, "php": {"version": "8.2", ...}}, ...}.

    A data part that is not such a mapping is for the caller to refuse; here
    it only raises TypeError."""
    if not isinstance(data, dict):
        raise TypeError(f"expected an object of domains, got {type(data).__name__}")
    records = []
    repeated = getattr(data, "repeated", {})
    given = [(name, e) for name, entry in data.items()
             for e in repeated.get(name, [entry])]
    for name, entry in given:
        if not isinstance(entry, dict):
            log.warning(
                "%s: skipping domain %s: its entry is not an object",
                source,
                quote(name),
            )
            continue
        record = make_record(
            source,
            name,
            entry.get("owner"),
            entry.get("document_root"),
            entry.get("is_main", False),
            _php_of_entry(source, str(name), entry),
            _handler_of_entry(entry),
        )
        if record is not None:
            records.append(record)
    return collect(source, records)
