"""cffi builder for siteiso._sys: thin wrappers over raw syscalls.

Each wrapper makes one syscall and returns its result, or -errno on failure
(systemd style: nothing global to read afterwards, safe across threads).
Python (siteiso.sysapi) turns that into OSError or typed errors and holds
all policy. The only functions that do more than one syscall are the
probe_* functions: each runs its test in a throwaway child process, so a
probe never changes the caller's namespaces, mounts, seccomp state or
descriptors.

Built by setup.py (cffi_modules); for a local build of this module alone:
    python -c "import sys; sys.path.insert(0, 'native'); \
        import sys_build; sys_build.ffibuilder.compile(tmpdir='/tmp/sysb')"
"""

import cffi

CDEF = """
#define RESOLVE_NO_XDEV ...
#define RESOLVE_NO_MAGICLINKS ...
#define RESOLVE_NO_SYMLINKS ...
#define RESOLVE_BENEATH ...
#define RESOLVE_IN_ROOT ...
#define OPEN_TREE_CLONE ...
#define OPEN_TREE_CLOEXEC ...
#define AT_RECURSIVE ...
#define CLOSE_RANGE_CLOEXEC ...
#define SECCOMP_RET_ERRNO ...
#define SECCOMP_RET_KILL_PROCESS ...

#define SITEISO_NOT_TRIED ...
#define SITEISO_SHARED_SB ...
#define SITEISO_MP_UNSHARE ...
#define SITEISO_MP_FSMOUNT ...
#define SITEISO_MP_MOVE_MOUNT ...
#define SITEISO_MP_OPEN_TREE ...
#define SITEISO_MP_SETATTR ...
#define SITEISO_MP_PROC ...
#define SITEISO_MP_N ...

int siteiso_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                    uint64_t resolve);
int siteiso_open_tree(int dirfd, const char *path, unsigned int flags);
int siteiso_close_range(unsigned int first, unsigned int last, unsigned int flags);
int siteiso_pidfd_open(int pid, unsigned int flags);
int siteiso_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
int siteiso_seccomp_action_avail(uint32_t action);

int siteiso_probe_setns_pidfd(void);
int siteiso_probe_clone3(int cgroup_fd);
int siteiso_probe_seccomp_filter(void);
int siteiso_probe_mountns(const char *target, int *results, int n);
"""

