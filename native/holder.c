/* siteiso-holder: builds a view from a plan and stays as its holder (native/README.md).
 *
 *   siteiso-holder build          plan on stdin; prints the holder's pid
 *   siteiso-holder apply <pid>    plan on stdin; applies its operations in that holder's view
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "mountplan.h"
#include "util.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define HOLDER_CGROUP_FD 3

static _Noreturn void usage(void)
{
        die("usage: siteiso-holder build | siteiso-holder apply <holder pid> (plan on stdin)");
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
        if (sys_close_range(HOLDER_CGROUP_FD + 1, ~0U, 0) < 0) {
                for (int fd = HOLDER_CGROUP_FD + 1; fd < 1024; fd++)
                        close(fd);
        }
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
        plan_make_rslave();

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
        plan_ctx_init(&ctx, &plan);
        for (size_t i = 0; i < plan.n_ops; i++)
                if (plan.ops[i].kind == OP_CLONE)
                        plan_apply_op(&ctx, &plan.ops[i]);
        close(ctx.home_fd);

        if (setns(pidfd, CLONE_NEWNS) < 0)
                die_errno("join the mount namespace of holder %d", (int)pid);
        for (size_t i = 0; i < plan.n_ops; i++)
                if (plan.ops[i].kind != OP_CLONE)
                        plan_apply_op(&ctx, &plan.ops[i]);
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
        usage();
}
