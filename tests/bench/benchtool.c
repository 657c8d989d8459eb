/* benchtool: the benchmark's own small static helper (tests/bench/run.py).
 *
 * Runs inside the benchmark's sandbox only. Three modes:
 *
 *   benchtool loop N WARMUP -- UID:GID PROG ARGS... [:: UID:GID PROG ARGS...]...
 *       Forks and execs each command once per round, N rounds (after WARMUP
 *       unrecorded ones), rotating which command goes first so drift falls
 *       on all alike. UID 0 runs the command as root; any other UID is set
 *       in the forked child (setgroups/setresgid/setresuid) before the exec,
 *       so the program starts as that user, as a user's shell would start
 *       it. Prints one line per command: "cmd <index> <failures> <ns>...".
 *
 *   benchtool mounts DIR N
 *       A tmpfs on DIR, then N small tmpfs mounts DIR/0 .. DIR/N-1.
 *
 *   benchtool procwalk RUNS
 *       The floor of any /proc scan: readdir of /proc and fstatat() of every
 *       pid in it (the owner), one thread; prints the median in ns.
 *
 *   benchtool mount8 MOUNT STAGE PLAN...
 *       The baseline for building views with mount(8): each siteiso plan
 *       file is applied in a throwaway mount namespace (a forked child that
 *       unshares and makes / a recursive slave), one MOUNT process for each
 *       mount the plan makes. clone+attach becomes "--rbind" onto a staging
 *       directory followed by "--move" (the clone is taken before the masks
 *       cover the source, as in the plan); mkdir is done here with mkdir(2).
 *       Every remount is "remount,bind,ro": a per-mount flag of the
 *       throwaway namespace, never the file system's.
 *       Prints one line per plan: "plan <mount-processes> <failed>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 16

struct cmd {
        uid_t uid;
        gid_t gid;
        char **argv;
        long fails;
        long long *ns;
};

static long long now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int devnull_fd(void)
{
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

        if (fd < 0) {
                perror("benchtool: /dev/null");
                exit(1);
        }
        return fd;
}

/* fork, (switch user), exec, wait; returns the wait status. */
static int run_cmd(const struct cmd *c, int quiet)
{
        int status;
        pid_t pid = fork();

        if (pid < 0) {
                perror("benchtool: fork");
                exit(1);
        }
        if (pid == 0) {
                int nul = devnull_fd();

                dup2(nul, 0);
                dup2(nul, 1);
                if (quiet)
                        dup2(nul, 2);
                if (c->uid != 0) {
                        gid_t g = c->gid;

                        if (setgroups(1, &g) || setresgid(g, g, g) ||
                            setresuid(c->uid, c->uid, c->uid))
                                _exit(120);
                }
                execv(c->argv[0], c->argv);
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        perror("benchtool: waitpid");
                        exit(1);
                }
        return status;
}

static int loop_main(int argc, char **argv)
{
        struct cmd cmds[MAX_CMDS];
        int ncmd = 0;
        long n, warmup;

        if (argc < 6 || strcmp(argv[4], "--") != 0) {
                fprintf(stderr, "usage: benchtool loop N WARMUP -- UID:GID PROG... [:: ...]\n");
                return 2;
        }
        n = strtol(argv[2], NULL, 10);
        warmup = strtol(argv[3], NULL, 10);
        for (int i = 5; i < argc;) {
                struct cmd *c;
                unsigned long u, g;
                int j;

                if (ncmd == MAX_CMDS || sscanf(argv[i], "%lu:%lu", &u, &g) != 2) {
                        fprintf(stderr, "benchtool: bad command spec at %s\n", argv[i]);
                        return 2;
                }
                c = &cmds[ncmd++];
                c->uid = (uid_t)u;
                c->gid = (gid_t)g;
                c->argv = &argv[i + 1];
                c->fails = 0;
                c->ns = calloc((size_t)n, sizeof(long long));
                if (!c->ns)
                        return 1;
                for (j = i + 1; j < argc && strcmp(argv[j], "::") != 0; j++)
                        ;
                argv[j < argc ? j : argc] = NULL;
                if (c->argv[0] == NULL) {
                        fprintf(stderr, "benchtool: empty command\n");
                        return 2;
                }
                i = j + 1;
        }
        for (long r = -warmup; r < n; r++) {
                for (int k = 0; k < ncmd; k++) {
                        struct cmd *c = &cmds[(k + (r < 0 ? 0 : r)) % ncmd];
                        long long t0 = now_ns();
                        int st = run_cmd(c, 1);
                        long long dt = now_ns() - t0;

                        if (r < 0)
                                continue;
                        c->ns[r] = dt;
                        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                                c->fails++;
                }
        }
        for (int k = 0; k < ncmd; k++) {
                printf("cmd %d %ld", k, cmds[k].fails);
                for (long r = 0; r < n; r++)
                        printf(" %lld", cmds[k].ns[r]);
                printf("\n");
        }
        return fflush(stdout) == 0 ? 0 : 1;
}

