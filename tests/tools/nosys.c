/* nosys: run a program as on a kernel that lacks some system calls (tests only).
 *
 *   nosys <name>[,<name>...] <program> [args...]      names: close_range, clone3
 *
 * Installs a seccomp filter that answers the named system calls with ENOSYS, which is
 * what an older kernel answers, then execs the program. Run by root, the filter is
 * installed without no_new_privs: a setuid program started below it (the siteiso entry)
 * still gains its privileges and inherits the filter, as it would run on that kernel.
 * Everything else, and every other architecture's system call, is allowed. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "nosys: add this architecture's AUDIT_ARCH"
#endif

/* clone3 and close_range have the same numbers on every architecture (5.3, 5.9). */
static const struct {
        const char *name;
        unsigned nr;
} known[] = {
        { "clone3", 435 },
        { "close_range", 436 },
};

#define MAX_CALLS 8

static int lookup(const char *name, unsigned *nr)
{
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                if (strcmp(known[i].name, name) == 0) {
                        *nr = known[i].nr;
                        return 0;
                }
        return -1;
}

int main(int argc, char **argv)
{
        if (argc < 3) {
                fprintf(stderr, "usage: nosys <syscall>[,<syscall>...] <program> [args...]\n");
                return 2;
        }
        unsigned nrs[MAX_CALLS];
        size_t n = 0;
        for (char *name = strtok(argv[1], ","); name; name = strtok(NULL, ",")) {
                if (n == MAX_CALLS || lookup(name, &nrs[n]) < 0) {
                        fprintf(stderr, "nosys: unknown or too many system calls: %s\n", name);
                        return 2;
                }
                n++;
        }

        /* arch check, then one comparison per call: ENOSYS on a match, else allow. */
        struct sock_filter prog[4 + 2 * MAX_CALLS];
        size_t len = 0;
        prog[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                                   offsetof(struct seccomp_data, arch));
        prog[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0);
        prog[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        prog[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                                   offsetof(struct seccomp_data, nr));
        for (size_t i = 0; i < n; i++) {
                prog[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], 0, 1);
                prog[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                                           SECCOMP_RET_ERRNO | ENOSYS);
        }
        prog[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

        struct sock_fprog fprog = { .len = (unsigned short)len, .filter = prog };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0) {
                perror("nosys: install the seccomp filter (root, without no_new_privs)");
                return 2;
        }
        execvp(argv[2], argv + 2);
        fprintf(stderr, "nosys: run %s: %s\n", argv[2], strerror(errno));
        return 127;
}
