"""The recorded state's document (SPEC §2): a damaged one is a clear error
that names the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from siteiso import paths
from siteiso.errors import SiteisoError
from siteiso.state import Site, State, store

pytestmark = pytest.mark.pure


def test_state_round_trips() -> None:
    st = State(flag=True, mode="deny_all", allowed=["john"], sites={
        "ab12": Site("ab12", "john", 1001, "/home/john/www", ["example.com"])})
    again = State.from_json(st.to_json())
    assert again == st


@pytest.mark.parametrize("text", [
    "{", "[]", '{"version": 2}', '{"version": 1, "sites": []}',
    '{"version": 1, "sites": {"t": {"token": "t"}}}',
    '{"version": 1, "sites": {"t": 5}}', '{"version": 1, "php_kept": 3}',
    '{"version": 1, "denied": ' + "[" * 100000 + "]" * 100000 + "}",
    '{"version": 1, "flag": ' + "1" * 5000 + "}",
])
def test_damaged_state_is_a_clear_error(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        text: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    monkeypatch.setattr(paths, "STATE", str(path))
    with pytest.raises(SiteisoError) as e:
        store.load()
    assert e.value.message.startswith(f"cannot read {path}: ")
