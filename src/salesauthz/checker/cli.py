"""``salesauthz`` — the command line for policy authors.

Exit codes: 0 clean, 1 findings or failures, 2 usage error or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from salesauthz import __version__
from salesauthz.errors import PolicyError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _cmd_check(args: argparse.Namespace) -> int:
    from salesauthz.models.loader import load_directory

    try:
        policy = load_directory(args.path)
    except PolicyError as exc:
        for issue in exc.issues:
            print(f"{issue.location()}: error {issue.code}: {issue.message}"
                  + (f"\n    hint: {issue.hint}" if issue.hint else ""), file=sys.stdout)
        print(f"\n{len(exc.issues)} error(s) in {args.path}", file=sys.stdout)
        return EXIT_FINDINGS
    from salesauthz._rules import ACCOUNT, ROLE

    for sourced in policy.documents:
        domain = sourced.document.domain
        rules = [r for r in policy.rules if r[0] in (ACCOUNT, ROLE)]
        accounts = sum(1 for r in rules if r[0] == ACCOUNT and r[2] == domain)
        roles = sum(1 for r in rules if r[0] == ROLE and r[2] == domain)
        print(f"{domain}: {len(sourced.document.departments)} departments, {roles} roles, "
              f"{accounts} accounts ({sourced.file})")
    print(f"ok: {len(policy.documents)} domain(s), {len(policy.rules)} rules, no errors")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salesauthz",
        description="Check, test and explain salesauthz policies.",
    )
    parser.add_argument("--version", action="version", version=f"salesauthz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help="validate a policy directory")
    check.add_argument("path", metavar="PATH", help="the policy directory (e.g. policies/)")
    check.set_defaults(handler=_cmd_check)
    # Commands that live in their own modules register themselves here.
    from . import init_command, storage_commands

    storage_commands.register(commands)
    init_command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
