"""Cron scoping (SPEC §7) as pure functions: where each line runs, the
crontab's SHELL line, the map the cron shell reads."""

from __future__ import annotations

import os
import re
import stat

import pytest

from siteiso.plan.sites import SiteInput
from siteiso.service import cron
from siteiso.service.cron import (
    COMMENT,
    CRON_SHELL,
    ENTRY,
    CronSite,
    Verdict,
    classify,
    command_paths,
    cron_sites,
    fix_spool_text,
    format_map,
    parse_map,
)

pytestmark = pytest.mark.pure

HOME = "/home/john"


def sites_from_header(text: str) -> list[CronSite]:
    """The sites the case file's header names: `domain = /docroot`."""
    header = " ".join(line for line in text.splitlines() if line.startswith("# "))
    pairs = re.findall(r"([a-z0-9.-]+\.[a-z]+) = (/\S+?)[,\s]", header + " ")
    assert len(pairs) == 3, pairs
    inputs = [SiteInput(token=f"t{i}", docroot=d, names=(n,))
              for i, (n, d) in enumerate(pairs)]
    return cron_sites(inputs, HOME)


SITES = cron_sites([
    SiteInput("t0", "/home/john/public_html", ("example.com", "www.example.com")),
    SiteInput("t1", "/home/john/public_html/shop", ("shop.example.com",)),
    SiteInput("t2", "/home/john/blog", ("blog.example.org",)),
    SiteInput("t3", "/home/john/apps/shop2/public", ("app.example.net",)),
], HOME)


def where(command: str, env: dict[str, str] | None = None) -> str:
    v = classify(command, SITES, HOME, {"HOME": HOME, **(env or {})})
    if v.where == "site":
        assert v.site is not None
        return v.site.names[0]
    return v.where


def crontab_lines(text: str) -> list[tuple[str, dict[str, str], str]]:
    """(command, environment at that line, expectation) per job line."""
    env = {"HOME": HOME, "SHELL": "/bin/sh"}
    out: list[tuple[str, dict[str, str], str]] = []
    for line in text.splitlines():
        if line.startswith("#=> "):
            cmd, at, _ = out[-1]
            out[-1] = (cmd, at, line[4:].strip())
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        elif m := re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line):
            env[m.group(1)] = m.group(2).strip()
        else:
            fields = line.split(None, 1 if line.startswith("@") else 5)
            out.append((fields[-1], dict(env), ""))
    return out


# ---- the shared cases ---------------------------------------------------------

def test_every_line_of_the_cases(cases):
    text = (cases / "crontab.txt").read_text()
    sites = sites_from_header(text)
    jobs = crontab_lines(text)
    assert len(jobs) == 8 and all(expect for _, _, expect in jobs)
    docroots = {s.names[0]: s.docroot for s in sites}
    for command, env, expect in jobs:
        v = classify(command, sites, HOME, env)
        if expect == "cage":
            assert v == Verdict("cage"), command
        elif expect.startswith("refused"):
            # Never a view that sees both docroots: refused, or one site.
            assert v.where in ("refused", "site"), command
            assert v.where == "refused", "siteiso refuses it"  # our choice
            assert "example.com" in v.reason and "blog.example.org" in v.reason
            assert "\n" not in v.reason
        else:
            assert v.where == "site" and v.site is not None, (command, v)
            assert v.site.names == (expect,), command
            assert v.site.docroot == docroots[expect]


def test_cases_env_lines_apply_to_the_lines_after(cases):
    jobs = crontab_lines((cases / "crontab.txt").read_text())
    assert [env.get("SITEISO_SITE") for _, env, _ in jobs][-1] == "blog.example.org"
    assert all("SITEISO_SITE" not in env for _, env, _ in jobs[:-1])


# ---- which site --------------------------------------------------------------

