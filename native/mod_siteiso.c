/*
 * mod_siteiso: the web server's guard for isolated sites (SPEC §8).
 *
 * An isolated site's vhost include turns the guard on with server-level
 * directives (no .htaccess can set them: RSRC_CONF only, no override class):
 *
 *   SiteisoSite    <docroot>               the site's resolved docroot
 *   SiteisoHandler <handler> [<dir>]       a handler the site may use
 *                                          (with <dir>: only for files there)
 *   SiteisoDeny    <dir>                   a sibling nested in the docroot
 *
 * A fixup that runs after every other module's (mod_rewrite's per-directory
 * rules, mod_dir's index lookup) decides for each request of such a vhost:
 *
 * 1. the handler: one of the site's own (the include's PHP handler),
 *    mod_rewrite's internal redirect, or the core's static file handler
 *    (see pick_handler). Anything else
 *    (a `RewriteRule [H=proxy:unix:...]` to any FPM socket, `[H=cgi-script]`,
 *    a proxy request from `[P]`) is refused with 403. A request without a
 *    handler is served by whatever module claims its content type (mod_actions
 *    for a panel's `Action` type set by `[T=...]` or `AddType`): unless the
 *    type is one of the site's handlers it is pinned to the static handler.
 * 2. the file: resolved (every symlink followed), it must lie in the docroot
 *    (or the handler's own directory) and not in a nested sibling's. Symlinks
 *    inside the site are fine; one leading out (to a sibling, /etc, another
 *    account) is refused with 403.
 *
 * PHP runs in the site's view, where a sibling's files do not exist, so a link
 * swapped after the check gains nothing there. Static files are read by the
 * web server itself: a handler that runs right before the core's opens the
 * file once, checks the path the kernel gives for the opened file, and lets
 * the core serve that very file (through /proc/self/fd), so no swap between
 * the check and the read can lead elsewhere.
 */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "apr_file_info.h"
#include "apr_strings.h"
#include "apr_tables.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

module AP_MODULE_DECLARE_DATA siteiso_module;
APLOG_USE_MODULE(siteiso);   /* log lines as [siteiso:…], LogLevel siteiso:… */

#define REDIRECT_HANDLER "redirect-handler"     /* mod_rewrite's */
#define STATIC_HANDLER "default-handler"        /* the core's */
#define DELETED " (deleted)"

typedef struct {
    const char *name;       /* exact handler string */
    const char *dir;        /* NULL: files of the docroot */
} allowed_handler;

typedef struct {
    const char *docroot;            /* NULL: this vhost is not guarded */
    apr_array_header_t *handlers;   /* of allowed_handler */
    apr_array_header_t *deny;       /* of const char * */
} siteiso_conf;

static void *create_server_config(apr_pool_t *p, server_rec *s)
{
    siteiso_conf *c = apr_pcalloc(p, sizeof(*c));

    (void)s;
    c->handlers = apr_array_make(p, 4, sizeof(allowed_handler));
    c->deny = apr_array_make(p, 2, sizeof(const char *));
    return c;
}

/* A vhost guards itself or not at all: nothing is inherited from the main
 * server, whose settings would guard every other vhost with one site's
 * docroot. */
static void *merge_server_config(apr_pool_t *p, void *base, void *add)
{
    (void)p;
    (void)base;
    return add;
}

/* Absolute, normalized, not "/": no empty, "." or ".." component and no
 * trailing slash, so a textual prefix test is a path containment test. */
static const char *check_path(cmd_parms *cmd, const char *path)
{
    const char *p;

    if (path[0] != '/' || path[1] == '\0')
        return apr_psprintf(cmd->pool, "%s: %s is not an absolute path below /",
                            cmd->cmd->name, path);
    for (p = path; *p; ) {
        const char *next = strchr(p + 1, '/');
        size_t len = next ? (size_t)(next - p) : strlen(p);

        if (len == 1 || (len == 2 && p[1] == '.')
            || (len == 3 && p[1] == '.' && p[2] == '.'))
            return apr_psprintf(cmd->pool, "%s: %s is not a normalized path",
                                cmd->cmd->name, path);
        p += len;
    }
    return NULL;
}

static const char *set_site(cmd_parms *cmd, void *dummy, const char *docroot)
{
    siteiso_conf *c = ap_get_module_config(cmd->server->module_config,
                                           &siteiso_module);
    const char *err = check_path(cmd, docroot);

    (void)dummy;
    if (err)
        return err;
    if (c->docroot)
        return "SiteisoSite: given twice for one virtual host";
    c->docroot = docroot;
    return NULL;
}

