"""SPEC §2 end to end through the installed cagefsctl, inside the sandbox."""

from __future__ import annotations

import json

import pytest
from testlib import ALLOWED, DOMAINS, fails, ok, state

pytestmark = pytest.mark.kernel


# ---- messages -----------------------------------------------------------

def test_allow_all_message_and_state(server):
    assert ok(server, "--site-isolation-allow-all") == \
        "Website isolation was allowed for all users.\n"
    assert state(server) == {"flag": True, "allow_all": True, "deny_all": False,
                             "denied": [], "allowed": []}


def test_deny_all_message_and_state(server):
    ok(server, "--site-isolation-allow-all")
    assert ok(server, "--site-isolation-deny-all") == \
        "Website isolation was denied for all users.\n"
    s = state(server)
    assert (s["flag"], s["allow_all"], s["deny_all"], s["allowed"]) == \
        (False, False, True, [])


def test_allow_users_message_normalized_and_deduplicated(server):
    assert ok(server, "--site-isolation-allow", "john", "jane", "john") == \
        "Website isolation was allowed for user(s): john, jane\n"
    s = state(server)
    assert s["flag"] and s["deny_all"] and not s["allow_all"]
    assert s["allowed"] == ["jane", "john"]


def test_deny_user_message(server):
    ok(server, "--site-isolation-allow-all")
    assert ok(server, "--site-isolation-deny", "john") == \
        "Website isolation was denied for user(s): john\n"
    assert state(server)["denied"] == ["john"]


def test_toggle_mode_messages(server):
    assert ok(server, "--site-isolation-toggle-mode") == \
        "Website isolation user mode toggled to 'allow_all'.\n"
    assert state(server)["flag"]
    assert ok(server, "--site-isolation-toggle-mode") == \
        "Website isolation user mode toggled to 'deny_all'.\n"
    assert ok(server, "--site-isolation-toggle-mode") == \
        "Website isolation user mode toggled to 'allow_all'.\n"


def test_list_when_nothing_isolated(server):
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"
    assert json.loads(ok(server, "--site-isolation-list", "--json")) == {"users": {}}


def test_regenerate_and_remount_messages(server):
    ok(server, "--site-isolation-allow-all")
    assert ok(server, "--site-isolation-regenerate", "john", "jane") == \
        "Regenerated configuration website isolation for users:\njohn\njane\n"
    assert ok(server, "--remount", "john") == \
        "Remounted website isolation for user(s): john\n"
    assert ok(server, "--remount-all") == \
        "Remounted website isolation for all users.\n"


# ---- errors ---------------------------------------------------------------

def test_non_root_is_refused(server):
    for args in (["--site-isolation-allow-all"], ["--site-isolation-list"],
                 ["--site-isolation-enable", "example.com"]):
        r = server.cagefsctl(*args, user="john")
        assert r.returncode == 1
        assert r.stderr.strip() == "This command must be run as root"
    assert not state(server)["flag"]


@pytest.mark.parametrize("args", [
    [], ["--site-isolation-allow"], ["--site-isolation-enable"],
    ["--site-isolation-deny-a"], ["--site-isolation-t"], ["--remount-a"],
    ["--site-isolation-list", "--js"],
    ["--site-isolation-allow-all", "--site-isolation-deny-all"],
    ["--site-isolation-allow-all", "extra"], ["--no-such-option"],
    ["--remount"],
])
def test_usage_errors_exit_2_and_change_nothing(server, args):
    before = state(server)
    r = server.cagefsctl(*args)
    assert r.returncode == 2
    assert "usage:" in r.stderr
    assert state(server) == before


def test_a_mistyped_option_is_named(server):
    r = server.cagefsctl("--site-isolation-ena", "example.com")
    assert r.returncode == 2
    assert r.stderr.endswith(
        "cagefsctl: error: unrecognized option --site-isolation-ena\n")
    r = server.run(["selectorctl", "--domian", "example.com", "--list"],
                   check=False)
    assert r.returncode == 2 and "unrecognized option --domian" in r.stderr


def test_unknown_user(server):
    assert fails(server, "--site-isolation-allow", "nosuch") == \
        "User nosuch does not exist"
    assert not state(server)["flag"]


