"""Every fixed path siteiso reads or writes, in one place.

The recorded-state paths are the seed's (CageFS) so existing tooling finds
them. Distribution differences (Apache, suexec, php-fpm, cron) live in
siteiso.service.layout, not here.
"""

FLAG = "/opt/cloudlinux/flags/enabled-flags.d/website-isolation.flag"
CAGEFS_ETC = "/etc/cagefs"
MODE_ALLOW_ALL = "/etc/cagefs/site-isolation.mode.allow_all"
MODE_DENY_ALL = "/etc/cagefs/site-isolation.mode.deny_all"
USERS_DENIED = "/etc/cagefs/site-isolation.users.denied"
USERS_ALLOWED = "/etc/cagefs/site-isolation.users.allowed"
# cagefsctl-user is a "proxyexec" command in CageFS; registering it means
# writing this file, which siteisod reads to know the user socket is wanted.
USER_COMMAND = "/etc/cagefs/proxy.commands.d/siteiso-user.proxy"

ETC = "/etc/siteiso"
CONF = "/etc/siteiso/siteiso.conf"
DOMAINS_JSON = "/etc/siteiso/domains.json"
SITES_D = "/etc/siteiso/sites.d"

LIB = "/var/lib/siteiso"
STATE = "/var/lib/siteiso/state.json"
LOCK = "/var/lib/siteiso/lock"

RUN = "/run/siteiso"
INDEX = "/run/siteiso/index"
VIEWS = "/run/siteiso/views"
SOCKETS = "/run/siteiso/sockets"
PIDFILE = "/run/siteiso/siteisod.pid"

OPT = "/opt/siteiso"
LIBEXEC = "/usr/libexec/siteiso"
HOLDER = "/usr/libexec/siteiso/siteiso-holder"
ENTRY = "/usr/libexec/siteiso/siteiso-enter"

INTEGRATION_INI = "/opt/cpvendor/etc/integration.ini"
CPANEL_USERDATADOMAINS = "/etc/userdatadomains"
CPANEL_TRUEUSERDOMAINS = "/etc/trueuserdomains"
CPANEL_USERDATA = "/var/cpanel/userdata"

# Per-site storage under the user's home (hidden from every view).
CAGEFS_HOME_DIR = ".cagefs"
WEBSITES_DIR = "websites"