static const char *add_handler(cmd_parms *cmd, void *dummy, const char *name,
                               const char *dir)
{
    siteiso_conf *c = ap_get_module_config(cmd->server->module_config,
                                           &siteiso_module);
    allowed_handler *h;

    (void)dummy;
    if (dir) {
        const char *err = check_path(cmd, dir);
        if (err)
            return err;
    }
    h = apr_array_push(c->handlers);
    h->name = name;
    h->dir = dir;
    return NULL;
}

static const char *add_deny(cmd_parms *cmd, void *dummy, const char *dir)
{
    siteiso_conf *c = ap_get_module_config(cmd->server->module_config,
                                           &siteiso_module);
    const char *err = check_path(cmd, dir);

    (void)dummy;
    if (err)
        return err;
    *(const char **)apr_array_push(c->deny) = dir;
    return NULL;
}

static const command_rec siteiso_cmds[] = {
    AP_INIT_TAKE1("SiteisoSite", set_site, NULL, RSRC_CONF,
                  "the isolated site's resolved document root"),
    AP_INIT_TAKE12("SiteisoHandler", add_handler, NULL, RSRC_CONF,
                   "a handler the site may use, and the only directory it "
                   "may serve from (default: the document root)"),
    AP_INIT_TAKE1("SiteisoDeny", add_deny, NULL, RSRC_CONF,
                  "a directory in the document root that is another site's"),
    { .name = NULL },
};

/* A vhost with SiteisoHandler or SiteisoDeny but no SiteisoSite would not be
 * guarded at all: refuse the configuration (also at `apachectl -t`, which a
 * graceful restart runs first) rather than serve it unguarded. */
static int check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                        server_rec *s)
{
    (void)pconf;
    (void)plog;
    (void)ptemp;
    for (; s; s = s->next) {
        const siteiso_conf *c = ap_get_module_config(s->module_config,
                                                     &siteiso_module);
        if (!c->docroot && (c->handlers->nelts || c->deny->nelts)) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                         "siteiso: SiteisoHandler or SiteisoDeny without "
                         "SiteisoSite in virtual host %s",
                         s->server_hostname ? s->server_hostname : "(main)");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return OK;
}

/* path is root or lies beneath it (both absolute, root normalized) */
static int inside(const char *path, const char *root)
{
    size_t n = strlen(root);

    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int refuse(request_rec *r, const char *what, const char *detail)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  "siteiso: refused %s: %s (isolated site %s)", what,
                  detail ? detail : "-",
                  ((const siteiso_conf *)ap_get_module_config(
                      r->server->module_config, &siteiso_module))->docroot);
    return HTTP_FORBIDDEN;
}

/* The real path lies in root and in no nested sibling's directory. */
static int allowed_path(const siteiso_conf *c, const char *real, const char *root)
{
    int i;

    if (!inside(real, root))
        return 0;
    for (i = 0; i < c->deny->nelts; i++) {
        if (inside(real, APR_ARRAY_IDX(c->deny, i, const char *)))
            return 0;
    }
    return 1;
}

static const allowed_handler *find_handler(const siteiso_conf *c, const char *name,
                                           int nocase)
{
    int i;

    for (i = 0; i < c->handlers->nelts; i++) {
        const allowed_handler *h = &APR_ARRAY_IDX(c->handlers, i, allowed_handler);
        if (nocase ? strcasecmp(h->name, name) == 0 : strcmp(h->name, name) == 0)
            return h;
    }
    return NULL;
}

/* Step 1: may the request's handler serve it? OK (then *root is where its
 * file must lie), DONE for mod_rewrite's internal redirect (the new request
 * is checked in turn), or the HTTP status of the refusal. */
static int pick_handler(request_rec *r, const siteiso_conf *c, const char **root)
{
    const allowed_handler *h;

    *root = c->docroot;
    if (r->proxyreq != PROXYREQ_NONE)
        return refuse(r, "a proxy request", r->filename);
    if (r->handler) {
        if (strcmp(r->handler, STATIC_HANDLER) == 0)
            return OK;
        if (strcmp(r->handler, REDIRECT_HANDLER) == 0 && r->filename
            && strncmp(r->filename, "redirect:", 9) == 0)
            return DONE;    /* an internal redirect: checked as a request */
        h = find_handler(c, r->handler, 0);
        if (!h)
            return refuse(r, "handler", r->handler);
        if (h->dir)
            *root = h->dir;
        return OK;
    }
    /* No handler: the content type acts as one (ap_invoke_handler), for
     * mod_actions as for any module; the comparison is as mod_actions' own
     * (case-insensitive). A directory keeps its type for mod_dir and
     * mod_autoindex. */
    if (r->content_type) {
        const char *type = ap_field_noparam(r->pool, r->content_type);
        h = find_handler(c, type, 1);
        if (h) {
            if (h->dir)
                *root = h->dir;
            return OK;
        }
        if (r->finfo.filetype == APR_DIR && strcmp(type, DIR_MAGIC_TYPE) == 0)
            return OK;
    }
    r->handler = STATIC_HANDLER;
    return OK;
}

