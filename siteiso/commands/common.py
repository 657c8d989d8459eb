"""What every command shares: error printing, exit codes, logging."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import traceback
from collections.abc import Callable

from siteiso.errors import NotRoot, SiteisoError

log = logging.getLogger("siteiso")


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
