/* The seccomp filter every site process runs under (SPEC §4.8). */
#pragma once

/* Install the filter on the calling thread. Needs CAP_SYS_ADMIN (no no_new_privs: setuid
 * programs inside a site, the entry among them, keep working). 0, or -1 with errno. */
int seccomp_install(void);
