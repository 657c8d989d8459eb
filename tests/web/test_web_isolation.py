"""PHP of one site, served by a real Apache (suexec + CGI), cannot reach its
siblings once isolated (SPEC §8, §4)."""

from __future__ import annotations

import pytest
from webserver import SITES

from siteiso import paths

pytestmark = pytest.mark.web

A, NESTED, B, JANE = "a.example", "nested.example", "b.example", "jane.example"
B_SECRET = "/home/john/b.example/www/wp-config.php"
NESTED_SECRET = "/home/john/public_html/nested/wp-config.php"


def enable(sbx, *domains):
    r = sbx.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0, r.stderr
    r = sbx.cagefsctl("--site-isolation-enable", *domains)
    assert r.returncode == 0, r.stderr


def test_before_isolation_a_sibling_reads_everything(web):
    # The threat is real: without isolation a.example reads b's secrets.
    assert web.probe(A, "read", B_SECRET)["ok"]
    assert web.probe(A, "read", NESTED_SECRET)["ok"]
    assert web.probe(A, "read", "/home/john/b.example/.env")["ok"]


def test_isolated_sites_cannot_read_list_or_include_siblings(web):
    enable(web.sbx, A, NESTED, B)
    for op in ("read", "include"):
        for target in (B_SECRET, NESTED_SECRET, "/home/john/b.example/.env"):
            r = web.probe(A, op, target)
            assert not r["ok"], (op, target, r)
        r = web.probe(B, op, "/home/john/public_html/wp-config.php")
        assert not r["ok"], (op, r)
        r = web.probe(NESTED, op, "/home/john/public_html/wp-config.php")
        assert not r["ok"], (op, r)
    for target in ("/home/john/b.example", "/home/john/b.example/www",
                   "/home/jane", "/home/john/public_html/nested"):
        r = web.probe(A, "list", target)
        assert not r["ok"] or r["out"] in ([".", ".."], None), (target, r)


def test_isolated_sites_keep_their_own_files(web):
    enable(web.sbx, A, NESTED, B)
    assert web.get(A, "/index.php") == (200, "hello from a.example")
    assert web.get(NESTED, "/index.php") == (200, "hello from nested.example")
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert web.probe(B, "read", "/home/john/b.example/.env")["ok"]  # app root
    assert web.probe(A, "write", "/home/john/public_html/new.txt")["ok"]
    assert web.probe(A, "write", "/tmp/a-tmp.txt")["ok"]


def test_php_runs_as_the_user_in_the_sites_own_pid_namespace(web):
    enable(web.sbx, A)
    r = web.probe(A, "env")
    assert r["out"]["uid"] == web.sbx.users["john"].uid
    ps = web.probe(A, "exec", "ls /proc | grep -c '^[0-9]'")
    assert int(ps["out"]) < 10  # only the site's own processes


def test_tmp_and_sessions_are_per_site(web):
    enable(web.sbx, A, B)
    assert web.probe(B, "write", "/tmp/b-only.txt")["ok"]
    assert not web.probe(A, "read", "/tmp/b-only.txt")["ok"]
    web.probe(B, "session", "x")
    r = web.probe(A, "exec", "ls -a /var/lib/php/sessions")
    assert "siteisotest" not in (r["out"] or "")


def test_non_isolated_sibling_keeps_working(web):
    enable(web.sbx, A)
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert web.get(JANE, "/index.php") == (200, "hello from jane.example")
    # and b (not isolated) still reaches its own files
    assert web.probe(B, "read", "/home/john/b.example/.env")["ok"]


def test_symlink_planted_by_one_site_is_not_served(web):
    web.sbx.run(["ln", "-s", B_SECRET, "/home/john/public_html/leak.txt"],
                user="john")
    assert "secret-of-b.example" in web.get(A, "/leak.txt")[1]  # the risk is real
    enable(web.sbx, A, B)
    code, body = web.get(A, "/leak.txt")
    assert "secret-of-b.example" not in body
    assert code in (403, 404)


def test_htaccess_of_parent_does_not_reach_nested_site(web):
    web.sbx.make_tree("john", {"/home/john/public_html/.htaccess":
                               "Redirect 302 /index.php http://evil.example/\n"})
    assert web.get(NESTED, "/index.php")[0] == 302   # the risk is real
    enable(web.sbx, A, NESTED)
    assert web.get(NESTED, "/index.php") == (200, "hello from nested.example")


