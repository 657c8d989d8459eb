/* The plan of siteiso-holder: parsing it and applying its operations with the new mount
 * API. Format and rules: native/README.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PLAN_SLOTS 256
#define PLAN_MAX_BYTES (16U << 20)

enum plan_mode {
        PLAN_BUILD, /* full header */
        PLAN_APPLY, /* header: version, uid, home only */
};

enum plan_op_kind {
        OP_CLONE,
        OP_TMPFS,
        OP_MKDIR,
        OP_ATTACH,
        OP_MASK,
        OP_RO,
        OP_DETACH,
        OP_DEVPTS,
        OP_PIN,
        OP_TOUCH,
        OP_SYMLINK,
};

struct plan_op {
        enum plan_op_kind kind;
        size_t line;
        const char *path; /* clone: source; mkdir, touch, symlink: path; others: target */
        const char *link; /* symlink: the link's text */
        int slot;         /* clone, attach */
        bool user;        /* clone: user tree (under home) */
        bool dir;         /* clone, mask */
        bool ro;          /* tmpfs, attach */
        mode_t mode;      /* tmpfs, mkdir, touch */
        uid_t uid;        /* tmpfs */
        gid_t gid;        /* tmpfs */
};

struct plan {
        uid_t uid;
        gid_t gid;
        const char *home;
        const char *cgroup;   /* build only */
        bool pidns;           /* build only */
        const char *proc_opts; /* build only; "" for none */
        struct plan_op *ops;
        size_t n_ops;
};

/* State while applying: the home and the cloned trees. */
struct plan_ctx {
        const struct plan *plan;
        int home_fd;
        int slots[PLAN_SLOTS];
};

/* Parse buf[0..len) (buf[len] must be NUL; modified in place). Dies with the line number
 * on any error. */
void plan_parse(char *buf, size_t len, enum plan_mode mode, struct plan *plan);

/* Open the home (O_PATH, no symlinks, owned by the plan's uid) in the current mount
 * namespace; every slot empty. */
void plan_ctx_init(struct plan_ctx *ctx, const struct plan *plan);

/* Apply one operation in the current mount namespace; dies on failure. */
void plan_apply_op(struct plan_ctx *ctx, const struct plan_op *op);

/* Make every mount of the current namespace a slave ("/" recursively). */
void plan_make_rprivate(void);

/* Replace /proc with a fresh proc of the current PID namespace, with comma-separated
 * options ("hidepid=invisible,subset=pid"). */
void plan_mount_proc(const char *opts);
