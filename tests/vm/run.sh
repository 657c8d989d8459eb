#!/bin/sh
# The VM tier as a plain command (as root, from anywhere):
#
#   tests/vm/run.sh                      the default kernel-tier subset
#   tests/vm/run.sh --full               test_escape, test_layouts, test_follow_unmount
#   tests/vm/run.sh tests/kernel/test_procs.py -k kill   any tests / pytest -k
#   tests/vm/run.sh --cmd 'siteiso doctor'               any command in the guest
#   tests/vm/run.sh --prepare            fetch the kernel, build the initramfs, stop
#
# Exit status: the guest's (pytest's, or the command's); 125 when the VM could
# not be set up or gave no status. Output of every run: tests/vm/.cache/runs/.
# Needs: qemu-system-x86, busybox-static (or apt access to fetch it), apt-get
# and dpkg-deb (Debian/Ubuntu host), root (the guest reads the host's files
# as root through 9p, e.g. /etc/shadow for useradd).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" != 0 ]; then
    echo "run.sh: the VM tier needs root (see tests/vm/README.md)" >&2
    exit 125
fi
exec python3 "$here/vmtier.py" "$@"