def test_request_for_nested_site_through_parent_vhost_fails_closed(web):
    enable(web.sbx, A, NESTED)
    code, body = web.get(A, "/nested/wp-config.php")
    assert "secret-of-nested.example" not in body
    assert code != 200


def test_disable_restores_the_panels_handler(web):
    enable(web.sbx, A, B)
    assert not web.probe(A, "read", B_SECRET)["ok"]
    r = web.sbx.cagefsctl("--site-isolation-disable", A, B)
    assert r.returncode == 0, r.stderr
    assert web.get(A, "/index.php") == (200, "hello from a.example")
    assert web.probe(A, "read", B_SECRET)["ok"]


def test_back_to_back_commands_leave_cgi_working(web):
    # Every enable and disable reloads Apache; a graceful restart that lands
    # while the previous one is still starting mod_cgid's daemon would leave
    # the whole server's CGI answering 503.
    for _ in range(4):
        enable(web.sbx, A)
        assert web.sbx.cagefsctl("--site-isolation-disable", A).returncode == 0
    log = web.sbx.run(["cat", "/var/log/apache2/error.log"]).stdout
    assert "cgid daemon failed" not in log
    assert web.get(A, "/index.php") == (200, "hello from a.example")
    assert web.get(JANE, "/index.php") == (200, "hello from jane.example")


def test_overlapping_reloads_leave_cgi_working(web):
    # Two commands reloading at nearly the same time (the daemon and an
    # admin, say), at offsets that sweep Apache's restart window.
    code = ("import sys, time\n"
            "from siteiso.service import apache, layout\n"
            "time.sleep(float(sys.argv[1]))\n"
            "apache.reload(layout.detect())\n")
    py = f"{paths.OPT}/venv/bin/python"
    for ms in range(0, 200, 20):
        web.sbx.run(["sh", "-c", f'{py} -c "$0" 0 & {py} -c "$0" {ms / 1000}; wait',
                     code])
    log = web.sbx.run(["cat", "/var/log/apache2/error.log"]).stdout
    assert "cgid daemon failed" not in log
    assert web.get(A, "/index.php") == (200, "hello from a.example")


def test_doctor_says_whether_each_isolated_sites_include_is_loaded(web):
    enable(web.sbx, A, B)
    r = web.sbx.run(["siteiso", "doctor"], check=False)
    assert r.returncode == 0, r.stdout
    for domain in (A, B):
        assert ["ok", "web-include", f"{domain}:",
                f"/etc/apache2/siteiso/{domain}.conf"] in \
            [ln.split() for ln in r.stdout.splitlines()], r.stdout
    # b.example's vhost loses its include line: b is served outside its view.
    web.sbx.sh(f"sed -i '/IncludeOptional/d' /etc/apache2/sites-enabled/{B}.conf")
    r = web.sbx.run(["siteiso", "doctor"], check=False)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert [ln.split()[:3] for ln in lines if f" {A}: " in ln] == \
        [["ok", "web-include", f"{A}:"]]
    (missing,) = [ln for ln in lines if f" {B}: " in ln]
    assert missing.startswith("MISSING web-include")
    assert f"add `IncludeOptional /etc/apache2/siteiso/{B}.conf` to the {B} vhost" \
        in missing
    assert lines[-1] == "siteiso doctor: 1 problem(s) keep isolation from working"


def _doctor(sbx):
    r = sbx.run(["siteiso", "doctor"], check=False)
    return r.returncode, r.stdout.splitlines()


def _rows(lines, name):
    return [ln.split(None, 2) for ln in lines if ln.split()[1:2] == [name]]


def test_one_include_serves_every_name_its_vhost_answers(web):
    """www.a.example is a ServerAlias of a.example's vhost and a second name
    of its site: that vhost's one include covers it. A vhost that loads
    another isolated site's include instead is named."""
    sbx = web.sbx
    sbx.sh(f"sed -i 's/ServerName {A}$/ServerName {A}\\n    ServerAlias www.{A}/' "
           f"/etc/apache2/sites-enabled/{A}.conf && apache2ctl graceful")
    sbx.set_domains({**SITES, f"www.{A}": SITES[A]})
    enable(sbx, A, f"www.{A}", B)
    code, lines = _doctor(sbx)
    assert code == 0, lines
    inc = f"/etc/apache2/siteiso/{A}.conf"
    assert ["ok", "web-include", f"www.{A}: {inc}"] in _rows(lines, "web-include")
    assert web.get(f"www.{A}", "/index.php") == (200, "hello from a.example")
    assert not web.probe(A, "read", B_SECRET)["ok"]
    # a.example's vhost is given b.example's include in place of its own.
    sbx.sh(f"sed -i 's#siteiso/{A}.conf#siteiso/{B}.conf#' "
           f"/etc/apache2/sites-enabled/{A}.conf")
    code, lines = _doctor(sbx)
    assert code == 1
    (row,) = [r for r in _rows(lines, "web-include") if r[2].startswith(f"{A}: ")]
    assert row[0] == "MISSING"
    assert f"it loads /etc/apache2/siteiso/{B}.conf, another isolated site's" in row[2]


