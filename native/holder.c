/* siteiso-holder: builds a view from a plan and stays as its holder (native/README.md).
 *
 *   siteiso-holder build          plan on stdin; prints the holder's pid
 *   siteiso-holder apply <pid>    plan on stdin; applies its operations in that holder's view
 *   siteiso-holder run <pid> <uid> <gid> [--keep-fd N]... [--cgroup NAME] -- <program> [args]
 *                                 starts program as uid:gid in that holder's view (a service
 *                                 such as the site's php-fpm master); prints its pid
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "mountplan.h"
#include "seccomp.h"
#include "util.h"


#define HOLDER_CGROUP_FD 3

extern char **environ;

static _Noreturn void usage(void)
{
        die("usage: siteiso-holder build | siteiso-holder apply <holder pid> (plan on stdin)\n"
            "       siteiso-holder run <holder pid> <uid> <gid> [--keep-fd N]... "
            "[--cgroup NAME] -- <program> [args...]");
}

/* The whole plan from stdin, NUL-terminated. */
static char *read_plan(size_t *len)
{
        size_t cap = 65536, n = 0;
        char *buf = malloc(cap);

        if (!buf)
                die_errno("allocate the plan");
        for (;;) {
                if (n + 1 >= cap) {
                        if (cap >= PLAN_MAX_BYTES)
                                die_err(EFBIG, "read the plan from stdin");
                        cap *= 2;
                        char *bigger = realloc(buf, cap);
                        if (!bigger)
                                die_errno("allocate the plan");
                        buf = bigger;
                }
                ssize_t r = read(STDIN_FILENO, buf + n, cap - n - 1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        die_errno("read the plan from stdin");
                }
                if (r == 0)
                        break;
                n += (size_t)r;
        }
        buf[n] = '\0';
        *len = n;
        return buf;
}

