# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""siteiso._procscan: find one site's processes in /proc, fast.

The scanner only finds processes that were started before a site was
isolated (so that they can be restarted); it never grants anything. Python
(siteiso.procs) decides what to do with what it returns.

Cost model: another user's process costs its /proc directory entry and one
fstatat() on /proc/<pid>, whose owner is the process's effective uid (the
kernel keeps that so for the directory even for non-dumpable processes).
Only the user's processes are read further (cwd, then the process title,
then environ; status and stat only for a match). Nothing Python is created
for a process that does not match, and the scan runs without the GIL.

On a busy host the directory walk and the fstatat() calls are most of the
time, about equal parts. The thread that walks /proc publishes pids as it
reads them; up to three more threads (by the CPUs this process may use)
examine them meanwhile, and the walker joins in when the walk is done.
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EINTR, ENOENT, ENOMEM, ESRCH, errno
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memchr, memcmp, memmove, memrchr


cdef extern from "<fcntl.h>" nogil:
    int O_RDONLY
    int O_DIRECTORY
    int O_CLOEXEC
    int AT_FDCWD
    int openat(int dirfd, const char *path, int flags, ...)


cdef extern from "<unistd.h>" nogil:
    ctypedef long ssize_t
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
    int close(int fd)
    int getpid()


cdef extern from "<sys/stat.h>" nogil:
    ctypedef struct struct_stat "struct stat":
        unsigned int st_uid
        unsigned long long st_ino
        unsigned long long st_nlink
    int fstat(int fd, struct_stat *st)
    int fstatat(int dirfd, const char *path, struct_stat *st, int flags)


cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR:
        pass
    struct dirent:
        char d_name[256]
    DIR *fdopendir(int fd)
    dirent *readdir(DIR *d)
    int closedir(DIR *d)


cdef extern from "<string.h>" nogil:
    char *strerror(int errnum)


cdef extern from "<sched.h>" nogil:
    int sched_yield()


cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int sigfillset(sigset_t *set)
    int SIG_SETMASK


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t *thread, const void *attr,
                       void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t thread, void **retval)
    int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)


cdef extern from * nogil:
    """
    #include <errno.h>
    #include <stddef.h>
    /* readdir() tells its end from an error only through errno. */
    static inline void siteiso_clear_errno(void) { errno = 0; }
    /* The pid queue between the /proc walker and the examining threads. */
    static inline size_t siteiso_load(size_t *p)
    { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void siteiso_store(size_t *p, size_t v)
    { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline size_t siteiso_claim(size_t *p)
    { return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }
    """
    void clear_errno "siteiso_clear_errno"()
    size_t atomic_load "siteiso_load"(size_t *p)
    void atomic_store "siteiso_store"(size_t *p, size_t v)
    size_t atomic_claim "siteiso_claim"(size_t *p)


# Scratch sizes. ENV_CHUNK bounds one environ entry: a longer one (no
# DOCUMENT_ROOT is that long) is skipped, not truncated into a false match.
cdef enum:
    ENV_CHUNK = 65536
    SMALL = 4096
    CWD_MAX = 4096
    DOCROOT_KEY_LEN = 14
    FPM_POOL_LEN = 14
    DELETED_LEN = 10
    # The pid queue: blocks of BLOCK pids, enough blocks for PID_MAX_LIMIT
    # (4 194 304) pids; pids are published every PUBLISH_EVERY entries.
    BLOCK = 4096
    MAX_BLOCKS = 1025
    PUBLISH_EVERY = 64
    # Below this many processes one thread is faster than starting more.
    THREADS_FROM = 1500
    MAX_THREADS = 4

cdef const char *DOCROOT_KEY = b"DOCUMENT_ROOT="
cdef const char *FPM_POOL = b"php-fpm: pool "
cdef const char *DELETED = b" (deleted)"


cdef struct Needles:
    const char **ptr
    size_t *size
    int count


cdef struct Query:
    unsigned int uid
    int self_pid
    unsigned long long mntns
    const unsigned long long *exclude
    int n_exclude
    Needles cwd
    Needles cwd_excludes
    Needles docroots
    Needles pools


cdef struct Found:
    long long *items          # pid, starttime, pid, starttime, ...
    size_t count
    size_t cap


cdef struct Scratch:
    char *env                 # ENV_CHUNK
    char *small               # SMALL
    char *cwd                 # CWD_MAX