static int mounts_main(int argc, char **argv)
{
        char path[PATH_MAX];
        long n;

        if (argc != 4)
                return 2;
        n = strtol(argv[3], NULL, 10);
        if (mkdir(argv[2], 0755) < 0 && errno != EEXIST) {
                perror("benchtool: mkdir");
                return 1;
        }
        if (mount("extra", argv[2], "tmpfs", 0, "mode=0755,size=1m") < 0) {
                perror("benchtool: mount tmpfs");
                return 1;
        }
        for (long i = 0; i < n; i++) {
                snprintf(path, sizeof(path), "%s/%ld", argv[2], i);
                if (mkdir(path, 0755) < 0 ||
                    mount("extra", path, "tmpfs", 0, "size=64k") < 0) {
                        perror(path);
                        return 1;
                }
        }
        printf("%ld\n", n);
        return 0;
}

static int cmp_ll(const void *a, const void *b)
{
        long long x = *(const long long *)a, y = *(const long long *)b;

        return (x > y) - (x < y);
}

static int procwalk_main(int argc, char **argv)
{
        long runs = argc == 3 ? strtol(argv[2], NULL, 10) : 15;
        long long *t = calloc((size_t)runs, sizeof(long long));
        long seen = 0;

        if (!t || runs < 1)
                return 2;
        for (long r = 0; r < runs; r++) {
                long long t0 = now_ns();
                int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                DIR *d = fd < 0 ? NULL : fdopendir(fd);
                struct dirent *e;
                struct stat st;

                if (!d) {
                        perror("benchtool: /proc");
                        return 1;
                }
                seen = 0;
                while ((e = readdir(d)) != NULL) {
                        if (e->d_name[0] < '0' || e->d_name[0] > '9')
                                continue;
                        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                                seen++;
                }
                closedir(d);
                t[r] = now_ns() - t0;
        }
        qsort(t, (size_t)runs, sizeof(long long), cmp_ll);
        printf("%lld %ld\n", t[runs / 2], seen);
        return 0;
}

/* ---- mount8 ------------------------------------------------------------- */

static const char *mount_bin;
static long plan_mounts, plan_failed;

static void mount8(const char *first_fail_ctx, ...)
{
        char *args[16];
        int n = 0;
        va_list ap;
        struct cmd c = { .uid = 0, .gid = 0, .argv = args };
        int st;

        args[n++] = (char *)mount_bin;
        va_start(ap, first_fail_ctx);
        for (char *a; n < 15 && (a = va_arg(ap, char *)) != NULL;)
                args[n++] = a;
        va_end(ap);
        args[n] = NULL;
        plan_mounts++;
        st = run_cmd(&c, 1);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                if (plan_failed++ == 0)
                        fprintf(stderr, "benchtool: mount(8) failed: %s\n", first_fail_ctx);
        }
}

static void mkdir_p(const char *path, mode_t mode)
{
        char buf[PATH_MAX];

        snprintf(buf, sizeof(buf), "%s", path);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                mkdir(buf, mode);
                *p = '/';
        }
        mkdir(buf, mode);
}

