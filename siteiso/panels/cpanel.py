"""cPanel, read from its own files; no cPanel API is called.

- /etc/userdatadomains: the index, one line per domain:
  `name: user==reseller==type==parent==docroot==ip:port==...`, type main, sub,
  addon or parked; an addon's parent is the subdomain it is served as.
- /var/cpanel/userdata/<user>/<domain>: one file per main domain and
  subdomain (`documentroot`, `phpversion`, `user`, ...); `main` lists the
  account's domains (`main_domain`, `sub_domains`, `addon_domains` as
  addon: subdomain, `parked_domains`).
- /etc/trueuserdomains: `main-domain: user`, used to find the accounts when
  the index is missing.

An addon domain is a second name of its subdomain's site: both records carry
the subdomain's docroot and PHP version. A parked domain is a name of the
main domain's site.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from siteiso import paths
from siteiso.errors import InvalidName, PanelError
from siteiso.names import normalize_domain, quote, validate_username
from siteiso.panels.base import (
    MAX_FILE,
    DomainRecord,
    PhpVersion,
    collect,
    log,
    make_record,
    php_version_of,
)
from siteiso.textfile import text_lines

KINDS = ("main", "sub", "addon", "parked")
# userdata files are a few hundred bytes; anything far larger is not one.
_MAX_USERDATA = 1024 * 1024

Userdata = dict[str, object]


# -- the userdata format ----------------------------------------------------


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _split_pair(line: str) -> tuple[str, str] | None:
    """`key: value` or `key:` -> (key, value); None if the line is neither."""
    if line.endswith(":"):
        return _unquote(line[:-1]), ""
    key, sep, value = line.partition(": ")
    if not sep:
        return None
    return _unquote(key), value.strip()


def _flow_value(value: str) -> object:
    """A scalar, or a one-line [a, b] / {} as cPanel writes empty ones."""
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1].strip()
        return [_unquote(v) for v in inner.split(",")] if inner else []
    if value == "{}":
        return {}
    if value == "~":
        return ""
    return _unquote(value)


def parse_userdata(text: str) -> Userdata:
    """The subset of YAML that cPanel userdata files use: top-level
    `key: value` scalars, and blocks of `- item` lists or `key: value` maps one
    level deep. Deeper structures (log lists, SSL settings) are skipped."""
    data: Userdata = {}
    block: str | None = None
    block_indent: int | None = None
    for raw in text_lines(text):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped == "---":
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if indent == 0:
            block = None
            pair = _split_pair(stripped)
            if pair is None:
                continue
            key, value = pair
            if value:
                data[key] = _flow_value(value)
            else:
                block, block_indent = key, None
                data[key] = ""
            continue
        if block is None:
            continue
        if block_indent is None:
            block_indent = indent
        if indent != block_indent:
            continue
        current = data.get(block)
        if stripped == "-" or stripped.startswith("- "):
            if current == "":
                current = data[block] = []
            if isinstance(current, list):
                current.append(_unquote(stripped[1:]))
        else:
            pair = _split_pair(stripped)
            if pair is None:
                continue
            if current == "":
                current = data[block] = {}
            if isinstance(current, dict):
                current[pair[0]] = _unquote(pair[1])
    return data


def _scalar(data: Userdata | None, key: str) -> str | None:
    value = (data or {}).get(key)
    return value if isinstance(value, str) and value else None


def _names(source: str, values: object) -> list[tuple[str, str]]:
    """(normalized, as written) names from a userdata list; bad ones logged
    and dropped."""
    out = []
    for value in values if isinstance(values, list) else []:
        try:
            out.append((normalize_domain(str(value)), str(value)))
        except InvalidName as e:
            log.warning("%s: skipping domain %s: %s", source, quote(value), e.message)
    return out


def _name_map(source: str, values: object) -> dict[str, tuple[str, str]]:
    """addon → (the subdomain that serves it, the addon as written)."""
    out = {}
    for key, value in values.items() if isinstance(values, dict) else []:
        try:
            out[normalize_domain(str(key))] = (normalize_domain(str(value)), str(key))
        except InvalidName as e:
            log.warning("%s: skipping domain %s: %s", source, quote(key), e.message)
    return out


# -- the reader ---------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One domain as the index lists it, name and user already validated."""

    name: str
    user: str
    kind: str
    parent: str | None
    docroot: str
    # The name as the file spells it: a mapped spelling of a name (soft
    # hyphen, full-width letters) never outweighs the name itself.
    raw: str = ""


