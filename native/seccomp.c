/* A hand-written classic BPF filter for x86_64.
 *
 * Denied with EPERM: the mount API old and new, pivot_root, setns, namespace creation
 * (unshare, and clone with any CLONE_NEW* flag), bpf, userfaultfd, perf_event_open,
 * keyrings, io_uring, kexec, kernel modules, open_by_handle_at. clone3 gets ENOSYS: its
 * flags sit in memory a filter cannot read, and the C library falls back to clone.
 * Another architecture (int 0x80 from a 64-bit process, a 32-bit program) is killed; x32
 * system calls get ENOSYS. ptrace stays allowed.
 *
 * The system call numbers are tested as a balanced tree of ranges, not a chain: the
 * kernel runs the filter once per system call number when it is installed (to cache the
 * ones always allowed), and a chain made that cost most of the entry's filter time. */
#include "seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "the seccomp filter is written for x86_64 only"
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

#define X32_SYSCALL_BIT 0x40000000U

/* x86_64 numbers; the newest ones are spelt out for older headers. */
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif

#define CLONE_NEW_ANY (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | \
                       CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME)

/* Where a jump goes; resolved once the layout is known (classic BPF jumps forward). The
 * fixed targets come first, tree nodes get labels from L_FIRST_FREE on. */
enum label {
        L_NEXT,
        L_ALLOW,
        L_CHECK_FLAGS,
        L_EPERM,
        L_ENOSYS,
        L_KILL,
        L_FIRST_FREE,
};

#define MAX_LABELS 64
#define MAX_INSNS 128

struct rule {
        uint32_t nr;
        enum label action;
};

static const struct rule rules[] = {
        { __NR_mount, L_EPERM },
        { __NR_umount2, L_EPERM },
        { __NR_pivot_root, L_EPERM },
        { __NR_setns, L_EPERM },
        { __NR_open_tree, L_EPERM },
        { __NR_open_tree_attr, L_EPERM },
        { __NR_move_mount, L_EPERM },
        { __NR_fsopen, L_EPERM },
        { __NR_fsconfig, L_EPERM },
        { __NR_fsmount, L_EPERM },
        { __NR_fspick, L_EPERM },
        { __NR_mount_setattr, L_EPERM },
        { __NR_bpf, L_EPERM },
        { __NR_userfaultfd, L_EPERM },
        { __NR_perf_event_open, L_EPERM },
        { __NR_keyctl, L_EPERM },
        { __NR_add_key, L_EPERM },
        { __NR_request_key, L_EPERM },
        { __NR_io_uring_setup, L_EPERM },
        { __NR_io_uring_enter, L_EPERM },
        { __NR_io_uring_register, L_EPERM },
        { __NR_kexec_load, L_EPERM },
        { __NR_kexec_file_load, L_EPERM },
        { __NR_init_module, L_EPERM },
        { __NR_finit_module, L_EPERM },
        { __NR_delete_module, L_EPERM },
        { __NR_open_by_handle_at, L_EPERM },
        { __NR_clone, L_CHECK_FLAGS },
        { __NR_unshare, L_CHECK_FLAGS },
        { __NR_clone3, L_ENOSYS },
};

#define N_RULES (sizeof(rules) / sizeof(rules[0]))

/* Consecutive numbers with the same action. */
struct range {
        uint32_t lo, hi;
        enum label action;
};

struct builder {
        struct sock_filter insn[MAX_INSNS];
        uint16_t jt[MAX_INSNS], jf[MAX_INSNS];  /* labels, patched into offsets */
        size_t label_at[MAX_LABELS];
        size_t n;
        int labels;
        bool overflow;
};

static void emit(struct builder *b, uint16_t code, uint32_t k, int jt, int jf)
{
        if (b->n >= MAX_INSNS) {
                b->overflow = true;
                return;
        }
        b->insn[b->n] = (struct sock_filter){ .code = code, .k = k };
        b->jt[b->n] = (uint16_t)jt;
        b->jf[b->n] = (uint16_t)jf;
        b->n++;
}

static int new_label(struct builder *b)
{
        if (b->labels >= MAX_LABELS) {
                b->overflow = true;
                return L_KILL;
        }
        return b->labels++;
}

static void here(struct builder *b, int label)
{
        b->label_at[label] = b->n;
}

static int patch(struct builder *b)
{
        if (b->overflow)
                return -1;
        for (size_t i = 0; i < b->n; i++) {
                if (BPF_CLASS(b->insn[i].code) != BPF_JMP || BPF_OP(b->insn[i].code) == BPF_JA)
                        continue;
                size_t t[2] = { b->jt[i], b->jf[i] };
                uint8_t off[2];
                for (int j = 0; j < 2; j++) {
                        size_t target = t[j] == L_NEXT ? i + 1 : b->label_at[t[j]];
                        if (target <= i || target - i - 1 > 255)
                                return -1;
                        off[j] = (uint8_t)(target - i - 1);
                }
                b->insn[i].jt = off[0];
                b->insn[i].jf = off[1];
        }
        return 0;
}

