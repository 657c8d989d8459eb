"""siteisod: the root daemon behind `cagefsctl-user` (SPEC §3, §7).

While the feature flag exists it serves the user socket /run/siteiso/user.sock
(mode 0666; /run/siteiso is hidden in every view). One request a connection:
one JSON line in, one JSON line out.

    {"command": "site-isolation-enable", "domains": ["a.com"]}
    {"result": "success", "enabled_sites": ["a.com"]}

Who asks is known only from the kernel: SO_PEERCRED for the uid and pid, and
a pidfd of the peer (SO_PEERPIDFD, else pidfd_open of that pid) so that what
is read from /proc is confirmed to be the peer's. A caller inside an isolated
site (its PID or mount namespace is a site's, or a site's PID namespace is an
ancestor of its own, or it sits in a site's cgroup) is refused; so is a caller
whose namespaces cannot be read. The user cage is the account itself: its
callers are served.

One thread reads and writes every connection (selectors, non-blocking), so a
slow or junk client costs a descriptor until its deadline and nothing else.
Requests are bounded in size (MAX_REQUEST), in time (REQUEST_TIMEOUT) and in
rate (a token bucket per uid, plus connection and job limits). The changes
themselves run in a small pool of worker threads, under the state lock, with
the same code as `cagefsctl --site-isolation-enable/-disable`.

With nothing pending the loop blocks without a timeout: an idle siteisod
never wakes up. The flag is followed with inotify, not by polling.

Holders and their views are not the daemon's children nor in its cgroup:
stopping or restarting siteisod stops no site.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import pwd
import re
import selectors
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from siteiso import paths
from siteiso.commands.common import require_root
from siteiso.errors import SiteisoError
from siteiso.service import cron, fpm
from siteiso.service.monitor import (
    CRON_PREFIX,
    EVERYONE,
    FPM_CHANGED,
    STATE_CHANGED,
    DocrootWatch,
    MountWatch,
)
from siteiso.service.supervise import FpmSupervisor
from siteiso.state import ensure_lib, load, locked
from siteiso.views import index

log = logging.getLogger("siteiso.daemon")

SOCKET = f"{paths.RUN}/user.sock"
COMMANDS = ("site-isolation-enable", "site-isolation-disable",
            "site-isolation-list", "selectorctl")

MAX_REQUEST = 4096          # bytes of one request line, newline excluded
MAX_DOMAINS = 64            # names in one request
REQUEST_TIMEOUT = 5.0       # seconds to send a request, or to take the answer
MAX_CONNECTIONS = 128       # open connections, all users
MAX_CONNECTIONS_PER_UID = 8
RATE_BURST = 30             # requests a uid may make at once ...
RATE_PER_SECOND = 2.0       # ... and then per second
MAX_JOBS = 16               # requests queued or running, all users
MAX_JOBS_PER_UID = 2
WORKERS = 2                 # changes serialize on the state lock anyway
BACKLOG = 64

# Kernel ABI: include/uapi/asm-generic/socket.h, include/uapi/linux/nsfs.h,
# include/uapi/linux/inotify.h.
SO_PEERPIDFD = 77
NS_GET_PARENT = 0xB702
IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_ONLYDIR = 0x400, 0x800, 0x01000000
IN_FLAG_EVENTS = (IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
                  | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
MAX_PIDNS_DEPTH = 33
COALESCE_SECONDS = 0.5        # the kernel's MAX_PID_NS_LEVEL is 32

# A site's cgroup, as engine.user_cgroup names it: .../siteiso.slice/user-<uid>/
# site-<token>. Any uid: a caller in another account's site is refused too.
_SITE_CGROUP = re.compile(r"/siteiso\.slice/user-\d+/site-[^/\s]+(/|$)")


class Refused(SiteisoError):
    """The caller may not use the user socket."""


def _error(message: str) -> dict[str, object]:
    return {"result": "error", "message": message}


# ---- who is calling ----------------------------------------------------------

@dataclass
class Peer:
    pid: int
    uid: int
    gid: int
    pidfd: int      # -1 when none could be had (the caller is then refused)


_peerpidfd_works = True


def _pidfd_pid(pidfd: int) -> int:
    """The pid behind a pidfd in our PID namespace; -1 once it has exited."""
    with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise OSError(errno.ENOSYS, "no Pid in pidfd fdinfo")


def peer_of(sock: socket.socket) -> Peer:
    """Kernel credentials of the connected peer, with a pidfd pinning it."""
    global _peerpidfd_works
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                          struct.calcsize("iII"))
    pid, uid, gid = struct.unpack("iII", raw)
    peer = Peer(pid, uid, gid, -1)
    if pid <= 0:
        return peer   # not in our PID namespace tree: refused later
    if _peerpidfd_works:
        try:
            peer.pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
            return peer
        except OSError as e:
            if e.errno not in (errno.ENOPROTOOPT, errno.EINVAL):
                return peer
            # Limitation: before Linux 6.5 the pidfd is opened from the pid
            # SO_PEERCRED recorded; a peer that exited at once may have had
            # its pid reused. judge() re-checks the uid behind it.
            _peerpidfd_works = False
    with contextlib.suppress(OSError):
        peer.pidfd = os.pidfd_open(pid)
    return peer


def _status_uids(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Uid:"):
                real, effective = line.split()[1:3]
                return int(real), int(effective)
    raise OSError(errno.ENOENT, f"no Uid line in /proc/{pid}/status")


def _pidns_chain(pid: int) -> list[int]:
    """Inodes of the caller's PID namespace and each ancestor we can see."""
    chain = []
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(MAX_PIDNS_DEPTH):
            chain.append(os.fstat(fd).st_ino)
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError as e:
                if e.errno == errno.EPERM:   # our own namespace or above
                    break
                raise
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)
    return chain