def _read(path: str, limit: int) -> str | None:
    """A panel file's text; None if it does not exist."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise PanelError(f"cannot read {path}: {e.strerror}") from e
    if len(raw) > limit:
        raise PanelError(f"cannot read {path}: larger than {limit} bytes")
    return raw.decode("utf-8", "replace")


class CpanelPanel:
    name = "cpanel"

    def __init__(
        self,
        userdatadomains: str = paths.CPANEL_USERDATADOMAINS,
        trueuserdomains: str = paths.CPANEL_TRUEUSERDOMAINS,
        userdata: str = paths.CPANEL_USERDATA,
    ) -> None:
        self.userdatadomains = userdatadomains
        self.trueuserdomains = trueuserdomains
        self.userdata = userdata

    # -- the Panel interface ----------------------------------------------

    def domains(self, owner: str | None = None) -> dict[str, DomainRecord]:
        if owner is not None:
            owner = validate_username(owner)
        entries = self._entries(owner)
        if owner is None:
            return self._records(entries)
        # The owner's names with every entry for them (another account may
        # list the same name): which record stands is decided over all.
        names = {e.name for e in entries if e.user == owner}
        records = self._records([e for e in entries if e.name in names])
        return {n: r for n, r in records.items() if r.owner == owner}

    def domain(self, name: str) -> DomainRecord | None:
        name = normalize_domain(name)
        entries = [e for e in self._entries(None) if e.name == name]
        return self._records(entries).get(name)

    def php_versions(self) -> list[PhpVersion] | None:
        # cPanel's EasyApache versions are what is installed under
        # /opt/cpanel; the installed-version probe finds them.
        return None

    # -- the index ----------------------------------------------------------

    def _entries(self, owner: str | None) -> list[_Entry]:
        text = _read(self.userdatadomains, MAX_FILE)
        if text is None:
            return self._entries_from_userdata(owner)
        entries = []
        for lineno, line in enumerate(text_lines(text), 1):
            if not line.strip():
                continue
            entry = self._index_entry(line, f"{self.userdatadomains}:{lineno}")
            if entry is not None:
                entries.append(entry)
        return entries

    def _index_entry(self, line: str, source: str) -> _Entry | None:
        name, sep, rest = line.partition(": ")
        fields = rest.split("==")
        if not sep or len(fields) < 5:
            log.warning("%s: skipping a line that is not an entry", source)
            return None
        user, _reseller, kind, parent, docroot = (f.strip() for f in fields[:5])
        if kind not in KINDS:
            log.warning(
                "%s: skipping domain %s: unknown type %s",
                source,
                quote(name),
                quote(kind),
            )
            return None
        try:
            entry = _Entry(
                name=normalize_domain(name.strip()),
                user=validate_username(user),
                kind=kind,
                parent=normalize_domain(parent) if parent else None,
                docroot=docroot,
                raw=name.strip(),
            )
        except InvalidName as e:
            log.warning("%s: skipping domain %s: %s", source, quote(name), e.message)
            return None
        return entry

    def _users(self) -> list[str]:
        """Accounts from /etc/trueuserdomains, else the userdata folders."""
        text = _read(self.trueuserdomains, MAX_FILE)
        if text is not None:
            candidates = [
                line.partition(":")[2].strip()
                for line in text_lines(text)
                if line.strip()
            ]
        else:
            try:
                candidates = sorted(os.listdir(self.userdata))
            except FileNotFoundError:
                return []
            except OSError as e:
                raise PanelError(f"cannot read {self.userdata}: {e.strerror}") from e
        users: list[str] = []
        for candidate in candidates:
            if candidate == "nobody" or candidate in users:
                continue
            try:
                users.append(validate_username(candidate))
            except InvalidName as e:
                log.warning("cpanel: skipping account: %s", e.message)
        return users

    def _entries_from_userdata(self, owner: str | None) -> list[_Entry]:
        """Without /etc/userdatadomains, each account's `main` file lists its
        domains."""
        users = [owner] if owner is not None else self._users()
        entries = []
        for user in users:
            source = os.path.join(self.userdata, user, "main")
            main = self._userdata_file(user, "main")
            if main is None:
                continue
            given = _scalar(main, "main_domain") or ""
            try:
                main_domain = normalize_domain(given)
            except InvalidName as e:
                log.warning("%s: skipping account %s: %s", source, user, e.message)
                continue
            # Each entry keeps the name as written: a mapped spelling of
            # another account's name must not count as that name.
            entries.append(_Entry(main_domain, user, "main", None, "", given))
            for sub, raw in _names(source, main.get("sub_domains")):
                entries.append(_Entry(sub, user, "sub", main_domain, "", raw))
            addons = _name_map(source, main.get("addon_domains"))
            for addon, (sub, raw) in addons.items():
                entries.append(_Entry(addon, user, "addon", sub, "", raw))
            for parked, raw in _names(source, main.get("parked_domains")):
                entries.append(_Entry(parked, user, "parked", main_domain, "", raw))
        return entries

    # -- records --------------------------------------------------------------

    def _userdata_file(self, user: str, filename: str) -> Userdata | None:
        # user and filename are validated names: no '/', never '..'.
        text = _read(os.path.join(self.userdata, user, filename), _MAX_USERDATA)
        return None if text is None else parse_userdata(text)

    def _main_info(self, user: str) -> _Main:
        source = os.path.join(self.userdata, user, "main")
        main = self._userdata_file(user, "main")
        main_domain = None
        if _scalar(main, "main_domain"):
            try:
                main_domain = normalize_domain(_scalar(main, "main_domain") or "")
            except InvalidName as e:
                log.warning("%s: %s", source, e.message)
        addons = {a: sub for a, (sub, _) in
                  _name_map(source, (main or {}).get("addon_domains")).items()}
        return _Main(main_domain, addons)

    def _records(self, entries: list[_Entry]) -> dict[str, DomainRecord]:
        mains: dict[str, _Main] = {}
        files: dict[tuple[str, str], Userdata | None] = {}
        records = []
        for entry in entries:
            if entry.user not in mains:
                mains[entry.user] = self._main_info(entry.user)
            site = _site_name(entry, mains[entry.user])
            if (entry.user, site) not in files:
                files[entry.user, site] = self._userdata_file(entry.user, site)
            info = files[entry.user, site]
            source = f"cpanel {os.path.join(self.userdata, entry.user, site)}"

            file_user = _scalar(info, "user")
            if file_user is not None and file_user != entry.user:
                log.warning(
                    "%s: skipping domain %s: owned by %s there, by %s in %s",
                    source,
                    quote(entry.name),
                    quote(file_user),
                    quote(entry.user),
                    self.userdatadomains,
                )
                continue
            docroot = _scalar(info, "documentroot") or entry.docroot
            php = php_version_of(_scalar(info, "phpversion"))
            record = make_record(
                source, entry.raw or entry.name, entry.user, docroot,
                entry.kind == "main", php
            )
            if record is not None:
                records.append(record)
        return collect("cpanel", records)


@dataclass(frozen=True)
class _Main:
    """What an account's `main` userdata file says about its sites."""

    main_domain: str | None
    addons: dict[str, str]  # addon -> the subdomain that serves it


def _site_name(entry: _Entry, main: _Main) -> str:
    """The domain whose userdata file describes entry's site."""
    if entry.kind == "addon":
        return main.addons.get(entry.name) or entry.parent or entry.name
    if entry.kind == "parked":
        return main.main_domain or entry.parent or entry.name
    return entry.name
