#!/bin/sh
# Vagrant provisioning for siteiso (runs as root inside the machine).
#
#   provision.sh install   the distribution's packages, siteiso from the synced
#                          checkout (/srv/siteiso) into /opt/siteiso/venv,
#                          `siteiso install`, the test venv .venv-test
#   provision.sh tiers     `siteiso doctor`, the platform check, then the kernel
#                          and web tiers with CI=true (a skipped test fails)
#
# Debian 12 and Ubuntu 24.04 use the README's own ./setup.sh (apt: apache2,
# apache2-suexec-custom, cron, php-fpm, …). AlmaLinux 8/9 install the EL
# equivalents with dnf (httpd with its compiled-in /usr/sbin/suexec, mod_fcgid,
# php-cli (php-cgi), php-fpm, cronie; glibc-static from CRB/PowerTools for the
# static entry and holder; Python 3.11 from AppStream).
#
# Environment: SITEISO_SELINUX=keep|permissive (EL), SITEISO_TIERS=auto|force.
# With auto, a kernel on which enable refuses (a required probe MISSING, e.g.
# AlmaLinux 8's 4.18) runs the platform check and the platform tests only:
# every other kernel-tier test would fail on the same refusal.
set -eu
SRC=/srv/siteiso
what=${1:-install}
. /etc/os-release
case "$ID" in
    debian|ubuntu) family=debian ;;
    almalinux|rocky|rhel|centos|cloudlinux|ol) family=el ;;
    *) echo "provision.sh: unsupported distribution $ID" >&2; exit 1 ;;
esac
el_major=${VERSION_ID%%.*}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
say() { printf '\n== %s\n' "$*"; }

el_python() {
    # siteiso needs Python >= 3.11 (pyproject.toml); EL 8 and 9 ship 3.11 in
    # AppStream beside their older default python3.
    echo /usr/bin/python3.11
}

install_debian() {
    say "packages and siteiso with ./setup.sh ($PRETTY_NAME)"
    cd "$SRC"
    ./setup.sh
    py=/usr/bin/python3
}

install_el() {
    say "packages with dnf ($PRETTY_NAME, kernel $(uname -r))"
    dnf -y -q install dnf-plugins-core epel-release
    if [ "$el_major" -ge 9 ]; then
        dnf config-manager --set-enabled crb
    else
        dnf config-manager --set-enabled powertools
    fi
    dnf -y -q install python3.11 python3.11-devel python3.11-pip gcc make \
        glibc-static kernel-headers util-linux iproute procps-ng shadow-utils \
        findutils httpd mod_fcgid php-cli php-fpm php-mysqlnd php-mbstring \
        php-xml curl cronie bubblewrap mariadb-server
    # firejail is only in EPEL; the tests use it where present.
    dnf -y -q install firejail || echo "(firejail not installable: skipped)"
    # The sandbox and some tests call `python3`; on EL 8 it may not exist.
    command -v python3 >/dev/null || alternatives --set python3 "$(el_python)"
    if [ "${SITEISO_SELINUX:-keep}" = permissive ] && command -v setenforce >/dev/null; then
        setenforce 0 || true
        echo "SELinux: permissive for this boot (SITEISO_SELINUX=permissive)"
    fi
    echo "SELinux: $(getenforce 2>/dev/null || echo absent)"
    # <linux/openat2.h> comes with the uapi headers of Linux >= 5.6; EL 8's
    # kernel-headers are 4.18 with backports. Say so before the build does.
    [ -e /usr/include/linux/openat2.h ] || \
        echo "WARNING: /usr/include/linux/openat2.h is missing: native/*.c will not build"

    say "siteiso into /opt/siteiso/venv"
    py=$(el_python)
    cd "$SRC"
    umask 022
    [ -x /opt/siteiso/venv/bin/python ] || "$py" -m venv /opt/siteiso/venv
    /opt/siteiso/venv/bin/pip install -q --upgrade pip
    /opt/siteiso/venv/bin/pip install -q "cffi>=1.15" "psutil>=5.9" "pyroute2>=0.7" \
        "idna>=3.4"
    /opt/siteiso/venv/bin/pip install -q --force-reinstall --no-deps .
    chmod -R a+rX /opt/siteiso
    /opt/siteiso/venv/bin/siteiso install | sed 's/^/   /'
}

install_test_venv() {
    say "test venv $SRC/.venv-test"
    cd "$SRC"
    [ -x .venv-test/bin/python ] || "$py" -m venv .venv-test
    .venv-test/bin/pip install -q --upgrade pip
    .venv-test/bin/pip install -q '.[test]'
}

run_tiers() {
    cd "$SRC"
    export CI=true
    say "siteiso doctor ($PRETTY_NAME, kernel $(uname -r))"
    siteiso doctor | tee /tmp/siteiso-doctor.txt
    required_missing=$(grep '^MISSING' /tmp/siteiso-doctor.txt | grep -c 'required:' || true)

    say "platform check: doctor and enable name the same missing features"
    check=0
    .venv-test/bin/python vagrant/check_platform.py || check=$?

    tiers=0
    if [ "$required_missing" -gt 0 ] && [ "${SITEISO_TIERS:-auto}" != force ]; then
        say "this kernel lacks $required_missing required feature(s): enable refuses"
        echo "Only the platform tests run (SITEISO_TIERS=force runs every tier)."
        .venv-test/bin/pytest -q -ra tests/kernel/test_platform_enable.py \
            -k "doctor or missing_kernel_feature" || tiers=$?
    else
        say "kernel and web tiers (CI=true: a skipped test fails)"
        .venv-test/bin/pytest -q -ra -m "kernel or web" tests/kernel tests/web \
            || tiers=$?
    fi
    say "result: platform check exit $check, tiers exit $tiers"
    [ "$check" = 0 ] && [ "$tiers" = 0 ]
}

case "$what" in
install)
    "install_$family"
    install_test_venv
    ;;
tiers)
    [ -x "$SRC/.venv-test/bin/pytest" ] || { echo "run 'provision.sh install' first" >&2; exit 1; }
    run_tiers
    ;;
*)
    echo "usage: provision.sh install|tiers" >&2
    exit 2
    ;;
esac