cdef struct Queue:
    int procfd
    int *blocks[MAX_BLOCKS]
    size_t published          # pids[0 .. published) may be read
    size_t next               # the next index a thread claims
    size_t done               # 1 once the walk is over


cdef struct Worker:
    Queue *queue
    int procfd                # its own: a shared one bounces between CPUs
    const Query *q
    Scratch s
    Found out
    int err
    pthread_t thread
    bint started


# ---------------------------------------------------------------- reading

cdef ssize_t read_small(int dirfd, const char *name, char *buf,
                        size_t cap) noexcept nogil:
    """Read up to cap bytes of dirfd/name; -1 when it cannot be read."""
    cdef int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC)
    cdef ssize_t got = 0
    cdef ssize_t n
    if fd < 0:
        return -1
    while <size_t>got < cap:
        n = read(fd, buf + got, cap - got)
        if n < 0:
            if errno == EINTR:
                continue
            close(fd)
            return -1
        if n == 0:
            break
        got += n
    close(fd)
    return got


cdef long long parse_starttime(const char *buf, ssize_t n) noexcept nogil:
    """Field 22 of a /proc/<pid>/stat line; -1 when malformed.

    The comm field (2) may hold spaces and parentheses, so counting starts
    after the last ')'.
    """
    cdef const char *close_paren = <const char *>memrchr(buf, c')', n)
    cdef ssize_t i
    cdef int field = 2
    cdef long long value = 0
    if close_paren == NULL:
        return -1
    i = close_paren - buf + 1
    while i < n:
        if buf[i] == c' ':
            field += 1
            if field == 22:
                i += 1
                if i >= n or buf[i] < c'0' or buf[i] > c'9':
                    return -1
                while i < n and c'0' <= buf[i] <= c'9':
                    value = value * 10 + (buf[i] - c'0')
                    i += 1
                return value
        i += 1
    return -1


cdef long long read_starttime(int procfd, const char *path, char *buf) noexcept nogil:
    cdef ssize_t n = read_small(procfd, path, buf, SMALL)
    if n <= 0:
        return -1
    return parse_starttime(buf, n)


cdef long long read_real_uid(int procfd, const char *path, char *buf) noexcept nogil:
    """The real uid from the Uid: line of status; -1 when unreadable."""
    cdef ssize_t n = read_small(procfd, path, buf, SMALL)
    cdef ssize_t i = 0
    cdef long long value = 0
    if n <= 0:
        return -1
    while i + 4 < n:
        if (i == 0 or buf[i - 1] == c'\n') and memcmp(buf + i, b"Uid:", 4) == 0:
            i += 4
            while i < n and (buf[i] == c'\t' or buf[i] == c' '):
                i += 1
            if i >= n or buf[i] < c'0' or buf[i] > c'9':
                return -1
            while i < n and c'0' <= buf[i] <= c'9':
                value = value * 10 + (buf[i] - c'0')
                i += 1
            return value
        i += 1
    return -1


# ---------------------------------------------------------------- matching

cdef ssize_t path_prefix_len(const char *path, size_t n, const char *pre,
                             size_t m) noexcept nogil:
    """m when pre names path or one of its ancestors, else -1.

    A cwd whose directory was removed reads as "<path> (deleted)"; the
    suffix is not part of the path.
    """
    if m == 1 and pre[0] == c'/':
        return 1 if n >= 1 and path[0] == c'/' else -1
    if n < m or memcmp(path, pre, m) != 0:
        return -1
    if n == m or path[m] == c'/':
        return m
    if n - m == DELETED_LEN and memcmp(path + m, DELETED, DELETED_LEN) == 0:
        return m
    return -1


cdef ssize_t longest_prefix(const char *path, size_t n,
                            const Needles *needles) noexcept nogil:
    cdef ssize_t best = -1
    cdef ssize_t got
    cdef int i
    for i in range(needles.count):
        got = path_prefix_len(path, n, needles.ptr[i], needles.size[i])
        if got > best:
            best = got
    return best


cdef bint cwd_matches(int procfd, const char *path, const Query *q,
                      char *buf) noexcept nogil:
    """The cwd lies in one of q.cwd, and no q.cwd_excludes path is a
    longer (deeper) match: a site nested inside another owns its subtree."""
    cdef ssize_t n = readlinkat(procfd, path, buf, CWD_MAX)
    cdef ssize_t inside
    if n <= 0 or n >= CWD_MAX:
        return False
    inside = longest_prefix(buf, n, &q.cwd)
    if inside < 0:
        return False
    return longest_prefix(buf, n, &q.cwd_excludes) < inside


