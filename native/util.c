/* Shared helpers; see util.h. */
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

const char *util_progname = "siteiso";
int util_exit_status = 1;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* ---- errors ------------------------------------------------------------------------- */

/* One write(2) per message so that lines from concurrent processes do not interleave. */
static void vreport(int err, const char *prefix, const char *fmt, va_list ap)
{
        char msg[1024];
        int n = snprintf(msg, sizeof(msg), "%s: %s", util_progname, prefix);

        if (n < 0 || (size_t)n >= sizeof(msg))
                n = 0;
        int m = vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
        if (m > 0)
                n += m;
        if ((size_t)n >= sizeof(msg) - 2)
                n = (int)sizeof(msg) - 2 - 1;
        if (err > 0) {
                const char *hint = err == ELOOP ? " (a symlink is on the path)"
                                 : err == EXDEV ? " (the path crosses a mount point)"
                                 : "";
                int k = snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s%s", strerror(err),
                                 hint);
                if (k > 0)
                        n += k;
                if ((size_t)n >= sizeof(msg) - 1)
                        n = (int)sizeof(msg) - 2;
        }
        msg[n++] = '\n';
        (void)!write(STDERR_FILENO, msg, (size_t)n);
}

void die_errno(const char *fmt, ...)
{
        int err = errno;
        va_list ap;

        va_start(ap, fmt);
        vreport(err, "cannot ", fmt, ap);
        va_end(ap);
        _exit(util_exit_status);
}

void die_err(int err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vreport(err, "cannot ", fmt, ap);
        va_end(ap);
        _exit(util_exit_status);
}

void die(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vreport(0, "", fmt, ap);
        va_end(ap);
        _exit(util_exit_status);
}

void warn_errno(const char *fmt, ...)
{
        int err = errno;
        va_list ap;

        va_start(ap, fmt);
        vreport(err, "cannot ", fmt, ap);
        va_end(ap);
        errno = err;
}

/* ---- raw syscalls ------------------------------------------------------------------- */

int sys_openat2(int dirfd, const char *path, int flags, uint64_t mode, uint64_t resolve)
{
        struct open_how how = {
                .flags = (uint64_t)(unsigned int)flags,
                .mode = mode,
                .resolve = resolve,
        };

        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

int sys_pidfd_open(pid_t pid, unsigned int flags)
{
        return (int)syscall(SYS_pidfd_open, pid, flags);
}

int sys_pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
        return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, flags);
}

int sys_pidfd_send_signal(int pidfd, int sig)
{
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int sys_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
        return (int)syscall(SYS_close_range, first, last, flags);
}

/* Close the descriptors lo..hi: close_range, or where it fails (ENOSYS: a kernel without
 * it; EPERM: a container's seccomp profile) each one that /proc/self/fd lists in the span
 * (a loop up to a fixed number would miss one above it); without /proc, every number
 * below the descriptor limit. */
void close_span(unsigned lo, unsigned hi)
{
        if (sys_close_range(lo, hi, 0) == 0)
                return;
        DIR *d = opendir("/proc/self/fd");
        if (!d) {
                struct rlimit rl = { 0, 0 };
                (void)getrlimit(RLIMIT_NOFILE, &rl);
                rlim_t top = rl.rlim_max > rl.rlim_cur ? rl.rlim_max : rl.rlim_cur;
                if (top == RLIM_INFINITY || top > (1U << 20))
                        top = 1U << 20;
                for (unsigned fd = lo; fd <= hi && fd < top; fd++)
                        close((int)fd);
                return;
        }
        int own = dirfd(d);
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
                char *end;
                unsigned long fd = strtoul(ent->d_name, &end, 10);
                if (end == ent->d_name || *end || (long)fd == own)
                        continue;
                if (fd >= lo && fd <= hi)
                        close((int)fd);
        }
        closedir(d);
}

/* ---- small files and numbers -------------------------------------------------------- */

ssize_t read_small_file(int dirfd, const char *path, char *buf, size_t size)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -1;

        ssize_t n = read(fd, buf, size - 1);
        if (n < 0)
                return -1;
        buf[n] = '\0';
        return n;
}

int write_all(int fd, const char *s, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, s, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

bool parse_u64(const char *s, uint64_t *out)
{
        uint64_t v = 0;

        if (!s || !*s || (*s == '0' && s[1]))
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return false;
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *out = v;
        return true;
}

bool parse_uid(const char *s, uid_t *out)
{
        uint64_t v;

        /* (uid_t)-1 is "no change" to the set*id calls: never a real id. */
        if (!parse_u64(s, &v) || v >= UINT32_MAX)
                return false;
        *out = (uid_t)v;
        return true;
}

bool parse_mode(const char *s, mode_t *out)
{
        unsigned v = 0;

        if (!s || !*s || strlen(s) > 5)
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '7')
                        return false;
                v = v * 8 + (unsigned)(*s - '0');
        }
        if (v > 07777)
                return false;
        *out = (mode_t)v;
        return true;
}

