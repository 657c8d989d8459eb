"""Cron (SPEC §7) end to end: Debian's cron inside the sandbox runs john's
crontab (the shared cases) through siteiso's cron shell."""

from __future__ import annotations

import re
import time

import pytest
from testlib import ok

pytestmark = pytest.mark.kernel

CRON_SHELL = "/opt/siteiso/venv/bin/siteiso-cron-shell"
SPOOL = "/var/spool/cron/crontabs/john"
PROBE = "/etc/siteiso-cron-probe"
MAILDIR = "/tmp/mail"

# Appended to each job: records what the view the line ran in shows, in
# that view's /tmp (each view has its own: the file's place says where).
PROBE_SH = r"""#!/bin/sh
{
  echo "homes: $(ls /home | tr '\n' ' ')"
  for f in public_html public_html/shop blog; do
    test -e "$HOME/$f/index.php" && echo "sees $f"
  done
  echo "user: $(id -un)"
} > "/tmp/cron-probe-$1"
"""
SENDMAIL = """#!/bin/sh
f=$(mktemp /tmp/mail/m.XXXXXX) && cat > "$f"
"""
# What the scripts the cases name do: leave a mark next to themselves.
SCRIPTS = {
    "/home/john/public_html/wp-cron.php": "<?php touch(__FILE__ . '.ran');\n",
    "/home/john/public_html/shop/cron.php": "<?php touch(__FILE__ . '.ran');\n",
    "/home/john/blog/artisan": "<?php touch(__FILE__ . '.ran');\n",
    "/home/john/public_html/shop/backup.sh": '#!/bin/sh\ntouch "$0.ran"\n',
    "/home/john/bin/rotate-logs.sh": '#!/bin/sh\ntouch "$0.ran"\n',
    "/home/john/bin/report.sh": '#!/bin/sh\ntouch "$0.ran"\n',
    "/home/john/public_html/a.php": "<?php touch(__FILE__ . '.ran');\n",
    "/home/john/blog/b.php": "<?php touch(__FILE__ . '.ran');\n",
}
# What each place shows.
SEES = {
    "example.com": ["sees public_html"],
    "shop.example.com": ["sees public_html/shop"],
    "blog.example.org": ["sees blog"],
    "cage": ["sees public_html", "sees public_html/shop", "sees blog"],
}
# Where the cron shell comes into it (what converge and the daemon will do).
REFRESH = """
from siteiso import accounts, config
from siteiso.service import cron
from siteiso.state import store
from siteiso.views import engine
st, cfg = store.load(), config.load()
a = accounts.lookup("john", cfg)
cron.write_cron_map(a.uid, engine.site_inputs(st, a, cfg), a.home)
"""


def refresh(sbx) -> None:
    sbx.run(["/opt/siteiso/venv/bin/python", "-c", REFRESH])


def isolate_john(sbx) -> None:
    ok(sbx, "--site-isolation-allow-all")
    ok(sbx, "--site-isolation-enable", "example.com", "shop.example.com",
       "blog.example.org")


