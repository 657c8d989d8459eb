/* Parse and apply a plan (native/README.md) with the new mount API, through raw syscall():
 * the C library of Debian 12 may lack the wrappers. Every target is resolved without
 * following any symlink and mounted onto by descriptor, so a path swapped by a user after
 * Python looked at it fails the build instead of redirecting a mount. */
#include "mountplan.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"

/* ---- the mount API, defined here where the headers lack it -------------------------- */

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MS_SLAVE
#define MS_SLAVE (1 << 19)
#endif
#ifndef MNT_DETACH
#define MNT_DETACH 2
#endif
#ifndef UMOUNT_NOFOLLOW
#define UMOUNT_NOFOLLOW 8
#endif

/* The fsconfig commands are an enum in the uapi header: use our own names. */
#define FSCFG_SET_FLAG 0
#define FSCFG_SET_STRING 1
#define FSCFG_CMD_CREATE 6

/* struct mount_attr, version 0 (32 bytes), under our own name so that it never clashes
 * with a header that has it. */
struct plan_mount_attr {
        uint64_t attr_set;
        uint64_t attr_clr;
        uint64_t propagation;
        uint64_t userns_fd;
};

static int sys_open_tree(int dfd, const char *path, unsigned int flags)
{
        return (int)syscall(SYS_open_tree, dfd, path, flags);
}

static int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to,
                          unsigned int flags)
{
        return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}

static int sys_fsopen(const char *fstype, unsigned int flags)
{
        return (int)syscall(SYS_fsopen, fstype, flags);
}

static int sys_fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux)
{
        return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}

static int sys_fsmount(int fd, unsigned int flags, unsigned int attr_flags)
{
        return (int)syscall(SYS_fsmount, fd, flags, attr_flags);
}

static int sys_mount_setattr(int dfd, const char *path, unsigned int flags,
                             struct plan_mount_attr *attr)
{
        return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr));
}

/* ---- parsing ------------------------------------------------------------------------ */

static size_t parse_line_no;

static _Noreturn void bad_plan(const char *why)
{
        die("cannot parse plan line %zu: %s", parse_line_no, why);
}

/* Split line into exactly n TAB-separated fields. */
static void fields(char *line, char **f, size_t n)
{
        f[0] = line;
        for (size_t i = 1; i < n; i++) {
                f[i] = split_tab(f[i - 1]);
                if (!f[i])
                        bad_plan("too few fields");
        }
        if (strchr(f[n - 1], '\t'))
                bad_plan("too many fields");
}

static const char *clean_path(const char *p)
{
        if (!path_is_clean(p))
                bad_plan("not an absolute, normalized path");
        return p;
}

/* The text of a symlink the plan makes: any non-empty text without a control character
 * (relative targets and ".." are the user's own links, recreated as they are). */
static const char *link_text(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n >= PATH_MAX)
                bad_plan("a symlink's text must hold 1 to PATH_MAX-1 characters");
        for (const char *c = s; *c; c++)
                if ((unsigned char)*c < 32 || *c == 127)
                        bad_plan("a symlink's text holds a control character");
        return s;
}

static bool choice(const char *s, const char *yes, const char *no)
{
        if (strcmp(s, yes) == 0)
                return true;
        if (strcmp(s, no) == 0)
                return false;
        bad_plan("unknown keyword");
}

static int parse_slot(const char *s)
{
        uint64_t v;

        if (!parse_u64(s, &v) || v >= PLAN_SLOTS)
                bad_plan("slot must be 0..255");
        return (int)v;
}

static mode_t parse_mode_field(const char *s)
{
        mode_t m;

        if (!parse_mode(s, &m))
                bad_plan("mode must be octal, at most 07777");
        return m;
}

static uid_t parse_id_field(const char *s)
{
        uid_t id;

        if (!parse_uid(s, &id))
                bad_plan("not a uid or gid");
        return id;
}

