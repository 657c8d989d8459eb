"""Reading `apachectl -S` and DUMP_INCLUDES (siteiso.service.vhosts)."""

from __future__ import annotations

import pytest

from siteiso.service import vhosts
from siteiso.service.apache import include_mark

pytestmark = pytest.mark.pure

LISTING = """\
VirtualHost configuration:
*:80                   is a NameVirtualHost
         default server a.example (/etc/apache2/sites-enabled/a.conf:1)
         port 80 namevhost a.example (/etc/apache2/sites-enabled/a.conf:1)
                 alias www.a.example
                 wild alias *.shop.example
         port 80 namevhost b.example (/etc/apache2/sites-enabled/two.conf:1)
         port 80 namevhost c.example (/etc/apache2/sites-enabled/two.conf:20)
*:443                  a.example (/etc/apache2/sites-enabled/a-ssl.conf:2)
ServerRoot: "/etc/apache2"
"""

DUMP = """\
Included configuration files:
  (*) /etc/apache2/apache2.conf
    (147) /etc/apache2/mods-enabled/alias.load
    (225) /etc/apache2/sites-enabled/a.conf
      (19) /etc/apache2/siteiso/a.example.conf
    (225) /etc/apache2/sites-enabled/two.conf
      (12) /etc/apache2/siteiso/b.example.conf
      (30) /etc/apache2/siteiso/c.example.conf
    (225) /etc/apache2/sites-enabled/a-ssl.conf
"""


def test_vhosts_their_names_ports_and_where_they_start():
    hosts = vhosts.parse_vhosts(LISTING)
    assert [(v.file.rsplit("/", 1)[1], v.line, v.port) for v in hosts] == [
        ("a.conf", 1, 80), ("two.conf", 1, 80), ("two.conf", 20, 80),
        ("a-ssl.conf", 2, 443)]
    a = hosts[0]
    assert a.answers("a.example") and a.answers("www.a.example")
    assert a.answers("x.shop.example") and not a.answers("b.example")
    assert [v.where for v in hosts if v.answers("a.example")] == [
        "/etc/apache2/sites-enabled/a.conf:1",
        "/etc/apache2/sites-enabled/a-ssl.conf:2"]


def test_each_vhost_gets_the_includes_of_its_own_block():
    hosts = vhosts.parse_vhosts(LISTING)
    inc = vhosts.parse_includes(DUMP)
    got = {v.names[0]: vhosts.included_by(v, hosts, inc) for v in hosts if v.port == 80}
    assert got == {"a.example": ["/etc/apache2/siteiso/a.example.conf"],
                   "b.example": ["/etc/apache2/siteiso/b.example.conf"],
                   "c.example": ["/etc/apache2/siteiso/c.example.conf"]}
    (ssl,) = [v for v in hosts if v.port == 443]
    assert vhosts.included_by(ssl, hosts, inc) == []


def test_an_include_names_its_site(tmp_path):
    mine = tmp_path / "a.conf"
    mine.write_text(include_mark("0123abcd") + "; generated, do not edit.\nX\n")
    other = tmp_path / "other.conf"
    other.write_text("# siteiso: this site is isolated; generated\n")
    assert vhosts.include_token(str(mine)) == "0123abcd"
    assert vhosts.include_token(str(other)) is None
    assert vhosts.include_token(str(tmp_path / "missing.conf")) is None


def test_include_changes_are_taken_back_as_they_were(tmp_path):
    from siteiso.service.apache import IncludeJournal
    kept = tmp_path / "kept.conf"
    kept.write_text(include_mark("aaaa") + "; old\n")
    gone = tmp_path / "gone.conf"
    gone.write_text(include_mark("bbbb") + "; gone\n")
    new = tmp_path / "sub" / "new.conf"
    j = IncludeJournal()
    assert j.write(str(kept), include_mark("aaaa") + "; changed\n")
    assert not j.write(str(kept), include_mark("aaaa") + "; changed\n")  # same
    assert j.remove(str(gone), "bbbb")
    assert not j.remove(str(gone), "bbbb")
    assert j.write(str(new), include_mark("cccc") + "; new\n")
    j.undo()
    assert kept.read_text() == include_mark("aaaa") + "; old\n"
    assert gone.read_text() == include_mark("bbbb") + "; gone\n"
    assert not new.exists()
