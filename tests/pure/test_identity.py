"""A view's passwd and group (views.engine._Identities) list every entry
but the other hosting accounts' — the same as filtering every entry for
every user, which was quadratic at a thousand accounts."""

from __future__ import annotations

import grp
import pwd

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteiso.accounts import Account
from siteiso.views.engine import HostFacts, _Identities

pytestmark = pytest.mark.pure


def reference(acct, host):
    """The former per-user filter, kept as the definition."""
    others = {a.name for a in host.hosting if a.uid != acct.uid}
    other_gids = {a.gid for a in host.hosting if a.uid != acct.uid}
    passwd = [":".join((p.pw_name, "x", str(p.pw_uid), str(p.pw_gid), p.pw_gecos,
                        p.pw_dir, p.pw_shell))
              for p in host.passwd if p.pw_name not in others]
    group = []
    for g in host.groups:
        if g.gr_gid in other_gids and g.gr_gid != acct.gid:
            continue
        members = ",".join(m for m in g.gr_mem if m not in others)
        group.append(f"{g.gr_name}:x:{g.gr_gid}:{members}")
    return passwd, group


names = st.sampled_from([f"u{i}" for i in range(6)] + ["root", "www-data", "mail"])


@st.composite
def hosts(draw, unique_names: bool = True):
    """A passwd and a group list; as accounts.hosting_accounts, every entry
    whose uid is in the hosting range is an account (with duplicate names:
    each of them)."""
    entries = draw(st.lists(st.tuples(names, st.integers(0, 5), st.integers(0, 5)),
                            min_size=1, max_size=12,
                            unique_by=(lambda e: e[0]) if unique_names else None))
    passwd = tuple(pwd.struct_passwd((n, "x", 1000 + u, 1000 + g, "", f"/home/{n}",
                                      "/bin/sh")) for n, u, g in entries)
    hosting_uids = draw(st.sets(st.integers(1000, 1005)))
    hosting = tuple(Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir)
                    for p in passwd if p.pw_uid in hosting_uids)
    groups = tuple(grp.struct_group((f"g{gid}", "x", 1000 + gid,
                                     draw(st.lists(names, max_size=4))))
                   for gid in draw(st.lists(st.integers(0, 5), max_size=10)))
    return HostFacts(hosting=hosting, passwd=passwd, groups=groups,
                     existing=frozenset(), real=())


@settings(max_examples=300, deadline=None)
@given(hosts())
def test_each_users_passwd_and_group_are_the_filtered_host_lists(host):
    ids = _Identities(host)
    for acct in host.hosting:
        assert (ids.passwd_for(acct.uid), ids.group_for(acct.uid, acct.gid)) == \
            reference(acct, host)


@settings(max_examples=300, deadline=None)
@given(hosts(unique_names=False))
def test_a_view_lists_no_hosting_account_of_another_uid(host: HostFacts) -> None:
    """Where passwd has a name twice (the filter above is not defined
    there), still no line names another uid's hosting account."""
    ids = _Identities(host)
    hosting_uids = {a.uid for a in host.hosting}
    for acct in host.hosting:
        # Names that are only other uids' hosting accounts.
        foreign = ({a.name for a in host.hosting if a.uid != acct.uid}
                   - {a.name for a in host.hosting if a.uid == acct.uid})
        foreign_gids = ({a.gid for a in host.hosting if a.uid != acct.uid}
                        - {a.gid for a in host.hosting if a.uid == acct.uid})
        for line in ids.passwd_for(acct.uid):
            name, _, uid, *_ = line.split(":")
            assert name not in foreign, line
            if name in {a.name for a in host.hosting}:
                assert int(uid) == acct.uid or int(uid) not in hosting_uids, line
        for line in ids.group_for(acct.uid, acct.gid):
            _, _, gid, members = line.split(":")
            assert int(gid) not in foreign_gids, line
            assert not set(filter(None, members.split(","))) & foreign, line