@pytest.mark.parametrize("command, expect", [
    ("php /home/john/public_html/wp-cron.php", "example.com"),
    ("php /home/john/public_html/shop/cron.php", "shop.example.com"),
    ("php /home/john/public_html/shopping/cron.php", "example.com"),
    ("php /home/john/public_html", "example.com"),
    ("php /home/john/public_html/", "example.com"),
    ("ls /home/john", "cage"),
    ("ls /home/john/", "cage"),
    ("/home/john/bin/x.sh /tmp/y /var/log/z", "cage"),
    ("date", "cage"),
    ("", "cage"),
    # app root: the docroot's parent is the site's too (§4.2)
    ("cd /home/john/apps/shop2 && php artisan schedule:run", "app.example.net"),
    ("php /home/john/apps/x.php", "cage"),
    # lexical normalization
    # A path spelled through `..` names two sites' paths: refused (the text
    # pass counts every site path written in the line).
    ("php /home/john/blog/../public_html/shop/x.php", "refused"),
    ("php /home/john//blog/./x.php", "blog.example.org"),
    ("php /home/john/public_html/shop/../index.php", "refused"),
])
def test_longest_prefix(command, expect):
    assert where(command) == expect


@pytest.mark.parametrize("command, expect", [
    ("cd /home/john/blog && php artisan schedule:run", "blog.example.org"),
    ("cd /home/john/blog; ./run.sh", "blog.example.org"),
    ("cd /home/john/public_html/shop/ ; ./backup.sh", "shop.example.com"),
    ("cd /home/john/public_html && ./shop/backup.sh", "refused"),
    ("cd /home/john/public_html && php wp-cron.php", "example.com"),
    ("cd blog && make", "blog.example.org"),                 # relative to $HOME
    ("cd public_html; cd shop; ls", "refused"),              # both were cwd
    ("cd ~/blog && ls", "blog.example.org"),
    ("cd $HOME/blog && ls", "blog.example.org"),
    ("cd && php public_html/x.php", "example.com"),
    ("cd -- /home/john/blog && ls", "blog.example.org"),
    ("cd -P /home/john/blog && ls", "blog.example.org"),
    ("(cd /home/john/blog && make) ; ./bin/x", "blog.example.org"),
    ("(cd /home/john/blog && make) ; ./public_html/x", "refused"),
    ("php public_html/wp-cron.php", "example.com"),          # cron's cwd: $HOME
    ("./blog/x.sh", "blog.example.org"),
    ("tar czf backup.tgz blog", "blog.example.org"),         # words are paths
    ("cd ~ && tar czf all.tgz public_html blog", "refused"),
    ("git -C public_html pull", "example.com"),
    ("wp --path=public_html cron event run", "example.com"),
    ("wp cron event run --path=/home/john/blog", "blog.example.org"),
    ("echo public_html/shop", "shop.example.com"),
    ("cd /home/john/blog && find . -name '*.log' -delete", "blog.example.org"),
    ("cd /home/john && rm -rf ./*/cache", "refused"),
])
def test_cd_and_relative_paths(command, expect):
    assert where(command) == expect


@pytest.mark.parametrize("command, expect", [
    ("php /home/john/public_html/a.php; php /home/john/blog/b.php", "refused"),
    ("php /home/john/public_html/a.php && php /home/john/public_html/b.php",
     "example.com"),
    ("php /home/john/blog/a.php || mail -s x john", "blog.example.org"),
    ("php /home/john/blog/a.php | gzip > /home/john/public_html/x.gz", "refused"),
    ("php /home/john/blog/a.php & php /home/john/public_html/shop/b.php",
     "refused"),
    ("php /home/john/blog/a.php\nphp /home/john/public_html/b.php", "refused"),
    ("cp /home/john/public_html/a /home/john/public_html/shop/a", "refused"),
])
def test_chains(command, expect):
    assert where(command) == expect


@pytest.mark.parametrize("command, expect", [
    ("php /home/john/blog/x.php >> /home/john/blog/log 2>&1", "blog.example.org"),
    ("php /home/john/bin/x.php >> /home/john/blog/log 2>&1", "blog.example.org"),
    ("php /home/john/bin/x.php >>/home/john/blog/log", "blog.example.org"),
    ("php /home/john/bin/x.php 2>/home/john/blog/err", "blog.example.org"),
    ("php /home/john/bin/x.php < /home/john/blog/in", "blog.example.org"),
    ("php /home/john/blog/x.php >/dev/null 2>&1", "blog.example.org"),
    ("php /home/john/blog/x.php > /home/john/public_html/out", "refused"),
    ("php /home/john/blog/x.php 2>&1 >&- 1>&2", "blog.example.org"),
    # Site paths written anywhere count (a `sh -c '…'` string is text too):
    # data and quoted words run in that site's view, never in the cage.
    ("cat <<< /home/john/public_html/x", "example.com"),
])
def test_redirections(command, expect):
    assert where(command) == expect


