"""Distribution layouts (siteiso.service.layout): where vhost includes go."""

from __future__ import annotations

import pytest

from siteiso.service import layout

pytestmark = pytest.mark.pure


def test_cpanel_sites_get_the_include_for_http_and_https():
    paths = layout.CPANEL.includes_for("john", "a.example")
    assert paths == (
        "/etc/apache2/conf.d/userdata/std/2_4/john/a.example/siteiso.conf",
        "/etc/apache2/conf.d/userdata/ssl/2_4/john/a.example/siteiso.conf",
    )


@pytest.mark.parametrize("lay", [layout.DEBIAN, layout.EL])
def test_one_include_per_domain_elsewhere(lay):
    (path,) = lay.includes_for("john", "a.example")
    assert path.endswith("/a.example.conf")