/* Step 2: the file, every symlink resolved. A missing file is judged by the
 * directory it would be in (the directory walk stopped there). */
static int check_file(request_rec *r, const siteiso_conf *c, const char *root)
{
    char real[PATH_MAX];
    const char *path = r->filename;

    if (!path)
        return OK;          /* nothing mapped to the file system */
    if (path[0] != '/')
        return refuse(r, "a request not mapped to a file", path);
    if (r->finfo.filetype == APR_NOFILE) {
        const char *slash = strrchr(path, '/');
        path = slash == path ? "/" : apr_pstrmemdup(r->pool, path,
                                                    (apr_size_t)(slash - path));
    }
    if (!realpath(path, real)) {
        int e = errno;
        ap_log_rerror(APLOG_MARK, APLOG_ERR, e, r,
                      "siteiso: cannot resolve %s", path);
        return HTTP_FORBIDDEN;
    }
    if (!allowed_path(c, real, root))
        return refuse(r, apr_psprintf(r->pool, "%s, which leads to", r->filename),
                      real);
    return OK;
}

static int siteiso_fixup(request_rec *r)
{
    const siteiso_conf *c = ap_get_module_config(r->server->module_config,
                                                 &siteiso_module);
    const char *root;
    int status;

    if (!c->docroot)
        return DECLINED;
    status = pick_handler(r, c, &root);
    if (status == DONE)
        return OK;
    if (status != OK)
        return status;
    return check_file(r, c, root);
}

static apr_status_t close_fd(void *data)
{
    close((int)(long)data);
    return APR_SUCCESS;
}

/* Right before the core's static handler: open the file once, check where
 * the kernel says the opened file is, and hand the core that file. */
static int siteiso_static(request_rec *r)
{
    const siteiso_conf *c = ap_get_module_config(r->server->module_config,
                                                 &siteiso_module);
    char link[64], real[PATH_MAX + sizeof(DELETED)];
    struct stat st;
    ssize_t n;
    int fd;

    /* The fixup gave every static request of the vhost this handler, which
     * no module but the core claims: whatever order the hooks run in. */
    if (!c->docroot || !r->handler || strcmp(r->handler, STATIC_HANDLER) != 0
        || r->finfo.filetype != APR_REG || !r->filename
        || (r->method_number != M_GET && r->method_number != M_POST))
        return DECLINED;
    fd = open(r->filename, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        ap_log_rerror(APLOG_MARK, APLOG_ERR, e, r, "siteiso: cannot open %s",
                      r->filename);
        return e == ENOENT ? HTTP_NOT_FOUND : HTTP_FORBIDDEN;
    }
    apr_pool_cleanup_register(r->pool, (void *)(long)fd, close_fd,
                              apr_pool_cleanup_null);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return refuse(r, "a file that is no longer a regular file", r->filename);
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    n = readlink(link, real, sizeof(real) - 1);
    if (n <= 0 || (size_t)n >= sizeof(real) - 1)
        return refuse(r, "a file whose path cannot be read from /proc", r->filename);
    real[n] = '\0';
    if (st.st_nlink == 0)
        return refuse(r, "a deleted file", r->filename);
    if (!allowed_path(c, real, c->docroot))
        return refuse(r, apr_psprintf(r->pool, "%s, opened as", r->filename), real);
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "siteiso: serving %s as %s",
                  real, link);
    r->filename = apr_pstrdup(r->pool, link);
    if (apr_stat(&r->finfo, r->filename, APR_FINFO_MIN, r->pool) != APR_SUCCESS)
        return refuse(r, "a file that cannot be read again", real);
    return DECLINED;
}

static void register_hooks(apr_pool_t *p)
{
    static const char *const before_core[] = {"core.c", NULL};

    (void)p;
    ap_hook_check_config(check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_fixups(siteiso_fixup, NULL, NULL, APR_HOOK_REALLY_LAST);
    ap_hook_handler(siteiso_static, NULL, before_core, APR_HOOK_REALLY_LAST);
}

module AP_MODULE_DECLARE_DATA siteiso_module = {
    STANDARD20_MODULE_STUFF,
    .create_server_config = create_server_config,
    .merge_server_config = merge_server_config,
    .cmds = siteiso_cmds,
    .register_hooks = register_hooks,
#if AP_MODULE_HAS_FLAGS(x)
    .flags = AP_MODULE_FLAG_NONE,
#endif
};
