"""One php-fpm master per isolated site (SPEC §8 "FPM").

The master runs as the site's user inside the site's view (its PID, mount,
IPC and cgroup namespaces), started by `siteiso-holder run` into the site's
cgroup child `fpm` (so that stopping it also ends workers a killed master
left behind). Root prepares everything it needs and hands it over as open
descriptors, so nothing of it is a path the view shows:

- the listening socket `/run/siteiso/fpm/<name>.sock`, made and bound by
  root, `root:<web group>` mode 0660, in a directory only root and the web
  server may enter (0710 root:<web group>). Views mask `/run/siteiso`, so no
  site sees its own socket or a sibling's. php-fpm adopts it through
  `FPM_SOCKETS=<path>=<fd>` instead of binding one; the `listen` path of the
  pool is only the key of that hand-over.
  The web server's user reaches every such socket, and so does any
  `.htaccess` of any vhost that can pick a handler (`SetHandler`, or
  `RewriteRule [H=proxy:unix:…]`) — with PHP_VALUE of its choice, which
  php-fpm obeys. So the path itself is the capability: `<name>` is an
  HMAC of the site's token (tokens are visible in views) under a host
  secret only root reads (`/var/lib/siteiso/fpm.key`), the vhost include
  that names it is root's alone (siteiso.service.apache), the directory
  cannot be listed, and the socket is created in a network namespace of
  its own, so that neither /proc/net/unix nor sock_diag (`ss -x`) of the
  host's namespace, which every view shares, lists its path. (Connecting
  by path works from any namespace.)
- the configuration, in a sealed memfd (no path at all, and not writable:
  write, grow and shrink are sealed), read as `--fpm-config /dev/fd/<fd>`.
  The descriptor stays open in the master, so a reload (SIGUSR2, which
  re-executes php-fpm) reads the same text again. A file in site storage
  would not do: php-fpm opens its configuration by path inside the view,
  so the file would have to be visible there, and the site could rewrite
  the admin's pool settings for the next start.
- its log (stderr, `--force-stderr`): `/var/log/siteiso/fpm/<token>.log`,
  root-owned 0600 in a 0700 directory, opened for append by root.

The record `/run/siteiso/fpm/<token>.pid` (root, 0600) names the master by
pid, start time and PID namespace, with the socket's inode, a hash of the
configuration and the master's cgroup: `ensure` restarts a master that died,
that runs in an older view of the site (a rebuilt view gets a new holder),
whose socket is gone or whose configuration changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import grp
import hashlib
import hmac
import os
import re
import select
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from siteiso import paths
from siteiso.accounts import Account
from siteiso.errors import EngineError
from siteiso.plan import SiteInput
from siteiso.procs import lifecycle
from siteiso.service.layout import Layout
from siteiso.views import index
from siteiso.views.index import Holder

FPM_DIR = f"{paths.RUN}/fpm"
LOG_DIR = "/var/log/siteiso/fpm"
# The master's cgroup, a child of the site's.
CGROUP_NAME = "fpm"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
START_TIMEOUT = 30.0

# Pool settings. ondemand: no worker runs until a request comes, so an idle
# site costs one sleeping master.
POOL = {
    "pm": "ondemand",
    "pm.max_children": "5",
    "pm.process_idle_timeout": "10s",
    "pm.max_requests": "500",
    "chdir": "/",
    "clear_env": "yes",
    "env[PATH]": SAFE_PATH,
    "env[TMPDIR]": "/tmp",
}
_POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Master:
    pid: int
    starttime: int
    pidns: int
    sock_ino: int
    conf_hash: str
    cgroup: str

    def line(self) -> str:
        return "\t".join(str(x) for x in (self.pid, self.starttime, self.pidns,
                                           self.sock_ino, self.conf_hash, self.cgroup))

    def alive(self) -> bool:
        return index.starttime(self.pid) == self.starttime


def _check_token(token: str) -> str:
    if not _TOKEN.match(token):
        raise EngineError(f"refusing php-fpm for token {token!r}: not a token")
    return token


KEY_FILE = f"{paths.LIB}/fpm.key"
_KEY_LEN = 32
_key_cache: list[bytes] = []


def _host_key() -> bytes:
    """The host's secret for socket names: random, made once, root's 0600."""
    if _key_cache:
        return _key_cache[0]
    os.makedirs(paths.LIB, mode=0o700, exist_ok=True)
    try:
        fd = os.open(KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        _make_key()
        fd = os.open(KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        key = os.read(fd, _KEY_LEN + 1)
    finally:
        os.close(fd)
    if st.st_uid != 0 or st.st_mode & 0o077 or len(key) != _KEY_LEN:
        raise EngineError(f"refusing {KEY_FILE}: not a root-only key of "
                          f"{_KEY_LEN} bytes (remove it to make a new one)")
    _key_cache.append(key)
    return key


def _make_key() -> None:
    tmp = f"{KEY_FILE}.{os.getpid()}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, os.urandom(_KEY_LEN))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, KEY_FILE)      # never replaces a key another command made
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def socket_name(token: str) -> str:
    """The socket's file name: 128 bits of HMAC-SHA256 of the token."""
    mac = hmac.new(_host_key(), _check_token(token).encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def socket_path(token: str) -> str:
    return f"{FPM_DIR}/{socket_name(token)}.sock"


def record_path(token: str) -> str:
    return f"{FPM_DIR}/{_check_token(token)}.pid"


def log_path(token: str) -> str:
    return f"{LOG_DIR}/{_check_token(token)}.log"


def read_record(token: str) -> Master | None:
    try:
        with open(record_path(token), encoding="utf-8") as f:
            fields = f.read().rstrip("\n").split("\t")
    except FileNotFoundError:
        return None
    try:
        return Master(int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]),
                      fields[4], fields[5])
    except (IndexError, ValueError):
        return None