/* Join the cgroup: it is where the holder and every entered process are accounted. */
static int join_cgroup(const char *path)
{
        _cleanup_close_ int dir = sys_openat2(AT_FDCWD, path,
                                              O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
                                              RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        struct statfs sfs;

        if (dir < 0)
                die_errno("open cgroup %s", path);
        if (fstatfs(dir, &sfs) < 0)
                die_errno("statfs cgroup %s", path);
        if (sfs.f_type != CGROUP2_SUPER_MAGIC)
                die("cannot join cgroup %s: not a cgroup2 directory", path);

        _cleanup_close_ int procs = openat(dir, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (procs < 0)
                die_errno("open %s/cgroup.procs", path);
        if (write_all(procs, "0", 1) < 0)
                die_errno("join cgroup %s", path);
        return steal_fd(&dir);
}

/* ---- the holder --------------------------------------------------------------------- */

/* Is the holder the only process of its PID namespace (pidns yes: /proc lists it as 1
 * only), or of its cgroup (pidns no)? */
static bool holder_alone(bool pidns)
{
        if (pidns) {
                DIR *d = opendir("/proc");
                if (!d)
                        return false;
                bool alone = true;
                struct dirent *de;
                while ((de = readdir(d)) != NULL) {
                        if (de->d_name[0] >= '1' && de->d_name[0] <= '9' &&
                            strcmp(de->d_name, "1") != 0) {
                                alone = false;
                                break;
                        }
                }
                closedir(d);
                return alone;
        }

        char buf[256], self[32];
        ssize_t n = read_small_file(HOLDER_CGROUP_FD, "cgroup.procs", buf, sizeof(buf));
        if (n < 0)
                return false;
        snprintf(self, sizeof(self), "%d\n", (int)getpid());
        return strcmp(buf, self) == 0;
}

static void reap_children(void)
{
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
}

static _Noreturn void holder_loop(bool pidns, const sigset_t *set)
{
        bool retired = false;
        const struct timespec half_second = { .tv_sec = 0, .tv_nsec = 500000000L };

        for (;;) {
                siginfo_t info;
                /* Idle holders sleep without a timeout; only a retired one polls. */
                int sig = retired ? sigtimedwait(set, &info, &half_second)
                                  : sigwaitinfo(set, &info);

                if (sig == SIGTERM)
                        _exit(0);
                if (sig == SIGUSR1)
                        retired = true;
                reap_children();
                if (retired && holder_alone(pidns))
                        _exit(0);
        }
}

/* The child of build: finishes the view (/proc), detaches from the caller and holds. */
static _Noreturn void become_holder(const struct plan *plan, int cgroup_fd, int null_fd,
                                    int ready_fd, const sigset_t *set)
{
        plan_mount_proc(plan->proc_opts);

        if (chdir("/") < 0)
                die_errno("chdir to / of the view");
        if (setsid() < 0)
                die_errno("start a session for the holder");

        /* stdout and stderr go: the caller reads the pid until EOF. */
        for (int fd = 0; fd <= 2; fd++)
                if (dup2(null_fd, fd) < 0)
                        _exit(1);
        if (cgroup_fd != HOLDER_CGROUP_FD && dup2(cgroup_fd, HOLDER_CGROUP_FD) < 0)
                _exit(1);
        if (fcntl(HOLDER_CGROUP_FD, F_SETFD, 0) < 0)
                _exit(1);
        if (ready_fd <= HOLDER_CGROUP_FD)
                _exit(1);
        if (write_all(ready_fd, "R", 1) < 0)
                _exit(1);
        close_span(HOLDER_CGROUP_FD + 1, ~0U);
        holder_loop(plan->pidns, set);
}

static int cmd_build(void)
{
        size_t len;
        char *buf = read_plan(&len);
        struct plan plan;
        struct plan_ctx ctx;

        plan_parse(buf, len, PLAN_BUILD, &plan);

        _cleanup_close_ int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                die_errno("open /dev/null");
        _cleanup_close_ int cgroup_fd = join_cgroup(plan.cgroup);

        if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWCGROUP) < 0)
                die_errno("unshare the mount, IPC and cgroup namespaces");
        plan_make_rprivate();

        /* The home is opened in the new namespace: open_tree() clones only from mounts of
         * the caller's own namespace. */
        plan_ctx_init(&ctx, &plan);
        for (size_t i = 0; i < plan.n_ops; i++)
                plan_apply_op(&ctx, &plan.ops[i]);
        close(ctx.home_fd);

        if (plan.pidns && unshare(CLONE_NEWPID) < 0)
                die_errno("unshare the PID namespace");

        /* Blocked before the fork so that no SIGTERM or SIGUSR1 is lost in between. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGCHLD);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGPIPE);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                die_errno("block signals");

        int ready[2];
        if (pipe2(ready, O_CLOEXEC) < 0)
                die_errno("create the ready pipe");

        pid_t pid = fork();
        if (pid < 0)
                die_errno("fork the holder");
        if (pid == 0) {
                close(ready[0]);
                become_holder(&plan, cgroup_fd, null_fd, ready[1], &set);
        }

        close(ready[1]);
        if (sigprocmask(SIG_UNBLOCK, &set, NULL) < 0)
                die_errno("unblock signals");
        char c;
        ssize_t n;
        do
                n = read(ready[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1 || c != 'R') {
                /* The child said why on stderr; it is gone, and the view with it. */
                waitpid(pid, NULL, 0);
                return 1;
        }

        char out[32];
        int m = snprintf(out, sizeof(out), "%d\n", (int)pid);
        if (write_all(STDOUT_FILENO, out, (size_t)m) < 0) {
                int err = errno;
                kill(pid, SIGKILL);
                die_err(err, "print the holder's pid");
        }
        return 0;
}

