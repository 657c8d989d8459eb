"""cagefsctl-user: a hosting user's own website isolation (SPEC §3).

    cagefsctl-user site-isolation-enable --domain a.com[,b.com]
    cagefsctl-user site-isolation-disable --domain a.com[,b.com]
    cagefsctl-user site-isolation-list

Prints one JSON object: {"result": "success", "enabled_sites": [...]} (the
caller's isolated domains after the change, sorted), or {"result": "error",
"message": "..."} with exit status 1. The work is done by siteisod, which
knows the caller from the kernel alone; this command only carries the request.
"""

from __future__ import annotations

import argparse
import json
import os
import socket

from siteiso import paths
from siteiso.commands.common import Parser
from siteiso.service.daemon import MAX_DOMAINS, MAX_REQUEST, SOCKET

# Enabling ends the site's running PHP with a grace period and builds views:
# seconds, rarely more. A daemon that takes longer than this is stuck.
ANSWER_TIMEOUT = 300.0
MAX_ANSWER = 65536



def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cagefsctl-user",
                description="website isolation of your own domains")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, what in (("site-isolation-enable", "enable"),
                       ("site-isolation-disable", "disable")):
        sp = sub.add_parser(name, help=f"{what} isolation of your domains")
        sp.add_argument("--domain", required=True, metavar="DOMAIN[,DOMAIN…]",
                        help="comma-separated domain names")
    sub.add_parser("site-isolation-list", help="list your isolated domains")
    return p


def _error(message: str) -> dict[str, object]:
    return {"result": "error", "message": message}


def _not_reachable() -> dict[str, object]:
    if not os.path.exists(paths.FLAG):
        return _error("Website isolation is not enabled")
    return _error("siteisod is not running: ask the server administrator to "
                  "start it (siteiso daemon)")


def ask(request: dict[str, object]) -> dict[str, object]:
    """Send one request line to siteisod and return its answer."""
    line = json.dumps(request).encode() + b"\n"
    if len(line) > MAX_REQUEST + 1:
        return _error(f"request too large (more than {MAX_REQUEST} bytes)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ANSWER_TIMEOUT)
        try:
            sock.connect(SOCKET)
        except (FileNotFoundError, ConnectionRefusedError):
            return _not_reachable()
        except OSError as e:
            return _error(f"cannot reach siteisod at {SOCKET}: {e.strerror}")
        answer = bytearray()
        try:
            sock.sendall(line)
            while b"\n" not in answer and len(answer) <= MAX_ANSWER:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return _error("siteisod did not answer in time")
        except OSError as e:
            # A refusal may come before the request is read; keep its answer.
            if b"\n" not in answer:
                return _error(f"siteisod closed the connection: {e.strerror}")
    try:
        result = json.loads(bytes(answer).partition(b"\n")[0])
    except ValueError:
        result = None
    if not isinstance(result, dict) or result.get("result") not in ("success",
                                                                    "error"):
        return _error("siteisod gave an unreadable answer")
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request: dict[str, object] = {"command": args.command}
    if args.command != "site-isolation-list":
        domains = [d.strip() for d in args.domain.split(",") if d.strip()]
        if not domains or len(domains) > MAX_DOMAINS:
            build_parser().error(f"--domain takes 1 to {MAX_DOMAINS} names")
        request["domains"] = domains
    result = ask(request)
    print(json.dumps(result))
    return 0 if result["result"] == "success" else 1
