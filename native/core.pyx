# cython: language_level=3, boundscheck=False, wraparound=False
"""siteiso._core: many views built at once, from C.

`build_views` runs `siteiso-holder build` once per plan, up to `parallel` at
a time, feeding each its plan on stdin and collecting the holder's pid (its
stdout) or its error (its stderr) — one poll() loop, no Python per byte and
no GIL while the builds run. A view build is mostly the kernel's work in a
fresh process; with several in flight the CPUs stay busy while one build
waits, and the Python that plans the next user is not in the way.

Nothing is decided here: the holder program checks and applies each plan
(native/README.md), and Python (siteiso.views.engine) records the views.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy


cdef extern from "<unistd.h>" nogil:
    ctypedef int pid_t
    ctypedef long ssize_t
    int pipe2(int *fds, int flags)
    int close(int fd)
    ssize_t read(int fd, void *buf, size_t n)
    ssize_t write(int fd, const void *buf, size_t n)

cdef extern from "<fcntl.h>" nogil:
    enum:
        O_CLOEXEC
        O_NONBLOCK

cdef extern from "<signal.h>" nogil:
    enum:
        SIGKILL
    int kill(pid_t pid, int sig)

cdef extern from "<sys/wait.h>" nogil:
    pid_t waitpid(pid_t pid, int *status, int options)
    bint WIFEXITED(int status)
    int WEXITSTATUS(int status)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP
    int poll(pollfd *fds, unsigned long n, int timeout)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *ts)

cdef extern from "<spawn.h>" nogil:
    ctypedef struct posix_spawn_file_actions_t:
        pass
    int posix_spawn_file_actions_init(posix_spawn_file_actions_t *fa)
    int posix_spawn_file_actions_destroy(posix_spawn_file_actions_t *fa)
    int posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t *fa, int fd,
                                         int newfd)
    int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                    const void *attr, char *const argv[], char *const envp[])


cdef enum:
    OUT_MAX = 64          # the holder prints one pid and a newline
    ERR_MAX = 4096        # one error line; more is cut


cdef struct Job:
    const char *plan
    size_t plan_len
    size_t written
    pid_t pid
    int fd_in, fd_out, fd_err
    char out[OUT_MAX]
    size_t out_len
    char *err
    size_t err_len
    int status
    int spawn_errno
    bint started, finished


cdef double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec / 1e9


cdef int spawn(Job *j, const char *holder) noexcept nogil:
    """Start `holder build` with three pipes; 0 or an errno."""
    cdef int p_in[2]
    cdef int p_out[2]
    cdef int p_err[2]
    cdef posix_spawn_file_actions_t fa
    cdef char *argv[3]
    cdef char *envp[1]
    cdef int rc
    if pipe2(p_in, O_CLOEXEC) < 0:
        return errno
    if pipe2(p_out, O_CLOEXEC) < 0:
        rc = errno
        close(p_in[0]); close(p_in[1])
        return rc
    if pipe2(p_err, O_CLOEXEC) < 0:
        rc = errno
        close(p_in[0]); close(p_in[1]); close(p_out[0]); close(p_out[1])
        return rc
    argv[0] = <char *>holder
    argv[1] = <char *>b"build"
    argv[2] = NULL
    envp[0] = NULL
    posix_spawn_file_actions_init(&fa)
    posix_spawn_file_actions_adddup2(&fa, p_in[0], 0)
    posix_spawn_file_actions_adddup2(&fa, p_out[1], 1)
    posix_spawn_file_actions_adddup2(&fa, p_err[1], 2)
    rc = posix_spawn(&j.pid, holder, &fa, NULL, argv, envp)
    posix_spawn_file_actions_destroy(&fa)
    close(p_in[0]); close(p_out[1]); close(p_err[1])
    if rc != 0:
        close(p_in[1]); close(p_out[0]); close(p_err[0])
        return rc
    j.fd_in, j.fd_out, j.fd_err = p_in[1], p_out[0], p_err[0]
    # A holder that dies early must not block us on a full pipe.
    from_fcntl_nonblock(j.fd_in)
    return 0


cdef extern from *:
    """
    #include <fcntl.h>
    static void from_fcntl_nonblock(int fd)
    {
            int fl = fcntl(fd, F_GETFL);
            if (fl >= 0)
                    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    """
    void from_fcntl_nonblock(int fd) nogil


cdef void pump_in(Job *j) noexcept nogil:
    cdef ssize_t n
    while j.written < j.plan_len:
        n = write(j.fd_in, j.plan + j.written, j.plan_len - j.written)
        if n < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                return
            break               # EPIPE: the holder is gone; it said why
        j.written += n
    close(j.fd_in)
    j.fd_in = -1


cdef void pump_out(Job *j, int *fd, bint is_err) noexcept nogil:
    cdef char buf[1024]
    cdef ssize_t n = read(fd[0], buf, sizeof(buf))
    cdef size_t room
    cdef char *grown
    if n < 0 and errno == EINTR:
        return
    if n <= 0:
        close(fd[0])
        fd[0] = -1
        return
    if is_err:
        room = ERR_MAX - j.err_len
        if <size_t>n < room:
            room = n
        if room:
            grown = <char *>realloc(j.err, j.err_len + room)
            if grown != NULL:
                j.err = grown
                memcpy(j.err + j.err_len, buf, room)
                j.err_len += room
    else:
        room = OUT_MAX - j.out_len
        if <size_t>n < room:
            room = n
        memcpy(j.out + j.out_len, buf, room)
        j.out_len += room


cdef void finish(Job *j) noexcept nogil:
    cdef int status = 0
    while waitpid(j.pid, &status, 0) < 0 and errno == EINTR:
        pass
    j.status = WEXITSTATUS(status) if WIFEXITED(status) else 128
    j.finished = True


cdef void run_all(Job *jobs, size_t n, const char *holder, int parallel,
                  double timeout) noexcept nogil:
    cdef pollfd *fds = <pollfd *>calloc(3 * n + 1, sizeof(pollfd))
    cdef size_t *owner = <size_t *>calloc(3 * n + 1, sizeof(size_t))
    cdef size_t next_job = 0, done = 0, i, k, m
    cdef int running = 0, rc
    cdef double deadline = now() + timeout
    if fds == NULL or owner == NULL:
        for i in range(n):
            jobs[i].spawn_errno = 12   # ENOMEM
        free(fds); free(owner)
        return
    while done < n:
        while running < parallel and next_job < n:
            rc = spawn(&jobs[next_job], holder)
            jobs[next_job].started = True
            if rc != 0:
                jobs[next_job].spawn_errno = rc
                jobs[next_job].finished = True
                done += 1
            else:
                pump_in(&jobs[next_job])
                running += 1
            next_job += 1
        m = 0
        for i in range(next_job):
            if not jobs[i].started or jobs[i].finished:
                continue
            if jobs[i].fd_in >= 0:
                fds[m].fd = jobs[i].fd_in; fds[m].events = POLLOUT; owner[m] = i; m += 1
            if jobs[i].fd_out >= 0:
                fds[m].fd = jobs[i].fd_out; fds[m].events = POLLIN; owner[m] = i; m += 1
            if jobs[i].fd_err >= 0:
                fds[m].fd = jobs[i].fd_err; fds[m].events = POLLIN; owner[m] = i; m += 1
            if jobs[i].fd_in < 0 and jobs[i].fd_out < 0 and jobs[i].fd_err < 0:
                finish(&jobs[i])
                running -= 1
                done += 1
        if m == 0:
            continue
        if now() > deadline:
            for i in range(next_job):
                if jobs[i].started and not jobs[i].finished and jobs[i].pid > 0:
                    kill(jobs[i].pid, SIGKILL)
            deadline = now() + 3600
        rc = poll(fds, m, 1000)
        if rc <= 0:
            continue
        for k in range(m):
            if fds[k].revents == 0:
                continue
            i = owner[k]
            if fds[k].fd == jobs[i].fd_in:
                pump_in(&jobs[i])
            elif fds[k].fd == jobs[i].fd_out:
                pump_out(&jobs[i], &jobs[i].fd_out, False)
            elif fds[k].fd == jobs[i].fd_err:
                pump_out(&jobs[i], &jobs[i].fd_err, True)
    free(fds)
    free(owner)


def build_views(holder, plans, int parallel=4, double timeout=60.0):
    """Build one view per plan (bytes) with `holder build`, up to `parallel`
    at once. Returns, per plan in order, (pid, "") for a running holder or
    (0, error) — the holder's own message when it gave one. A build still
    running after `timeout` seconds is killed."""
    cdef bytes h = holder if isinstance(holder, bytes) else holder.encode()
    cdef list keep = [p if isinstance(p, bytes) else p.encode() for p in plans]
    cdef size_t n = len(keep), i
    cdef Job *jobs
    cdef const char *hp = PyBytes_AS_STRING(h)
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    if n == 0:
        return []
    jobs = <Job *>calloc(n, sizeof(Job))
    if jobs == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            jobs[i].plan = PyBytes_AS_STRING(keep[i])
            jobs[i].plan_len = PyBytes_GET_SIZE(keep[i])
            jobs[i].fd_in = jobs[i].fd_out = jobs[i].fd_err = -1
        with nogil:
            run_all(jobs, n, hp, parallel, timeout)
        out = []
        for i in range(n):
            out.append(_result(&jobs[i]))
        return out
    finally:
        for i in range(n):
            free(jobs[i].err)
        free(jobs)


cdef tuple _result(Job *j):
    import os
    err = (j.err[:j.err_len].decode(errors="replace").strip()
           if j.err != NULL else "")
    if j.spawn_errno:
        return (0, f"cannot start the view holder: {os.strerror(j.spawn_errno)}")
    text = j.out[:j.out_len].decode(errors="replace").strip()
    if j.status == 0 and text.isdigit() and int(text) > 0:
        return (int(text), "")
    return (0, err or f"siteiso-holder exited {j.status}")