static void apply_plan(const char *stage, const char *file)
{
        char line[8192], slot[PATH_MAX], opts[256], ctx[8400];
        char *f[8];
        FILE *fp = fopen(file, "re");
        char proc_opts[256] = "";

        if (!fp) {
                perror(file);
                exit(1);
        }
        if (unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
            mount("stage", stage, "tmpfs", 0, "mode=0700") < 0) {
                perror("benchtool: namespace");
                exit(1);
        }
        while (fgets(line, sizeof(line), fp)) {
                int nf = 0;
                struct stat st;

                line[strcspn(line, "\n")] = '\0';
                snprintf(ctx, sizeof(ctx), "%s", line);
                for (char *s = line, *t; nf < 8 && s; s = t) {
                        t = strchr(s, '\t');
                        if (t)
                                *t++ = '\0';
                        f[nf++] = s;
                }
                if (nf == 0)
                        continue;
                if (!strcmp(f[0], "proc") && nf >= 2) {
                        snprintf(proc_opts, sizeof(proc_opts), "%s", f[1]);
                } else if (!strcmp(f[0], "clone") && nf >= 5) {
                        snprintf(slot, sizeof(slot), "%s/%s", stage, f[1]);
                        if (!strcmp(f[4], "dir"))
                                mkdir(slot, 0700);
                        else
                                close(open(slot, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
                        mount8(ctx, "--rbind", f[2], slot, NULL);
                } else if (!strcmp(f[0], "attach") && nf >= 4) {
                        snprintf(slot, sizeof(slot), "%s/%s", stage, f[1]);
                        mount8(ctx, "--move", slot, f[2], NULL);
                        if (!strcmp(f[3], "ro"))
                                mount8(ctx, "-o", "remount,bind,ro", f[2], NULL);
                } else if (!strcmp(f[0], "tmpfs") && nf >= 6) {
                        snprintf(opts, sizeof(opts), "mode=%s,uid=%s,gid=%s%s",
                                 f[2], f[3], f[4], strcmp(f[5], "ro") ? "" : ",ro");
                        mount8(ctx, "-t", "tmpfs", "-o", opts, "tmpfs", f[1], NULL);
                } else if (!strcmp(f[0], "mkdir") && nf >= 3) {
                        mkdir_p(f[1], (mode_t)strtol(f[2], NULL, 8));
                } else if (!strcmp(f[0], "mask") && nf >= 2) {
                        if (lstat(f[1], &st) < 0)
                                continue;   /* nothing to hide, as the holder */
                        if (S_ISDIR(st.st_mode))
                                mount8(ctx, "-t", "tmpfs", "-o", "ro,mode=0555",
                                       "tmpfs", f[1], NULL);
                        else
                                mount8(ctx, "--bind", "/dev/null", f[1], NULL);
                } else if (!strcmp(f[0], "ro") && nf >= 2) {
                        mount8(ctx, "-o", "remount,bind,ro", f[1], NULL);
                }
        }
        fclose(fp);
        if (proc_opts[0] && strcmp(proc_opts, "-")) {
                snprintf(opts, sizeof(opts), "nosuid,nodev,noexec,%s", proc_opts);
                mount8("proc", "-t", "proc", "-o", opts, "proc", "/proc", NULL);
        }
        printf("plan %ld %ld\n", plan_mounts, plan_failed);
        fflush(stdout);
}

static int mount8_main(int argc, char **argv)
{
        if (argc < 5)
                return 2;
        mount_bin = argv[2];
        for (int i = 4; i < argc; i++) {
                int st;
                pid_t pid;

                fflush(stdout);
                pid = fork();
                if (pid < 0) {
                        perror("benchtool: fork");
                        return 1;
                }
                if (pid == 0) {
                        apply_plan(argv[3], argv[i]);
                        _exit(0);
                }
                if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
                        fprintf(stderr, "benchtool: plan %s: child failed\n", argv[i]);
                        return 1;
                }
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc >= 2 && !strcmp(argv[1], "loop"))
                return loop_main(argc, argv);
        if (argc >= 2 && !strcmp(argv[1], "mounts"))
                return mounts_main(argc, argv);
        if (argc >= 2 && !strcmp(argv[1], "procwalk"))
                return procwalk_main(argc, argv);
        if (argc >= 2 && !strcmp(argv[1], "mount8"))
                return mount8_main(argc, argv);
        fprintf(stderr, "usage: benchtool loop|mounts|procwalk|mount8 ...\n");
        return 2;
}