@pytest.mark.parametrize("user", ["sysacct", "nobody", "root"])
def test_user_below_min_uid_or_nobody(server, user):
    assert fails(server, "--site-isolation-allow", user) == \
        f"User {user} is not a hosting account"
    assert not state(server)["flag"]


def test_several_users_checked_before_any_change(server):
    assert fails(server, "--site-isolation-allow", "john", "nosuch") == \
        "User nosuch does not exist"
    assert state(server) == {"flag": False, "allow_all": False, "deny_all": False,
                             "denied": None, "allowed": None}


def test_bad_user_name_is_refused(server):
    err = fails(server, "--site-isolation-allow", "../../etc")
    assert err
    assert not state(server)["flag"]


# ---- command × state -------------------------------------------------------
#
# Every cell of SPEC §2's table, and where it is tested (NI: not initialized,
# FP: flag present, FA: flag absent with a mode set):
#   allow-all   NI, FA  test_allow_all_in_every_state (flag, both list dirs,
#                       mode); the user command registered: test_daemon.py::
#                       test_socket_is_served_while_the_flag_exists
#               FP      test_allow_all_keeps_lists_when_flag_present
#   deny-all    NI, FA  test_deny_all_in_every_state,
#                       test_deny_all_clears_the_allowed_list
#               FP      the same, test_site_commands.py::
#                       test_deny_all_disables_every_site; unregistered:
#                       test_socket_is_served_while_the_flag_exists
#   allow U     NI, FA  test_allow_user_in_every_state
#               FP      test_allow_user_in_allow_all_removes_from_denied,
#                       test_allow_user_in_deny_all_adds_to_allowed
#   deny U      NI, FA  test_deny_user_without_flag_is_an_error
#               FP      test_deny_user_message,
#                       test_deny_user_in_deny_all_removes_from_allowed,
#                       test_site_commands.py::test_deny_user_disables_their_sites_only
#   toggle-mode all     test_toggle_mode_in_every_state; sites untouched:
#                       test_site_commands.py::test_mode_change_never_drops_isolation
#   enable D    NI, FA  test_enable_without_flag_is_an_error
#               FP      test_enable_for_a_denied_user_is_refused,
#                       test_enable_in_deny_all_needs_the_owner_allowed
#   disable, list, regenerate, remount: all
#                       test_disable_list_regenerate_remount_work_in_every_state;
#                       leftovers cleaned: test_crash_safety.py::
#                       test_disable_and_regenerate_clean_up_leftovers

def _not_initialized(sbx):
    pass


def _flag_present(sbx):
    ok(sbx, "--site-isolation-allow-all")


def _flag_absent_mode_set(sbx):
    ok(sbx, "--site-isolation-allow-all")
    ok(sbx, "--site-isolation-deny-all")


STATES = {"not-initialized": _not_initialized, "flag-present": _flag_present,
          "flag-absent-mode-set": _flag_absent_mode_set}


@pytest.mark.parametrize("start", list(STATES))
def test_allow_all_in_every_state(server, start):
    STATES[start](server)
    ok(server, "--site-isolation-allow-all")
    s = state(server)
    assert s["flag"] and s["allow_all"] and not s["deny_all"]
    assert s["denied"] is not None and s["allowed"] is not None


@pytest.mark.parametrize("start", list(STATES))
def test_deny_all_in_every_state(server, start):
    STATES[start](server)
    ok(server, "--site-isolation-deny-all")
    s = state(server)
    assert not s["flag"] and s["deny_all"] and not s["allow_all"]
    assert not s["allowed"]