def _write_record(token: str, m: Master) -> None:
    path = record_path(token)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (m.line() + "\n").encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _socket_ino(token: str) -> int:
    try:
        st = os.lstat(socket_path(token))
    except FileNotFoundError:
        return 0
    return st.st_ino


def pool_config(site: SiteInput) -> str:
    """The whole php-fpm configuration of one site."""
    name = site.names[0] if site.names and _POOL_NAME.match(site.names[0]) \
        else f"site-{site.token}"
    lines = [
        f"; siteiso: php-fpm of {','.join(site.names) or site.token}",
        "; generated; handed to php-fpm as a sealed descriptor, stored nowhere",
        "[global]",
        # Unused: with --nodaemonize --force-stderr the log is stderr.
        "error_log = /dev/null",
        "daemonize = no",
        "process_control_timeout = 10s",
        f"[{name}]",
        # Only the key of the inherited socket (FPM_SOCKETS): php-fpm never
        # binds it, and the view does not show it.
        f"listen = {socket_path(site.token)}",
        *(f"{k} = {v}" for k, v in POOL.items()),
    ]
    return "\n".join(lines) + "\n"


def _conf_hash(text: str, holder: Holder, lay: Layout) -> str:
    """What the master was started with: its configuration, program and
    ini scan directory; a change restarts it."""
    what = "\0".join((text, lay.php_fpm, holder.ini_dir))
    return hashlib.sha256(what.encode()).hexdigest()[:32]


def running(token: str, holder: Holder) -> Master | None:
    """The site's master when it runs, in the holder's view, on the socket
    at the socket path."""
    m = read_record(token)
    if m is None or not m.alive():
        return None
    try:
        if index.ns_inode(m.pid, "pid") != holder.pidns:
            return None
    except OSError:
        return None
    if m.sock_ino != _socket_ino(token):
        return None
    return m


def ensure(acct: Account, site: SiteInput, holder: Holder, site_cgroup: str,
           web_group: str, lay: Layout, grace: float) -> Master:
    """Make the site's master run in its current view; start or restart it."""
    conf = pool_config(site)
    m = running(site.token, holder)
    if m is not None and m.conf_hash == _conf_hash(conf, holder, lay):
        return m
    # Also ends what no record names: a master started by a command killed
    # before it wrote the record, workers of a master that died.
    stop(site.token, grace, cgroup=f"{site_cgroup}/{CGROUP_NAME}")
    return start(acct, site, holder, site_cgroup, web_group, lay, conf)


# ---- starting ------------------------------------------------------------------