SOURCE = r"""
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/*
 * Syscall numbers from 424 on are the same on every architecture that uses
 * the unified table (all but alpha, ia64 and mips, whose headers have them).
 * These only apply where the installed headers are older than the kernel.
 */
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#ifndef __NR_fsopen
#define __NR_fsopen 430
#endif
#ifndef __NR_fsconfig
#define __NR_fsconfig 431
#endif
#ifndef __NR_fsmount
#define __NR_fsmount 432
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif

#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_NO_SYMLINKS
#define RESOLVE_NO_SYMLINKS 0x04
#endif
#ifndef RESOLVE_BENEATH
#define RESOLVE_BENEATH 0x08
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SECCOMP_GET_ACTION_AVAIL
#define SECCOMP_GET_ACTION_AVAIL 2
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

/* Results of siteiso_probe_mountns besides 0 and -errno. */
#define SITEISO_NOT_TRIED 1
#define SITEISO_SHARED_SB 2

#define SITEISO_MP_UNSHARE 0
#define SITEISO_MP_FSMOUNT 1
#define SITEISO_MP_MOVE_MOUNT 2
#define SITEISO_MP_OPEN_TREE 3
#define SITEISO_MP_SETATTR 4
#define SITEISO_MP_PROC 5
#define SITEISO_MP_N 6

/* Own copies of the kernel structs: the headers' names clash between
 * glibc and linux/ on some releases, the layouts never change. */
struct siteiso_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

struct siteiso_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

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

static int ret_errno(long r)
{
    return r < 0 ? -errno : (int)r;
}

int siteiso_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                    uint64_t resolve)
{
    struct siteiso_open_how how;

    memset(&how, 0, sizeof(how));
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return ret_errno(syscall(__NR_openat2, dirfd, path, &how, sizeof(how)));
}

int siteiso_open_tree(int dirfd, const char *path, unsigned int flags)
{
    return ret_errno(syscall(__NR_open_tree, dirfd, path, flags));
}

int siteiso_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return ret_errno(syscall(__NR_close_range, first, last, flags));
}

int siteiso_pidfd_open(int pid, unsigned int flags)
{
    return ret_errno(syscall(__NR_pidfd_open, pid, flags));
}

int siteiso_pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
    return ret_errno(syscall(__NR_pidfd_getfd, pidfd, targetfd, flags));
}

int siteiso_seccomp_action_avail(uint32_t action)
{
    return ret_errno(syscall(__NR_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action));
}

/* ---- probes: each test runs in a throwaway child ---------------------- */

/* Waits for a probe child: its exit status is a positive errno (0 = ok). */
static int wait_probe(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (WIFEXITED(status))
        return -WEXITSTATUS(status);
    /* Killed by a signal: the probe itself misbehaved, report it as such. */
    return -ECANCELED;
}

/* In the child: the errno of a failed call, as an exit status. */
static void child_exit(long r)
{
    _exit(r < 0 ? errno : 0);
}

/* setns() accepts a pidfd (5.8+): join our own UTS namespace through one.
 * Old kernels say EINVAL (not an nsfs file); unprivileged callers EPERM. */
int siteiso_probe_setns_pidfd(void)
{
    pid_t pid = fork();
    int pidfd;

    if (pid < 0)
        return -errno;
    if (pid == 0) {
        pidfd = (int)syscall(__NR_pidfd_open, getpid(), 0);
        if (pidfd < 0)
            child_exit(-1);
        child_exit(setns(pidfd, CLONE_NEWUTS));
    }
    return wait_probe(pid);
}

/* clone3(); with cgroup_fd >= 0 also CLONE_INTO_CGROUP into that cgroup
 * (pass the caller's own cgroup: the child lands where a fork would). */
int siteiso_probe_clone3(int cgroup_fd)
{
    struct siteiso_clone_args args;
    long pid;

    memset(&args, 0, sizeof(args));
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags = CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    pid = syscall(__NR_clone3, &args, sizeof(args));
    if (pid < 0)
        return -errno;
    if (pid == 0)
        _exit(0);
    return wait_probe((pid_t)pid);
}

/* A seccomp filter that allows everything, installed in a child. */
int siteiso_probe_seccomp_filter(void)
{
    struct sock_filter allow[] = {
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = 1, .filter = allow };
    pid_t pid = fork();

    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            child_exit(-1);
        child_exit(syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
    }
    return wait_probe(pid);
}

static void mountns_steps(const char *target, int *res)
{
    struct siteiso_mount_attr attr;
    struct stat host_proc, new_proc;
    int fsfd, mntfd, treefd;

    /* Private before anything is mounted: nothing may propagate back to
     * the caller's namespace. If that fails, nothing else is tried. */
    if (unshare(CLONE_NEWNS) < 0
        || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        res[SITEISO_MP_UNSHARE] = -errno;
        return;
    }
    res[SITEISO_MP_UNSHARE] = 0;

    mntfd = -1;
    fsfd = (int)syscall(__NR_fsopen, "tmpfs", FSOPEN_CLOEXEC);
    if (fsfd >= 0
        && syscall(__NR_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        mntfd = (int)syscall(__NR_fsmount, fsfd, FSMOUNT_CLOEXEC, 0);
    res[SITEISO_MP_FSMOUNT] = mntfd >= 0 ? 0 : -errno;
    if (mntfd >= 0)
        res[SITEISO_MP_MOVE_MOUNT] = ret_errno(syscall(__NR_move_mount, mntfd, "",
                                                       AT_FDCWD, target,
                                                       MOVE_MOUNT_F_EMPTY_PATH));

    treefd = (int)syscall(__NR_open_tree, AT_FDCWD, target,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    res[SITEISO_MP_OPEN_TREE] = treefd >= 0 ? 0 : -errno;
    if (treefd >= 0) {
        memset(&attr, 0, sizeof(attr));
        attr.attr_set = MOUNT_ATTR_RDONLY;
        res[SITEISO_MP_SETATTR] = ret_errno(syscall(__NR_mount_setattr, treefd, "",
                                                    AT_EMPTY_PATH | AT_RECURSIVE,
                                                    &attr, sizeof(attr)));
    }

    /* "invisible" is itself the probe: kernels whose procfs options are per
     * superblock (before 5.8) reject the value while parsing, before any
     * superblock shared with the host's /proc could be reconfigured. */
    res[SITEISO_MP_PROC] = ret_errno(mount("proc", target, "proc",
                                           MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                           "hidepid=invisible"));
    if (res[SITEISO_MP_PROC] == 0) {
        if (stat("/proc", &host_proc) < 0 || stat(target, &new_proc) < 0)
            res[SITEISO_MP_PROC] = -errno;
        else if (host_proc.st_dev == new_proc.st_dev)
            res[SITEISO_MP_PROC] = SITEISO_SHARED_SB;
    }
}

/* The mount probes, in a child with its own (private) mount namespace.
 * target: an existing directory to mount on inside that namespace.
 * results[SITEISO_MP_*]: 0 ok, -errno, or SITEISO_NOT_TRIED. */
int siteiso_probe_mountns(const char *target, int *results, int n)
{
    int res[SITEISO_MP_N];
    int pipefd[2];
    pid_t pid;
    size_t got = 0;
    ssize_t r;
    int i, status_err;

    if (n != SITEISO_MP_N)
        return -EINVAL;
    for (i = 0; i < SITEISO_MP_N; i++)
        res[i] = SITEISO_NOT_TRIED;
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        status_err = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return status_err;
    }
    if (pid == 0) {
        close(pipefd[0]);
        mountns_steps(target, res);
        r = write(pipefd[1], res, sizeof(res));
        _exit(r == (ssize_t)sizeof(res) ? 0 : EIO);
    }
    close(pipefd[1]);
    while (got < sizeof(res)) {
        r = read(pipefd[0], (char *)res + got, sizeof(res) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(pipefd[0]);
    status_err = wait_probe(pid);
    if (status_err < 0)
        return status_err;
    if (got != sizeof(res))
        return -EIO;
    memcpy(results, res, sizeof(res));
    return 0;
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("siteiso._sys", SOURCE, extra_compile_args=["-Wall", "-Wextra"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