static void parse_op(char *line, const char *kw, struct plan_op *op)
{
        char *f[6];

        memset(op, 0, sizeof(*op));
        op->line = parse_line_no;
        op->slot = -1;

        if (strcmp(kw, "clone") == 0) {
                fields(line, f, 5);
                op->kind = OP_CLONE;
                op->slot = parse_slot(f[1]);
                op->path = clean_path(f[2]);
                op->user = choice(f[3], "user", "sys");
                op->dir = choice(f[4], "dir", "file");
        } else if (strcmp(kw, "tmpfs") == 0) {
                fields(line, f, 6);
                op->kind = OP_TMPFS;
                op->path = clean_path(f[1]);
                op->mode = parse_mode_field(f[2]);
                op->uid = parse_id_field(f[3]);
                op->gid = parse_id_field(f[4]);
                op->ro = choice(f[5], "ro", "rw");
        } else if (strcmp(kw, "mkdir") == 0) {
                fields(line, f, 3);
                op->kind = OP_MKDIR;
                op->path = clean_path(f[1]);
                op->mode = parse_mode_field(f[2]);
        } else if (strcmp(kw, "attach") == 0) {
                fields(line, f, 4);
                op->kind = OP_ATTACH;
                op->slot = parse_slot(f[1]);
                op->path = clean_path(f[2]);
                op->ro = choice(f[3], "ro", "rw");
        } else if (strcmp(kw, "mask") == 0) {
                fields(line, f, 3);
                op->kind = OP_MASK;
                op->path = clean_path(f[1]);
                op->dir = choice(f[2], "dir", "file");
        } else if (strcmp(kw, "ro") == 0) {
                fields(line, f, 2);
                op->kind = OP_RO;
                op->path = clean_path(f[1]);
        } else if (strcmp(kw, "devpts") == 0) {
                fields(line, f, 2);
                op->kind = OP_DEVPTS;
                op->path = clean_path(f[1]);
        } else if (strcmp(kw, "detach") == 0) {
                fields(line, f, 2);
                op->kind = OP_DETACH;
                op->path = clean_path(f[1]);
        } else if (strcmp(kw, "pin") == 0) {
                fields(line, f, 2);
                op->kind = OP_PIN;
                op->path = clean_path(f[1]);
        } else if (strcmp(kw, "touch") == 0) {
                fields(line, f, 3);
                op->kind = OP_TOUCH;
                op->path = clean_path(f[1]);
                op->mode = parse_mode_field(f[2]);
        } else if (strcmp(kw, "symlink") == 0) {
                fields(line, f, 3);
                op->kind = OP_SYMLINK;
                op->path = clean_path(f[1]);
                op->link = link_text(f[2]);
        } else {
                bad_plan("unknown operation");
        }
}

