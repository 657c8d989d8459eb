"""What every command shares: error printing, exit codes, logging."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from siteiso.errors import NotRoot, SiteisoError

log = logging.getLogger("siteiso")


class Parser(argparse.ArgumentParser):
    """The command line parser of every siteiso command: options are never
    abbreviated (`--site-isolation-deny-a` must not run deny-all), and a
    wrong command line exits 2 with the usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # An option nobody defines is named first: otherwise a mistyped one
        # (`--site-isolation-ena x.com`) is reported as a missing choice.
        given = sys.argv[1:] if args is None else list(args)
        if self._subparsers is not None:
            given = []          # each subcommand's parser checks its own
        for arg in given:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if name.startswith("--") and name not in self._option_string_actions:
                self.error(f"unrecognized option {name}")
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def setup_logging(debug: bool) -> None:
    """Syslog when there is one (none in CI is not an error); stderr on --debug."""
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    if os.path.exists("/dev/log"):
        try:
            h = logging.handlers.SysLogHandler(address="/dev/log")
            h.setFormatter(logging.Formatter("siteiso[%(process)d]: %(message)s"))
            log.addHandler(h)
        except OSError:
            pass
    if debug:
        h2 = logging.StreamHandler(sys.stderr)
        h2.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
        log.addHandler(h2)
    if not log.handlers:
        # No syslog and no --debug: the log goes nowhere. Without a handler
        # Python would print warnings on stderr, where panels read only the
        # command's own messages (which say the same thing once).
        log.addHandler(logging.NullHandler())


def warn(lines: list[str], context: str = "") -> None:
    """What the admin should know: `warning:` lines on stderr (exit status
    and stdout stay as for success), and the log."""
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)
        log.warning("%s%s", context, line)


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRoot()


def run_main(body: Callable[[], int], *, debug: bool, as_json: bool) -> int:
    """Run a command body, turning expected errors into messages."""
    try:
        return body()
    except SiteisoError as e:
        if debug:
            traceback.print_exc()
        if as_json:
            print(json.dumps({"error": e.message}))
        else:
            print(e.message, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