def parse_cases(text: str) -> list[tuple[str, str]]:
    """(crontab line, expectation or '' for a variable line), in order."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("#=> "):
            out[-1] = (out[-1][0], line[4:].strip())
        elif line.strip() and not line.startswith("#"):
            out.append((line, ""))
    return out


def tokens(sbx) -> dict[str, str]:
    import json
    st = json.loads(sbx.read("/var/lib/siteiso/state.json"))
    return {s["names"][0]: t for t, s in st["sites"].items()}


def where_probe_ran(sbx, n: int, toks: dict[str, str]) -> list[tuple[str, str]]:
    places = {"host": "/tmp", "cage": "/home/john/.cagefs/tmp"}
    places.update({d: f"/home/john/.cagefs/websites/{t}/tmp" for d, t in toks.items()})
    found = []
    for place, tmp in places.items():
        r = sbx.run(["cat", f"{tmp}/cron-probe-{n}"], check=False)
        if r.returncode == 0:
            found.append((place, r.stdout))
    return found


def mails(sbx) -> list[str]:
    r = sbx.sh(f"for f in {MAILDIR}/m.*; do [ -f \"$f\" ] && cat \"$f\" && "
               "echo '-----8<-----'; done; true")
    return [m for m in r.stdout.split("-----8<-----\n") if m.strip()]


def prepare_sandbox(sbx) -> None:
    """No system cron jobs, a mail sink, example.com on the loopback."""
    sbx.sh(": > /etc/crontab; rm -f /etc/cron.d/*; "
           "echo '127.0.0.1 example.com' >> /etc/hosts")
    sbx.write(PROBE, PROBE_SH, mode=0o755)
    sbx.write("/tmp/sendmail", SENDMAIL, mode=0o755)
    sbx.sh(f"mkdir -m 1777 {MAILDIR} && mount --bind /tmp/sendmail /usr/sbin/sendmail")


def test_crontab_cases_run_where_they_must(server, cases):
    sbx = server
    isolate_john(sbx)
    prepare_sandbox(sbx)
    sbx.make_tree("john", SCRIPTS)
    sbx.sh("chmod 755 /home/john/public_html/shop/backup.sh /home/john/bin/*.sh")

    cases_ = parse_cases((cases / "crontab.txt").read_text())
    jobs: list[tuple[int, str, str]] = []      # (n, command, expectation)
    lines = ["MAILTO=john"]
    for line, expect in cases_:
        if not expect:
            lines.append(line)                 # a variable line, as it is
            continue
        n = len(jobs) + 1
        fields = line.split(None, 5)
        command = fields[5]
        jobs.append((n, command, expect))
        # Every minute, so one minute runs them all; the probe after `;`.
        lines.append(f"* * * * * {command} ; /bin/sh {PROBE} {n}")
    crontab = "\n".join(lines) + "\n"
    assert len(jobs) == 8
    # john installs it as any user does (it has no SHELL line) ...
    sbx.run(["crontab", "-"], user="john", input=crontab)
    # ... and siteiso puts its SHELL line in.
    refresh(sbx)
    listed = sbx.run(["crontab", "-l"], user="john").stdout
    assert f"SHELL={CRON_SHELL}\n" in listed
    assert listed.endswith(crontab)
    st = sbx.sh(f"stat -c '%U %G %a %h' {SPOOL}").stdout.split()
    assert st == ["john", "crontab", "600", "1"]
    uid = sbx.users["john"].uid
    assert sbx.sh(f"stat -c '%U %a' /run/siteiso/cron/{uid}").stdout.split() == \
        ["john", "400"]
    assert sbx.run(["cat", f"/run/siteiso/cron/{uid}"], user="jane",
                   check=False).returncode != 0

    cron = sbx.popen(["cron", "-f"])
    try:
        toks = tokens(sbx)
        expected_marks = [n for n, _, e in jobs if not e.startswith("refused")]
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline:
            done = all(where_probe_ran(sbx, n, toks) for n in expected_marks)
            if done and any("a.php" in m for m in mails(sbx)):
                break
            time.sleep(1)
        time.sleep(2)                          # let the slowest line finish
    finally:
        sbx.sh("kill $(cat /run/crond.pid)", check=False)
        cron.wait(timeout=10)

    for n, command, expect in jobs:
        found = where_probe_ran(sbx, n, toks)
        if expect.startswith("refused"):
            assert found == [], (command, found)
            continue
        assert len(found) == 1, (command, found)
        place, report = found[0]
        assert place == expect, (command, place, report)
        assert "homes: john \n" in report, (command, report)
        assert sorted(re.findall(r"sees \S+", report)) == sorted(SEES[expect]), \
            (command, report)
        assert "user: john" in report

    # The scripts the lines name ran in their site (or the cage) ...
    for path in ("/home/john/public_html/wp-cron.php",
                 "/home/john/public_html/shop/cron.php", "/home/john/blog/artisan",
                 "/home/john/public_html/shop/backup.sh",
                 "/home/john/bin/rotate-logs.sh"):
        assert sbx.exists(f"{path}.ran"), path
    # ... the two-site line did not run at all, and cron mailed the reason;
    assert not sbx.exists("/home/john/public_html/a.php.ran")
    assert not sbx.exists("/home/john/blog/b.php.ran")
    refused = [m for m in mails(sbx) if "a.php" in m.split("\n\n", 1)[0]]
    assert len(refused) == 1, mails(sbx)
    body = refused[0].split("\n\n", 1)[1].strip()
    assert body.startswith("siteiso: cron line not run")
    assert "example.com" in body and "blog.example.org" in body
    assert "\n" not in body
    # ... the SITEISO_SITE line ran in blog's view, where ~/bin is not.
    assert not sbx.exists("/home/john/bin/report.sh.ran")
    # john still lists his crontab.
    assert sbx.run(["crontab", "-l"], user="john").stdout == listed


def test_shell_line_is_kept_and_removed_with_isolation(server):
    sbx = server
    isolate_john(sbx)
    mine = "SHELL=/bin/bash\nMAILTO=\"\"\n17 3 * * * echo $BASH_VERSION\n"
    sbx.run(["crontab", "-"], user="john", input=mine)
    refresh(sbx)
    listed = sbx.run(["crontab", "-l"], user="john").stdout
    assert listed.startswith("# siteiso: ")
    assert listed.splitlines()[1] == f"SHELL={CRON_SHELL}"
    assert "\nSITEISO_SHELL=/bin/bash\n" in listed and "\nSHELL=/bin/bash" not in listed
    # john drops the line with crontab(1); the daemon's call puts it back.
    sbx.run(["crontab", "-"], user="john", input="* * * * * date\n")
    assert "SHELL" not in sbx.run(["crontab", "-l"], user="john").stdout
    sbx.run(["/opt/siteiso/venv/bin/python", "-c",
             "from siteiso.service import cron; "
             "assert cron.ensure_cron_shell('john')"])
    assert sbx.run(["crontab", "-l"], user="john").stdout == \
        listed.split("SITEISO_SHELL")[0] + "* * * * * date\n"
    # Sites cannot reach the crontab.
    r = sbx.run(["cagefs_enter_site", "example.com", "crontab", "-l"], user="john",
                check=False)
    assert r.returncode != 0
    # No isolated site left: the line goes, john's own SHELL comes back.
    sbx.run(["crontab", "-"], user="john", input=mine)
    refresh(sbx)
    ok(sbx, "--site-isolation-disable", "example.com", "shop.example.com",
       "blog.example.org")
    refresh(sbx)
    assert sbx.run(["crontab", "-l"], user="john").stdout == mine
    uid = sbx.users["john"].uid
    assert not sbx.exists(f"/run/siteiso/cron/{uid}")


def test_cron_shell_as_the_user(server):
    """The cron shell itself, as cron runs it (no minute to wait)."""
    sbx = server
    isolate_john(sbx)
    refresh(sbx)
    env = {"HOME": "/home/john", "SHELL": CRON_SHELL, "PATH": "/usr/bin:/bin",
           "LOGNAME": "john"}

    def shell(command: str, **extra: str):
        # As cron: in $HOME, `$SHELL -c <command>`.
        return sbx.run(["sh", "-c", 'cd "$HOME" && exec "$0" -c "$1"', CRON_SHELL,
                        command], user="john", env={**env, **extra}, check=False)

    r = shell("cat /home/john/blog/wp-config.php; ls /home; pwd; echo $PATH $SHELL")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "<?php $pw = 'secret-blog.example.org';\njohn\n/home/john\n" \
        "/usr/bin:/bin /bin/sh\n"
    # A path the classifier cannot see: the view still hides the sibling.
    hidden = ('test -e "$(echo L2hvbWUvam9obi9wdWJsaWNfaHRtbC9pbmRleC5waHA= '
              '| base64 -d)"')
    assert shell(hidden, SITEISO_SITE="blog.example.org").returncode == 1
    assert shell(hidden).returncode == 0                    # the cage sees it
    r = shell("test -e /home/john/public_html/index.php",
              SITEISO_SITE="blog.example.org")
    assert r.returncode == 0                     # touches example.com: not bound
    shop = '"$(echo L2hvbWUvam9obi9wdWJsaWNfaHRtbC9zaG9wL2luZGV4LnBocA== ' \
        '| base64 -d)"'
    r = shell(f"cd /home/john/public_html && test -e index.php && ! test -e {shop}")
    assert r.returncode == 0, r.stderr                      # example.com's view
    r = shell("cat /home/john/public_html/shop/wp-config.php /home/john/blog/x")
    assert r.returncode == 125 and r.stdout == ""
    assert r.stderr.startswith("siteiso: cron line not run") and \
        r.stderr.count("\n") == 1
    r = shell('test -n "$BASH_VERSION" && echo bash; ls /home/john/public_html/shop '
              "/home/jane", SITEISO_SHELL="/bin/bash")
    assert r.returncode == 2, r.stderr                     # no /home/jane in a view
    assert r.stdout.startswith("bash\n")
    r = sbx.run([CRON_SHELL, "-c", "date"], check=False)
    assert r.returncode == 125 and "not root" in r.stderr
