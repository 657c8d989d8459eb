# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""siteiso._procscan: find one site's processes in /proc, fast.

The scanner only finds processes that were started before a site was
isolated (so that they can be restarted); it never grants anything. Python
(siteiso.procs) decides what to do with what it returns.

Cost model: a process of another user costs one fstatat() on /proc/<pid>
(its owner is the process's effective uid, or root when it is not dumpable).
Only candidates get their /proc directory opened; every later read goes
through that directory descriptor, so a pid reused mid-scan cannot mix two
processes' data. Nothing Python is created for a process that does not match.
The loop runs without the GIL.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EINTR, ENOENT, ENOMEM, ESRCH, errno
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc, realloc
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


cdef extern from * nogil:
    """
    #include <errno.h>
    /* readdir() tells its end from an error only through errno. */
    static inline void siteiso_clear_errno(void) { errno = 0; }
    """
    void clear_errno "siteiso_clear_errno"()


# Scratch sizes. ENV_CHUNK bounds one environ entry: a longer one (no
# DOCUMENT_ROOT is that long) is skipped, not truncated into a false match.
cdef enum:
    ENV_CHUNK = 65536
    SMALL = 4096
    CWD_MAX = 4096
    DOCROOT_KEY_LEN = 14
    FPM_POOL_LEN = 14
    DELETED_LEN = 10

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


cdef long long read_starttime(int dirfd, char *buf) noexcept nogil:
    cdef ssize_t n = read_small(dirfd, "stat", buf, SMALL)
    if n <= 0:
        return -1
    return parse_starttime(buf, n)


cdef long long read_real_uid(int dirfd, char *buf) noexcept nogil:
    """The real uid from the Uid: line of status; -1 when unreadable."""
    cdef ssize_t n = read_small(dirfd, "status", buf, SMALL)
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


cdef bint cwd_matches(int dirfd, const Query *q, char *buf) noexcept nogil:
    """The cwd lies in one of q.cwd, and no q.cwd_excludes path is a
    longer (deeper) match: a site nested inside another owns its subtree."""
    cdef ssize_t n = readlinkat(dirfd, "cwd", buf, CWD_MAX)
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


cdef bint environ_matches(int dirfd, const Needles *docroots,
                          char *buf) noexcept nogil:
    """Stream /proc/<pid>/environ in chunks, entry by entry (NUL-ended)."""
    cdef int fd = openat(dirfd, "environ", O_RDONLY | O_CLOEXEC)
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


cdef bint cmdline_matches(int dirfd, const Needles *pools,
                          char *buf) noexcept nogil:
    """The process title is exactly "php-fpm: pool <name>" (then NUL, end
    of data or the spaces some titles are padded with)."""
    cdef ssize_t n = read_small(dirfd, "cmdline", buf, SMALL)
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


cdef int examine(int dirfd, const Query *q, const Scratch *s,
                 long long *starttime) noexcept nogil:
    """1 when the process behind dirfd belongs to the query, else 0."""
    cdef struct_stat st
    cdef bint hit = False
    cdef long long ruid

    if q.mntns != 0 or q.n_exclude > 0:
        if fstatat(dirfd, "ns/mnt", &st, 0) != 0:
            return 0
        if in_list(st.st_ino, q.exclude, q.n_exclude):
            return 0
        hit = q.mntns != 0 and st.st_ino == q.mntns

    # Cheapest reads first; the status read only confirms a match.
    if not hit and q.cwd.count > 0:
        hit = cwd_matches(dirfd, q, s.cwd)
    if not hit and q.pools.count > 0:
        hit = cmdline_matches(dirfd, &q.pools, s.small)
    if not hit and q.docroots.count > 0:
        hit = environ_matches(dirfd, &q.docroots, s.env)
    if not hit:
        return 0

    ruid = read_real_uid(dirfd, s.small)
    if ruid < 0 or <unsigned long long>ruid != q.uid:
        return 0
    starttime[0] = read_starttime(dirfd, s.small)
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


cdef int scan_proc(const Query *q, Found *out, const Scratch *s) noexcept nogil:
    """Walk /proc once. Returns 0 or an errno for /proc itself."""
    cdef int procfd = openat(AT_FDCWD, "/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    cdef DIR *d
    cdef dirent *ent
    cdef struct_stat st
    cdef long long pid
    cdef long long starttime
    cdef int dirfd
    cdef int err = 0
    if procfd < 0:
        return errno
    d = fdopendir(procfd)
    if d == NULL:
        err = errno
        close(procfd)
        return err
    while True:
        clear_errno()
        ent = readdir(d)
        if ent == NULL:
            err = errno
            break
        pid = parse_pid(ent.d_name)
        if pid <= 0 or pid == q.self_pid:
            continue
        # The one syscall another user's process costs. The owner is the
        # effective uid, or root for a non-dumpable process (php-fpm
        # workers, anything that changed uid): those are looked at closer.
        # Limitation: a dumpable process whose effective uid is a third
        # uid (neither the user nor root) is not seen.
        if fstatat(procfd, ent.d_name, &st, 0) != 0:
            continue
        if st.st_uid != q.uid and st.st_uid != 0:
            continue
        dirfd = openat(procfd, ent.d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd < 0:
            continue
        if examine(dirfd, q, s, &starttime):
            err = push(out, pid, starttime)
        close(dirfd)
        if err:
            break
    closedir(d)
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
         exclude_mntns=(), cwd_excludes=()):
    """(pid, starttime) of the processes of real uid `uid` that belong to a
    site by any of: mount namespace inode == mntns (when nonzero); cwd at or
    under one of cwd_prefixes (path boundary; a deeper cwd_excludes path
    wins, for sites nested in one another); DOCUMENT_ROOT in environ equal
    to one of docroots; process title "php-fpm: pool <name>" for a name in
    fpm_pools. Processes in a mount namespace listed in exclude_mntns, and
    the caller itself, are left out; processes that exit mid-scan are
    skipped. Raises OSError when /proc cannot be read.
    """
    cdef Query q
    cdef Found out
    cdef Scratch s
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

    q.uid = uid
    q.self_pid = getpid()
    q.mntns = mntns
    q.n_exclude = 0
    q.cwd.count = q.cwd_excludes.count = q.docroots.count = q.pools.count = 0
    q.cwd.ptr = q.cwd_excludes.ptr = q.docroots.ptr = q.pools.ptr = NULL
    q.cwd.size = q.cwd_excludes.size = q.docroots.size = q.pools.size = NULL
    out.items = NULL
    out.count = out.cap = 0
    s.env = <char *>malloc(ENV_CHUNK)
    s.small = <char *>malloc(SMALL)
    s.cwd = <char *>malloc(CWD_MAX)
    try:
        if s.env == NULL or s.small == NULL or s.cwd == NULL:
            raise MemoryError()
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
            err = scan_proc(&q, &out, &s)
        if err == ENOMEM:
            raise MemoryError()
        if err:
            raise OSError(err, strerror(err).decode(), "/proc")
        result = []
        k = 0
        while k < out.count:
            result.append((out.items[k], out.items[k + 1]))
            k += 2
        return result
    finally:
        free(out.items)
        free(exclude)
        free(s.env)
        free(s.small)
        free(s.cwd)
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
