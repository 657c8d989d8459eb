/* user_switch [-f | -n PID] UID GID PROG [ARGS...]: the "plain user switch +
 * exec" the benchmark compares the entry with. Static, setuid-free, run by
 * root: one group, the uid, exec. No view, no NSS.
 *   -f      the same, in a forked child this process waits for and whose
 *           exit status it passes on (the shape of siteiso-enter, whose
 *           parent stays to forward signals): what that extra process costs.
 *   -n PID  as -f, after joining the mount, PID and IPC namespaces of
 *           process PID through a pidfd (a site's holder): what entering the
 *           view's namespaces costs, without siteiso's checks, cgroup,
 *           Landlock and seccomp. */
#define _GNU_SOURCE
#include <grp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        int fork_first = 0;
        uid_t uid;
        gid_t gid;

        if (argc > 1 && strcmp(argv[1], "-f") == 0) {
                fork_first = 1;
                argv += 1;
                argc -= 1;
        } else if (argc > 2 && strcmp(argv[1], "-n") == 0) {
                int pidfd = (int)syscall(SYS_pidfd_open, atoi(argv[2]), 0);

                if (pidfd < 0 || setns(pidfd, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC))
                        return 125;
                close(pidfd);
                fork_first = 1;
                argv += 2;
                argc -= 2;
        }
        if (argc < 4)
                return 2;
        uid = (uid_t)strtoul(argv[1], NULL, 10);
        gid = (gid_t)strtoul(argv[2], NULL, 10);
        if (fork_first) {
                int status;
                pid_t pid = fork();

                if (pid < 0)
                        return 125;
                if (pid > 0) {
                        if (waitpid(pid, &status, 0) < 0)
                                return 125;
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 125;
                }
        }
        if (setgroups(1, &gid) || setresgid(gid, gid, gid) ||
            setresuid(uid, uid, uid))
                return 125;
        if (chdir("/") < 0)
                return 125;
        execv(argv[3], &argv[3]);
        return 127;
}
