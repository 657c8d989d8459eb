#!/bin/sh
# siteiso set-up on Debian 12 (as root): system packages, the product venv in
# /opt/siteiso, `siteiso install`; then either the demo or the whole test suite.
#
#   ./setup.sh demo    set everything up and run the demo
#   ./setup.sh test    set everything up and run lint, type checks and all tests
#   ./setup.sh         set everything up only
set -eu
cd "$(dirname "$0")"
what=${1:-install}
[ $# -gt 0 ] && shift

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh must be run as root (it installs packages and siteiso)" >&2
    exit 1
fi

PACKAGES="python3 python3-venv python3-dev gcc libc6-dev make util-linux iproute2
 procps passwd apache2 apache2-dev apache2-suexec-custom libapache2-mod-fcgid
 php-cgi php-fpm php-cli php-mysql php-mbstring php-xml php-curl curl cron
 bubblewrap firejail mariadb-server exim4-daemon-light systemd
 qemu-system-x86 busybox-static"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing:$missing"
    # Install services without starting them on this machine: the tests and
    # the demo start their own, inside private namespaces.
    policy_made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_made=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
    [ -n "$policy_made" ] && rm -f /usr/sbin/policy-rc.d
fi

echo "== building siteiso into /opt/siteiso/venv"
umask 022
if [ ! -x /opt/siteiso/venv/bin/python ]; then
    /usr/bin/python3 -m venv /opt/siteiso/venv
fi
/opt/siteiso/venv/bin/pip install -q --upgrade pip >/dev/null
/opt/siteiso/venv/bin/pip install -q "cffi>=1.15" "psutil>=5.9" "pyroute2>=0.7" \
    "idna>=3.4" >/dev/null
/opt/siteiso/venv/bin/pip install -q --force-reinstall --no-deps . >/dev/null
chmod -R a+rX /opt/siteiso
/opt/siteiso/venv/bin/siteiso install | sed 's/^/   /'

case "$what" in
demo)
    exec /usr/local/sbin/siteiso demo
    ;;
test)
    echo "== test venv (.venv-test)"
    [ -x .venv-test/bin/python ] || /usr/bin/python3 -m venv .venv-test
    .venv-test/bin/pip install -q --upgrade pip >/dev/null
    .venv-test/bin/pip install -q '.[test]' >/dev/null
    echo "== ruff"
    .venv-test/bin/ruff check .
    echo "== mypy"
    .venv-test/bin/mypy
    echo "== C warnings are errors (setup.py builds with -Wall -Wextra -Werror)"
    echo "== pytest"
    exec .venv-test/bin/pytest -q -ra "$@"
    ;;
install) ;;
*)
    echo "usage: ./setup.sh [demo|test]" >&2
    exit 2
    ;;
esac
