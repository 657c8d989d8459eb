"""Recorded state: one JSON document under one lock, plus its mirrors."""

from siteiso.state.store import (
    Site,
    State,
    ensure_lib,
    fault,
    load,
    locked,
    recorded,
    save,
)

__all__ = ["Site", "State", "ensure_lib", "fault", "load", "locked", "recorded",
           "save"]
