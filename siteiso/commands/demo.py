"""`siteiso demo`: a scripted admin session on a sandboxed server.

Everything happens inside a private server (siteiso.sandbox): its own mount,
PID and network namespaces with /etc, /var, /run, /home and /opt as
throwaway overlays. The host is not changed; the sandbox vanishes at the end.
"""

from __future__ import annotations

import json
import sys
import textwrap

from siteiso.sandbox import Sandbox

DOMAINS = {
    "example.com": ("john", "/home/john/public_html"),
    "shop.example.com": ("john", "/home/john/public_html/shop"),
    "blog.example.org": ("john", "/home/john/blog"),
    "jane.example.net": ("jane", "/home/jane/public_html"),
}


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
        data = {d: {"owner": o, "document_root": r, "is_main": False}
                for d, (o, r) in DOMAINS.items()}
        sbx.write("/etc/siteiso/domains.json", json.dumps(data, indent=1))

    def admin_session(self) -> None:
        self.say("A sandboxed server with two hosting accounts: john (example.com, "
                 "shop.example.com inside example.com's docroot, blog.example.org) "
                 "and jane (jane.example.net). The panel is siteiso's embedded "
                 "/etc/siteiso/domains.json.")
        self.run("cat /etc/siteiso/domains.json")
        self.say("Nothing is isolated yet: enabling needs the feature allowed.")
        self.run("cagefsctl --site-isolation-list")
        self.run("cagefsctl --site-isolation-enable example.com", expect_ok=False)
        self.run("cagefsctl --site-isolation-allow john")
        self.run("cagefsctl --site-isolation-enable jane.example.net",
                 expect_ok=False)
        self.run("cagefsctl --site-isolation-toggle-mode")
        self.run("cagefsctl --site-isolation-deny jane")
        self.run("cagefsctl --site-isolation-enable example.com shop.example.com")
        self.run("cagefsctl --site-isolation-list")
        self.run("cagefsctl --site-isolation-list --json")

    def isolation(self) -> None:
        self.say("Before: john's processes see every site of john. As john, "
                 "read shop.example.com's secrets from anywhere:")
        self.run("cat /home/john/public_html/shop/wp-config.php", user="john")
        self.say("Inside example.com's view the nested shop directory is there, "
                 "empty and read-only; its secrets do not exist:")
        self.run("cagefs_enter_site example.com ls -la /home/john/public_html/shop",
                 user="john")
        self.run("cagefs_enter_site example.com cat "
                 "/home/john/public_html/shop/wp-config.php", user="john",
                 expect_ok=False)
        self.say("Inside shop.example.com's view only the shop exists:")
        self.run("cagefs_enter_site shop.example.com cat "
                 "/home/john/public_html/shop/wp-config.php", user="john")
        self.run("cagefs_enter_site shop.example.com ls /home/john "
                 "/home/john/public_html", user="john", expect_ok=False)
        self.say("Other accounts do not exist in john's views, and /proc shows "
                 "only the site's own processes:")
        self.run("cagefs_enter_site example.com sh -c 'ls /home; "
                 "grep -c . /etc/passwd; grep jane /etc/passwd; ps -e'",
                 user="john", expect_ok=False)
        self.say("A site cannot step into its sibling, and root cannot use the "
                 "entry at all:")
        self.run("cagefs_enter_site example.com cagefs_enter_site shop.example.com "
                 "id", user="john", expect_ok=False)
        self.run("cagefs_enter_site example.com id", expect_ok=False)
        self.say("Disabling isolation swaps back to the user's normal view:")
        self.run("cagefsctl --site-isolation-disable shop.example.com")
        self.run("cagefsctl --site-isolation-list")


def demo(quiet: bool = False) -> int:
    with Sandbox("demo") as sbx:
        d = Demo(sbx, quiet)
        d.setup()
        d.admin_session()
        d.isolation()
    if d.failed:
        print("\nThe demo did not go as expected (see the lines marked above).",
              file=sys.stderr)
        return 1
    print("\nThe demo ran as expected. The sandbox is gone; the host is unchanged.")
    return 0
