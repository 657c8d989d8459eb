"""Distribution differences, in one place, chosen by detection.

Debian/Ubuntu and EL (AlmaLinux, CloudLinux, Rocky) lay out Apache,
suexec, php-fpm and cron differently; cPanel adds its own include tree.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str
    apache_bin: str
    apache_conf_dir: str
    apache_user: str
    apache_group: str
    suexec: str
    suexec_docroot_file: str   # suexec-custom's config ("" where compiled in)
    include_dir: str           # where siteiso writes per-site vhost includes
    php_cgi: str
    php_fpm: str
    cron_spool: str
    unit_dir: str
    # The host's own php-fpm configuration files (the panel's or the admin's
    # pools, outside every view): globs, read by siteiso.service.pools.
    fpm_pools: tuple[str, ...] = ()
    # mod_siteiso: Apache's module directory, and the file with its
    # LoadModule line (Debian: mods-available/, enabled with a2enmod).
    apache_module_dir: str = ""
    apache_module_conf: str = ""

    @property
    def apache_ctl(self) -> str:
        return "apache2ctl" if self.name == "debian" else "apachectl"

    @property
    def apache_module(self) -> str:
        return f"{self.apache_module_dir}/mod_siteiso.so"

    def includes_for(self, user: str, domain: str) -> tuple[str, ...]:
        """Where the domain's vhost includes siteiso's file from: on cPanel
        the HTTP (std) and the HTTPS (ssl) vhost each have their own include
        directory, and a site isolated over HTTP only would still be served
        outside its view over HTTPS."""
        if self.name == "cpanel":
            return tuple(f"{self.include_dir}/{kind}/2_4/{user}/{domain}/siteiso.conf"
                         for kind in ("std", "ssl"))
        return (f"{self.include_dir}/{domain}.conf",)


# php-fpm main files and pool directories: Debian/Ubuntu, EL and Remi's
# SCL builds, cPanel's EA4, Plesk, DirectAdmin.
_DEBIAN_POOLS = ("/etc/php/*/fpm/php-fpm.conf", "/etc/php/*/fpm/pool.d/*.conf")
_EL_POOLS = ("/etc/php-fpm.conf", "/etc/php-fpm.d/*.conf",
             "/etc/opt/remi/php*/php-fpm.conf", "/etc/opt/remi/php*/php-fpm.d/*.conf")
_CPANEL_POOLS = ("/opt/cpanel/ea-php*/root/etc/php-fpm.conf",
                 "/opt/cpanel/ea-php*/root/etc/php-fpm.d/*.conf")
_OTHER_POOLS = ("/opt/plesk/php/*/etc/php-fpm.d/*.conf",
                "/usr/local/php*/etc/php-fpm.d/*.conf",
                "/usr/local/php*/etc/php-fpm.conf")


def _first(pattern: str, default: str) -> str:
    found = sorted(glob.glob(pattern))
    return found[-1] if found else default


DEBIAN = Layout(
    name="debian", apache_bin="/usr/sbin/apache2", apache_conf_dir="/etc/apache2",
    apache_user="www-data", apache_group="www-data",
    suexec="/usr/lib/apache2/suexec",
    suexec_docroot_file="/etc/apache2/suexec/www-data",
    include_dir="/etc/apache2/siteiso", php_cgi="/usr/bin/php-cgi",
    php_fpm="/usr/sbin/php-fpm", cron_spool="/var/spool/cron/crontabs",
    unit_dir="/etc/systemd/system", fpm_pools=_DEBIAN_POOLS + _OTHER_POOLS,
    apache_module_dir="/usr/lib/apache2/modules",
    apache_module_conf="/etc/apache2/mods-available/siteiso.load")

EL = Layout(
    name="el", apache_bin="/usr/sbin/httpd", apache_conf_dir="/etc/httpd",
    apache_user="apache", apache_group="apache", suexec="/usr/sbin/suexec",
    suexec_docroot_file="", include_dir="/etc/httpd/conf.d/siteiso",
    php_cgi="/usr/bin/php-cgi", php_fpm="/usr/sbin/php-fpm",
    cron_spool="/var/spool/cron", unit_dir="/etc/systemd/system",
    fpm_pools=_EL_POOLS + _OTHER_POOLS,
    apache_module_dir="/usr/lib64/httpd/modules",
    apache_module_conf="/etc/httpd/conf.modules.d/90-siteiso.conf")

CPANEL = Layout(
    name="cpanel", apache_bin="/usr/sbin/httpd", apache_conf_dir="/etc/apache2",
    apache_user="nobody", apache_group="nobody", suexec="/usr/sbin/suexec",
    suexec_docroot_file="", include_dir="/etc/apache2/conf.d/userdata",
    php_cgi="/usr/local/bin/php-cgi",
    php_fpm="/opt/cpanel/ea-php82/root/usr/sbin/php-fpm",
    cron_spool="/var/spool/cron", unit_dir="/etc/systemd/system",
    fpm_pools=_CPANEL_POOLS + _EL_POOLS,
    apache_module_dir="/usr/lib64/apache2/modules",
    apache_module_conf="/etc/apache2/conf.modules.d/900_mod_siteiso.conf")


_MARKS = ("/usr/local/cpanel/version", "/etc/debian_version", "/etc/redhat-release")
# What detect found, by what it looked at: a converge asks once per user,
# and listing /usr/sbin each time was a tenth of a remount of every user.
_seen: dict[tuple[object, ...], Layout] = {}


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def detect(root: str = "/") -> Layout:
    def at(p: str) -> str:
        return os.path.join(root, p.lstrip("/"))
    marks = tuple(os.path.exists(at(m)) for m in _MARKS)
    # A php-fpm installed or removed changes /usr/sbin's mtime (long-lived
    # siteisod sees it).
    key = (root, marks, _mtime(at("/usr/sbin")))
    found = _seen.get(key)
    if found is None:
        if len(_seen) > 16:
            _seen.clear()
        found = _seen[key] = _detect(marks)
    return found


def _detect(marks: tuple[bool, ...]) -> Layout:
    cpanel, debian, redhat = marks
    if cpanel:
        return CPANEL
    if debian:
        return Layout(**{**DEBIAN.__dict__,
                         "php_fpm": _first("/usr/sbin/php-fpm*", DEBIAN.php_fpm)})
    if redhat:
        return EL
    return DEBIAN