static int cmd_apply(const char *pid_arg)
{
        uint64_t pid;
        size_t len;
        struct plan plan;
        struct plan_ctx ctx;

        if (!parse_u64(pid_arg, &pid) || pid < 1 || pid > INT32_MAX)
                die("cannot apply: %s is not a pid", pid_arg);

        char *buf = read_plan(&len);
        plan_parse(buf, len, PLAN_APPLY, &plan);

        _cleanup_close_ int pidfd = sys_pidfd_open((pid_t)pid, 0);
        if (pidfd < 0)
                die_errno("open holder %d", (int)pid);

        /* Clones are taken here, in the caller's namespace where the real home and system
         * are (open_tree() clones only from the caller's own namespace); everything else
         * happens in the view, in plan order. */
        memset(&ctx, 0, sizeof(ctx));
        ctx.plan = &plan;
        ctx.home_fd = -1;
        for (int i = 0; i < PLAN_SLOTS; i++)
                ctx.slots[i] = -1;
        if (plan.home) {
                plan_ctx_init(&ctx, &plan);
                for (size_t i = 0; i < plan.n_ops; i++)
                        if (plan.ops[i].kind == OP_CLONE)
                                plan_apply_op(&ctx, &plan.ops[i]);
                close(ctx.home_fd);
        }

        if (setns(pidfd, CLONE_NEWNS) < 0)
                die_errno("join the mount namespace of holder %d", (int)pid);
        for (size_t i = 0; i < plan.n_ops; i++)
                if (plan.ops[i].kind != OP_CLONE)
                        plan_apply_op(&ctx, &plan.ops[i]);
        return 0;
}

/* ---- run: a program as the user in a site's view ------------------------------------ */

#define RUN_MAX_KEEP 16
#define RUN_CGROUP_NAME_MAX 32


struct run_req {
        pid_t holder;
        uid_t uid;
        gid_t gid;
        int keep[RUN_MAX_KEEP];
        size_t n_keep;
        const char *cgroup_name; /* a child cgroup of the site's; NULL: the site's own */
        char **argv;
        int holder_pidfd;
        int procs_fd;            /* cgroup.procs, fork fallback only */
        int status_fd;           /* child -> parent: why it could not exec */
};

/* What the child reports when it cannot become the program. */
enum run_step {
        STEP_CGROUP,
        STEP_CGROUPNS,
        STEP_SESSION,
        STEP_RLIMIT,
        STEP_SECCOMP,
        STEP_GROUPS,
        STEP_GID,
        STEP_UID,
        STEP_DROP,
        STEP_CHDIR,
        STEP_FDS,
        STEP_SIGNALS,
        STEP_EXEC,
};

static const char *const step_names[] = {
        [STEP_CGROUP] = "join the cgroup of the view",
        [STEP_CGROUPNS] = "join the cgroup namespace of the view",
        [STEP_SESSION] = "start a session",
        [STEP_RLIMIT] = "set RLIMIT_CORE to 0",
        [STEP_SECCOMP] = "install the seccomp filter",
        [STEP_GROUPS] = "set the supplementary groups",
        [STEP_GID] = "set the group id",
        [STEP_UID] = "set the user id",
        [STEP_DROP] = "drop root",
        [STEP_CHDIR] = "change directory to /",
        [STEP_FDS] = "close the other descriptors",
        [STEP_SIGNALS] = "reset the signal mask",
        [STEP_EXEC] = "run the program",
};

struct run_failure {
        int step;
        int err;
};

static bool parse_fd(const char *s, int *out)
{
        uint64_t v;

        if (!parse_u64(s, &v) || v > INT32_MAX)
                return false;
        *out = (int)v;
        return true;
}

/* A child cgroup name: [a-z0-9-], not empty, short. Never "..", never a cgroup file. */
static bool cgroup_name_ok(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > RUN_CGROUP_NAME_MAX)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
                        return false;
        return true;
}

