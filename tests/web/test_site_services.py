"""Isolated sites keep what sites need (SPEC §8): MariaDB over its unix
socket, /etc/hosts, mail() through the local MTA, /dev/urandom, the time
zone — each with a real service started in the sandbox."""

from __future__ import annotations

import time

import pytest
from testlib import ok

pytestmark = pytest.mark.web

A = "a.example"


def php(web, domain, code):
    web.sbx.make_tree("john", {"/home/john/public_html/t.php": f"<?php {code}"})
    return web.get(domain, "/t.php")


def isolate(web):
    ok(web.sbx, "--site-isolation-allow-all")
    ok(web.sbx, "--site-isolation-enable", A)


def test_mariadb_over_its_unix_socket(web):
    sbx = web.sbx
    sbx.sh("mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld && "
           "mariadb-install-db --user=mysql --auth-root-authentication-method=normal "
           ">/dev/null 2>&1")
    server = sbx.popen(["mariadbd", "--user=mysql", "--skip-networking",
                        "--socket=/run/mysqld/mysqld.sock"])
    try:
        for _ in range(100):
            if sbx.run(["mariadb-admin", "--socket=/run/mysqld/mysqld.sock",
                        "ping"], check=False).returncode == 0:
                break
            time.sleep(0.2)
        sbx.run(["mariadb", "--socket=/run/mysqld/mysqld.sock", "-e",
                 "CREATE USER 'john'@'localhost' IDENTIFIED BY 'pw';"
                 "CREATE DATABASE johndb;"
                 "GRANT ALL ON johndb.* TO 'john'@'localhost';"])
        isolate(web)
        code, body = php(web, A, "$m = new mysqli('localhost', 'john', 'pw', 'johndb',"
                         " 0, '/run/mysqld/mysqld.sock'); echo $m->query('SELECT 6*7')"
                         "->fetch_row()[0];")
        assert (code, body) == (200, "42")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_name_resolution_from_etc_hosts(web):
    web.sbx.sh("echo '127.0.0.5 db.internal' >> /etc/hosts")
    isolate(web)
    assert php(web, A, "echo gethostbyname('db.internal');") == (200, "127.0.0.5")


def test_mail_through_the_local_mta(web):
    isolate(web)
    code, body = php(web, A, "var_dump(mail('root@localhost', 'hi from a', 'body'));")
    assert (code, body.strip()) == (200, "bool(true)")
    for _ in range(20):
        queued = web.sbx.run(["exim4", "-bpc"], check=False).stdout.strip()
        if queued not in ("", "0"):
            break
        time.sleep(0.1)
    assert queued not in ("", "0")


def test_urandom_and_time_zone(web):
    web.sbx.sh("ln -sf /usr/share/zoneinfo/Asia/Tokyo /etc/localtime && "
               "echo Asia/Tokyo > /etc/timezone")
    isolate(web)
    assert php(web, A, "echo strlen(random_bytes(32));") == (200, "32")
    code, body = php(web, A, "echo trim(shell_exec('date +%Z'));")
    assert (code, body) == (200, "JST")