cdef size_t strip_slashes(const char *p, size_t n) noexcept nogil:
    while n > 1 and p[n - 1] == c'/':
        n -= 1
    return n


cdef bint docroot_equals(const char *value, size_t n,
                         const Needles *docroots) noexcept nogil:
    cdef int i
    n = strip_slashes(value, n)
    for i in range(docroots.count):
        if docroots.size[i] == n and memcmp(value, docroots.ptr[i], n) == 0:
            return True
    return False


cdef bint env_entry_matches(const char *entry, size_t n,
                            const Needles *docroots) noexcept nogil:
    if n < DOCROOT_KEY_LEN or memcmp(entry, DOCROOT_KEY, DOCROOT_KEY_LEN) != 0:
        return False
    return docroot_equals(entry + DOCROOT_KEY_LEN, n - DOCROOT_KEY_LEN, docroots)


cdef bint environ_matches(int procfd, const char *path,
                          const Needles *docroots, char *buf) noexcept nogil:
    """Stream /proc/<pid>/environ in chunks, entry by entry (NUL-ended)."""
    cdef int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC)
    cdef size_t have = 0
    cdef size_t start
    cdef ssize_t n
    cdef const char *nul
    cdef bint skipping = False
    cdef bint found = False
    if fd < 0:
        return False
    while not found:
        n = read(fd, buf + have, ENV_CHUNK - have)
        if n < 0 and errno == EINTR:
            continue
        if n <= 0:
            # The block may end without a NUL: the last entry is complete.
            if have > 0 and not skipping:
                found = env_entry_matches(buf, have, docroots)
            break
        have += n
        start = 0
        while not found:
            nul = <const char *>memchr(buf + start, 0, have - start)
            if nul == NULL:
                break
            if skipping:
                skipping = False
            else:
                found = env_entry_matches(buf + start, nul - (buf + start), docroots)
            start = nul - buf + 1
        if start == 0 and have == ENV_CHUNK:
            skipping = True
            have = 0
        else:
            memmove(buf, buf + start, have - start)
            have -= start
    close(fd)
    return found


cdef bint cmdline_matches(int procfd, const char *path,
                          const Needles *pools, char *buf) noexcept nogil:
    """The process title is exactly "php-fpm: pool <name>" (then NUL, end
    of data or the spaces some titles are padded with)."""
    cdef ssize_t n = read_small(procfd, path, buf, SMALL)
    cdef ssize_t i
    cdef size_t m
    cdef int k
    if n <= FPM_POOL_LEN or memcmp(buf, FPM_POOL, FPM_POOL_LEN) != 0:
        return False
    for k in range(pools.count):
        m = pools.size[k]
        if <size_t>(n - FPM_POOL_LEN) < m:
            continue
        if memcmp(buf + FPM_POOL_LEN, pools.ptr[k], m) != 0:
            continue
        i = FPM_POOL_LEN + m
        while i < n and buf[i] == c' ':
            i += 1
        if i == n or buf[i] == 0:
            return True
    return False


cdef bint in_list(unsigned long long value, const unsigned long long *items,
                  int count) noexcept nogil:
    cdef int i
    for i in range(count):
        if items[i] == value:
            return True
    return False


cdef const char *leaf(char *path, int base, const char *name) noexcept nogil:
    """path holds "<pid>/" (base bytes); make it "<pid>/<name>"."""
    cdef int i = 0
    while name[i] != 0:
        path[base + i] = name[i]
        i += 1
    path[base + i] = 0
    return path


