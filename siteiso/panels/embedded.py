"""The embedded panel: /etc/siteiso/domains.json, for hosts with no panel.

The file holds the data part of the integration scripts' `domains` answer:
{"example.com": {"owner": "john", "document_root": "/home/john/public_html",
"is_main": true}}. A missing file means no domains.
"""

from __future__ import annotations

import json
import os

from siteiso import paths
from siteiso.errors import PanelError
from siteiso.names import normalize_domain, validate_username
from siteiso.panels.base import (
    MAX_FILE,
    DomainRecord,
    PhpVersion,
    json_object,
    parse_domains_data,
)

# Parsed files by identity: one command looks domains up many times (enable
# of many names, PHP settings, restarts), and siteisod lives long; a file
# that changes gets a new identity (inode, size, mtime in ns).
_parsed: dict[tuple[str, int, int, int, int], dict[str, DomainRecord]] = {}


class EmbeddedPanel:
    name = "embedded"

    def __init__(self, domains_json: str = paths.DOMAINS_JSON) -> None:
        self.path = domains_json

    def _read(self) -> dict[str, DomainRecord]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (self.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if key in _parsed:
                    return dict(_parsed[key])
                raw = f.read(MAX_FILE + 1)
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise PanelError(f"cannot read {self.path}: {e.strerror}") from e
        records = self._parse(raw)
        _parsed.clear()
        _parsed[key] = records
        return dict(records)

    def _parse(self, raw: bytes) -> dict[str, DomainRecord]:
        if len(raw) > MAX_FILE:
            raise PanelError(
                f"cannot read {self.path}: larger than {MAX_FILE >> 20} MiB"
            )
        try:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=json_object)
        except UnicodeDecodeError as e:
            raise PanelError(f"cannot read {self.path}: not UTF-8 ({e})") from e
        except json.JSONDecodeError as e:
            raise PanelError(f"cannot read {self.path}: not valid JSON ({e})") from e
        except RecursionError as e:
            raise PanelError(f"cannot read {self.path}: JSON nested too deep") from e
        except ValueError as e:      # a number of more digits than Python takes
            raise PanelError(f"cannot read {self.path}: not valid JSON ({e})") from e
        try:
            return parse_domains_data(self.path, data)
        except TypeError as e:
            raise PanelError(f"cannot read {self.path}: {e}") from e

    def domains(self, owner: str | None = None) -> dict[str, DomainRecord]:
        if owner is not None:
            owner = validate_username(owner)
        records = self._read()
        if owner is None:
            return records
        return {n: r for n, r in records.items() if r.owner == owner}

    def domain(self, name: str) -> DomainRecord | None:
        return self._read().get(normalize_domain(name))

    def php_versions(self) -> list[PhpVersion] | None:
        return None