def judge(peer: Peer) -> None:
    """Refuse a caller inside an isolated site, or one we cannot see (fail closed)."""
    if peer.pid <= 0 or peer.pidfd < 0:
        raise Refused("siteisod cannot identify the caller")
    try:
        if _pidfd_pid(peer.pidfd) != peer.pid:
            raise Refused("siteisod cannot identify the caller (it has exited)")
        pidns = _pidns_chain(peer.pid)
        mntns = os.stat(f"/proc/{peer.pid}/ns/mnt").st_ino
        with open(f"/proc/{peer.pid}/cgroup", encoding="utf-8") as f:
            cgroups = f.read()
        uids = _status_uids(peer.pid)
        # Still alive now, so every read above was of the pidfd's process.
        signal.pidfd_send_signal(peer.pidfd, 0)
    except (OSError, ValueError) as e:
        raise Refused(f"siteisod cannot read the caller's namespaces: "
                      f"{getattr(e, 'strerror', None) or e}") from e
    if peer.uid not in uids:
        raise Refused("siteisod cannot identify the caller (its uid changed)")

    # The sites of every uid the caller has or had (a setuid program run in a
    # site connects with another uid); the cgroup test below holds for any uid.
    try:
        views = [h for uid in sorted({peer.uid, *uids}) for h in index.read(uid)
                 if h.kind in ("site", "retired")]
    except (OSError, ValueError) as e:
        raise Refused(f"siteisod cannot read the index of sites: {e}") from e
    in_site = (any(h.pidns in pidns or h.mntns == mntns for h in views)
               or any(_SITE_CGROUP.search(line) for line in cgroups.splitlines()))
    if in_site:
        log.warning("refused uid %d pid %d: it runs inside an isolated site",
                    peer.uid, peer.pid)
        raise Refused("Website isolation cannot be changed from inside an "
                      "isolated site")


# ---- what a request does --------------------------------------------------------