def test_allow_all_keeps_lists_when_flag_present(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-deny", "jane")
    ok(server, "--site-isolation-toggle-mode")
    ok(server, "--site-isolation-allow-all")
    assert state(server)["denied"] == ["jane"]


@pytest.mark.parametrize("start", list(STATES))
def test_allow_user_in_every_state(server, start):
    STATES[start](server)
    ok(server, "--site-isolation-allow", "john")
    s = state(server)
    assert s["flag"]
    if start == "flag-present":      # allow_all: john removed from denied
        assert s["allow_all"] and "john" not in s["denied"]
    else:                             # as not initialized: deny_all, john allowed
        assert s["deny_all"] and s["allowed"] == ["john"]


def test_allow_user_in_allow_all_removes_from_denied(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-deny", "john", "jane")
    ok(server, "--site-isolation-allow", "john")
    assert state(server)["denied"] == ["jane"]


@pytest.mark.parametrize("start", ["not-initialized", "flag-absent-mode-set"])
def test_deny_user_without_flag_is_an_error(server, start):
    STATES[start](server)
    before = state(server)
    assert fails(server, "--site-isolation-deny", "john") == \
        "Website isolation is not enabled"
    assert state(server) == before


def test_deny_user_in_deny_all_removes_from_allowed(server):
    ok(server, "--site-isolation-allow", "john", "jane")
    ok(server, "--site-isolation-deny", "john")
    assert state(server)["allowed"] == ["jane"]


@pytest.mark.parametrize("start", list(STATES))
def test_toggle_mode_in_every_state(server, start):
    STATES[start](server)
    before = state(server)
    out = ok(server, "--site-isolation-toggle-mode")
    s = state(server)
    if start == "not-initialized":
        assert out.endswith("'allow_all'.\n") and s["flag"] and s["allow_all"]
    elif start == "flag-present":
        assert s["deny_all"] and s["flag"]
        assert (s["denied"], s["allowed"]) == (before["denied"], before["allowed"])
    else:
        assert s["allow_all"] and not s["flag"]


@pytest.mark.parametrize("start", ["not-initialized", "flag-absent-mode-set"])
def test_enable_without_flag_is_an_error(server, start):
    STATES[start](server)
    assert fails(server, "--site-isolation-enable", "example.com") == \
        "Website isolation is not enabled"


def test_enable_for_a_denied_user_is_refused(server):
    ok(server, "--site-isolation-allow", "jane")
    assert fails(server, "--site-isolation-enable", "example.com") == \
        "Website isolation is not allowed for user john"
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"


def test_enable_unknown_domain(server):
    ok(server, "--site-isolation-allow-all")
    assert fails(server, "--site-isolation-enable", "nosuch.example") == \
        "Please specify existing domain name and try again"


def test_enable_bad_domain_name_changes_nothing(server):
    ok(server, "--site-isolation-allow-all")
    err = fails(server, "--site-isolation-enable", "example.com", "../../etc")
    assert err
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"


@pytest.mark.parametrize("start", list(STATES))
def test_disable_list_regenerate_remount_work_in_every_state(server, start):
    STATES[start](server)
    before = state(server)
    assert ok(server, "--site-isolation-disable", "example.com") == \
        "Website isolation was disabled for domain(s),\nexample.com\n"
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"
    assert ok(server, "--site-isolation-regenerate", "john") == \
        "Regenerated configuration website isolation for users:\njohn\n"
    assert ok(server, "--remount", "john") == \
        "Remounted website isolation for user(s): john\n"
    assert ok(server, "--remount-all") == \
        "Remounted website isolation for all users.\n"
    assert state(server) == before


def test_allow_user_in_deny_all_adds_to_allowed(server):
    ok(server, "--site-isolation-allow", "john")
    ok(server, "--site-isolation-allow", "jane")
    s = state(server)
    assert s["flag"] and s["deny_all"] and s["allowed"] == ["jane", "john"]
    ok(server, "--site-isolation-enable", "example.com", "jane.example.net")


def test_enable_in_deny_all_needs_the_owner_allowed(server):
    ok(server, "--site-isolation-allow", "john")
    assert fails(server, "--site-isolation-enable", "jane.example.net") == \
        "Website isolation is not allowed for user jane"
    ok(server, "--site-isolation-enable", "example.com")


@pytest.mark.parametrize("start", ["not-initialized", "flag-present-deny-all"])
def test_deny_all_clears_the_allowed_list(server, start):
    if start == "flag-present-deny-all":
        ok(server, "--site-isolation-allow", "john", "jane")
        ok(server, "--site-isolation-enable", "example.com")
    else:
        # An allowed list left by CageFS tooling, no mode yet.
        server.run(["mkdir", "-p", ALLOWED])
        server.run(["touch", f"{ALLOWED}/john"])
    ok(server, "--site-isolation-deny-all")
    s = state(server)
    assert (s["flag"], s["allow_all"], s["deny_all"], s["allowed"]) == \
        (False, False, True, [])
    assert ok(server, "--site-isolation-list") == \
        "No users with enabled Website isolation\n"
    # And the next allow starts from there: only the user named.
    ok(server, "--site-isolation-allow", "jane")
    assert state(server)["allowed"] == ["jane"]


def test_json_is_only_for_list(server):
    before = state(server)
    r = server.cagefsctl("--site-isolation-allow-all", "--json")
    assert r.returncode == 2
    assert "usage:" in r.stderr and "--json is only for" in r.stderr
    assert r.stdout == ""
    assert state(server) == before


# ---- owners and names --------------------------------------------------------

@pytest.mark.parametrize("owner, error", [
    ("ghost", "User ghost does not exist"),
    ("sysacct", "User sysacct is not a hosting account"),
])
def test_enable_needs_the_owner_to_be_a_hosting_account(server, owner, error):
    server.set_domains({**DOMAINS, "odd.example": (owner, f"/home/{owner}/www")})
    ok(server, "--site-isolation-allow-all")
    before = server.read("/var/lib/siteiso/state.json")
    assert fails(server, "--site-isolation-enable", "example.com", "odd.example") \
        == error
    assert server.read("/var/lib/siteiso/state.json") == before


def test_idn_names_are_shown_as_a_labels(server):
    server.set_domains({**DOMAINS,
                        "xn--bcher-kva.example": ("john", "/home/john/blog")})
    ok(server, "--site-isolation-allow-all")
    assert ok(server, "--site-isolation-enable", "BÜCHER.example.",
              "bücher.example") == \
        "Website isolation was enabled for domain(s),\nxn--bcher-kva.example\n"
    assert ok(server, "--site-isolation-list", "john") == (
        "Domains with enabled website isolation for user john:\n"
        "xn--bcher-kva.example\n")
    # The entry (static C, no IDNA) takes the name as list prints it.
    r = server.run(["cagefs_enter_site", "XN--BCHER-KVA.example.", "true"],
                   user="john", check=False)
    assert r.returncode == 0, r.stderr
    assert ok(server, "--site-isolation-disable", "Bücher.Example") == \
        "Website isolation was disabled for domain(s),\nxn--bcher-kva.example\n"


def test_list_skips_users_without_sites(server):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "blog.example.org")
    assert ok(server, "--site-isolation-list", "jane", "john") == (
        "Domains with enabled website isolation for user john:\nblog.example.org\n")
    assert ok(server, "--site-isolation-list", "jane") == \
        "No users with enabled Website isolation\n"
    assert json.loads(ok(server, "--site-isolation-list", "jane", "--json")) == \
        {"users": {}}


@pytest.mark.parametrize("args, error", [
    (["--site-isolation-deny", "jane", "nosuch"], "User nosuch does not exist"),
    (["--site-isolation-deny", "john", "sysacct"],
     "User sysacct is not a hosting account"),
    (["--site-isolation-allow", "jane", "bad/name"], None),
    (["--site-isolation-enable", "jane.example.net", "nosuch.example"],
     "Please specify existing domain name and try again"),
    (["--site-isolation-disable", "example.com", "nosuch.example"],
     "Please specify existing domain name and try again"),
    (["--site-isolation-disable", "example.com", "a..b"], None),
    (["--site-isolation-regenerate", "john", "nosuch"], "User nosuch does not exist"),
    (["--remount", "john", "sysacct"], "User sysacct is not a hosting account"),
    (["--site-isolation-list", "john", "nosuch"], "User nosuch does not exist"),
])
def test_every_name_is_checked_before_any_change(server, args, error):
    ok(server, "--site-isolation-allow-all")
    ok(server, "--site-isolation-enable", "example.com")
    before = (state(server), server.read("/var/lib/siteiso/state.json"))
    r = server.cagefsctl(*args)
    assert r.returncode == 1 and r.stdout == ""
    if error is None:
        assert r.stderr.startswith("invalid "), r.stderr
    else:
        assert r.stderr.strip() == error
    assert (state(server), server.read("/var/lib/siteiso/state.json")) == before
    enter = server.run(["cagefs_enter_site", "example.com", "true"], user="john",
                       check=False)
    assert enter.returncode == 0, enter.stderr