@pytest.mark.parametrize("command, expect", [
    ("php '/home/john/blog/x.php'", "blog.example.org"),
    ('php "/home/john/blog/x.php"', "blog.example.org"),
    ("php /home/john/bl'og'/x.php", "blog.example.org"),
    ("php /home/john/blog/my\\ file.php", "blog.example.org"),
    ("php '/home/john/my blog/x.php'", "cage"),
    ("echo 'php /home/john/blog/x.php'", "blog.example.org"),
    ('echo "a; php /home/john/blog/x.php"', "blog.example.org"),
    ("php /home/john/blog/x.php # /home/john/public_html", "refused"),
    ("php /home/john/blog/x.php#notacomment", "blog.example.org"),
    ("wget -q -O /dev/null \"https://example.com/cron.php?key=1\"", "cage"),
    ("curl --url=https://example.com/home/john/blog", "blog.example.org"),
    ("curl -s http://localhost/home/john/blog/x", "blog.example.org"),
])
def test_quoting(command, expect):
    assert where(command) == expect


@pytest.mark.parametrize("command, env, expect", [
    ("php $HOME/blog/x.php", {}, "blog.example.org"),
    ("php ${HOME}/blog/x.php", {}, "blog.example.org"),
    ("php \"$HOME/blog/x.php\"", {}, "blog.example.org"),
    ("php '$HOME/blog/x.php'", {}, "cage"),                 # not expanded
    ("php ~/blog/x.php", {}, "blog.example.org"),
    ("php ~john/blog/x.php", {}, "blog.example.org"),
    ("php '~/blog/x.php'", {}, "blog.example.org"),
    ("php $DIR/x.php", {"DIR": "/home/john/blog"}, "blog.example.org"),
    ("php $DIR/x.php", {}, "cage"),                         # unset: empty
    ("php ${DIR:-/home/john/blog}/x.php", {}, "blog.example.org"),
    ("php ${DIR:-/home/john/blog}/x.php", {"DIR": "/home/john/public_html"},
     "example.com"),
    ("cd $SITE && php x.php", {"SITE": "/home/john/public_html/shop"},
     "shop.example.com"),
    ("DIR=/home/john/blog php x.php", {}, "blog.example.org"),
    ("PHPRC=/home/john/blog/php.ini:/etc/php php x", {}, "blog.example.org"),
    ("php -d include_path=/home/john/blog/lib x", {}, "blog.example.org"),
    ("php --config=/home/john/blog/c x", {}, "blog.example.org"),
    ("php -dopen_basedir=~/blog x", {}, "blog.example.org"),
])
def test_variables(command, env, expect):
    assert where(command, env) == expect


@pytest.mark.parametrize("command, expect", [
    ("rm -f /home/john/public_html/cache/*", "example.com"),
    ("rm -f /home/john/public_html/shop/cache/*", "shop.example.com"),
    ("php /home/john/public_html/*/cron.php", "refused"),    # may be shop's
    ("ls /home/john/*", "refused"),
    ("ls /home/john/b*", "blog.example.org"),
    ("ls /home/john/bin/*", "cage"),
    ("php /home/john/blog/$(date +%F).php", "blog.example.org"),
    ("php /home/john/blog/`date`.php", "blog.example.org"),
    ("php /home/john/$(cat which)/x.php", "refused"),         # could be anywhere
    ("php $(echo /home/john/blog/x.php)", "blog.example.org"),
    ("php `echo /home/john/blog/x.php`", "blog.example.org"),
    ("tar czf /home/john/backups/$(date +%F).tgz -C /home/john/blog .",
     "blog.example.org"),
    ("php /home/john/blog/$1", "blog.example.org"),
])
def test_wildcards_and_substitutions(command, expect):
    assert where(command) == expect


# ---- SITEISO_SITE -------------------------------------------------------------

