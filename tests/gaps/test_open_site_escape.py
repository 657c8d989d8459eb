"""Open findings (known gaps, see the README): each test shows an attack
that still works; run with SITEISO_GAPS=1. The helpers are the attack
tests' own."""

from __future__ import annotations

import pytest  # noqa: F401
from test_attack_site_escape import (  # noqa: F401
    A,
    B,
    in_site,
    isolate,
)


def test_site_cannot_take_over_a_deeper_nested_siblings_docroot(sandbox):
    """A sibling nested two levels down (public_html/sub/deep): the parent
    site cannot rename the masked mount point itself, but it can rename the
    directory holding it (public_html/sub) and make a new sub/deep of its
    own. After the next rebuild of the views (`--remount`, a reboot) the
    parent's view masks its own decoy and shows the sibling's real tree at
    sub2/deep, and the sibling's view (and vhost) serves the parent's decoy."""
    s = sandbox
    s.useradd("john")
    s.make_tree("john", {
        "/home/john/public_html/index.php": "<?php echo 'a';\n",
        "/home/john/public_html/sub/deep/wp-config.php": "<?php $pw = 'secret-deep';\n",
    })
    s.set_domains({A: ("john", "/home/john/public_html"),
                   "deep.example.com": ("john", "/home/john/public_html/sub/deep")})
    isolate(s, A, "deep.example.com")
    r = in_site(s, A, "cat /home/john/public_html/sub/deep/wp-config.php")
    assert "secret-deep" not in r.stdout          # hidden, as it should be
    r = in_site(s, A, "cd /home/john/public_html && mv sub sub2 && mkdir -p sub/deep"
                      " && echo '<?php echo \"decoy\";' > sub/deep/index.php")
    assert r.returncode == 0, r.stderr             # the attack step is allowed
    r = s.cagefsctl("--remount", "john")           # any later rebuild
    assert r.returncode in (0, 1)
    r = in_site(s, A, "cat /home/john/public_html/sub2/deep/wp-config.php")
    assert "secret-deep" not in r.stdout
    r = s.run(["cagefs_enter_site", "deep.example.com", "ls",
               "/home/john/public_html/sub/deep"], user="john", check=False)
    assert "index.php" not in r.stdout             # not the parent's decoy


def test_ro_home_keeps_hidden_entries_hidden_when_they_appear_later(server):
    """home = ro: the rest of the home is visible read-only, "in every mode
    these stay hidden" (~/.my.cnf, ~/mail, backups, ...). The masks are
    planned from the entries the home has when the view is built: a database
    password file, the nightly full-account backup or the mailbox made
    afterwards are read by every site."""
    server.sh("echo 'home = ro' >> /etc/siteiso/siteiso.conf")
    isolate(server, A, B)
    server.make_tree("john", {
        "/home/john/.my.cnf": "[client]\npassword=db-secret-later\n",
        "/home/john/backup-12.4.2026_john.tar": "full-account-backup-later\n",
        "/home/john/mail/new/1": "mail-secret-later\n",
    })
    r = in_site(server, A, "cat /home/john/.my.cnf /home/john/backup-12.4.2026_john.tar"
                           " /home/john/mail/new/1")
    for leak in ("db-secret-later", "full-account-backup-later", "mail-secret-later"):
        assert leak not in r.stdout, r.stdout


def test_shared_home_site_cannot_create_ssh_authorized_keys(server):
    """home = shared ("shared files are not isolated") still keeps ~/.ssh
    hidden in every mode — but only when ~/.ssh exists at build time. A site
    creates it and logs in over SSH as the account, outside every view."""
    server.sh("echo 'home = shared' >> /etc/siteiso/siteiso.conf")
    assert not server.exists("/home/john/.ssh")
    isolate(server, A, B)
    r = in_site(server, A, "mkdir -p /home/john/.ssh &&"
                           " echo 'ssh-ed25519 AAAA attacker'"
                           " >> /home/john/.ssh/authorized_keys && echo planted")
    assert "planted" not in r.stdout
    assert not server.exists("/home/john/.ssh/authorized_keys")