def test_a_configuration_apache_rejects_fails_the_command_and_changes_nothing(web):
    """Apache keeps its old configuration when the new one fails its test:
    the include would not be in effect while the site is recorded as
    isolated. The command fails, says why, and changes nothing; doctor
    names it."""
    sbx = web.sbx
    enable(sbx, A)
    sbx.write("/etc/apache2/conf-enabled/broken.conf", "NoSuchDirective on\n")
    r = sbx.cagefsctl("--site-isolation-enable", B)
    assert r.returncode == 1
    assert "Apache's configuration test fails" in r.stderr
    assert "NoSuchDirective" in r.stderr
    assert sbx.cagefsctl("--site-isolation-list").stdout == \
        f"Domains with enabled website isolation for user john:\n{A}\n"
    assert not sbx.exists(f"/etc/apache2/siteiso/{B}.conf")
    code, lines = _doctor(sbx)
    assert code == 1
    (row,) = _rows(lines, "web-config")
    assert row[0] == "FAIL" and "NoSuchDirective" in row[2]
    sbx.run(["rm", "/etc/apache2/conf-enabled/broken.conf"])
    r = sbx.cagefsctl("--site-isolation-enable", B)
    assert r.returncode == 0, r.stderr
    assert web.get(B, "/index.php") == (200, "hello from b.example")
    assert not web.probe(B, "read", "/home/john/public_html/wp-config.php")["ok"]


def test_doctor_names_a_missing_module_and_a_suexec_docroot_that_refuses(web):
    sbx = web.sbx
    enable(sbx, A)
    code, lines = _doctor(sbx)
    assert code == 0, lines
    assert _rows(lines, "web-modules")[0][0] == "ok"
    assert _rows(lines, "suexec")[0][:2] == ["ok", "suexec"]
    sbx.sh("a2dismod -q cgid >/dev/null && "
           "printf '/var/www\\npublic_html\\n' > /etc/apache2/suexec/www-data")
    code, lines = _doctor(sbx)
    assert code == 1
    (mods,) = _rows(lines, "web-modules")
    assert mods[0] == "MISSING" and "needs Apache's cgid module" in mods[2]
    (suexec,) = _rows(lines, "suexec")
    assert suexec[0] == "MISSING" and "its docroot is /var/www" in suexec[2]
    # It is true: with that docroot suexec refuses the site's wrapper.
    sbx.run(["a2enmod", "-q", "cgid"])
    sbx.run(["apache2ctl", "restart"])
    assert web.get(A, "/index.php")[0] == 500


def test_includes_apache_rejects_are_taken_back_at_once(web):
    """a.example's vhost also loads b.example's include (an admin's slip):
    once both are isolated, mod_siteiso refuses a vhost of two sites and
    Apache's configuration test fails. The command fails, and the includes
    are gone again at once, so Apache still accepts its configuration (no
    later reload of any account is blocked by them)."""
    sbx = web.sbx
    sbx.sh(f"sed -i 's#^\\( *\\)IncludeOptional .*{A}.conf#&\\n\\1IncludeOptional "
           f"/etc/apache2/siteiso/{B}.conf#' /etc/apache2/sites-enabled/{A}.conf")
    assert sbx.read(f"/etc/apache2/sites-enabled/{A}.conf").count("Include") == 2
    r = sbx.cagefsctl("--site-isolation-allow-all")
    assert r.returncode == 0, r.stderr
    r = sbx.cagefsctl("--site-isolation-enable", A, B)
    assert r.returncode == 1 and "configuration test fails" in r.stderr, r.stderr
    assert "SiteisoSite" in r.stderr
    for domain in (A, B):
        assert not sbx.exists(f"/etc/apache2/siteiso/{domain}.conf")
    assert sbx.run(["apache2ctl", "-t"], check=False).returncode == 0
    assert sbx.cagefsctl("--site-isolation-list").stdout == \
        "No users with enabled Website isolation\n"
    assert web.probe(A, "read", B_SECRET)["ok"]     # served as before, unisolated