static int by_nr(const void *a, const void *b)
{
        uint32_t x = ((const struct rule *)a)->nr, y = ((const struct rule *)b)->nr;
        return x < y ? -1 : x > y;
}

static const uint16_t jeq = BPF_JMP | BPF_JEQ | BPF_K;
static const uint16_t jge = BPF_JMP | BPF_JGE | BPF_K;
static const uint16_t jgt = BPF_JMP | BPF_JGT | BPF_K;

/* Tree over ranges[lo..hi): every path ends in a jump to an action or to L_ALLOW. */
static void emit_tree(struct builder *b, const struct range *r, size_t lo, size_t hi)
{
        if (hi - lo == 1) {
                if (r[lo].lo == r[lo].hi) {
                        emit(b, jeq, r[lo].lo, r[lo].action, L_ALLOW);
                } else {
                        emit(b, jge, r[lo].lo, L_NEXT, L_ALLOW);
                        emit(b, jgt, r[lo].hi, L_ALLOW, r[lo].action);
                }
                return;
        }
        size_t mid = lo + (hi - lo) / 2;
        int right = new_label(b);
        emit(b, jge, r[mid].lo, right, L_NEXT);
        emit_tree(b, r, lo, mid);
        here(b, right);
        emit_tree(b, r, mid, hi);
}

/* Landlock scoping (Linux 6.12+, ABI 6): abstract unix sockets live in the network namespace,
 * which sites share with the host, and filesystem masks cannot hide them; a scoped domain
 * cannot connect to an abstract socket bound outside itself. Older kernels: nothing to do
 * here (a documented gap). Signals are left unscoped: the PID namespace already contains
 * them, and scoping would stop a site signalling its own processes started by another entry. */
struct scoped_ruleset_attr {
        uint64_t handled_access_fs;
        uint64_t handled_access_net;
        uint64_t scoped;
};

#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_VERSION_FLAG (1U << 0)

static int scope_install(void)
{
        struct scoped_ruleset_attr attr = {
                .scoped = SCOPE_ABSTRACT_UNIX_SOCKET,
        };
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_VERSION_FLAG);

        if (abi < 6)
                return 0;
        int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
        if (fd < 0)
                return -1;
        int r = (int)syscall(SYS_landlock_restrict_self, fd, 0);
        int saved = errno;
        close(fd);
        errno = saved;
        return r;
}

int seccomp_install(void)
{
        if (scope_install() < 0)
                return -1;

        static struct builder b;
        struct rule sorted[N_RULES];
        struct range ranges[N_RULES];
        size_t nr = 0;

        for (size_t i = 0; i < N_RULES; i++)
                sorted[i] = rules[i];
        qsort(sorted, N_RULES, sizeof(sorted[0]), by_nr);
        for (size_t i = 0; i < N_RULES; i++) {
                if (nr > 0 && ranges[nr - 1].action == sorted[i].action &&
                    ranges[nr - 1].hi + 1 == sorted[i].nr) {
                        ranges[nr - 1].hi = sorted[i].nr;
                        continue;
                }
                ranges[nr++] = (struct range){ sorted[i].nr, sorted[i].nr, sorted[i].action };
        }

        b.n = 0;
        b.labels = L_FIRST_FREE;
        b.overflow = false;
        emit(&b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
        emit(&b, jeq, AUDIT_ARCH_X86_64, L_NEXT, L_KILL);
        emit(&b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
        emit(&b, jge, X32_SYSCALL_BIT, L_ENOSYS, L_NEXT);
        emit_tree(&b, ranges, 0, nr);

        /* Flags are argument 0 of both clone and unshare; every CLONE_NEW* bit is in its
         * low 32 bits (the kernel ignores or rejects the high ones), little-endian. */
        here(&b, L_CHECK_FLAGS);
        emit(&b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
        emit(&b, BPF_JMP | BPF_JSET | BPF_K, CLONE_NEW_ANY, L_EPERM, L_ALLOW);
        here(&b, L_ALLOW);
        emit(&b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
        here(&b, L_EPERM);
        emit(&b, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA), 0, 0);
        here(&b, L_ENOSYS);
        emit(&b, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA), 0, 0);
        here(&b, L_KILL);
        emit(&b, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);

        if (patch(&b) < 0) {
                errno = EINVAL;
                return -1;
        }

        struct sock_fprog prog = { .len = (unsigned short)b.n, .filter = b.insn };
        return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
