/* A hand-written classic BPF filter for x86_64.
 *
 * Denied with EPERM: the mount API old and new, pivot_root, setns, namespace creation
 * (unshare, and clone with any CLONE_NEW* flag), bpf, userfaultfd, perf_event_open,
 * keyrings, io_uring, kexec, kernel modules, open_by_handle_at. clone3 gets ENOSYS: its
 * flags sit in memory a filter cannot read, and the C library falls back to clone.
 * Another architecture (int 0x80 from a 64-bit process, a 32-bit program) is killed; x32
 * system calls get ENOSYS. ptrace stays allowed. */
#include "seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
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
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
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

static const uint32_t denied[] = {
        __NR_mount, __NR_umount2, __NR_pivot_root, __NR_setns,
        __NR_open_tree, __NR_open_tree_attr, __NR_move_mount, __NR_fsopen, __NR_fsconfig,
        __NR_fsmount, __NR_fspick, __NR_mount_setattr,
        __NR_bpf, __NR_userfaultfd, __NR_perf_event_open,
        __NR_keyctl, __NR_add_key, __NR_request_key,
        __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
        __NR_kexec_load, __NR_kexec_file_load,
        __NR_init_module, __NR_finit_module, __NR_delete_module,
        __NR_open_by_handle_at,
};

#define N_DENIED (sizeof(denied) / sizeof(denied[0]))
#define FILTER_MAX (N_DENIED + 16)

/* Where a jump goes; resolved once the layout is known (classic BPF jumps forward). */
enum label {
        L_NEXT,
        L_ALLOW,
        L_CHECK_FLAGS,
        L_EPERM,
        L_ENOSYS,
        L_KILL,
        L_COUNT,
};

struct builder {
        struct sock_filter insn[FILTER_MAX];
        uint8_t jt[FILTER_MAX], jf[FILTER_MAX]; /* labels, patched into offsets */
        size_t label_at[L_COUNT];
        size_t n;
};

static void emit(struct builder *b, uint16_t code, uint32_t k, enum label jt, enum label jf)
{
        b->insn[b->n] = (struct sock_filter){ .code = code, .k = k };
        b->jt[b->n] = (uint8_t)jt;
        b->jf[b->n] = (uint8_t)jf;
        b->n++;
}

static void here(struct builder *b, enum label l)
{
        b->label_at[l] = b->n;
}

static int patch(struct builder *b)
{
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

static const uint16_t jeq = BPF_JMP | BPF_JEQ | BPF_K;

int seccomp_install(void)
{
        static struct builder b;

        b.n = 0;
        emit(&b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
        emit(&b, jeq, AUDIT_ARCH_X86_64, L_NEXT, L_KILL);
        emit(&b, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
        emit(&b, BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, L_ENOSYS, L_NEXT);
        emit(&b, jeq, __NR_clone3, L_ENOSYS, L_NEXT);
        emit(&b, jeq, __NR_clone, L_CHECK_FLAGS, L_NEXT);
        emit(&b, jeq, __NR_unshare, L_CHECK_FLAGS, L_NEXT);
        for (size_t i = 0; i < N_DENIED; i++)
                emit(&b, jeq, denied[i], L_EPERM, L_NEXT);
        emit(&b, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);

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