cdef int examine(int procfd, char *path, int base, const Query *q,
                 const Scratch *s, long long *starttime) noexcept nogil:
    """1 when the process whose /proc entry path names ("<pid>/", base
    bytes) belongs to the query, else 0.

    Files are read by path under /proc rather than through a descriptor of
    /proc/<pid>: opening one costs as much as a quarter of the whole look.
    A pid reused between two of these reads would have to be handed out
    again within microseconds; terminate() confirms every start time
    through a pidfd anyway.
    """
    cdef struct_stat st
    cdef bint hit = False
    cdef long long ruid

    if q.mntns != 0 or q.n_exclude > 0:
        if fstatat(procfd, leaf(path, base, "ns/mnt"), &st, 0) != 0:
            return 0
        if in_list(st.st_ino, q.exclude, q.n_exclude):
            return 0
        hit = q.mntns != 0 and st.st_ino == q.mntns

    # Cheapest reads first; the status read only confirms a match.
    if not hit and q.cwd.count > 0:
        hit = cwd_matches(procfd, leaf(path, base, "cwd"), q, s.cwd)
    if not hit and q.pools.count > 0:
        hit = cmdline_matches(procfd, leaf(path, base, "cmdline"), &q.pools, s.small)
    if not hit and q.docroots.count > 0:
        hit = environ_matches(procfd, leaf(path, base, "environ"), &q.docroots, s.env)
    if not hit:
        return 0

    ruid = read_real_uid(procfd, leaf(path, base, "status"), s.small)
    if ruid < 0 or <unsigned long long>ruid != q.uid:
        return 0
    starttime[0] = read_starttime(procfd, leaf(path, base, "stat"), s.small)
    return 1 if starttime[0] >= 0 else 0


cdef int push(Found *out, long long pid, long long starttime) noexcept nogil:
    cdef long long *grown
    cdef size_t cap
    if out.count + 2 > out.cap:
        cap = out.cap * 2 if out.cap else 256
        grown = <long long *>realloc(out.items, cap * sizeof(long long))
        if grown == NULL:
            return ENOMEM
        out.items = grown
        out.cap = cap
    out.items[out.count] = pid
    out.items[out.count + 1] = starttime
    out.count += 2
    return 0


cdef long long parse_pid(const char *name) noexcept nogil:
    cdef long long value = 0
    cdef int i = 0
    if name[0] == 0:
        return -1
    while name[i] != 0:
        if name[i] < c'0' or name[i] > c'9':
            return -1
        value = value * 10 + (name[i] - c'0')
        i += 1
        if i > 10:
            return -1
    return value


cdef int format_pid(int pid, char *out) noexcept nogil:
    cdef char tmp[16]
    cdef int n = 0
    cdef int i
    while True:
        tmp[n] = c'0' + pid % 10
        n += 1
        pid //= 10
        if pid == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    out[n] = 0
    return n


cdef int examine_pid(Worker *w, int pid) noexcept nogil:
    """Look at one pid; 0, or ENOMEM when the result could not be kept."""
    cdef char path[32]
    cdef struct_stat st
    cdef long long starttime
    cdef int n = format_pid(pid, path)
    # The one syscall another user's process costs.
    # Limitation: a process whose effective uid differs from its real uid
    # (a setuid program the user runs) is not seen; site PHP never is one.
    if fstatat(w.procfd, path, &st, 0) != 0 or st.st_uid != w.q.uid:
        return 0
    path[n] = c'/'
    if examine(w.procfd, path, n + 1, w.q, &w.s, &starttime):
        return push(&w.out, pid, starttime)
    return 0


