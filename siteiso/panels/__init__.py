"""Panels: where domains, owners, docroots and PHP versions come from (§6).

get_panel() picks the reader the configuration names, or detects one:
integration scripts if /opt/cpvendor/etc/integration.ini exists, cPanel if
/etc/userdatadomains exists, else the embedded /etc/siteiso/domains.json.
"""

from __future__ import annotations

import os

from siteiso import paths
from siteiso.config import Config
from siteiso.errors import PanelError
from siteiso.panels.base import DomainRecord, Panel, PhpVersion
from siteiso.panels.cpanel import CpanelPanel
from siteiso.panels.embedded import EmbeddedPanel
from siteiso.panels.integration import IntegrationPanel

__all__ = [
    "CpanelPanel",
    "DomainRecord",
    "EmbeddedPanel",
    "IntegrationPanel",
    "Panel",
    "PhpVersion",
    "get_panel",
]


def get_panel(
    cfg: Config,
    *,
    integration_ini: str = paths.INTEGRATION_INI,
    userdatadomains: str = paths.CPANEL_USERDATADOMAINS,
    trueuserdomains: str = paths.CPANEL_TRUEUSERDOMAINS,
    userdata: str = paths.CPANEL_USERDATA,
    domains_json: str = paths.DOMAINS_JSON,
) -> Panel:
    kind = cfg.panel
    if kind == "auto":
        if os.path.exists(integration_ini):
            kind = "integration"
        elif os.path.exists(userdatadomains):
            kind = "cpanel"
        else:
            kind = "embedded"
    if kind == "integration":
        return IntegrationPanel(integration_ini, timeout=cfg.script_timeout)
    if kind == "cpanel":
        return CpanelPanel(userdatadomains, trueuserdomains, userdata)
    if kind == "embedded":
        return EmbeddedPanel(domains_json)
    raise PanelError(
        f"unknown panel {cfg.panel!r}: expected auto, embedded, integration or cpanel"
    )
