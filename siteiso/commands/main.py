"""`siteiso`: install, uninstall, doctor, demo, hook, daemon."""

from __future__ import annotations

import argparse
import sys

from siteiso.commands.common import Parser, run_main, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="siteiso", description="siteiso tools")
    p.add_argument("--debug", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="put siteiso in its system places")
    sub.add_parser("uninstall", help="remove everything install put in place")
    sub.add_parser("doctor", help="print every platform probe and check")
    follow = sub.add_parser("follow-unmounts",
                            help="let every view go of unmounted file systems")
    follow.add_argument("devices", nargs="+", metavar="MAJOR:MINOR")
    demo = sub.add_parser("demo", help="a scripted admin session on a sandboxed server")
    demo.add_argument("--quiet", action="store_true")
    from siteiso.commands import hook
    hook.add_parser(sub)
    sub.add_parser("daemon", help="run siteisod in the foreground")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug)

    def body() -> int:
        if args.cmd == "install":
            from siteiso.commands.install import install
            for line in install():
                print(f"installed {line}")
        elif args.cmd == "uninstall":
            from siteiso.commands.install import uninstall
            for line in uninstall():
                print(f"removed {line}")
        elif args.cmd == "doctor":
            from siteiso.commands.doctor import doctor
            return doctor()
        elif args.cmd == "follow-unmounts":
            from siteiso.commands.common import require_root
            from siteiso.views.follow import follow_unmounts
            require_root()
            print(f"detached {follow_unmounts(set(args.devices))} mount(s) in views")
        elif args.cmd == "hook":
            from siteiso.commands import hook as hooks
            from siteiso.commands.common import require_root
            require_root()
            return hooks.run(args)
        elif args.cmd == "demo":
            from siteiso.commands.demo import demo
            return demo(quiet=args.quiet)
        elif args.cmd == "daemon":
            from siteiso.service.daemon import run
            return run()
        return 0

    return run_main(body, debug=args.debug, as_json=False)


if __name__ == "__main__":
    sys.exit(main())
