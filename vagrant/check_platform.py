#!/usr/bin/env python3
"""Platform check (SPEC §9), for any kernel: `siteiso doctor` and enable must
agree on exactly what is missing.

- doctor's required probes marked MISSING (`(required: …)`) are the set D;
- in a sandboxed server (siteiso.sandbox: nothing on the machine changes),
  `cagefsctl --site-isolation-enable` of one domain either
    succeeds, and then D must be empty, or
    exits 1 with `Website isolation feature is not available on this platform`
    and a second line `missing: a, b (see 'siteiso doctor')` naming exactly D;
  and after a refusal nothing is isolated.

Exit 0 when all that holds. Run as root from the checkout with the test venv:
    .venv-test/bin/python vagrant/check_platform.py
SITEISO_FORCE_MISSING=openat2,mount_setattr (the product's test switch, passed
to doctor and enable alike) checks the refusal path on a complete kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from siteiso.sandbox import Sandbox

HEADLINE = "Website isolation feature is not available on this platform"


def doctor_missing_required() -> tuple[set[str], str]:
    r = subprocess.run(["/usr/local/sbin/siteiso", "doctor"], capture_output=True,
                       text=True)
    names = set()
    for line in r.stdout.splitlines():
        m = re.match(r"MISSING\s+(\S+)\s.*\(required:", line)
        if m:
            names.add(m.group(1))
    return names, r.stdout


def enable_in_sandbox() -> tuple[int, str, str]:
    with Sandbox("platform-check") as sbx:
        sbx.useradd("john")
        sbx.make_tree("john", {"/home/john/public_html/index.php": "<?php\n"})
        sbx.set_domains({"example.com": ("john", "/home/john/public_html")})
        allow = sbx.cagefsctl("--site-isolation-allow-all")
        if allow.returncode != 0:
            return allow.returncode, "", f"allow-all failed: {allow.stderr}"
        # SITEISO_FORCE_MISSING (the product's test switch) reaches enable
        # too, so the refusal path can be checked on a kernel that has it all.
        force = os.environ.get("SITEISO_FORCE_MISSING")
        r = sbx.run(["cagefsctl", "--site-isolation-enable", "example.com"],
                    check=False,
                    env={"SITEISO_FORCE_MISSING": force} if force else None)
        listing = sbx.cagefsctl("--site-isolation-list").stdout
        return r.returncode, listing, r.stderr


def main() -> int:
    if os.geteuid() != 0:
        print("check_platform: needs root", file=sys.stderr)
        return 2
    release = os.uname().release
    missing, doctor = doctor_missing_required()
    code, listing, stderr = enable_in_sandbox()
    print(f"kernel {release}")
    print(f"doctor: required and missing: {', '.join(sorted(missing)) or 'none'}")
    print(f"enable: exit {code}")
    for line in stderr.strip().splitlines():
        print(f"  | {line}")
    problems = []
    if not missing:
        if code != 0:
            problems.append("doctor finds nothing missing, yet enable failed")
    else:
        lines = stderr.strip().splitlines()
        named: set[str] = set()
        if len(lines) >= 2:
            m = re.match(r"missing: (.*?)(?: \(see 'siteiso doctor'\))?$", lines[1])
            if m:
                named = {n.strip() for n in m.group(1).split(",") if n.strip()}
        if code != 1:
            problems.append(f"enable exited {code}, not 1")
        if not lines or lines[0] != HEADLINE:
            problems.append(f"first line is not {HEADLINE!r}")
        if named != missing:
            problems.append(f"enable names {sorted(named)}, "
                            f"doctor says {sorted(missing)}")
        if not listing.startswith("No users"):
            problems.append(f"something was isolated after the refusal: {listing!r}")
    for p in problems:
        print(f"FAIL: {p}")
    if problems:
        print("---- siteiso doctor ----\n" + doctor)
        return 1
    print("OK: doctor and enable agree" + (" (enable refuses)" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