void plan_parse(char *buf, size_t len, enum plan_mode mode, struct plan *plan)
{
        bool seen_version = false, seen_uid = false, seen_pidns = false;
        size_t max_ops = 1;

        memset(plan, 0, sizeof(*plan));
        parse_line_no = 0;
        if (memchr(buf, '\0', len) != NULL)
                die("cannot parse plan: it holds a NUL byte");
        for (size_t i = 0; i < len; i++)
                max_ops += buf[i] == '\n';
        plan->ops = calloc(max_ops, sizeof(*plan->ops));
        if (!plan->ops)
                die_errno("allocate the plan");

        char *line = buf;
        while (line) {
                char *next = strchr(line, '\n');
                if (!next && *line == '\0')
                        break;
                if (next)
                        *next++ = '\0';
                parse_line_no++;
                if (*line == '\0')
                        bad_plan("empty line");

                char kw[16];
                size_t kwlen = strcspn(line, "\t");
                if (kwlen == 0 || kwlen >= sizeof(kw))
                        bad_plan("unknown keyword");
                memcpy(kw, line, kwlen);
                kw[kwlen] = '\0';

                char *f[3];
                bool header = plan->n_ops == 0;
                if (strcmp(kw, "version") == 0) {
                        fields(line, f, 2);
                        if (seen_version || parse_line_no != 1)
                                bad_plan("version must be the first line, once");
                        if (strcmp(f[1], "1") != 0)
                                bad_plan("unsupported plan version");
                        seen_version = true;
                } else if (strcmp(kw, "uid") == 0) {
                        fields(line, f, 3);
                        if (seen_uid || !header)
                                bad_plan("uid: duplicate or after an operation");
                        plan->uid = parse_id_field(f[1]);
                        plan->gid = parse_id_field(f[2]);
                        if (plan->uid == 0)
                                bad_plan("uid 0 owns no site");
                        seen_uid = true;
                } else if (strcmp(kw, "home") == 0) {
                        fields(line, f, 2);
                        if (plan->home || !header)
                                bad_plan("home: duplicate or after an operation");
                        plan->home = clean_path(f[1]);
                        if (strcmp(plan->home, "/") == 0)
                                bad_plan("home cannot be /");
                } else if (strcmp(kw, "cgroup") == 0 || strcmp(kw, "pidns") == 0 ||
                           strcmp(kw, "proc") == 0) {
                        if (mode != PLAN_BUILD)
                                bad_plan("only version, uid and home are allowed in apply");
                        if (!header)
                                bad_plan("header line after an operation");
                        fields(line, f, 2);
                        if (kw[0] == 'c') {
                                if (plan->cgroup)
                                        bad_plan("duplicate cgroup");
                                plan->cgroup = clean_path(f[1]);
                        } else if (kw[1] == 'i') {
                                if (seen_pidns)
                                        bad_plan("duplicate pidns");
                                plan->pidns = choice(f[1], "yes", "no");
                                seen_pidns = true;
                        } else {
                                if (plan->proc_opts)
                                        bad_plan("duplicate proc");
                                plan->proc_opts = strcmp(f[1], "-") == 0 ? "" : f[1];
                        }
                } else {
                        if (!seen_version ||
                            (mode == PLAN_BUILD && (!seen_uid || !plan->home)))
                                bad_plan("operation before version, uid and home");
                        if (mode == PLAN_BUILD &&
                            (!plan->cgroup || !seen_pidns || !plan->proc_opts))
                                bad_plan("operation before cgroup, pidns and proc");
                        parse_op(line, kw, &plan->ops[plan->n_ops++]);
                }
                line = next;
        }

        parse_line_no++;
        if (!seen_version || (mode == PLAN_BUILD && (!seen_uid || !plan->home)))
                bad_plan("missing version, uid or home");
        /* apply: uid and home are needed only to clone from the user's tree. */
        for (size_t i = 0; i < plan->n_ops && mode == PLAN_APPLY; i++)
                if (plan->ops[i].kind == OP_CLONE && (!seen_uid || !plan->home))
                        bad_plan("clone without uid and home");
        if (mode == PLAN_BUILD && (!plan->cgroup || !seen_pidns || !plan->proc_opts))
                bad_plan("missing cgroup, pidns or proc");
}

/* ---- applying ----------------------------------------------------------------------- */

