"""`siteiso demo`: a scripted admin session on a sandboxed server.

Everything happens inside a private server (siteiso.sandbox): its own mount,
PID and network namespaces with /etc, /var, /run, /home and /opt as
throwaway overlays. The host is not changed; the sandbox vanishes at the end.
"""

from __future__ import annotations

import json
import sys
import textwrap

from siteiso.sandbox import Sandbox, start_apache

DOMAINS = {
    "a.example": ("john", "/home/john/public_html"),
    "shop.a.example": ("john", "/home/john/public_html/shop"),
    "b.example": ("john", "/home/john/b.example/www"),
    "jane.example": ("jane", "/home/jane/public_html"),
}
# What a hacked a.example would run: read any file it is asked for.
STEAL = "<?php echo @file_get_contents($_GET['f']) ?: \"(cannot read {$_GET['f']})\";\n"


class Demo:
    def __init__(self, sbx: Sandbox, quiet: bool) -> None:
        self.sbx = sbx
        self.quiet = quiet
        self.failed = False

    def say(self, text: str) -> None:
        if not self.quiet:
            print("\n" + textwrap.fill(text, 78))

    def run(self, cmd: str, user: str | None = None, expect_ok: bool = True) -> str:
        prompt = "#" if user is None else f"{user}$"
        print(f"{prompt} {cmd}")
        r = self.sbx.sh(cmd, user=user, check=False)
        out = (r.stdout + r.stderr).rstrip("\n")
        if out:
            print(textwrap.indent(out, "  "))
        if r.returncode != 0:
            print(f"  (exit status {r.returncode})")
        if expect_ok != (r.returncode == 0):
            self.failed = True
            print("  ^^^ unexpected result", file=sys.stderr)
        return r.stdout

    def setup(self) -> None:
        sbx = self.sbx
        for user in ("john", "jane"):
            sbx.useradd(user)
        for domain, (owner, docroot) in DOMAINS.items():
            sbx.make_tree(owner, {
                f"{docroot}/index.php": f"<?php echo 'hello from {domain}';\n",
                f"{docroot}/wp-config.php":
                    f"<?php define('DB_PASSWORD', 'secret-of-{domain}');\n",
            })
        sbx.make_tree("john", {"/home/john/public_html/steal.php": STEAL})
        data = {d: {"owner": o, "document_root": r, "is_main": False}
                for d, (o, r) in DOMAINS.items()}
        sbx.write("/etc/siteiso/domains.json", json.dumps(data, indent=1))
        start_apache(sbx, DOMAINS)

    def curl(self, domain: str, path: str, expect: str) -> None:
        out = self.run(f"curl -s -H 'Host: {domain}' 'http://127.0.0.1{path}'")
        self.check(out, expect)

    def check(self, out: str, expect: str) -> None:
        """The demo proves what it says: the output must show `expect`."""
        if expect not in out:
            self.failed = True
            print(f"  ^^^ unexpected result: {expect!r} not shown", file=sys.stderr)

    def web_before(self) -> None:
        self.say("A sandboxed server: Apache with suexec and php-cgi on its own "
                 "loopback, two hosting accounts. john has a.example, "
                 "shop.a.example (inside a.example's docroot) and b.example; jane "
                 "has jane.example. The panel is /etc/siteiso/domains.json.")
        self.run("cat /etc/siteiso/domains.json")
        self.say("Say a.example is hacked and its attacker uploads steal.php. "
                 "Every site of john runs as john, so today a.example's PHP reads "
                 "b.example's database password, shop's, and even jane's (her "
                 "files are readable to other accounts, as on many servers):")
        self.curl("a.example", "/steal.php?f=/home/john/b.example/www/wp-config.php",
                  "secret-of-b.example")
        self.curl("a.example", "/steal.php?f=/home/john/public_html/shop/wp-config.php",
                  "secret-of-shop.a.example")
        self.curl("a.example", "/steal.php?f=/home/jane/public_html/wp-config.php",
                  "secret-of-jane.example")

    def admin_session(self) -> None:
        self.say("The admin turns website isolation on. Enabling needs the feature "
                 "allowed for the domain's owner first:")
        self.run("cagefsctl --site-isolation-list")
        self.run("cagefsctl --site-isolation-enable a.example", expect_ok=False)
        self.run("cagefsctl --site-isolation-allow john")
        self.run("cagefsctl --site-isolation-enable jane.example", expect_ok=False)
        self.say("Allowing one user started the 'deny_all' mode (only allowed users). "
                 "The other mode, 'allow_all', allows everyone but the users denied:")
        self.run("cagefsctl --site-isolation-toggle-mode")
        self.run("cagefsctl --site-isolation-deny jane")
        self.run("cagefsctl --site-isolation-enable a.example b.example shop.a.example")
        self.run("cagefsctl --site-isolation-list")
        self.run("cagefsctl --site-isolation-list --json")

    def web_after(self) -> None:
        self.say("The same attack now: each site's PHP runs in its own view, "
                 "where the other sites' files do not exist.")
        for secret in ("/home/john/b.example/www/wp-config.php",
                       "/home/john/public_html/shop/wp-config.php",
                       "/home/jane/public_html/wp-config.php"):
            self.curl("a.example", f"/steal.php?f={secret}", f"(cannot read {secret})")
        self.say("Each site still serves its own pages:")
        for domain in DOMAINS:
            self.curl(domain, "/index.php", f"hello from {domain}")
        self.say("This Apache was prepared as the README's first steps say "
                 "(actions, cgid and suexec enabled, suexec-custom's docroot "
                 "/home), and each vhost has one line that loads siteiso's "
                 "include for its domain while the domain is isolated. siteiso "
                 "doctor checks all of it (here its web lines):")
        self.run("grep IncludeOptional /etc/apache2/sites-enabled/a.example.conf")
        out = self.run("siteiso doctor | grep -E '^[A-Za-z]+ +(panel|web-|suexec)'")
        rows = [line.split()[:3] for line in out.splitlines()]
        for domain in ("a.example", "b.example", "shop.a.example"):
            if ["ok", "web-include", f"{domain}:"] not in rows:
                self.check(out, f"ok web-include {domain}:")
        if any(r[0] in ("MISSING", "FAIL") for r in rows if r):
            self.check(out, "no MISSING or FAIL line")

    def isolation(self) -> None:
        self.say("The same views from the shell: cagefs_enter_site runs a command "
                 "as john inside one site. In a.example's view the nested shop "
                 "directory is there, empty and read-only:")
        self.run("cagefs_enter_site a.example ls -la /home/john/public_html/shop",
                 user="john")
        self.check(self.run("cagefs_enter_site shop.a.example cat "
                            "/home/john/public_html/shop/wp-config.php", user="john"),
                   "secret-of-shop.a.example")
        self.say("In shop's view, b.example does not exist, and a.example's docroot "
                 "(the directory on the way to shop's own) is there but cannot be "
                 "listed:")
        self.run("cagefs_enter_site shop.a.example ls /home/john/public_html "
                 "/home/john/b.example", user="john", expect_ok=False)
        self.say("Other accounts do not exist in john's views, and /proc shows "
                 "only the site's own processes (PID 1 of the view is its holder, "
                 "root's, which /proc does not show to john):")
        self.run("cagefs_enter_site a.example sh -c 'ls /home; ps -e'", user="john")
        self.run("cagefs_enter_site a.example grep jane /etc/passwd", user="john",
                 expect_ok=False)
        self.say("A site cannot step into its sibling, and root cannot use the "
                 "entry at all:")
        self.run("cagefs_enter_site a.example cagefs_enter_site b.example id",
                 user="john", expect_ok=False)
        self.run("cagefs_enter_site a.example id", expect_ok=False)
        self.say("Disabling isolation puts a site back in the user's normal view: "
                 "shop's files are again part of a.example's tree, and a.example's "
                 "PHP can read them (b.example and jane stay out of reach):")
        self.run("cagefsctl --site-isolation-disable shop.a.example")
        self.run("cagefsctl --site-isolation-list")
        self.curl("a.example", "/steal.php?f=/home/john/public_html/shop/wp-config.php",
                  "secret-of-shop.a.example")
        self.curl("a.example", "/steal.php?f=/home/john/b.example/www/wp-config.php",
                  "(cannot read")


def demo(quiet: bool = False) -> int:
    with Sandbox("demo") as sbx:
        d = Demo(sbx, quiet)
        d.setup()
        d.web_before()
        d.admin_session()
        d.web_after()
        d.isolation()
    if d.failed:
        print("\nThe demo did not go as expected (see the lines marked above).",
              file=sys.stderr)
        return 1
    print("\nThe demo ran as expected. The sandbox is gone; the host is unchanged.")
    return 0