@pytest.mark.parametrize("command, site, expect", [
    ("/home/john/bin/report.sh", "blog.example.org", "blog.example.org"),
    ("/home/john/bin/report.sh", "BLOG.Example.ORG.", "blog.example.org"),
    ("/home/john/bin/report.sh", "/home/john/blog/", "blog.example.org"),
    ("/home/john/bin/report.sh", "www.example.com", "example.com"),
    ("/home/john/bin/report.sh", "", "cage"),                # empty: guess
    ("/home/john/bin/report.sh", "nosuch.example", "cage"),  # not isolated: guess
    ("php /home/john/blog/x.php", "blog.example.org", "blog.example.org"),
    # binds only if the command touches no other site's paths
    ("php /home/john/public_html/x.php", "blog.example.org", "example.com"),
    ("php /home/john/public_html/shop/x.php", "example.com", "shop.example.com"),
    ("php /home/john/public_html/a; php /home/john/blog/b", "blog.example.org",
     "refused"),
    ("wget -q -O /dev/null https://example.com/", "shop.example.com",
     "shop.example.com"),
])
def test_siteiso_site(command, site, expect):
    assert where(command, {"SITEISO_SITE": site}) == expect


def test_siteiso_site_in_a_crontab_until_the_next():
    text = ("SITEISO_SITE=blog.example.org\n* * * * * /home/john/bin/a\n"
            "* * * * * /home/john/bin/b\nSITEISO_SITE=\n* * * * * /home/john/bin/c\n"
            "SITEISO_SITE=example.com\n* * * * * /home/john/bin/d\n")
    got = [where(cmd, env) for cmd, env, _ in crontab_lines(text)]
    assert got == ["blog.example.org", "blog.example.org", "cage", "example.com"]


def test_refusal_names_the_sites_in_one_line():
    v = classify("php /home/john/public_html/a.php; php /home/john/blog/b.php",
                 SITES, HOME, {})
    assert v.where == "refused" and v.site is None
    assert v.reason.startswith("siteiso: ")
    assert "example.com" in v.reason and "blog.example.org" in v.reason
    assert "\n" not in v.reason


def test_command_paths_order_and_kinds():
    assert command_paths("cd /home/john/blog && php x > /tmp/o 2>&1", HOME) == \
        ["/home/john/blog", "/tmp/o", "/home/john/blog/php", "/home/john/blog/x"]
    assert command_paths("php -q x", HOME) == ["/home/john/php", "/home/john/x"]
    assert command_paths("php x", HOME, cwd="/srv") == ["/srv/php", "/srv/x"]
    assert sorted(command_paths("echo $(date) `id` $1 ~jane/x '' \"\"", HOME)) == \
        ["/home/john/date", "/home/john/echo", "/home/john/id"]


@pytest.mark.parametrize("env, command, expect", [
    # A PATH (or any variable) reaching into a site: the line is that site's,
    # so the cage never runs a program a site can write.
    ({"PATH": "/home/john/public_html/vendor/bin:/usr/bin:/bin"}, "wp cron",
     "example.com"),
    ({"BASH_ENV": "/home/john/blog/.env"}, "date", "blog.example.org"),
    ({"PATH": "/home/john/public_html/vendor/bin:/usr/bin",
      "SITEISO_SITE": "blog.example.org"}, "wp cron", "example.com"),
    ({"PATH": "/home/john/public_html/bin:/usr/bin"}, "php /home/john/blog/x",
     "refused"),
    ({"PATH": "/home/john/bin:/usr/local/bin:/usr/bin:/bin", "MAILTO": "john",
      "SHELL": CRON_SHELL, "LOGNAME": "john", "PWD": "/home/john/blog"},
     "date", "cage"),
    ({"URL": "https://example.com/home/john/blog"}, "date", "cage"),
])
def test_the_lines_variables_count(env, command, expect):
    assert where(command, env) == expect


def test_start_directory():
    v = classify("./run.sh", SITES, HOME, {}, cwd="/home/john/blog")
    assert v.where == "site" and v.site is not None and v.site.names[0] == \
        "blog.example.org"
    assert classify("./run.sh", SITES, HOME, {}).where == "cage"


# ---- the cron shell's command line -------------------------------------------

def test_entry_argv_site_and_cage():
    blog = next(s for s in SITES if s.names[0] == "blog.example.org")
    env = {"PATH": "/home/john/bin:/usr/bin:/bin"}
    assert cron.entry_argv(Verdict("site", blog), "make", env) == [
        ENTRY, "enter", "/home/john/blog", "/usr/bin/env",
        "PATH=/home/john/bin:/usr/bin:/bin", "SHELL=/bin/sh", "/bin/sh", "-c", "make"]
    assert cron.entry_argv(Verdict("cage"), "ls; ls", {"SITEISO_SHELL": "/bin/bash"}) \
        == [ENTRY, "cage", "/usr/bin/env", "PATH=/usr/bin:/bin", "SHELL=/bin/bash",
            "/bin/bash", "-c", "ls; ls"]
    assert cron.entry_argv(Verdict("cage"), "x", {"SITEISO_SHELL": "bash"})[4] == \
        "SHELL=/bin/sh"