void plan_ctx_init(struct plan_ctx *ctx, const struct plan *plan)
{
        struct stat st;

        ctx->plan = plan;
        for (int i = 0; i < PLAN_SLOTS; i++)
                ctx->slots[i] = -1;

        ctx->home_fd = sys_openat2(AT_FDCWD, plan->home, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (ctx->home_fd < 0)
                die_errno("open home %s", plan->home);
        if (fstat(ctx->home_fd, &st) < 0)
                die_errno("stat home %s", plan->home);
        if (st.st_uid != plan->uid)
                die("cannot open home %s: owned by uid %u, not %u", plan->home,
                    (unsigned)st.st_uid, (unsigned)plan->uid);
}

/* The target of an operation, resolved in the current mount namespace without following
 * any symlink or magic link. -1 with errno on failure. */
static int open_target(const char *path)
{
        return sys_openat2(AT_FDCWD, path, O_PATH | O_CLOEXEC, 0,
                           RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

static const char *type_name(bool dir)
{
        return dir ? "a directory" : "a regular file";
}

static void op_clone(struct plan_ctx *ctx, const struct plan_op *op)
{
        const struct plan *plan = ctx->plan;
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (ctx->slots[op->slot] >= 0)
                die("cannot clone %s: slot %d already holds a tree", op->path, op->slot);

        if (op->user) {
                size_t hl = strlen(plan->home);
                const char *rel;

                if (strcmp(op->path, plan->home) == 0)
                        rel = ".";
                else if (strncmp(op->path, plan->home, hl) == 0 && op->path[hl] == '/')
                        rel = op->path + hl + 1;
                else
                        die("cannot clone %s: not under the home %s", op->path, plan->home);
                fd = sys_openat2(ctx->home_fd, rel, O_PATH | O_CLOEXEC, 0,
                                 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                 RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
        } else {
                fd = open_target(op->path);
        }
        if (fd < 0)
                die_errno("open %s", op->path);
        if (fstat(fd, &st) < 0)
                die_errno("stat %s", op->path);
        if (op->dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
                die("cannot clone %s: not %s", op->path, type_name(op->dir));
        if (op->user && st.st_uid != plan->uid)
                die("cannot clone %s: owned by uid %u, not %u", op->path,
                    (unsigned)st.st_uid, (unsigned)plan->uid);

        int tree = sys_open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE |
                                 AT_EMPTY_PATH);
        if (tree < 0)
                die_errno("clone %s", op->path);
        ctx->slots[op->slot] = tree;
}

/* A new tmpfs, detached; the caller attaches it. */
static int make_tmpfs(const char *target, mode_t mode, uid_t uid, gid_t gid,
                      unsigned int attrs)
{
        _cleanup_close_ int fs = sys_fsopen("tmpfs", FSOPEN_CLOEXEC);
        char val[32];

        if (fs < 0)
                die_errno("create a tmpfs for %s", target);
        snprintf(val, sizeof(val), "%04o", (unsigned)mode);
        if (sys_fsconfig(fs, FSCFG_SET_STRING, "mode", val, 0) < 0)
                die_errno("set mode=%s on the tmpfs for %s", val, target);
        snprintf(val, sizeof(val), "%u", (unsigned)uid);
        if (sys_fsconfig(fs, FSCFG_SET_STRING, "uid", val, 0) < 0)
                die_errno("set uid=%s on the tmpfs for %s", val, target);
        snprintf(val, sizeof(val), "%u", (unsigned)gid);
        if (sys_fsconfig(fs, FSCFG_SET_STRING, "gid", val, 0) < 0)
                die_errno("set gid=%s on the tmpfs for %s", val, target);
        if (sys_fsconfig(fs, FSCFG_CMD_CREATE, NULL, NULL, 0) < 0)
                die_errno("create the tmpfs for %s", target);

        int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC, attrs);
        if (mnt < 0)
                die_errno("mount the tmpfs for %s", target);
        return mnt;
}

/* Attach a detached tree onto an already resolved target. */
static void attach_onto(int tree, int target_fd, const char *what, const char *target)
{
        if (sys_move_mount(tree, "", target_fd, "",
                           MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                die_errno("attach %s onto %s", what, target);
}

static void op_tmpfs(const struct plan_op *op)
{
        _cleanup_close_ int target = open_target(op->path);
        if (target < 0)
                die_errno("open tmpfs target %s", op->path);

        unsigned int attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if (op->ro)
                attrs |= MOUNT_ATTR_RDONLY;
        _cleanup_close_ int mnt = make_tmpfs(op->path, op->mode, op->uid, op->gid, attrs);
        attach_onto(mnt, target, "a tmpfs", op->path);
}

/* mkdir -p, one component at a time, never following a symlink. */
static void op_mkdir(const struct plan_op *op)
{
        _cleanup_close_ int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        char comp[256];
        const char *p = op->path + 1;

        if (dir < 0)
                die_errno("open / for mkdir %s", op->path);

        while (*p) {
                size_t len = strcspn(p, "/");
                if (len >= sizeof(comp))
                        die_err(ENAMETOOLONG, "mkdir %s", op->path);
                memcpy(comp, p, len);
                comp[len] = '\0';

                uint64_t resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
                int next = sys_openat2(dir, comp, O_PATH | O_DIRECTORY | O_CLOEXEC, 0, resolve);
                if (next < 0 && errno == ENOENT) {
                        if (mkdirat(dir, comp, op->mode) < 0 && errno != EEXIST)
                                die_errno("mkdir %s (at %.*s)", op->path,
                                          (int)(p + len - op->path), op->path);
                        next = sys_openat2(dir, comp, O_PATH | O_DIRECTORY | O_CLOEXEC, 0,
                                           resolve);
                }
                if (next < 0)
                        die_errno("mkdir %s (at %.*s)", op->path, (int)(p + len - op->path),
                                  op->path);
                close(dir);
                dir = next;
                p += len;
                if (*p == '/')
                        p++;
        }
}

static void op_attach(struct plan_ctx *ctx, const struct plan_op *op)
{
        int tree = ctx->slots[op->slot];
        char what[32];

        snprintf(what, sizeof(what), "slot %d", op->slot);
        if (tree < 0)
                die("cannot attach %s onto %s: the slot is empty", what, op->path);

        _cleanup_close_ int target = open_target(op->path);
        if (target < 0)
                die_errno("open attach target %s", op->path);

        /* Read-only before it is attached: never visible writable in the view. */
        if (op->ro) {
                struct plan_mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
                if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0)
                        die_errno("make %s read-only for %s", what, op->path);
        }
        attach_onto(tree, target, what, op->path);

        /* A slot is attached once: a second move_mount would move the tree away. */
        close(tree);
        ctx->slots[op->slot] = -1;
}

/* A clone of /dev/null of the current namespace, checked to be the null device. */
static int clone_dev_null(const char *target)
{
        _cleanup_close_ int fd = open_target("/dev/null");
        struct stat st;

        if (fd < 0)
                die_errno("open /dev/null to mask %s", target);
        if (fstat(fd, &st) < 0)
                die_errno("stat /dev/null to mask %s", target);
        if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
                die("cannot mask %s: /dev/null is not the null device", target);

        int tree = sys_open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (tree < 0)
                die_errno("clone /dev/null to mask %s", target);

        struct plan_mount_attr attr = {
                .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        };
        if (sys_mount_setattr(tree, "", AT_EMPTY_PATH, &attr) < 0)
                die_errno("make the /dev/null mask of %s read-only", target);
        return tree;
}

/* An O_PATH descriptor of a mask's or pin's target and its type, or -1 when there is
 * nothing there (or a parent is not a directory). O_NOFOLLOW: a symlink as the last
 * component is returned itself, never followed; RESOLVE_NO_SYMLINKS refuses one on the
 * way. */
static int open_optional(const char *path, const char *what, struct stat *st)
{
        int fd = sys_openat2(AT_FDCWD, path, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0,
                             RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        if (fd < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return -1;
                die_errno("open %s target %s", what, path);
        }
        if (fstat(fd, st) < 0)
                die_errno("stat %s target %s", what, path);
        return fd;
}

static void op_mask(const struct plan_op *op)
{
        /* A symlink as the last component is returned itself, to be covered. */
        struct stat st;
        _cleanup_close_ int target = open_optional(op->path, "mask", &st);

        if (target < 0)
                return; /* nothing there, or a parent is not a directory: nothing to hide */

        /* The type found decides, not the one the plan expected: a user may have swapped a
         * file for a directory since Python looked, and the path must be hidden anyway.
         * Anything but a directory (a symlink too) gets the /dev/null clone. */
        _cleanup_close_ int tree = -1;
        if (S_ISDIR(st.st_mode))
                tree = make_tmpfs(op->path, 0555, 0, 0,
                                  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                  MOUNT_ATTR_NOEXEC);
        else
                tree = clone_dev_null(op->path);
        attach_onto(tree, target, "a mask", op->path);
}

static void op_ro(const struct plan_op *op)
{
        _cleanup_close_ int target = open_target(op->path);
        struct plan_mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };

        if (target < 0)
                die_errno("open %s to make it read-only", op->path);
        if (sys_mount_setattr(target, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0)
                die_errno("make %s read-only", op->path);
}

/* The host unmounted a file system that this view still holds: let go of it here too (lazily,
 * like umount -l), so nothing stays busy. A mount already gone is not an error. */
static void op_detach(const struct plan_op *op)
{
        if (umount2(op->path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
            errno != ENOENT)
                die_errno("detach %s", op->path);
}

/* A devpts of the view's own (a new instance): the account's other terminals (its owner's
 * SSH session) do not exist in a view. /dev/ptmx opens the instance mounted beside it. */
static void op_devpts(const struct plan_op *op)
{
        _cleanup_close_ int target = open_target(op->path);
        _cleanup_close_ int fs = sys_fsopen("devpts", FSOPEN_CLOEXEC);

        if (target < 0)
                die_errno("open devpts target %s", op->path);
        if (fs < 0)
                die_errno("create a devpts for %s", op->path);
        if (sys_fsconfig(fs, FSCFG_SET_STRING, "ptmxmode", "0666", 0) < 0 ||
            sys_fsconfig(fs, FSCFG_SET_STRING, "mode", "0620", 0) < 0 ||
            sys_fsconfig(fs, FSCFG_SET_STRING, "gid", "5", 0) < 0)
                die_errno("configure the devpts for %s", op->path);
        if (sys_fsconfig(fs, FSCFG_CMD_CREATE, NULL, NULL, 0) < 0)
                die_errno("create the devpts for %s", op->path);
        _cleanup_close_ int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC,
                                              MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
        if (mnt < 0)
                die_errno("mount the devpts for %s", op->path);
        attach_onto(mnt, target, "a devpts", op->path);
}

/* A directory on the way from a mask up to the nearest mount point above it, made a mount
 * point itself (a recursive clone of itself attached onto itself, so nothing beneath it is
 * hidden): a mount point cannot be renamed or removed in this namespace (EBUSY), so no
 * process of the view can move a masked path away from where the plan put the mask. A
 * missing path, or one that is not a directory, holds no mask: skipped. */
static void op_pin(const struct plan_op *op)
{
        struct stat st;
        _cleanup_close_ int target = open_optional(op->path, "pin", &st);

        if (target < 0 || !S_ISDIR(st.st_mode))
                return;
        _cleanup_close_ int tree = sys_open_tree(target, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                                 AT_RECURSIVE | AT_EMPTY_PATH);
        if (tree < 0)
                die_errno("clone %s to pin it", op->path);
        attach_onto(tree, target, "a pin", op->path);
}

/* The directory that holds path, resolved without following any symlink; its last
 * component in *name. -1 with errno on failure. */
static int open_parent(const char *path, const char **name)
{
        const char *slash = strrchr(path, '/');
        char parent[PATH_MAX];
        size_t n = (size_t)(slash - path);

        *name = slash + 1;
        if (n >= sizeof(parent)) {
                errno = ENAMETOOLONG;
                return -1;
        }
        memcpy(parent, path, n);
        parent[n] = '\0';
        return sys_openat2(AT_FDCWD, n == 0 ? "/" : parent, O_PATH | O_DIRECTORY | O_CLOEXEC,
                           0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

/* An empty regular file to attach a file onto (a tmpfs the plan made has none). An
 * existing regular file will do; anything else there fails. */
static void op_touch(const struct plan_op *op)
{
        const char *name;
        _cleanup_close_ int dir = open_parent(op->path, &name);
        struct stat st;

        if (dir < 0)
                die_errno("open the directory of %s", op->path);
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        op->mode);
        if (fd >= 0) {
                close(fd);
                return;
        }
        if (errno != EEXIST)
                die_errno("create %s", op->path);
        if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                die_errno("stat %s", op->path);
        if (!S_ISREG(st.st_mode))
                die_err(EEXIST, "create %s", op->path);
}

/* A symlink the plan makes (in a tmpfs it made): a user's own link recreated in a view, or
 * the docroot's path as the web server names it, leading to the real docroot. */
static void op_symlink(const struct plan_op *op)
{
        const char *name;
        _cleanup_close_ int dir = open_parent(op->path, &name);

        if (dir < 0)
                die_errno("open the directory of %s", op->path);
        if (symlinkat(op->link, dir, name) < 0)
                die_errno("make the symlink %s", op->path);
}

void plan_apply_op(struct plan_ctx *ctx, const struct plan_op *op)
{
        switch (op->kind) {
        case OP_CLONE:
                op_clone(ctx, op);
                break;
        case OP_TMPFS:
                op_tmpfs(op);
                break;
        case OP_MKDIR:
                op_mkdir(op);
                break;
        case OP_ATTACH:
                op_attach(ctx, op);
                break;
        case OP_MASK:
                op_mask(op);
                break;
        case OP_RO:
                op_ro(op);
                break;
        case OP_DETACH:
                op_detach(op);
                break;
        case OP_DEVPTS:
                op_devpts(op);
                break;
        case OP_PIN:
                op_pin(op);
                break;
        case OP_TOUCH:
                op_touch(op);
                break;
        case OP_SYMLINK:
                op_symlink(op);
                break;
        }
}

/* A view receives nothing from the host: a mount the host adds later (a user's /run/user on
 * login, a backup volume) would arrive read-write and unmasked. Unmounts are followed by
 * siteisod instead (views/follow.py), so nothing the host lets go of stays busy. */
void plan_make_rprivate(void)
{
        struct plan_mount_attr attr = { .propagation = MS_PRIVATE };

        if (sys_mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &attr) < 0)
                die_errno("make / recursively private");
}

void plan_mount_proc(const char *opts)
{
        _cleanup_close_ int fs = sys_fsopen("proc", FSOPEN_CLOEXEC);
        char buf[256];

        if (fs < 0)
                die_errno("create a proc for /proc");
        if (strlen(opts) >= sizeof(buf))
                die_err(E2BIG, "set proc options %s", opts);
        strcpy(buf, opts);

        for (char *opt = buf; *opt;) {
                char *end = strchr(opt, ',');
                if (end)
                        *end = '\0';
                char *val = strchr(opt, '=');
                if (val)
                        *val++ = '\0';
                int r = val ? sys_fsconfig(fs, FSCFG_SET_STRING, opt, val, 0)
                            : sys_fsconfig(fs, FSCFG_SET_FLAG, opt, NULL, 0);
                if (r < 0)
                        die_errno("set proc option %s%s%s", opt, val ? "=" : "",
                                  val ? val : "");
                if (!end)
                        break;
                opt = end + 1;
        }
        if (sys_fsconfig(fs, FSCFG_CMD_CREATE, NULL, NULL, 0) < 0)
                die_errno("create a proc for /proc");

        _cleanup_close_ int mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID |
                                              MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (mnt < 0)
                die_errno("mount a proc for /proc");

        /* The old /proc shows the PIDs of the namespace the view came from: detach it (and
         * whatever is mounted under it) rather than hide it under the new one. */
        if (syscall(SYS_umount2, "/proc", MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL)
                die_errno("detach the old /proc");

        _cleanup_close_ int target = open_target("/proc");
        if (target < 0)
                die_errno("open /proc");
        attach_onto(mnt, target, "a fresh proc", "/proc");
}