static void parse_run_args(int argc, char **argv, struct run_req *req)
{
        uint64_t pid;
        int i = 5;

        if (argc < 7)
                usage();
        if (!parse_u64(argv[2], &pid) || pid < 1 || pid > INT32_MAX)
                die("cannot run: %s is not a pid", argv[2]);
        req->holder = (pid_t)pid;
        if (!parse_uid(argv[3], &req->uid) || !parse_uid(argv[4], &req->gid))
                die("cannot run: bad uid or gid %s %s", argv[3], argv[4]);
        /* Never root: a root process inside a view is not contained by it. */
        if (req->uid == 0 || req->gid == 0)
                die("cannot run: refusing uid or gid 0 in a view");

        for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
                if (strcmp(argv[i], "--keep-fd") == 0 && i + 1 < argc) {
                        int fd;
                        if (!parse_fd(argv[++i], &fd) || fd < 3)
                                die("cannot run: --keep-fd %s: not a descriptor above 2",
                                    argv[i]);
                        for (size_t k = 0; k < req->n_keep; k++)
                                if (req->keep[k] == fd)
                                        die("cannot run: --keep-fd %d given twice", fd);
                        if (req->n_keep >= RUN_MAX_KEEP)
                                die("cannot run: more than %d --keep-fd", RUN_MAX_KEEP);
                        req->keep[req->n_keep++] = fd;
                } else if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc &&
                           !req->cgroup_name) {
                        if (!cgroup_name_ok(argv[++i]))
                                die("cannot run: --cgroup %s: not a name of [a-z0-9-]",
                                    argv[i]);
                        req->cgroup_name = argv[i];
                } else {
                        usage();
                }
        }
        if (i + 1 >= argc || argv[i + 1][0] != '/')
                die("cannot run: the program must be given by its absolute path");
        req->argv = argv + i + 1;
}

/* The holder's record in the index of uid: only a current site view is a place to run
 * something in. Same checks as the entry: owner and mode of the index, the start time and
 * namespaces of the holder, and the holder still alive after them. Returns its pidfd. */
