/* Shared helpers of siteiso-holder and siteiso-enter: error reporting, raw syscalls the
 * C library may lack, small-file reading, the index format and /proc/<pid>/stat. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------------------- */

/* Set once by main(); prefixes every message. */
extern const char *util_progname;
/* Exit status of die() and friends (1 for the holder, 125 for the entry). */
extern int util_exit_status;

/* "<prog>: cannot <what>: <strerror(errno)>" and exit. */
_Noreturn void die_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same with an explicit errno value. */
_Noreturn void die_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "<prog>: <message>" and exit, for failures without an errno. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Open /dev/null on any of 0, 1, 2 that is closed, so that no file opened later lands
 * there and receives messages meant for stderr. Exits silently if it cannot. */
void ensure_std_fds(void);
/* Message only, no exit. */
void warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- cleanup ------------------------------------------------------------------------ */

static inline void close_fdp(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void free_p(void *p)
{
        free(*(void **)p);
}

#define _cleanup_close_ __attribute__((cleanup(close_fdp)))
#define _cleanup_free_ __attribute__((cleanup(free_p)))

/* Hand a descriptor out of a _cleanup_close_ variable. */
static inline int steal_fd(int *fd)
{
        int r = *fd;
        *fd = -1;
        return r;
}

/* ---- raw syscalls ------------------------------------------------------------------- */

#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#endif

/* openat2(2); -1 with errno on failure. */
int sys_openat2(int dirfd, const char *path, int flags, uint64_t mode, uint64_t resolve);
int sys_pidfd_open(pid_t pid, unsigned int flags);
int sys_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
int sys_pidfd_send_signal(int pidfd, int sig);
int sys_close_range(unsigned int first, unsigned int last, unsigned int flags);
/* Close every descriptor in [lo, hi]: close_range, else what /proc/self/fd lists. */
void close_span(unsigned lo, unsigned hi);

/* ---- small files and numbers -------------------------------------------------------- */

/* One read() of a small file into buf (NUL-terminated); bytes read or -1 with errno. */
ssize_t read_small_file(int dirfd, const char *path, char *buf, size_t size);
/* Write a whole string to an already open descriptor; 0 or -1 with errno. */
int write_all(int fd, const char *s, size_t len);

/* Strict decimal parse of a whole string; false on junk, sign or overflow. */
bool parse_u64(const char *s, uint64_t *out);
bool parse_uid(const char *s, uid_t *out);
/* Strict octal mode ≤ 07777. */
bool parse_mode(const char *s, mode_t *out);

/* Field 22 (starttime) of /proc/<pid>/stat; 0 or -errno. */
int proc_starttime(pid_t pid, uint64_t *out);
/* Inode of /proc/<self|pid>/ns/<name> (pid 0 = self); 0 or -errno. */
int ns_inode(pid_t pid, const char *name, uint64_t *out);

/* Split s at the first TAB (writes NUL there); returns the rest or NULL if none. */
char *split_tab(char *s);

/* Is p an absolute, normalized path: no empty, "." or ".." component, no trailing slash
 * (except "/" itself), no control character? */
bool path_is_clean(const char *p);

/* ---- index (/run/siteiso/index/<uid>) ----------------------------------------------- */

#define INDEX_DIR "/run/siteiso/index"
#define INDEX_MAX_BYTES (1U << 20)
#define INDEX_MAX_RECORDS 8192
#define INDEX_MAX_ALIASES 8

enum index_kind {
        REC_HOST,
        REC_SITE,
        REC_RETIRED,
        REC_CAGE,
};

struct index_rec {
        enum index_kind kind;
        const char *token;   /* "-" for cage */
        pid_t pid;
        uint64_t starttime;
        uint64_t pidns;
        uint64_t mntns;
        const char *docroot; /* "-" for cage */
        const char *names;   /* comma-separated, "-" for cage */
        const char *ini;     /* "-" when none */
        /* The docroot as the web server names it, where that is another path leading to the
         * same directory (a symlink on the way); none for most sites. */
        const char *aliases[INDEX_MAX_ALIASES];
        size_t n_aliases;
};

struct index {
        bool has_host;
        struct index_rec host;
        size_t n;               /* site, retired and cage records */
        struct index_rec *recs;
};

/* Parse buf[0..len) (buf[len] must be NUL; modified in place: fields are NUL-terminated
 * where they stand) into idx, whose recs must hold INDEX_MAX_RECORDS.
 * 0, or -1 with *bad_line set (1-based). */
int index_parse(char *buf, size_t len, struct index *idx, size_t *bad_line);

/* Is name one of the comma-separated names (ASCII case-insensitive, trailing dot ignored)? */
bool names_contain(const char *names, const char *name);

/* Constants glibc 2.36's headers may lack (kernel ABI). */
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* struct clone_args up to .cgroup (CLONE_ARGS_SIZE_VER2), under our own name. */
struct siteiso_clone_args {
        uint64_t flags;
        uint64_t pidfd;
        uint64_t child_tid;
        uint64_t parent_tid;
        uint64_t exit_signal;
        uint64_t stack;
        uint64_t stack_size;
        uint64_t tls;
        uint64_t set_tid;
        uint64_t set_tid_size;
        uint64_t cgroup;
};