int proc_starttime(pid_t pid, uint64_t *out)
{
        char path[64], buf[1024];

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (read_small_file(AT_FDCWD, path, buf, sizeof(buf)) < 0)
                return -errno;

        /* comm may hold spaces and parentheses: fields start after the last ')'. Field 3
         * (state) follows it, so starttime (22) is the 20th field from there. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EINVAL;
        p++;
        for (int field = 3; field < 22; field++) {
                if (*p != ' ')
                        return -EINVAL;
                p++;
                p += strcspn(p, " ");
        }
        if (*p != ' ')
                return -EINVAL;
        p++;

        char num[32];
        size_t len = strcspn(p, " \n");
        if (len == 0 || len >= sizeof(num))
                return -EINVAL;
        memcpy(num, p, len);
        num[len] = '\0';
        if (!parse_u64(num, out))
                return -EINVAL;
        return 0;
}

int ns_inode(pid_t pid, const char *name, uint64_t *out)
{
        char path[64];
        struct stat st;

        if (pid == 0)
                snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
        else
                snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
        if (stat(path, &st) < 0)
                return -errno;
        *out = (uint64_t)st.st_ino;
        return 0;
}

char *split_tab(char *s)
{
        char *t = strchr(s, '\t');

        if (!t)
                return NULL;
        *t = '\0';
        return t + 1;
}

bool path_is_clean(const char *p)
{
        if (!p || p[0] != '/')
                return false;
        if (p[1] == '\0')
                return true;

        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return false;

        const char *comp = p + 1;
        for (;;) {
                size_t len = strcspn(comp, "/");
                if (len == 0)
                        return false; /* "//" or a trailing slash */
                if ((len == 1 && comp[0] == '.') ||
                    (len == 2 && comp[0] == '.' && comp[1] == '.'))
                        return false;
                if (comp[len] == '\0')
                        return true;
                comp += len + 1;
        }
}

/* ---- index -------------------------------------------------------------------------- */

/* Split line into exactly n TAB-separated fields. */
static bool split_fields(char *line, char **f, size_t n)
{
        f[0] = line;
        for (size_t i = 1; i < n; i++) {
                f[i] = split_tab(f[i - 1]);
                if (!f[i])
                        return false;
        }
        return strchr(f[n - 1], '\t') == NULL;
}

/* Split line at every TAB into at most max fields; their number, or 0 if there are more. */
static size_t split_upto(char *line, char **f, size_t max)
{
        size_t n = 1;

        f[0] = line;
        while ((f[n] = split_tab(f[n - 1])) != NULL)
                if (++n > max)
                        return 0;
        return n;
}

static bool field_ok(const char *s)
{
        return s && *s;
}

int index_parse(char *buf, size_t len, struct index *idx, size_t *bad_line)
{
        size_t lineno = 0;
        char *line = buf;

        idx->has_host = false;
        idx->n = 0;
        *bad_line = 1;

        /* A NUL or an empty line would silently hide the records after it. */
        if (memchr(buf, '\0', len) != NULL || buf[len] != '\0')
                return -1;

        while (line) {
                char *next = strchr(line, '\n');
                if (!next && *line == '\0')
                        break;
                if (next)
                        *next++ = '\0';
                lineno++;
                *bad_line = lineno;
                if (*line == '\0')
                        return -1;

                if (strncmp(line, "host\t", 5) == 0) {
                        char *f[3];
                        if (idx->has_host || !split_fields(line, f, 3) ||
                            !parse_u64(f[1], &idx->host.pidns) ||
                            !parse_u64(f[2], &idx->host.mntns))
                                return -1;
                        idx->host.kind = REC_HOST;
                        idx->has_host = true;
                } else {
                        char *f[9 + INDEX_MAX_ALIASES + 1];
                        struct index_rec r = { 0 };
                        uint64_t pid;
                        size_t nf = split_upto(line, f, 9 + INDEX_MAX_ALIASES);

                        if (nf < 9)
                                return -1;
                        if (strcmp(f[0], "site") == 0)
                                r.kind = REC_SITE;
                        else if (strcmp(f[0], "retired") == 0)
                                r.kind = REC_RETIRED;
                        else if (strcmp(f[0], "cage") == 0)
                                r.kind = REC_CAGE;
                        else
                                return -1;
                        if (!parse_u64(f[2], &pid) || pid < 1 || pid > INT_MAX ||
                            !parse_u64(f[3], &r.starttime) || !parse_u64(f[4], &r.pidns) ||
                            !parse_u64(f[5], &r.mntns))
                                return -1;
                        for (int i = 1; i < 9; i++)
                                if (!field_ok(f[i]))
                                        return -1;
                        r.token = f[1];
                        r.pid = (pid_t)pid;
                        r.docroot = f[6];
                        r.names = f[7];
                        r.ini = f[8];
                        if (r.kind != REC_CAGE && !path_is_clean(r.docroot))
                                return -1;
                        if (r.kind == REC_CAGE && nf > 9)
                                return -1;
                        for (size_t i = 9; i < nf; i++) {
                                if (!path_is_clean(f[i]) || strcmp(f[i], "/") == 0)
                                        return -1;
                                r.aliases[r.n_aliases++] = f[i];
                        }
                        if (idx->n >= INDEX_MAX_RECORDS)
                                return -1;
                        idx->recs[idx->n++] = r;
                }
                line = next;
        }
        if (!idx->has_host) {
                *bad_line = lineno + 1;
                return -1;
        }
        *bad_line = 0;
        return 0;
}

bool names_contain(const char *names, const char *name)
{
        size_t len = strlen(name);

        while (len > 1 && name[len - 1] == '.')
                len--;
        if (len == 0)
                return false;

        const char *p = names;
        for (;;) {
                size_t n = strcspn(p, ",");
                if (n == len && strncasecmp(p, name, len) == 0)
                        return true;
                if (p[n] == '\0')
                        return false;
                p += n + 1;
        }
}

void ensure_std_fds(void)
{
        for (int fd = 0; fd <= 2; fd++) {
                if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
                        continue;
                int null = open("/dev/null", O_RDWR | O_NOCTTY);
                if (null < 0)
                        _exit(util_exit_status);
                if (null != fd)
                        _exit(util_exit_status);
        }
}