def test_shell_refuses_a_bad_command_line(capsys):
    assert cron.shell_main(["-x", "y"]) == 2
    assert cron.shell_main(["-c"]) == 2
    assert "usage" in capsys.readouterr().err


def as_account(monkeypatch) -> int:
    """The cron shell refuses root: run it as some account's uid."""
    uid = os.getuid() or 4242
    monkeypatch.setattr(os, "getuid", lambda: uid)
    return uid


def test_shell_without_a_map_refuses(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cron, "MAP_DIR", str(tmp_path / "none"))
    as_account(monkeypatch)
    assert cron.shell_main(["-c", "php /home/john/blog/x.php"]) == cron.REFUSED_EXIT
    err = capsys.readouterr().err
    assert err.startswith("siteiso: cron line not run") and err.count("\n") == 1


def test_shell_refuses_what_it_cannot_read(monkeypatch, tmp_path, capsys):
    uid = as_account(monkeypatch)
    (tmp_path / str(uid)).write_text(format_map(HOME, SITES))
    monkeypatch.setattr(cron, "MAP_DIR", str(tmp_path))
    assert cron.shell_main(["-c", "echo " + "$(" * 5000]) == cron.REFUSED_EXIT
    err = capsys.readouterr().err
    assert err.startswith("siteiso: cron line not run") and err.count("\n") == 1
    (tmp_path / str(uid)).write_text("siteiso-cron\t1\nhome\t/home/john\nbad\n")
    assert cron.shell_main(["-c", "date"]) == cron.REFUSED_EXIT
    assert "cannot read" in capsys.readouterr().err


def test_shell_refuses_two_sites_and_execs_the_entry(monkeypatch, tmp_path, capsys):
    uid = as_account(monkeypatch)
    (tmp_path / str(uid)).write_text(format_map(HOME, SITES))
    monkeypatch.setattr(cron, "MAP_DIR", str(tmp_path))
    assert cron.shell_main(["-c", "ls /home/john/blog /home/john/public_html"]) \
        == cron.REFUSED_EXIT
    assert "2 websites" in capsys.readouterr().err
    ran: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        ran.append(argv)
        raise OSError(2, "No such file or directory")
    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setenv("SITEISO_SITE", "blog.example.org")
    assert cron.shell_main(["-c", "/home/john/bin/report.sh"]) == cron.REFUSED_EXIT
    assert ran[0][:3] == [ENTRY, "enter", "/home/john/blog"]
    assert ran[0][-2:] == ["-c", "/home/john/bin/report.sh"]


# ---- the map ----------------------------------------------------------------------

def test_map_round_trip():
    home, sites = parse_map(format_map(HOME, SITES))
    assert home == HOME and sites == SITES
    app = next(s for s in sites if s.names == ("app.example.net",))
    assert app.paths == ("/home/john/apps/shop2",)          # app root holds docroot


@pytest.mark.parametrize("text", [
    "", "siteiso-cron\t2\nhome\t/home/john\n", "siteiso-cron\t1\n",
    "siteiso-cron\t1\nhome\t/home/john\nsite\t/a\n",
    "siteiso-cron\t1\nhome\t/home/john\nsite\trelative\tx.com\t/a\n",
    "siteiso-cron\t1\nhome\t/home/john\n\n",
    "siteiso-cron\t1\nhome\t/home/john\nbogus\n",
])
def test_malformed_map_is_refused(text):
    with pytest.raises(ValueError):
        parse_map(text)


def test_map_names_paths_through_a_symlinked_home_too():
    sites = cron_sites([SiteInput("t0", "/data/john/public_html", ("a.com",))],
                       HOME, "/data/john")
    assert sites[0].docroot == "/data/john/public_html"
    assert set(sites[0].paths) == {"/data/john/public_html", "/home/john/public_html"}
    assert classify("php /home/john/public_html/x", sites, HOME).site == sites[0]


def test_map_refuses_control_characters():
    with pytest.raises(ValueError):
        format_map(HOME, [CronSite("/home/john/a\tb", ("a.com",), ("/home/john/a",))])


