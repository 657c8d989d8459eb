/* siteiso-enter (setuid root): runs a command as the calling user inside a site's view, or
 * the user cage (native/README.md).
 *
 *   siteiso-enter enter <docroot|domain> <command> [args...]
 *   siteiso-enter handler <token> <program> [args...]
 *   siteiso-enter cage <command> [args...]
 *
 * It runs on every PHP request: one read of the index, a few stats, no allocation before
 * the fork, no NSS. Whatever fails, the command does not run (exit 125). */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp.h"
#include "util.h"


#define EXIT_ENTRY_FAILED 125
#define SAFE_PATH "/usr/local/bin:/usr/bin:/bin"
#define HOLDER_CGROUP_FD 3

extern char **environ;


enum mode {
        MODE_ENTER,
        MODE_HANDLER,
        MODE_CAGE,
};

/* What the child needs; filled by the parent before the fork. */
struct entry {
        enum mode mode;
        uid_t uid;
        gid_t gid;
        bool inside;                  /* the caller already runs in the target view */
        const struct index_rec *rec;  /* the target */
        int holder_pidfd;
        int parent_pidfd;             /* to notice a parent killed before PDEATHSIG holds */
        int procs_fd;                 /* cgroup.procs, fork fallback only */
        char *const *argv;
        sigset_t caller_mask;
        char cwd[PATH_MAX];
};

static char index_buf[INDEX_MAX_BYTES + 1];
static struct index_rec index_recs[INDEX_MAX_RECORDS];
static char ini_env[PATH_MAX + 32];
/* Room for the usual environment without touching malloc on the hot path. */
static char *env_static[512];

static _Noreturn void usage(void)
{
        die("usage: siteiso-enter enter <docroot|domain> <command> [args...]\n"
            "       siteiso-enter handler <token> <program> [args...]\n"
            "       siteiso-enter cage <command> [args...]");
}

/* ---- where the caller is, where it may go ------------------------------------------- */