def parse(line: bytes) -> tuple[str, list[str]]:
    """The command and domains of one request line; SiteisoError if malformed."""
    try:
        req = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SiteisoError("invalid request: not a JSON line") from None
    if not isinstance(req, dict) or req.get("command") not in COMMANDS:
        raise SiteisoError("invalid request: unknown command")
    command = str(req["command"])
    # selectorctl sends its command line (siteiso.commands.selector).
    domains = req.get("argv" if command == "selectorctl" else "domains", [])
    if command == "site-isolation-list":
        return command, []
    if (not isinstance(domains, list) or not domains or len(domains) > MAX_DOMAINS
            or not all(isinstance(d, str) for d in domains)):
        raise SiteisoError(f"invalid request: give 1 to {MAX_DOMAINS} domain names")
    return command, list(domains)


def perform(uid: int, command: str, domains: list[str]) -> dict[str, object]:
    """Do one user request, as cagefsctl would, for the account of uid."""
    if command == "selectorctl":
        from siteiso.commands.selector import perform_for_uid
        return perform_for_uid(uid, domains)
    # Imported here: cagefsctl-user imports this module for SOCKET only.
    from siteiso import accounts, config, panels
    from siteiso.commands.cagefsctl import Admin, commit
    from siteiso.errors import DomainNotFound, NotAllowed, NotEnabled
    from siteiso.names import normalize_domain
    from siteiso.state import load, locked

    try:
        cfg = config.load()
        acct = accounts.lookup_uid(uid, cfg)
        with locked():
            st = load()
            if not st.flag:
                raise NotEnabled()
            if not st.allowed_user(acct.name):
                raise NotAllowed(acct.name)
            if command != "site-isolation-list":
                names = list(dict.fromkeys(normalize_domain(d) for d in domains))
                panel = panels.get_panel(cfg)
                # Another account's domain reads as a missing one: a user
                # learns nothing about domains it does not own. A name must
                # be the caller's in the record, if it is recorded, and for
                # enable in the panel too: a user never takes a name from
                # another account's site (a stale record moves only by the
                # admin's enable).
                enable = command == "site-isolation-enable"
                for d in names:
                    site = st.site_of(d)
                    if site is not None and site.owner != acct.name:
                        raise DomainNotFound(d)
                    if site is None or enable:
                        rec = panel.domain(d)
                        if rec is None or rec.owner != acct.name:
                            raise DomainNotFound(d)
                admin = Admin(cfg)
                if enable:
                    admin.enable(st, names)
                else:
                    admin.disable(st, names)
                # The caller's views; another account's home can neither
                # fail this request nor appear in its answer.
                for line in commit(st, cfg, users=[acct.name],
                                   others=sorted(admin.others)):
                    log.warning("%s", line)
                log.info("%s: %s %s (cagefsctl-user)", acct.name, command,
                         ",".join(names))
            enabled = sorted(n for s in st.sites_of(acct.name) for n in s.names)
        return {"result": "success", "enabled_sites": enabled}
    except SiteisoError as e:
        return _error(e.message)
    except Exception:
        log.exception("request %s of uid %d failed", command, uid)
        return _error("siteisod failed to do the request (see the system log)")


# ---- the feature flag ------------------------------------------------------------