# ---- the spool ---------------------------------------------------------------

DEBIAN_HEADER = ("# DO NOT EDIT THIS FILE - edit the master and reinstall.\n"
                 "# (/tmp/crontab.x installed on Thu Dec  4 16:39:00 2025)\n"
                 "# (Cron version -- $Id: crontab.c,v 2.13 1994/01/17 03:20:37 vixie"
                 " Exp $)\n")
OURS = f"{COMMENT}\nSHELL={CRON_SHELL}\n"


def test_shell_line_goes_after_debians_header_once():
    user = "MAILTO=john\n*/5 * * * * php /home/john/public_html/wp-cron.php\n"
    fixed = fix_spool_text(DEBIAN_HEADER + user, True)
    assert fixed == DEBIAN_HEADER + OURS + user
    assert fix_spool_text(fixed, True) == fixed
    assert fix_spool_text(user, True) == OURS + user
    assert fix_spool_text("", True) == OURS


def test_shell_line_put_back_when_dropped_or_moved():
    user = "* * * * * date\n"
    assert fix_spool_text(DEBIAN_HEADER + user + OURS, True) == \
        DEBIAN_HEADER + OURS + user
    assert fix_spool_text(f"{COMMENT}\n" + user, True) == OURS + user
    assert fix_spool_text(f"SHELL={CRON_SHELL}\n" + user, True) == OURS + user
    assert fix_spool_text(f'SHELL = "{CRON_SHELL}"\n' + user, True) == OURS + user


def test_users_own_shell_is_kept_inside_the_view():
    text = DEBIAN_HEADER + "SHELL=/bin/bash\n* * * * * date\n  SHELL = '/bin/zsh'\n"
    fixed = fix_spool_text(text, True)
    assert fixed == DEBIAN_HEADER + OURS + "SITEISO_SHELL=/bin/bash\n* * * * * date\n" \
        "  SITEISO_SHELL = '/bin/zsh'\n"
    assert fix_spool_text(fixed, True) == fixed
    assert fix_spool_text(fixed, False) == text


def test_strip_leaves_other_crontabs_alone():
    text = DEBIAN_HEADER + "MAILTO=x\n* * * * * SHELL=/bin/bash date\n"
    assert fix_spool_text(text, False) == text
    assert fix_spool_text(text, True) == DEBIAN_HEADER + OURS + \
        "MAILTO=x\n* * * * * SHELL=/bin/bash date\n"
    assert fix_spool_text(DEBIAN_HEADER + OURS + "* * * * * date\n", False) == \
        DEBIAN_HEADER + "* * * * * date\n"


def test_ensure_keeps_owner_mode_and_replaces_by_rename(tmp_path):
    spool = tmp_path / "crontabs"
    spool.mkdir()
    f = spool / "john"
    f.write_text(DEBIAN_HEADER + "* * * * * date\n")
    os.chmod(f, 0o600)
    before = os.stat(f)
    assert cron.ensure_cron_shell("john", isolated=True, spool=str(spool))
    after = os.stat(f)
    assert f.read_text() == DEBIAN_HEADER + OURS + "* * * * * date\n"
    assert stat.S_IMODE(after.st_mode) == 0o600 and after.st_nlink == 1
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino
    assert int(after.st_mtime) > int(before.st_mtime)    # cron sees the change
    assert not cron.ensure_cron_shell("john", isolated=True, spool=str(spool))
    assert sorted(os.listdir(spool)) == ["john"]
    assert not cron.ensure_cron_shell("jane", isolated=True, spool=str(spool))
    assert not cron.ensure_cron_shell("../john", isolated=True, spool=str(spool))
    assert cron.remove_cron_shells(str(spool)) == ["john"]
    assert f.read_text() == DEBIAN_HEADER + "* * * * * date\n"


def test_ensure_leaves_what_cron_would_not_read(tmp_path):
    spool = tmp_path / "crontabs"
    spool.mkdir()
    (tmp_path / "elsewhere").write_text("* * * * * date\n")
    os.symlink(tmp_path / "elsewhere", spool / "john")
    os.link(tmp_path / "elsewhere", spool / "jane")
    assert not cron.ensure_cron_shell("john", isolated=True, spool=str(spool))
    assert not cron.ensure_cron_shell("jane", isolated=True, spool=str(spool))
    assert (tmp_path / "elsewhere").read_text() == "* * * * * date\n"