def _ensure_dirs(web_gid: int) -> None:
    os.makedirs(paths.RUN, mode=0o711, exist_ok=True)
    for d, mode, gid in ((FPM_DIR, 0o710, web_gid),
                         (os.path.dirname(LOG_DIR), 0o700, 0), (LOG_DIR, 0o700, 0)):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, mode)
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchown(fd, 0, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def _listen(token: str, web_gid: int) -> tuple[int, int]:
    """A fresh listening socket at the socket path: (fd, inode).

    Bound under a temporary name with mode 0600, given to root:<web group>
    0660, then renamed over the path, so the web server never finds a
    socket nobody serves or one with other permissions. A master of an
    older view keeps its own (now unreachable) socket until it is stopped.
    """
    path = socket_path(token)
    # Random, not derived from the name: the server side of every accepted
    # connection lives in the connecting process's namespace (the web
    # server's, the host's) and carries the address given to bind(), which
    # the host's /proc/net/unix lists.
    tmp = f"{FPM_DIR}/.new-{os.urandom(16).hex()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    s = _unlisted_socket()
    try:
        old = os.umask(0o177)
        try:
            s.bind(tmp)
        finally:
            os.umask(old)
        os.chown(tmp, 0, web_gid)
        os.chmod(tmp, 0o660)
        s.listen(511)
        os.rename(tmp, path)
        return s.detach(), os.lstat(path).st_ino
    except BaseException:
        s.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


CLONE_NEWNET = 0x40000000


def _unlisted_socket() -> socket.socket:
    """A unix stream socket of a network namespace of its own (made by a
    short-lived thread: namespaces are per thread), so that the host's
    namespace does not list the path it is bound to. The namespace lives as
    long as the socket (about 0.2 MB each, against the master's 10 MB)."""
    made: list[socket.socket] = []
    errors: list[BaseException] = []

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            made.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            errors.append(e)

    t = threading.Thread(target=make, name="siteiso-fpm-netns")
    t.start()
    t.join()
    if errors or not made:
        raise EngineError(f"cannot make the php-fpm socket: "
                          f"{errors[0] if errors else 'no socket'}")
    return made[0]


def _sealed_config(token: str, text: str) -> int:
    fd = os.memfd_create(f"siteiso-fpm-{token}", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode())
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_WRITE
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_line(fd: int, timeout: float) -> str:
    """One line from fd (the pid `siteiso-holder run` prints); "" on EOF
    or timeout. Not until EOF: the program keeps the caller's stdout."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace") if b"\n" in data else ""


def _last_log_line(token: str) -> str:
    try:
        with open(log_path(token), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def start(acct: Account, site: SiteInput, holder: Holder, site_cgroup: str,
          web_group: str, lay: Layout, conf: str | None = None) -> Master:
    token = site.token
    try:
        web_gid = grp.getgrnam(web_group).gr_gid
    except KeyError as e:
        raise EngineError(f"cannot start php-fpm: no group {web_group} "
                          "(web_group in siteiso.conf)") from e
    if not os.access(lay.php_fpm, os.X_OK):
        raise EngineError(f"cannot start php-fpm: {lay.php_fpm} is not installed")
    conf = conf if conf is not None else pool_config(site)
    _ensure_dirs(web_gid)
    with contextlib.ExitStack() as stack:
        sock_fd, sock_ino = _listen(token, web_gid)
        stack.callback(os.close, sock_fd)
        conf_fd = _sealed_config(token, conf)
        stack.callback(os.close, conf_fd)
        log_fd = os.open(log_path(token), os.O_WRONLY | os.O_APPEND | os.O_CREAT
                         | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        stack.callback(os.close, log_fd)
        null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        stack.callback(os.close, null_fd)
        rd, wr = os.pipe()
        stack.callback(os.close, rd)
        env = {"PATH": SAFE_PATH, "FPM_SOCKETS": f"{socket_path(token)}={sock_fd}"}
        if holder.ini_dir != "-":
            env["PHP_INI_SCAN_DIR"] = holder.ini_dir
        argv = [paths.HOLDER, "run", str(holder.pid), str(acct.uid), str(acct.gid),
                "--cgroup", CGROUP_NAME, "--keep-fd", str(sock_fd),
                "--keep-fd", str(conf_fd), "--",
                lay.php_fpm, "--nodaemonize", "--force-stderr",
                "--fpm-config", f"/dev/fd/{conf_fd}"]
        try:
            proc = subprocess.Popen(argv, stdin=null_fd, stdout=wr, stderr=log_fd,
                                    pass_fds=(sock_fd, conf_fd), env=env, cwd="/")
        except OSError as e:
            os.close(wr)
            raise EngineError(f"cannot start php-fpm for {token}: {e}") from e
        os.close(wr)
        line = _read_line(rd, START_TIMEOUT)
        try:
            rc = proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    if rc != 0 or not line.isdigit():
        why = _last_log_line(token) or f"siteiso-holder exited {rc}"
        raise EngineError(f"cannot start php-fpm for {','.join(site.names) or token}: "
                          f"{why}")
    pid = int(line)
    m = Master(pid, index.starttime(pid), index.ns_inode(pid, "pid"), sock_ino,
               _conf_hash(conf, holder, lay), f"{site_cgroup}/{CGROUP_NAME}")
    _write_record(token, m)
    return m


# ---- stopping ------------------------------------------------------------------


def stop(token: str, grace: float, cgroup: str = "", remove_log: bool = False) -> bool:
    """End the site's master and everything in its cgroup (workers, and
    those a killed master left behind); remove its socket and record. The
    cgroup is the record's, else `cgroup` when given. True when there was
    something to stop."""
    m = read_record(token)
    cg = m.cgroup if m is not None else cgroup
    found = m is not None or os.path.lexists(socket_path(token))
    if cg and os.path.isdir(cg):
        found |= lifecycle.kill_cgroup(cg, grace).ended > 0
        with contextlib.suppress(OSError):
            os.rmdir(cg)
    if m is not None and m.alive():
        # Not in its cgroup (moved out, or the tree was rebuilt): by pidfd.
        lifecycle.terminate([(m.pid, m.starttime)], grace)
    for path in (socket_path(token), record_path(token),
                 *((log_path(token),) if remove_log else ())):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return found