class FlagWatch:
    """Wakes the loop when the feature flag may have appeared or gone.

    inotify on the nearest existing directory on the flag's path; each event
    moves the watch deeper (or up) and the flag is then looked at again.
    """

    def __init__(self, path: str) -> None:
        # inotify has no stdlib binding; three libc calls, made here.
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.path = path
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise SiteisoError(f"cannot watch {path}: inotify_init1: "
                               f"{os.strerror(err)}")
        self._wd = -1

    def close(self) -> None:
        os.close(self.fd)

    def _target(self) -> str:
        d = os.path.dirname(self.path)
        while d != "/" and not os.path.isdir(d):
            d = os.path.dirname(d)
        return d

    def check(self) -> bool:
        """Drain events, re-aim the watch, then say whether the flag exists."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 65536):
                pass
        # Always added again: the watched directory may have been removed and
        # made anew under the same name (the same one just returns its wd).
        for _ in range(8):
            target = self._target()
            wd = self._libc.inotify_add_watch(self.fd, target.encode(),
                                              IN_FLAG_EVENTS)
            if wd >= 0:
                break
            err = ctypes.get_errno()
            if err not in (errno.ENOENT, errno.ENOTDIR):
                raise SiteisoError(f"cannot watch {target}: {os.strerror(err)}")
        else:
            raise SiteisoError(f"cannot watch {target}: it keeps changing")
        if self._wd >= 0 and wd != self._wd:
            self._libc.inotify_rm_watch(self.fd, self._wd)   # may be gone: fine
        self._wd = wd
        return os.path.isfile(self.path)


# ---- the server ------------------------------------------------------------------

@dataclass(eq=False)
class Conn:
    sock: socket.socket
    peer: Peer
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    registered: bool = False


@dataclass
class Bucket:
    tokens: float
    stamp: float


class Daemon:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.conns: set[Conn] = set()
        self.per_uid: collections.Counter[int] = collections.Counter()
        self.jobs_per_uid: collections.Counter[int] = collections.Counter()
        self.jobs = 0
        self.buckets: dict[int, Bucket] = {}
        self.pool = ThreadPoolExecutor(max_workers=WORKERS,
                                       thread_name_prefix="siteisod-job")
        self.done: collections.deque[tuple[Conn, dict[str, object]]] = \
            collections.deque()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sig_r, self.sig_w = socket.socketpair()
        self.sig_r.setblocking(False)
        self.sig_w.setblocking(False)
        self.flag = FlagWatch(paths.FLAG)
        self.stopping = False
        # While sites are isolated: the host's unmounts and the docroots.
        self.mounts = MountWatch()
        self.docroots = DocrootWatch()
        self.watch_lock = threading.Lock()
        self.pending: dict[str, float] = {}   # user → when to regenerate
        self.fpm = FpmSupervisor()

    # ---- lifetime --------------------------------------------------------

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: None)
        signal.set_wakeup_fd(self.sig_w.fileno(), warn_on_full_buffer=False)
        self.sel.register(self.sig_r, selectors.EVENT_READ, self._on_signal)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_done)
        self.sel.register(self.flag.fd, selectors.EVENT_READ, self._on_flag)
        self.sel.register(self.mounts.fd, selectors.EVENT_READ, self._on_mounts)
        self.sel.register(self.docroots.fd, selectors.EVENT_READ, self._on_docroots)
        self._on_flag(0)
        # The state's directory is watched for every command's change: on a
        # server where no command has run yet it must exist first, or sites
        # enabled later would go unwatched until a restart.
        ensure_lib()
        self._rewatch()
        self._rescan_fpm()
        try:
            while not self.stopping:
                for key, mask in self.sel.select(self._timeout()):
                    callback: Callable[[int], None] = key.data
                    try:
                        callback(mask)
                    except SiteisoError:
                        raise
                    except Exception:
                        # A bug met by one connection must not end the
                        # service; that connection ends at its deadline.
                        log.exception("siteisod: unexpected error, continuing")
                self._expire()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._withdraw()
        # Queued requests are dropped; one already changing state finishes,
        # so the lock is released with the state and its views consistent.
        self.pool.shutdown(wait=True, cancel_futures=True)
        for conn in list(self.conns):
            self._close(conn)
        signal.set_wakeup_fd(-1)
        self.sel.close()
        self.flag.close()
        self.mounts.close()
        self.docroots.close()
        for fd in list(self.fpm.watched):
            os.close(fd)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.sig_r.close()
        self.sig_w.close()

    def _on_signal(self, _mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            for signum in self.sig_r.recv(64):
                if signum == signal.SIGHUP:
                    self._on_flag(0)
                else:
                    self.stopping = True

    # ---- the socket, while the flag exists -------------------------------------

    def _on_flag(self, _mask: int) -> None:
        present = self.flag.check()
        if present and self.listener is None:
            self._serve()
        elif not present and self.listener is not None:
            self._withdraw()
            log.info("feature flag gone: %s withdrawn", SOCKET)

    def _serve(self) -> None:
        index.ensure_run_dirs()
        tmp = f"{SOCKET}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(tmp)
            os.chmod(tmp, 0o666)
            sock.listen(BACKLOG)
            # Appears complete, with its mode, or not at all.
            os.rename(tmp, SOCKET)
        except OSError as e:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise SiteisoError(f"cannot serve {SOCKET}: {e.strerror}") from e
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, self._on_accept)
        log.info("serving %s", SOCKET)

    def _withdraw(self) -> None:
        if self.listener is None:
            return
        # The pidfile lock means no other siteisod runs: a socket there is ours.
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(SOCKET).st_mode):
                os.unlink(SOCKET)
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None

    # ---- connections ---------------------------------------------------------------

    def _on_accept(self, _mask: int) -> None:
        assert self.listener is not None
        for _ in range(BACKLOG):
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE and friends: stop accepting for this round.
                log.warning("cannot accept on %s: %s", SOCKET, e.strerror)
                return
            sock.setblocking(False)
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        try:
            peer = peer_of(sock)
        except OSError:
            sock.close()
            return
        refusal = None
        if len(self.conns) >= MAX_CONNECTIONS:
            refusal = "siteisod is busy, try again later"
        elif self.per_uid[peer.uid] >= MAX_CONNECTIONS_PER_UID:
            refusal = "too many connections from this user, try again later"
        elif not self._take_token(peer.uid):
            refusal = "too many requests from this user, try again later"
        if refusal is not None:
            # An empty socket buffer takes one short line without blocking.
            with contextlib.suppress(OSError):
                sock.send(json.dumps(_error(refusal)).encode() + b"\n")
            sock.close()
            if peer.pidfd >= 0:
                os.close(peer.pidfd)
            return
        conn = Conn(sock, peer, time.monotonic() + REQUEST_TIMEOUT)
        self.conns.add(conn)
        self.per_uid[peer.uid] += 1
        self.sel.register(sock, selectors.EVENT_READ, lambda m: self._on_read(conn))
        conn.registered = True

    def _take_token(self, uid: int) -> bool:
        now = time.monotonic()
        if len(self.buckets) > 4096:
            self.buckets = {u: b for u, b in self.buckets.items()
                            if b.tokens + (now - b.stamp) * RATE_PER_SECOND
                            < RATE_BURST}
        b = self.buckets.setdefault(uid, Bucket(RATE_BURST, now))
        b.tokens = min(RATE_BURST, b.tokens + (now - b.stamp) * RATE_PER_SECOND)
        b.stamp = now
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True

    def _on_read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(MAX_REQUEST + 1 - len(conn.buf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.buf += data
        line, nl, _rest = bytes(conn.buf).partition(b"\n")
        if nl or (not data and conn.buf):
            self._request(conn, line)
        elif not data:
            self._close(conn)
        elif len(conn.buf) > MAX_REQUEST:
            self._reply(conn, _error(f"request too large (more than {MAX_REQUEST} "
                                     "bytes)"))

    def _request(self, conn: Conn, line: bytes) -> None:
        self._unregister(conn)
        if len(line) > MAX_REQUEST:
            self._reply(conn, _error(f"request too large (more than {MAX_REQUEST} "
                                     "bytes)"))
            return
        try:
            command, domains = parse(line)
            judge(conn.peer)
        except SiteisoError as e:
            self._reply(conn, _error(e.message))
            return
        uid = conn.peer.uid
        if self.jobs >= MAX_JOBS or self.jobs_per_uid[uid] >= MAX_JOBS_PER_UID:
            self._reply(conn, _error("siteisod is busy, try again later"))
            return
        self.jobs += 1
        self.jobs_per_uid[uid] += 1
        conn.deadline = float("inf")   # the job's own time; the answer has one
        fut = self.pool.submit(perform, uid, command, domains)
        fut.add_done_callback(lambda f: self._job_done(conn, f))

    def _job_done(self, conn: Conn, fut: Future[dict[str, object]]) -> None:
        """In a worker thread: hand the answer to the loop and wake it."""
        if fut.cancelled():
            return
        exc = fut.exception()
        result = _error(f"siteisod failed: {exc}") if exc else fut.result()
        self.done.append((conn, result))
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_w, b"\0")

    def _on_done(self, _mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass
        while self.done:
            conn, result = self.done.popleft()
            self.jobs -= 1
            self.jobs_per_uid[conn.peer.uid] -= 1
            if self.jobs_per_uid[conn.peer.uid] <= 0:
                del self.jobs_per_uid[conn.peer.uid]
            if conn in self.conns:
                self._reply(conn, result)

    def _reply(self, conn: Conn, result: dict[str, object]) -> None:
        conn.out = json.dumps(result).encode() + b"\n"
        conn.deadline = time.monotonic() + REQUEST_TIMEOUT
        self._unregister(conn)
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._close(conn)
        elif not conn.registered:
            self.sel.register(conn.sock, selectors.EVENT_WRITE,
                              lambda m: self._flush(conn))
            conn.registered = True

    def _unregister(self, conn: Conn) -> None:
        if conn.registered:
            self.sel.unregister(conn.sock)
            conn.registered = False

    def _close(self, conn: Conn) -> None:
        if conn not in self.conns:
            return
        self._unregister(conn)
        self.conns.discard(conn)
        self.per_uid[conn.peer.uid] -= 1
        if self.per_uid[conn.peer.uid] <= 0:
            del self.per_uid[conn.peer.uid]
        conn.sock.close()
        if conn.peer.pidfd >= 0:
            os.close(conn.peer.pidfd)
            conn.peer.pidfd = -1

    # ---- the monitor: host unmounts, docroots, the panel ----------------------

    def _on_mounts(self, _mask: int) -> None:
        self.mounts.on_event()

    def _on_docroots(self, _mask: int) -> None:
        # Coalesced: a burst of events (a docroot moved with the panel file
        # rewritten) becomes one regenerate per user after a quiet moment.
        due = time.monotonic() + COALESCE_SECONDS
        with self.watch_lock:
            users = self.docroots.on_event()
        crontabs = {u[len(CRON_PREFIX):] for u in users if u.startswith(CRON_PREFIX)}
        if crontabs:
            self.pool.submit(_ensure_cron_shells, crontabs).add_done_callback(
                _log_failure)
        if FPM_CHANGED in users or STATE_CHANGED in users:
            with self.watch_lock:
                made = fpm.FPM_DIR not in self.docroots.watched
            if FPM_CHANGED in users and made:
                self._rewatch()     # the directory has just been made
            self._rescan_fpm()
        for user in users - {CRON_PREFIX + c for c in crontabs} - {FPM_CHANGED}:
            self.pending.setdefault(user, due)

    # ---- php-fpm supervision ----------------------------------------------------

    def _rescan_fpm(self) -> None:
        added, removed = self.fpm.rescan()
        for fd in removed:
            self.sel.unregister(fd)
            os.close(fd)
        for fd in added:
            self.sel.register(fd, selectors.EVENT_READ,
                              lambda _mask, fd=fd: self._on_fpm_exit(fd))

    def _on_fpm_exit(self, fd: int) -> None:
        self.sel.unregister(fd)
        self.fpm.exited(fd)
        os.close(fd)

    def _rewatch(self) -> None:
        """Aim the docroot watches at what the recorded state isolates."""
        try:
            st = load()
        except SiteisoError as e:
            log.warning("siteisod: cannot read the state to watch docroots: %s",
                        e.message)
            return
        homes = {}
        for owner in {site.owner for site in st.sites.values()}:
            with contextlib.suppress(KeyError):
                homes[owner] = pwd.getpwnam(owner).pw_dir.rstrip("/")
        with self.watch_lock:
            self.docroots.rewatch(st, homes)
        # A crontab written before the spool was watched is caught here.
        for owner in homes:
            try:
                cron.ensure_cron_shell(owner)
            except (OSError, SiteisoError) as e:
                log.warning("siteisod: crontab of %s: %s", owner, e)

    def _regenerate(self, users: set[str]) -> None:
        """In a worker: re-read the panel for users whose docroots or panel
        records changed, and converge their views (regenerate)."""
        from siteiso import config
        from siteiso.commands.cagefsctl import Admin, commit
        cfg = config.load()
        with locked():
            st = load()
            names: set[str] = set()
            if users - {STATE_CHANGED}:     # a recorded change alone: re-watch only
                names = ({site.owner for site in st.sites.values()}
                         if STATE_CHANGED in users or EVERYONE in users else users)
            existing = []
            for name in sorted(names - {STATE_CHANGED, EVERYONE}):
                with contextlib.suppress(KeyError):
                    pwd.getpwnam(name)
                    existing.append(name)
            # One account at a time: a home that fails its user's views
            # undoes that user's change only.
            for name in existing:
                admin = Admin(cfg)
                try:
                    admin.regenerate(st, [name])
                    for line in admin.warnings + commit(st, cfg, users=[name]):
                        log.warning("siteisod: %s", line)
                except SiteisoError as e:
                    log.error("siteisod: regenerate of %s: %s", name, e.message)
                    st = load()       # as recorded: the change was undone
                    continue
                log.info("siteisod: regenerated %s after a docroot or panel change",
                         name)
        self._rewatch()

    # ---- deadlines -----------------------------------------------------------

    def _timeout(self) -> float | None:
        """None (block for good) unless a connection or a coalesced
        regenerate has a deadline."""
        deadlines = [c.deadline for c in self.conns if c.deadline != float("inf")]
        deadlines += self.pending.values()
        fpm_due = self.fpm.next_deadline()
        if fpm_due is not None:
            deadlines.append(fpm_due)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.conns if c.deadline <= now]:
            self._close(conn)
        for user in self.fpm.take_due():
            self.pending.setdefault(user, now)
        due = {u for u, t in self.pending.items() if t <= now}
        if due:
            for u in due:
                del self.pending[u]
            fut = self.pool.submit(self._regenerate, due)
            fut.add_done_callback(_log_failure)


def _ensure_cron_shells(users: set[str]) -> None:
    """Crontabs rewritten by crontab(1): put siteiso's cron shell back."""
    for user in users:
        cron.ensure_cron_shell(user)


def _log_failure(fut: Future[None]) -> None:
    exc = None if fut.cancelled() else fut.exception()
    if exc is not None:
        log.warning("siteisod: regenerate failed: %s",
                    exc.message if isinstance(exc, SiteisoError) else exc)


# ---- pidfile -------------------------------------------------------------------

def _take_pidfile() -> int:
    """Lock and fill /run/siteiso/siteisod.pid; one siteisod at a time."""
    index.ensure_run_dirs()
    while True:
        fd = os.open(paths.PIDFILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise SiteisoError(f"siteisod is already running (pid {other or '?'}, "
                               f"{paths.PIDFILE})") from None
        try:
            same = os.stat(paths.PIDFILE).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        # The previous siteisod removed the file between our open and lock.
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def run() -> int:
    """`siteiso daemon`: run siteisod in the foreground until SIGTERM."""
    require_root()
    pidfd = _take_pidfile()
    try:
        daemon = Daemon()
        log.info("siteisod started (pid %d)", os.getpid())
        daemon.run()
        log.info("siteisod stopped")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(paths.PIDFILE)
        os.close(pidfd)
    return 0