/* The caller's own index: root-owned, writable by root only, never through a symlink. */
static void read_index(uid_t uid, const char *what, struct index *idx)
{
        char path[64];
        struct stat st;

        snprintf(path, sizeof(path), INDEX_DIR "/%u", (unsigned)uid);

        /* Only root can have put a file in a root-owned directory nobody else may write. */
        _cleanup_close_ int dir = sys_openat2(AT_FDCWD, INDEX_DIR,
                                              O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                              RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (dir < 0) {
                if (errno == ENOENT)
                        die("cannot enter: no %s here (no isolated site, or a view that does "
                            "not show it)", INDEX_DIR);
                die_errno("open %s", INDEX_DIR);
        }
        if (fstat(dir, &st) < 0)
                die_errno("stat %s", INDEX_DIR);
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                die("cannot read %s: not a directory writable by root only; refused", INDEX_DIR);

        char name[16];
        snprintf(name, sizeof(name), "%u", (unsigned)uid);
        _cleanup_close_ int fd = sys_openat2(dir, name,
                                             O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                                             O_NOCTTY, 0,
                                             RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                             RESOLVE_NO_MAGICLINKS);
        if (fd < 0) {
                if (errno == ENOENT && what[0] != '\0')
                        die("cannot enter %s: not one of your isolated sites (uid %u has none)",
                            what, (unsigned)uid);
                if (errno == ENOENT)
                        die("cannot enter: uid %u has no isolated site (no %s)", (unsigned)uid,
                            path);
                die_errno("open index %s", path);
        }
        if (fstat(fd, &st) < 0)
                die_errno("stat index %s", path);
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                die("cannot read index %s: not a regular file writable by root only; refused",
                    path);
        if (st.st_size > INDEX_MAX_BYTES)
                die_err(EFBIG, "read index %s", path);

        ssize_t n = read(fd, index_buf, INDEX_MAX_BYTES + 1);
        if (n < 0)
                die_errno("read index %s", path);
        if (n != st.st_size)
                die("cannot read index %s: it changed while being read; try again", path);

        size_t bad;
        idx->recs = index_recs;
        if (index_parse(index_buf, (size_t)n, idx, &bad) < 0)
                die("cannot read index %s: malformed at line %zu; refused", path, bad);
}

static bool is_view(const struct index_rec *r)
{
        return r->kind == REC_SITE || r->kind == REC_RETIRED;
}

/* The view the caller runs in, or NULL when it runs outside every view (host or cage).
 * Dies when it runs somewhere the index does not know. */
static const struct index_rec *caller_view(const struct index *idx)
{
        uint64_t pidns, mntns;
        int r;

        if ((r = ns_inode(0, "pid", &pidns)) < 0 || (r = ns_inode(0, "mnt", &mntns)) < 0)
                die_err(-r, "tell where the caller runs (/proc/self/ns); refused");

        for (size_t i = 0; i < idx->n; i++) {
                const struct index_rec *v = &idx->recs[i];
                if (!is_view(v))
                        continue;
                bool own_pidns = v->pidns != idx->host.pidns;
                bool pid_match = own_pidns && v->pidns == pidns;
                bool mnt_match = v->mntns == mntns;
                if (!pid_match && !mnt_match)
                        continue;
                /* Only a process started through the entry runs in a view, and it is in
                 * both of its namespaces: anything half in is refused. */
                if (!mnt_match || (own_pidns && !pid_match))
                        die("cannot enter: the caller is half inside site %s; refused",
                            v->token);
                return v;
        }

        /* The host's PID namespace: the account itself, the cage included (the pids of the
         * index are only valid there). */
        if (pidns == idx->host.pidns)
                return NULL;
        die("cannot enter: the caller runs in a PID namespace the index does not know; refused");
}

/* "/a/b/" -> "/a/b", in place. */
static void strip_slashes(char *p)
{
        size_t n = strlen(p);

        while (n > 1 && p[n - 1] == '/')
                p[--n] = '\0';
}

/* The site's docroot, or the path the web server names it by (an alias of the record), that
 * equals path; NULL for none. */
static const char *docroot_named(const struct index_rec *r, const char *path)
{
        if (strcmp(r->docroot, path) == 0)
                return r->docroot;
        for (size_t i = 0; i < r->n_aliases; i++)
                if (strcmp(r->aliases[i], path) == 0)
                        return r->aliases[i];
        return NULL;
}

static bool site_matches(const struct index_rec *r, const char *what)
{
        if (what[0] == '/')
                return docroot_named(r, what) != NULL;
        return strcmp(r->names, "-") != 0 && names_contain(r->names, what);
}

/* Does path lie strictly under dir? Both clean and absolute. */
static bool path_under(const char *path, const char *dir)
{
        size_t n = strlen(dir);

        if (strcmp(dir, "/") == 0)
                return path[0] == '/' && path[1] != '\0';
        return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Is fd 0 a listening unix stream socket? That is how a FastCGI process manager (mod_fcgid)
 * starts an application: before any request, with nothing of one in the environment. */
static bool fastcgi_spawn(void)
{
        int val;
        socklen_t len = sizeof(val);

        if (getsockopt(STDIN_FILENO, SOL_SOCKET, SO_ACCEPTCONN, &val, &len) < 0 || !val)
                return false;
        len = sizeof(val);
        if (getsockopt(STDIN_FILENO, SOL_SOCKET, SO_DOMAIN, &val, &len) < 0 || val != AF_UNIX)
                return false;
        len = sizeof(val);
        return getsockopt(STDIN_FILENO, SOL_SOCKET, SO_TYPE, &val, &len) == 0 &&
               val == SOCK_STREAM;
}

/* A handler runs for the site whose docroot the web server serves, and for scripts in that
 * docroot but in no other site's docroot nested inside it. A FastCGI application spawned
 * before any request (no DOCUMENT_ROOT, no script named, its listening socket on fd 0) runs
 * for the site the token names: the scripts of the requests it serves later are looked up
 * in the site's view, where no sibling's tree exists. */
static void check_handler_env(const struct index *idx, const struct index_rec *site)
{
        const char *env_docroot = getenv("DOCUMENT_ROOT");
        const char *script = getenv("SCRIPT_FILENAME");
        const char *translated = getenv("PATH_TRANSLATED");
        char docroot[PATH_MAX];

        /* Apache's Action + ScriptAlias (the CGI chain through suexec): SCRIPT_FILENAME names
         * the wrapper and php-cgi runs PATH_TRANSLATED, as it does whenever REDIRECT_STATUS is
         * set. Check what PHP will run, and hand PHP that same file. */
        if (translated && getenv("REDIRECT_STATUS")) {
                script = translated;
                if (setenv("SCRIPT_FILENAME", translated, 1) != 0)
                        die("cannot run handler for site %s: out of memory", site->token);
        }

        if (!env_docroot && !script && !translated && fastcgi_spawn())
                return;
        if (!env_docroot)
                die("cannot run handler for site %s: DOCUMENT_ROOT is not set; refused",
                    site->token);
        if (strlen(env_docroot) >= sizeof(docroot))
                die("cannot run handler for site %s: DOCUMENT_ROOT is too long; refused",
                    site->token);
        strcpy(docroot, env_docroot);
        strip_slashes(docroot);
        /* The docroot, or the path the web server names it by (recorded at converge after
         * it was resolved to that same docroot). */
        const char *root = docroot_named(site, docroot);
        if (!root)
                die("cannot run handler for site %s: DOCUMENT_ROOT %s is not its docroot %s; "
                    "refused", site->token, docroot, site->docroot);
        if (!script)
                return;
        if (!path_is_clean(script) || !path_under(script, root))
                die("cannot run handler for site %s: SCRIPT_FILENAME %s is not in %s; refused",
                    site->token, script, root);
        /* The same script under the resolved docroot: a nested sibling is recorded there. */
        char resolved[PATH_MAX];
        if (snprintf(resolved, sizeof(resolved), "%s%s", site->docroot,
                     script + strlen(root)) >= (int)sizeof(resolved))
                die("cannot run handler for site %s: SCRIPT_FILENAME is too long; refused",
                    site->token);
        for (size_t i = 0; i < idx->n; i++) {
                const struct index_rec *o = &idx->recs[i];
                if (!is_view(o) || strcmp(o->token, site->token) == 0)
                        continue;
                for (size_t k = 0; k <= o->n_aliases; k++) {
                        const char *p = k == 0 ? o->docroot : o->aliases[k - 1];
                        if ((path_under(p, root) && path_under(script, p)) ||
                            (path_under(p, site->docroot) && path_under(resolved, p)))
                                die("cannot run handler for site %s: SCRIPT_FILENAME %s "
                                    "belongs to the site at %s; refused", site->token, script,
                                    o->docroot);
                }
        }
}

static const struct index_rec *choose_target(const struct index *idx,
                                             const struct index_rec *inside, enum mode mode,
                                             char *what)
{
        const struct index_rec *t = NULL;

        if (mode == MODE_CAGE) {
                if (inside)
                        die("cannot enter the cage from inside site %s; refused",
                            inside->token);
                for (size_t i = 0; i < idx->n && !t; i++)
                        if (idx->recs[i].kind == REC_CAGE)
                                t = &idx->recs[i];
                if (!t)
                        die("cannot enter the cage: it is not running");
                return t;
        }

        if (mode == MODE_ENTER)
                strip_slashes(what);
        if (inside) {
                bool ok = mode == MODE_HANDLER ? strcmp(inside->token, what) == 0
                                               : site_matches(inside, what);
                if (!ok)
                        die("cannot enter %s from inside site %s: only that site; refused",
                            what, inside->docroot);
                return inside;
        }

        /* Outside: current views only; a docroot before a domain name. */
        for (size_t i = 0; i < idx->n && !t; i++) {
                const struct index_rec *r = &idx->recs[i];
                if (r->kind != REC_SITE)
                        continue;
                if (mode == MODE_HANDLER ? strcmp(r->token, what) == 0
                                         : (what[0] == '/' && site_matches(r, what)))
                        t = r;
        }
        for (size_t i = 0; i < idx->n && !t && mode == MODE_ENTER; i++)
                if (idx->recs[i].kind == REC_SITE && what[0] != '/' &&
                    site_matches(&idx->recs[i], what))
                        t = &idx->recs[i];
        if (!t)
                die("cannot enter %s: not one of your isolated sites", what);
        return t;
}

/* ---- the holder --------------------------------------------------------------------- */

static const char *rec_label(const struct index_rec *r)
{
        return r->kind == REC_CAGE ? "the cage" : r->docroot;
}

/* A pidfd of the target's holder, checked to be the process the index names. */
static int open_holder(const struct entry *e, pid_t pid)
{
        const struct index_rec *r = e->rec;
        uint64_t start, ns;
        int err;

        _cleanup_close_ int pidfd = sys_pidfd_open(pid, 0);
        if (pidfd < 0)
                die_errno("open the holder of %s (pid %d); is the view running?",
                          rec_label(r), (int)pid);
        if ((err = proc_starttime(pid, &start)) < 0)
                die_err(-err, "read the start time of holder %d", (int)pid);
        if (start != r->starttime)
                die("cannot enter %s: holder %d is not the process the index names; refused",
                    rec_label(r), (int)pid);
        if ((err = ns_inode(pid, "mnt", &ns)) < 0)
                die_err(-err, "read the mount namespace of holder %d", (int)pid);
        if (ns != r->mntns)
                die("cannot enter %s: holder %d is not in the view the index names; refused",
                    rec_label(r), (int)pid);
        if ((err = ns_inode(pid, "pid", &ns)) < 0)
                die_err(-err, "read the PID namespace of holder %d", (int)pid);
        if (ns != r->pidns)
                die("cannot enter %s: holder %d is not in the view the index names; refused",
                    rec_label(r), (int)pid);

        /* Still alive after the checks: the pid was not reused in between, and the pidfd
         * is the process checked. */
        if (sys_pidfd_send_signal(pidfd, 0) < 0)
                die_errno("reach holder %d", (int)pid);
        return steal_fd(&pidfd);
}

static int holder_cgroup(int pidfd, pid_t pid)
{
        struct statfs sfs;
        _cleanup_close_ int fd = sys_pidfd_getfd(pidfd, HOLDER_CGROUP_FD, 0);

        if (fd < 0)
                die_errno("fetch the cgroup of holder %d", (int)pid);
        if (fstatfs(fd, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
                die("cannot enter: fd %d of holder %d is not a cgroup2 directory; refused",
                    HOLDER_CGROUP_FD, (int)pid);
        return steal_fd(&fd);
}

/* ---- the child: becomes the command ------------------------------------------------- */

static _Noreturn void child_die(const char *what)
{
        warn_errno("%s", what);
        _exit(EXIT_ENTRY_FAILED);
}

/* The caller's environment without loader and PHP overrides, with a safe PATH and the
 * site's PHP_INI_SCAN_DIR. */
static char **clean_environment(const struct index_rec *r)
{
        size_t n = 0, k = 0;

        for (char **e = environ; *e; e++)
                n++;
        char **env = env_static;
        if (n + 3 > sizeof(env_static) / sizeof(env_static[0])) {
                env = malloc((n + 3) * sizeof(char *));
                if (!env)
                        child_die("allocate the environment");
        }

        for (char **e = environ; *e; e++) {
                const char *v = *e;
                if (strncmp(v, "LD_", 3) == 0 || strncmp(v, "PHPRC=", 6) == 0 ||
                    strncmp(v, "PHP_INI_SCAN_DIR=", 17) == 0 || strncmp(v, "PATH=", 5) == 0)
                        continue;
                env[k++] = *e;
        }
        env[k++] = (char *)"PATH=" SAFE_PATH;
        if (strcmp(r->ini, "-") != 0) {
                int m = snprintf(ini_env, sizeof(ini_env), "PHP_INI_SCAN_DIR=%s", r->ini);
                if (m < 0 || (size_t)m >= sizeof(ini_env)) {
                        errno = ENAMETOOLONG;
                        child_die("set PHP_INI_SCAN_DIR");
                }
                env[k++] = ini_env;
        }
        env[k] = NULL;
        return env;
}

static _Noreturn void run_child(const struct entry *e)
{
        const struct index_rec *r = e->rec;

        if (e->procs_fd >= 0 && write_all(e->procs_fd, "0", 1) < 0)
                child_die("join the cgroup of the view");
        /* The cgroup namespace last: see the setns in main(). */
        if (!e->inside && setns(e->holder_pidfd, CLONE_NEWCGROUP) < 0)
                child_die("join the cgroup namespace of the view");

        char **env = clean_environment(r);

        struct rlimit no_core = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                child_die("set RLIMIT_CORE to 0");

        /* While still privileged: no no_new_privs, so setuid programs of the view (the entry
         * itself among them) keep working, and stay under the filter. */
        if (seccomp_install() < 0)
                child_die("install the seccomp filter");

        /* Supplementary groups stay the caller's: the setuid exec did not touch them. */
        if (setresgid(e->gid, e->gid, e->gid) < 0)
                child_die("set the group id");
        if (setresuid(e->uid, e->uid, e->uid) < 0)
                child_die("set the user id");
        if (geteuid() != e->uid || getegid() != e->gid || setuid(0) == 0) {
                errno = EPERM;
                child_die("drop root");
        }

        /* After the uid change, which clears it; then check the parent did not go first. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                child_die("set the parent-death signal");
        struct pollfd pfd = { .fd = e->parent_pidfd, .events = POLLIN };
        if (poll(&pfd, 1, 0) != 0)
                _exit(EXIT_ENTRY_FAILED);

        close_span(3, ~0U);

        /* By path, as the user, in the view: never a directory the caller holds. */
        if (e->cwd[0] != '/' || chdir(e->cwd) < 0) {
                const char *fallback = strcmp(r->docroot, "-") == 0 ? "/" : r->docroot;
                if (chdir(fallback) < 0)
                        child_die("change directory to the docroot");
        }

        if (sigprocmask(SIG_SETMASK, &e->caller_mask, NULL) < 0)
                child_die("restore the signal mask");
        environ = env;
        execvp(e->argv[0], e->argv);

        int err = errno;
        warn_errno("run %s", e->argv[0]);
        _exit(err == ENOENT ? 127 : 126);
}

/* ---- the parent: passes signals and the exit status through ------------------------- */

static void forwarded_signals(sigset_t *set)
{
        static const int own[] = {
                SIGKILL, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU,
                SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS,
        };

        sigfillset(set);
        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
                sigdelset(set, own[i]);
}

static _Noreturn void pass_status(int status)
{
        if (WIFEXITED(status))
                _exit(WEXITSTATUS(status));

        int sig = WTERMSIG(status);
        struct rlimit no_core = { 0, 0 };
        sigset_t one;

        setrlimit(RLIMIT_CORE, &no_core);
        signal(sig, SIG_DFL);
        kill(getpid(), sig);
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        _exit(128 + sig);
}

static _Noreturn void supervise(pid_t child, const sigset_t *set)
{
        for (;;) {
                siginfo_t si;
                int sig = sigwaitinfo(set, &si);

                if (sig < 0) {
                        if (errno == EINTR)
                                continue;
                        kill(child, SIGKILL);
                        die_errno("wait for signals");
                }
                if (sig == SIGCHLD) {
                        int status;
                        pid_t r = waitpid(child, &status, WNOHANG);
                        if (r == child)
                                pass_status(status);
                        if (r < 0 && errno != EINTR)
                                die_errno("wait for the command");
                        continue;
                }
                /* Signals the kernel sends on its own (the terminal's ^C, hangup) already
                 * reach the command, which shares our process group: only forward those a
                 * process sent. */
                if (si.si_code <= 0)
                        kill(child, sig);
        }
}

/* ---- main --------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
        struct entry e = { .holder_pidfd = -1, .parent_pidfd = -1, .procs_fd = -1 };
        struct index idx;
        char no_target[1] = "";
        char *what = no_target;

        util_progname = "siteiso-enter";
        util_exit_status = EXIT_ENTRY_FAILED;
        ensure_std_fds();

        e.uid = getuid();
        e.gid = getgid();
        if (e.uid == 0)
                die("refusing to enter as root: run it as the site's user");
        if (geteuid() != 0)
                die("cannot enter: siteiso-enter is not setuid root (effective uid %u); "
                    "reinstall it", (unsigned)geteuid());

        if (argc >= 4 && strcmp(argv[1], "enter") == 0) {
                e.mode = MODE_ENTER;
                what = argv[2];
                e.argv = argv + 3;
        } else if (argc >= 4 && strcmp(argv[1], "handler") == 0) {
                e.mode = MODE_HANDLER;
                what = argv[2];
                e.argv = argv + 3;
        } else if (argc >= 3 && strcmp(argv[1], "cage") == 0) {
                e.mode = MODE_CAGE;
                e.argv = argv + 2;
        } else {
                usage();
        }
        if (e.argv[0][0] == '\0')
                usage();

        read_index(e.uid, what, &idx);
        const struct index_rec *inside = caller_view(&idx);
        e.rec = choose_target(&idx, inside, e.mode, what);
        e.inside = inside != NULL;
        if (e.mode == MODE_HANDLER)
                check_handler_env(&idx, e.rec);

        /* A caller inside the view is already in its namespaces (caller_view matched both its
         * PID and mount namespace to the record) and in its cgroup, which it cannot leave: it
         * needs nothing from the holder, and under the site's Landlock domain it could not
         * reach it anyway (ptrace-class access to a process outside the domain). */
        _cleanup_close_ int cgroup_fd = -1;
        e.holder_pidfd = -1;
        if (!e.inside) {
                e.holder_pidfd = open_holder(&e, e.rec->pid);
                cgroup_fd = holder_cgroup(e.holder_pidfd, e.rec->pid);
        }

        /* No descriptor may lead out of the view: 3 and up are closed in the child, and a
         * directory on 0-2 is refused. */
        for (int fd = 0; fd <= 2; fd++) {
                struct stat st;
                if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
                        die("cannot enter: descriptor %d is a directory; refused", fd);
        }

        long n = syscall(SYS_getcwd, e.cwd, sizeof(e.cwd));
        if (n <= 0 || e.cwd[0] != '/')
                e.cwd[0] = '\0';

        e.parent_pidfd = sys_pidfd_open(getpid(), 0);
        if (e.parent_pidfd < 0)
                die_errno("open a pidfd of the entry");

        /* An inherited SIG_IGN would make the kernel reap the command behind our back. */
        signal(SIGCHLD, SIG_DFL);
        sigset_t fwd;
        forwarded_signals(&fwd);
        if (sigprocmask(SIG_BLOCK, &fwd, &e.caller_mask) < 0)
                die_errno("block signals");

        /* A caller inside the view already is in its namespaces, and the filter it runs
         * under forbids setns. From outside: the cgroup namespace is joined by the child,
         * after the clone: with nsdelegate, CLONE_INTO_CGROUP from a cgroup outside the
         * caller's cgroup namespace fails with ENOENT. */
        if (!e.inside &&
            setns(e.holder_pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC) < 0)
                die_errno("join the namespaces of the view %s", rec_label(e.rec));

        struct siteiso_clone_args ca = {
                .flags = CLONE_INTO_CGROUP,
                .exit_signal = SIGCHLD,
                .cgroup = (uint64_t)cgroup_fd,
        };
        pid_t child = e.inside ? fork() : (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
        if (!e.inside && child < 0 && errno == ENOSYS) {
                /* Older kernel, or inside a view, whose filter answers clone3 with ENOSYS. */
                e.procs_fd = openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
                if (e.procs_fd < 0)
                        die_errno("open cgroup.procs of the view %s", rec_label(e.rec));
                child = fork();
        }
        if (child < 0)
                die_errno("start the command in the view %s", rec_label(e.rec));
        if (child == 0)
                run_child(&e);

        close(e.holder_pidfd);
        close(e.parent_pidfd);
        close(steal_fd(&cgroup_fd));
        if (e.procs_fd >= 0)
                close(e.procs_fd);

        /* Nothing privileged is left to do. The real uid stayed the caller's all along, so
         * the caller may still signal us and we may signal the child. */
        if (setresgid(e.gid, e.gid, e.gid) < 0 || setresuid(e.uid, e.uid, e.uid) < 0) {
                kill(child, SIGKILL);
                die_errno("drop root in the entry");
        }
        supervise(child, &fwd);
}