static int open_site_holder(const struct run_req *req)
{
        char path[64], name[16];
        struct stat st;
        struct index idx;
        size_t bad;
        uint64_t start, mnt, pidns;

        snprintf(path, sizeof(path), INDEX_DIR "/%u", (unsigned)req->uid);
        snprintf(name, sizeof(name), "%u", (unsigned)req->uid);

        _cleanup_close_ int dir = sys_openat2(AT_FDCWD, INDEX_DIR,
                                              O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                              RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (dir < 0)
                die_errno("open %s", INDEX_DIR);
        _cleanup_close_ int fd = sys_openat2(dir, name,
                                             O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                                             O_NOCTTY, 0,
                                             RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                             RESOLVE_NO_MAGICLINKS);
        if (fd < 0)
                die_errno("open index %s", path);
        if (fstat(fd, &st) < 0)
                die_errno("stat index %s", path);
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                die("cannot read index %s: not a regular file writable by root only; refused",
                    path);
        if (st.st_size > INDEX_MAX_BYTES)
                die_err(EFBIG, "read index %s", path);

        _cleanup_free_ char *buf = malloc(INDEX_MAX_BYTES + 1);
        _cleanup_free_ struct index_rec *recs = calloc(INDEX_MAX_RECORDS, sizeof(*recs));
        if (!buf || !recs)
                die_errno("allocate the index");
        ssize_t n = read(fd, buf, INDEX_MAX_BYTES + 1);
        if (n < 0)
                die_errno("read index %s", path);
        if (n != st.st_size)
                die("cannot read index %s: it changed while being read; try again", path);
        buf[n] = '\0';
        idx.recs = recs;
        if (index_parse(buf, (size_t)n, &idx, &bad) < 0)
                die("cannot read index %s: malformed at line %zu; refused", path, bad);

        const struct index_rec *r = NULL;
        for (size_t i = 0; i < idx.n && !r; i++)
                if (idx.recs[i].kind == REC_SITE && idx.recs[i].pid == req->holder)
                        r = &idx.recs[i];
        if (!r)
                die("cannot run: %d is not the holder of a site of uid %u; refused",
                    (int)req->holder, (unsigned)req->uid);

        _cleanup_close_ int pidfd = sys_pidfd_open(req->holder, 0);
        if (pidfd < 0)
                die_errno("open holder %d", (int)req->holder);
        int err;
        if ((err = proc_starttime(req->holder, &start)) < 0)
                die_err(-err, "read the start time of holder %d", (int)req->holder);
        if ((err = ns_inode(req->holder, "mnt", &mnt)) < 0 ||
            (err = ns_inode(req->holder, "pid", &pidns)) < 0)
                die_err(-err, "read the namespaces of holder %d", (int)req->holder);
        if (start != r->starttime || mnt != r->mntns || pidns != r->pidns)
                die("cannot run: holder %d is not the process the index names; refused",
                    (int)req->holder);
        if (sys_pidfd_send_signal(pidfd, 0) < 0)
                die_errno("reach holder %d", (int)req->holder);
        return steal_fd(&pidfd);
}

/* The cgroup to start in: the holder's (its fd 3), or a child of it, made if missing. */
static int run_cgroup(const struct run_req *req)
{
        struct statfs sfs;
        _cleanup_close_ int site = sys_pidfd_getfd(req->holder_pidfd, HOLDER_CGROUP_FD, 0);

        if (site < 0)
                die_errno("fetch the cgroup of holder %d", (int)req->holder);
        if (fstatfs(site, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
                die("cannot run: fd %d of holder %d is not a cgroup2 directory; refused",
                    HOLDER_CGROUP_FD, (int)req->holder);
        if (!req->cgroup_name)
                return steal_fd(&site);

        if (mkdirat(site, req->cgroup_name, 0755) < 0 && errno != EEXIST)
                die_errno("create cgroup %s under the site's", req->cgroup_name);
        _cleanup_close_ int child = sys_openat2(site, req->cgroup_name,
                                                O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
                                                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                                RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
        if (child < 0)
                die_errno("open cgroup %s under the site's", req->cgroup_name);
        if (fstatfs(child, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
                die("cannot run: cgroup %s is not a cgroup2 directory; refused",
                    req->cgroup_name);
        return steal_fd(&child);
}

/* Descriptors the program gets: 0-2 and the kept ones, none of them a directory (a
 * directory opened outside the view would lead out of it). */
static void check_fds(const struct run_req *req)
{
        struct stat st;

        for (int fd = 0; fd <= 2; fd++)
                if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
                        die("cannot run: descriptor %d is a directory; refused", fd);
        for (size_t k = 0; k < req->n_keep; k++) {
                if (fstat(req->keep[k], &st) < 0)
                        die_errno("keep descriptor %d", req->keep[k]);
                if (S_ISDIR(st.st_mode))
                        die("cannot run: descriptor %d is a directory; refused", req->keep[k]);
        }
}

static _Noreturn void run_fail(const struct run_req *req, enum run_step step)
{
        struct run_failure f = { .step = step, .err = errno };

        (void)write_all(req->status_fd, (const char *)&f, sizeof(f));
        _exit(127);
}

/* Close every descriptor but 0-2, the kept ones and the status pipe (close-on-exec):
 * close_range over each gap between them, in ascending order. */
static void close_others(const struct run_req *req)
{
        int keep[RUN_MAX_KEEP + 1];
        size_t n = 0;

        for (size_t k = 0; k < req->n_keep; k++)
                keep[n++] = req->keep[k];
        keep[n++] = req->status_fd;
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
                        int t = keep[j];
                        keep[j] = keep[j - 1];
                        keep[j - 1] = t;
                }

        unsigned lo = 3;
        for (size_t i = 0; i <= n; i++) {
                unsigned hi = i < n ? (unsigned)keep[i] : 0U;
                if (i < n && hi <= lo) {
                        lo = hi + 1 > lo ? hi + 1 : lo;
                        continue;
                }
                unsigned last = i < n ? hi - 1 : ~0U;
                close_span(lo, last);
                if (i < n)
                        lo = hi + 1;
        }
}

static _Noreturn void run_child(struct run_req *req)
{
        if (req->procs_fd >= 0 && write_all(req->procs_fd, "0", 1) < 0)
                run_fail(req, STEP_CGROUP);
        /* The cgroup namespace last: as in the entry (nsdelegate, see native/README.md). */
        if (setns(req->holder_pidfd, CLONE_NEWCGROUP) < 0)
                run_fail(req, STEP_CGROUPNS);
        /* A service of its own: no signal of the caller's terminal or session reaches it. */
        if (setsid() < 0)
                run_fail(req, STEP_SESSION);
        umask(022);

        struct rlimit no_core = { 0, 0 };
        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                run_fail(req, STEP_RLIMIT);
        /* While still privileged, as the entry does. */
        if (seccomp_install() < 0)
                run_fail(req, STEP_SECCOMP);
        if (setgroups(1, &req->gid) < 0)
                run_fail(req, STEP_GROUPS);
        if (setresgid(req->gid, req->gid, req->gid) < 0)
                run_fail(req, STEP_GID);
        if (setresuid(req->uid, req->uid, req->uid) < 0)
                run_fail(req, STEP_UID);
        if (geteuid() != req->uid || getegid() != req->gid || setuid(0) == 0) {
                errno = EPERM;
                run_fail(req, STEP_DROP);
        }
        if (chdir("/") < 0)
                run_fail(req, STEP_CHDIR);

        for (size_t k = 0; k < req->n_keep; k++)
                if (fcntl(req->keep[k], F_SETFD, 0) < 0)
                        run_fail(req, STEP_FDS);
        close_others(req);

        /* The caller (root) built the environment; only loader variables go. */
        char **out = environ;
        for (char **e = environ; *e; e++)
                if (strncmp(*e, "LD_", 3) != 0)
                        *out++ = *e;
        *out = NULL;

        /* Default dispositions and no blocked signal: nothing of the caller's. */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                run_fail(req, STEP_SIGNALS);

        execv(req->argv[0], req->argv);
        run_fail(req, STEP_EXEC);
}

static int cmd_run(int argc, char **argv)
{
        struct run_req req = { .holder_pidfd = -1, .procs_fd = -1, .status_fd = -1 };

        parse_run_args(argc, argv, &req);
        check_fds(&req);
        req.holder_pidfd = open_site_holder(&req);
        _cleanup_close_ int cgroup_fd = run_cgroup(&req);

        int status[2];
        if (pipe2(status, O_CLOEXEC) < 0)
                die_errno("create the status pipe");
        req.status_fd = status[1];

        /* Mount, PID and IPC namespaces here; the cgroup namespace in the child, after the
         * clone into the cgroup (the entry's order, for the same reason). */
        if (setns(req.holder_pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC) < 0)
                die_errno("join the namespaces of holder %d", (int)req.holder);

        struct siteiso_clone_args ca = {
                .flags = CLONE_INTO_CGROUP,
                .exit_signal = SIGCHLD,
                .cgroup = (uint64_t)cgroup_fd,
        };
        pid_t child = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
        if (child < 0 && errno == ENOSYS) {
                req.procs_fd = openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
                if (req.procs_fd < 0)
                        die_errno("open cgroup.procs of the view");
                child = fork();
        }
        if (child < 0)
                die_errno("start %s in the view", req.argv[0]);
        if (child == 0)
                run_child(&req);

        close(status[1]);
        struct run_failure f;
        ssize_t n;
        do
                n = read(status[0], &f, sizeof(f));
        while (n < 0 && errno == EINTR);
        if (n != 0) {
                /* The child failed before or at exec and is gone. */
                waitpid(child, NULL, 0);
                if (n != (ssize_t)sizeof(f) || f.step < 0 || f.step > STEP_EXEC)
                        die("cannot start %s in the view: the child failed", req.argv[0]);
                die_err(f.err, "%s (%s)", step_names[f.step], req.argv[0]);
        }

        /* Exec'd: the program runs. Its parent is now the holder, PID 1 of the view. */
        char out[32];
        int m = snprintf(out, sizeof(out), "%d\n", (int)child);
        if (write_all(STDOUT_FILENO, out, (size_t)m) < 0) {
                int err = errno;
                kill(child, SIGKILL);
                die_err(err, "print the pid of %s", req.argv[0]);
        }
        return 0;
}

int main(int argc, char **argv)
{
        util_progname = "siteiso-holder";
        util_exit_status = 1;
        ensure_std_fds();
        umask(0);

        if (argc == 2 && strcmp(argv[1], "build") == 0)
                return cmd_build();
        if (argc == 3 && strcmp(argv[1], "apply") == 0)
                return cmd_apply(argv[2]);
        if (argc >= 2 && strcmp(argv[1], "run") == 0)
                return cmd_run(argc, argv);
        usage();
}