cdef void *work(void *arg) noexcept nogil:
    """Examine pids from the queue until the walk is over and it is empty."""
    cdef Worker *w = <Worker *>arg
    cdef Queue *queue = w.queue
    cdef size_t i
    while w.err == 0:
        i = atomic_claim(&queue.next)
        while i >= atomic_load(&queue.published):
            if atomic_load(&queue.done) and i >= atomic_load(&queue.published):
                return NULL
            sched_yield()
        w.err = examine_pid(w, queue.blocks[i // BLOCK][i % BLOCK])
    return NULL


cdef int walk(Queue *queue, int self_pid) noexcept nogil:
    """Read /proc, append every pid but self_pid to the queue; 0 or errno."""
    cdef DIR *d
    cdef dirent *ent
    cdef long long pid
    cdef size_t count = 0
    cdef int err = 0
    cdef int fd = openat(queue.procfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd < 0:
        return errno
    d = fdopendir(fd)
    if d == NULL:
        err = errno
        close(fd)
        return err
    while True:
        clear_errno()
        ent = readdir(d)
        if ent == NULL:
            err = errno
            break
        pid = parse_pid(ent.d_name)
        if pid <= 0 or pid == self_pid:
            continue
        if count % BLOCK == 0:
            if count // BLOCK >= MAX_BLOCKS:
                err = ENOMEM
                break
            queue.blocks[count // BLOCK] = <int *>malloc(BLOCK * sizeof(int))
            if queue.blocks[count // BLOCK] == NULL:
                err = ENOMEM
                break
        queue.blocks[count // BLOCK][count % BLOCK] = <int>pid
        count += 1
        if count % PUBLISH_EVERY == 0:
            atomic_store(&queue.published, count)
    closedir(d)
    atomic_store(&queue.published, count)
    return err


cdef int scratch_init(Scratch *s) noexcept nogil:
    s.env = <char *>malloc(ENV_CHUNK)
    s.small = <char *>malloc(SMALL)
    s.cwd = <char *>malloc(CWD_MAX)
    return 0 if s.env != NULL and s.small != NULL and s.cwd != NULL else ENOMEM


cdef void scratch_free(Scratch *s) noexcept nogil:
    free(s.env)
    free(s.small)
    free(s.cwd)


cdef int scan_proc(const Query *q, Found *out, int threads) noexcept nogil:
    """Walk /proc once with up to `threads` threads; 0 or an errno."""
    cdef Queue *queue = <Queue *>calloc(1, sizeof(Queue))
    cdef Worker *workers = <Worker *>calloc(MAX_THREADS, sizeof(Worker))
    cdef struct_stat st
    cdef sigset_t all_signals
    cdef sigset_t old_mask
    cdef int err = 0
    cdef int i
    cdef size_t k
    if queue == NULL or workers == NULL:
        free(queue)
        free(workers)
        return ENOMEM
    queue.procfd = openat(AT_FDCWD, "/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if queue.procfd < 0:
        err = errno
        free(queue)
        free(workers)
        return err

    # /proc's link count is a few plus the number of processes.
    if fstat(queue.procfd, &st) != 0 or st.st_nlink < THREADS_FROM:
        threads = 1
    threads = max(1, min(threads, MAX_THREADS))
    for i in range(threads):
        workers[i].queue = queue
        workers[i].q = q
        workers[i].procfd = openat(queue.procfd, ".",
                                   O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if workers[i].procfd < 0 and err == 0:
            err = errno
        if scratch_init(&workers[i].s) != 0:
            err = ENOMEM

    # Helpers block every signal: Python handles them in its main thread.
    if err == 0 and threads > 1:
        sigfillset(&all_signals)
        pthread_sigmask(SIG_SETMASK, &all_signals, &old_mask)
        for i in range(1, threads):
            workers[i].started = pthread_create(
                &workers[i].thread, NULL, work, &workers[i]) == 0
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL)

    if err == 0:
        err = walk(queue, q.self_pid)
    atomic_store(&queue.done, 1)
    if err != 0:
        # Stop the helpers early: nothing more will be taken.
        atomic_store(&queue.next, <size_t>-1 // 2)
    else:
        work(&workers[0])
    for i in range(1, threads):
        if workers[i].started:
            pthread_join(workers[i].thread, NULL)

    for i in range(threads):
        if err == 0 and workers[i].err != 0:
            err = workers[i].err
        k = 0
        while err == 0 and k < workers[i].out.count:
            err = push(out, workers[i].out.items[k], workers[i].out.items[k + 1])
            k += 2
        free(workers[i].out.items)
        scratch_free(&workers[i].s)
        if workers[i].procfd >= 0:
            close(workers[i].procfd)
    for i in range(MAX_BLOCKS):
        free(queue.blocks[i])
    close(queue.procfd)
    free(queue)
    free(workers)
    return err


# ---------------------------------------------------------------- Python

cdef int fill_needles(Needles *n, list keep, object items, str what,
                      bint is_path) except -1:
    cdef bytes b
    cdef Py_ssize_t size
    cdef int i
    items = tuple(items)
    n.count = 0
    if not items:
        return 0
    n.ptr = <const char **>malloc(len(items) * sizeof(char *))
    n.size = <size_t *>malloc(len(items) * sizeof(size_t))
    if n.ptr == NULL or n.size == NULL:
        raise MemoryError()
    for i, item in enumerate(items):
        if not isinstance(item, bytes):
            raise TypeError(f"{what}: expected bytes, got {type(item).__name__}")
        b = <bytes>item
        size = PyBytes_GET_SIZE(b)
        if size == 0 or b"\0" in b:
            raise ValueError(f"{what}: empty or NUL in {b!r}")
        if is_path:
            if b[0:1] != b"/":
                raise ValueError(f"{what}: not an absolute path: {b!r}")
            size = strip_slashes(PyBytes_AS_STRING(b), size)
        keep.append(b)
        n.ptr[i] = PyBytes_AS_STRING(b)
        n.size[i] = size
        n.count = i + 1
    return 0


cdef void free_needles(Needles *n) noexcept:
    free(n.ptr)
    free(n.size)
    n.ptr = NULL
    n.size = NULL


def scan(uid, *, mntns=0, cwd_prefixes=(), docroots=(), fpm_pools=(),
         exclude_mntns=(), cwd_excludes=(), threads=0):
    """(pid, starttime) of the processes of real uid `uid` that belong to a
    site by any of: mount namespace inode == mntns (when nonzero); cwd at or
    under one of cwd_prefixes (path boundary; a deeper cwd_excludes path
    wins, for sites nested in one another); DOCUMENT_ROOT in environ equal
    to one of docroots; process title "php-fpm: pool <name>" for a name in
    fpm_pools. Processes in a mount namespace listed in exclude_mntns, and
    the caller itself, are left out; processes that exit mid-scan are
    skipped. `threads` caps the threads used (0: by the usable CPUs).
    Raises OSError when /proc cannot be read.
    """
    cdef Query q
    cdef Found out
    cdef int nthreads
    cdef list keep = []
    cdef unsigned long long *exclude = NULL
    cdef int err
    cdef int i
    cdef size_t k

    if uid < 0 or uid > 0xFFFFFFFE:
        raise ValueError(f"uid out of range: {uid}")
    if mntns < 0:
        raise ValueError(f"mntns out of range: {mntns}")
    excl = tuple(int(x) for x in exclude_mntns)
    nthreads = threads if threads > 0 else len(os.sched_getaffinity(0))

    q.uid = uid
    q.self_pid = getpid()
    q.mntns = mntns
    q.n_exclude = 0
    q.cwd.count = q.cwd_excludes.count = q.docroots.count = q.pools.count = 0
    q.cwd.ptr = q.cwd_excludes.ptr = q.docroots.ptr = q.pools.ptr = NULL
    q.cwd.size = q.cwd_excludes.size = q.docroots.size = q.pools.size = NULL
    out.items = NULL
    out.count = out.cap = 0
    try:
        fill_needles(&q.cwd, keep, cwd_prefixes, "cwd_prefixes", True)
        fill_needles(&q.cwd_excludes, keep, cwd_excludes, "cwd_excludes", True)
        fill_needles(&q.docroots, keep, docroots, "docroots", True)
        fill_needles(&q.pools, keep, fpm_pools, "fpm_pools", False)
        if excl:
            exclude = <unsigned long long *>malloc(
                len(excl) * sizeof(unsigned long long))
            if exclude == NULL:
                raise MemoryError()
            for i, value in enumerate(excl):
                exclude[i] = value
            q.exclude = exclude
            q.n_exclude = len(excl)

        with nogil:
            err = scan_proc(&q, &out, nthreads)
        if err == ENOMEM:
            raise MemoryError()
        if err:
            raise OSError(err, strerror(err).decode(), "/proc")
        result = []
        k = 0
        while k < out.count:
            result.append((out.items[k], out.items[k + 1]))
            k += 2
        result.sort()  # the threads found them in any order
        return result
    finally:
        free(out.items)
        free(exclude)
        free_needles(&q.cwd)
        free_needles(&q.cwd_excludes)
        free_needles(&q.docroots)
        free_needles(&q.pools)


def starttime(pid):
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid it
    names one process for good. Raises ProcessLookupError when it is gone."""
    cdef char path[64]
    cdef char buf[SMALL]
    cdef ssize_t n
    cdef long long value
    cdef int err
    if pid <= 0 or pid > 0x7FFFFFFF:
        raise ProcessLookupError(ESRCH, "No such process", pid)
    snprintf(path, sizeof(path), "/proc/%d/stat", <int>pid)
    with nogil:
        n = read_small(AT_FDCWD, path, buf, SMALL)
        err = errno
    if n < 0:
        if err == ENOENT or err == ESRCH:
            raise ProcessLookupError(err, strerror(err).decode(), pid)
        raise OSError(err, strerror(err).decode(), path.decode())
    value = parse_starttime(buf, n)
    if value < 0:
        # An empty read means the process died between open and read.
        if n == 0:
            raise ProcessLookupError(ESRCH, "No such process", pid)
        raise OSError(f"cannot parse {path.decode()}")
    return value
