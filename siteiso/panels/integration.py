"""Integration scripts: the panel answers through programs the admin names in
/opt/cpvendor/etc/integration.ini, section [integration_scripts].

Each script runs as a real process: no shell, arguments appended to its
command line, stdin /dev/null, cwd /, in a session of its own so that a
timeout kills everything it started, with its output bounded. It answers
{"data": ..., "metadata": {"result": "ok"}}, or names an error kind with a
message, which becomes a PanelError of that kind.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

from siteiso import paths
from siteiso.errors import InvalidName, PanelError
from siteiso.names import (
    normalize_domain,
    quote,
    validate_path,
    validate_username,
)
from siteiso.panels.base import (
    DomainRecord,
    PhpVersion,
    clean_text,
    json_object,
    log,
    parse_domains_data,
    php_version_of,
)

SECTION = "integration_scripts"
SCRIPTS = ("domains", "users", "php", "panel_info")
ERROR_KINDS = ("InternalAPIError", "PermissionDenied", "BadRequest", "NotFound")

# A domains answer is a few hundred bytes per domain; 32 MiB is room for
# ~100 000 domains and still a bound on what one read may cost.
MAX_OUTPUT = 32 * 1024 * 1024
# Only the end of stderr is kept for messages: that is where a traceback
# says what went wrong.
_STDERR_TAIL = 2048
# After the script itself has exited, how long a process it left behind may
# keep its stdout open before siteiso stops waiting for it.
_LEFTOVER_GRACE = 1.0
_CHUNK = 65536


@dataclass
class _Run:
    status: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    too_large: bool = False


def _exited(pid: int) -> bool:
    """Has pid exited? It is not reaped, so its pid (and process group id)
    stays reserved until the group has been killed."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _run(argv: list[str], timeout: float, max_output: int) -> _Run:
    """Run argv, collect its output, kill its process group when it is done,
    times out or prints too much. Raises OSError if it cannot start."""
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
        close_fds=True,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_fd = proc.stdout.fileno()
    err_fd = proc.stderr.fileno()
    out = bytearray()
    err = bytearray()
    timed_out = too_large = False
    pidfd = -1
    with selectors.DefaultSelector() as sel:
        try:
            for fd in (out_fd, err_fd):
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            try:
                pidfd = os.pidfd_open(proc.pid)
            except (AttributeError, OSError):
                # Limitation: without pidfd_open (Linux < 5.3) the exit is
                # polled every 50 ms.
                pidfd = -1
            if pidfd >= 0:
                sel.register(pidfd, selectors.EVENT_READ)
            open_fds = {out_fd, err_fd}
            exited = False
            grace_end: float | None = None
            while open_fds or not exited:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                wait = deadline - now
                if pidfd < 0 and not exited:
                    exited = _exited(proc.pid)
                    wait = min(wait, 0.05)
                if exited and open_fds:
                    if grace_end is None:
                        grace_end = now + _LEFTOVER_GRACE
                    if now >= grace_end:
                        break
                    wait = min(wait, grace_end - now)
                for key, _ in sel.select(wait):
                    fd = int(key.fd)
                    if fd == pidfd:
                        exited = True
                        sel.unregister(pidfd)
                        continue
                    try:
                        chunk = os.read(fd, _CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == out_fd:
                        out += chunk
                        if len(out) > max_output:
                            too_large = True
                    else:
                        err += chunk
                        del err[:-_STDERR_TAIL]
                if too_large:
                    break
        finally:
            # The leader is not reaped yet, so the group id cannot have been
            # reused: this kills the script if it still runs and whatever it
            # left behind in its session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            # Limitation: a child that made a session of its own escapes this.
            status = proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            if pidfd >= 0:
                os.close(pidfd)
    return _Run(status, bytes(out), bytes(err), timed_out, too_large)


class IntegrationPanel:
    name = "integration"

    def __init__(
        self,
        ini: str = paths.INTEGRATION_INI,
        timeout: float = 30.0,
        max_output: int = MAX_OUTPUT,
    ) -> None:
        self.ini = ini
        self.timeout = timeout
        self.max_output = max_output

    # -- integration.ini --------------------------------------------------

    def scripts(self) -> dict[str, list[str]]:
        """The command lines in [integration_scripts], by key."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(self.ini, encoding="utf-8") as f:
                parser.read_file(f)
        except OSError as e:
            raise PanelError(f"cannot read {self.ini}: {e.strerror}") from e
        except (configparser.Error, UnicodeDecodeError) as e:
            raise PanelError(f"cannot read {self.ini}: {e}") from e
        if not parser.has_section(SECTION):
            raise PanelError(f"{self.ini} has no [{SECTION}] section")
        found: dict[str, list[str]] = {}
        for key in SCRIPTS:
            value = parser[SECTION].get(key, "").strip()
            if not value:
                continue
            try:
                argv = shlex.split(value)
            except ValueError as e:
                raise PanelError(
                    f"{self.ini}: [{SECTION}] {key} = {quote(value)}: {e}"
                ) from e
            if not argv or not argv[0].startswith("/"):
                raise PanelError(
                    f"{self.ini}: [{SECTION}] {key} = {quote(value)}: "
                    "the program must be given by its absolute path"
                )
            found[key] = argv
        return found

    # -- running a script -------------------------------------------------

    def call(self, key: str, args: list[str]) -> object:
        """Run the script `key` with args appended; return its data.

        Raises PanelError: with the script's kind when it answers an error,
        with kind "" when it is missing, hangs, crashes or prints junk."""
        scripts = self.scripts()
        if key not in scripts:
            raise PanelError(f"{self.ini}: no {key!r} script in [{SECTION}]")
        argv = scripts[key] + args
        what = f"panel script {key} ({clean_text(shlex.join(argv), 200)})"
        try:
            run = _run(argv, self.timeout, self.max_output)
        except OSError as e:
            raise PanelError(f"cannot run {what}: {e.strerror or e}") from e

        if run.timed_out:
            raise PanelError(
                f"{what} did not finish within {self.timeout:g} s and was killed"
            )
        if run.too_large:
            raise PanelError(
                f"{what} printed more than {self.max_output} bytes and was killed"
            )
        stderr = clean_text(run.stderr.decode("utf-8", "replace").strip(), 300)
        said = f": {stderr}" if stderr else ""
        if run.status < 0:
            try:
                signame = signal.Signals(-run.status).name
            except ValueError:
                signame = str(-run.status)
            raise PanelError(f"{what} was killed by signal {signame}{said}")

        answer = self._parse(what, run, said)
        if run.status != 0 and not isinstance(answer, _ErrorAnswer):
            raise PanelError(f"{what} failed with exit status {run.status}{said}")
        if isinstance(answer, _ErrorAnswer):
            raise PanelError(
                f"{what} answered {answer.kind}: {answer.message}", answer.kind
            )
        return answer.data

    def _parse(self, what: str, run: _Run, said: str) -> _OkAnswer | _ErrorAnswer:
        failed = f" (exit status {run.status}){said}" if run.status else ""
        if not run.stdout.strip():
            raise PanelError(f"{what} printed nothing{failed}")
        try:
            text = run.stdout.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PanelError(
                f"{what} printed something that is not UTF-8{failed}"
            ) from e
        try:
            doc = json.loads(text, object_pairs_hook=json_object)
        except json.JSONDecodeError as e:
            if e.pos >= len(text.rstrip()):
                raise PanelError(f"{what} printed truncated JSON{failed}") from e
            raise PanelError(
                f"{what} printed something that is not JSON ({e.msg} at line "
                f"{e.lineno} column {e.colno}){failed}"
            ) from e
        except RecursionError as e:
            raise PanelError(f"{what} printed JSON nested too deep{failed}") from e
        except ValueError as e:      # a number of more digits than Python takes
            raise PanelError(f"{what} printed JSON siteiso cannot read ({e})"
                             f"{failed}") from e

        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            raise PanelError(f"{what} answered without a metadata object{failed}")
        result = doc["metadata"].get("result")
        if result == "ok":
            if "data" not in doc:
                raise PanelError(f"{what} answered ok without data{failed}")
            return _OkAnswer(doc["data"])
        if result in ERROR_KINDS:
            message = doc["metadata"].get("message", doc.get("message"))
            if not isinstance(message, str) or not message.strip():
                message = "(no message)"
            return _ErrorAnswer(str(result), clean_text(message.strip()))
        raise PanelError(f"{what} answered an unknown result {quote(result)}{failed}")

    # -- the Panel interface ----------------------------------------------

    def domains(self, owner: str | None = None) -> dict[str, DomainRecord]:
        args = ["--with-php"]
        if owner is not None:
            owner = validate_username(owner)
            args = ["--owner", owner, *args]
        try:
            data = self.call("domains", args)
        except PanelError as e:
            # An owner the panel does not know has no domains.
            if e.kind == "NotFound":
                return {}
            raise
        records = self._records(data)
        if owner is None:
            return records
        # The script was asked for one owner; trust no more than that.
        return {n: r for n, r in records.items() if r.owner == owner}

    def domain(self, name: str) -> DomainRecord | None:
        name = normalize_domain(name)
        try:
            data = self.call("domains", ["--name", name, "--with-php"])
        except PanelError as e:
            if e.kind == "NotFound":
                return None
            raise
        return self._records(data).get(name)

    def php_versions(self) -> list[PhpVersion] | None:
        if "php" not in self.scripts():
            return None
        data = self.call("php", [])
        if not isinstance(data, list):
            raise PanelError(
                f"panel script php answered {type(data).__name__} data, "
                "expected a list of PHP versions"
            )
        versions: list[PhpVersion] = []
        seen: set[str] = set()
        for entry in data:
            version = _php_version_entry(entry)
            if version is not None and version.identifier not in seen:
                seen.add(version.identifier)
                versions.append(version)
        return versions

    def _records(self, data: object) -> dict[str, DomainRecord]:
        try:
            return parse_domains_data("panel script domains", data)
        except TypeError as e:
            raise PanelError(f"panel script domains answered wrong data: {e}") from e


@dataclass
class _OkAnswer:
    data: object


@dataclass
class _ErrorAnswer:
    kind: str
    message: str


def _php_version_entry(entry: object) -> PhpVersion | None:
    """One entry of the php script's answer; None (logged) if it is bad."""
    source = "panel script php"
    if not isinstance(entry, dict):
        log.warning("%s: skipping %s: not an object", source, quote(entry))
        return None
    identifier = entry.get("identifier")
    if not isinstance(identifier, str) or not identifier.strip():
        log.warning("%s: skipping %s: no identifier", source, quote(entry))
        return None
    identifier = clean_text(identifier.strip(), 64)
    raw_version = entry.get("version")
    version = php_version_of(raw_version if isinstance(raw_version, str) else None)
    version = version or php_version_of(identifier)
    if version is None:
        log.warning(
            "%s: skipping %s: unrecognized version %s",
            source,
            quote(identifier),
            quote(raw_version),
        )
        return None
    found: dict[str, str | None] = {}
    for key in ("dir", "bin", "modules_dir", "ini"):
        value = entry.get(key)
        if value is None:
            found[key] = None
            continue
        try:
            if not isinstance(value, str):
                raise InvalidName(f"{key} {quote(value)} is not a string")
            found[key] = validate_path(value, key)
        except InvalidName as e:
            log.warning("%s: skipping %s: %s", source, quote(identifier), e.message)
            return None
    return PhpVersion(
        identifier=identifier,
        version=version,
        dir=found["dir"],
        bin=found["bin"],
        modules_dir=found["modules_dir"],
        ini=found["ini"],
    )
