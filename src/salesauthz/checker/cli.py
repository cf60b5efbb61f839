"""``salesauthz`` — the command line for policy authors.

Commands: ``check``, ``test``, ``explain``, ``who-can``, ``what-can``, ``diff``, ``review`` (and
the ones other modules register: ``init``, ``import``, ``export``, ``audit``).

Exit codes: 0 clean, 1 findings or failures, 2 usage error or unreadable input.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from salesauthz import __version__
from salesauthz._wording import closest, count, did_you_mean
from salesauthz.errors import UsageError

from .output import Output

if TYPE_CHECKING:
    from salesauthz.values import Share

    from .findings import Finding
    from .lint import CheckResult
    from .listings import Source

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _count_option(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {value}")
    return value


def _output(args: argparse.Namespace) -> Output:
    return Output(no_color=bool(getattr(args, "no_color", False)))


# -- check ----------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    from .findings import by_code, select
    from .lint import check_directory

    out = _output(args)
    with out.progress() as report:
        result = check_directory(args.path, strict=args.strict, progress=report, target=args.target)
    limit = args.max_findings if args.max_findings is not None else (
        TEXT_MAX_FINDINGS if args.format == "text" else 0)
    shown = select(result.findings, limit)
    omitted = len(result.findings) - len(shown)
    if args.format == "json":
        out.data({
            "path": result.path,
            "ok": not result.findings,
            "errors": len(result.errors),
            "warnings": len(result.warnings),
            "suppressed": result.suppressed,
            "by_code": {code: n for code, _, n in by_code(result.findings)},
            "omitted": omitted,
            "findings": [f.to_json() for f in shown],
        })
    elif args.format == "sarif":
        from .output import sarif_report

        out.data(sarif_report(shown, Path.cwd()))
    else:
        _render_check(result, shown, omitted, out)
    if result.unreadable:
        return EXIT_USAGE
    # Warnings are reported but only fail the run under --strict (which makes them errors).
    return EXIT_FINDINGS if result.errors else EXIT_OK


TEXT_MAX_FINDINGS = 50
"""How many findings ``check`` prints by default (text only): enough to act on; a summary by
code says how many of each there are."""


def _render_check(result: CheckResult, shown: list[Finding], omitted: int, out: Output) -> None:
    from .findings import by_code, title_of

    for finding in shown:
        out.finding(finding)
    if omitted:
        out.text(f"… and {count(omitted, 'more finding')} not shown (--max-findings 0 lists every "
                 "one; --format json or sarif gives them all)", style="dim")
    if result.loaded is not None:
        documents = result.loaded.documents
        for sourced in documents[:DOMAIN_LINES]:
            doc = sourced.document
            out.text(f"{doc.domain}: {count(len(doc.departments), 'department')}, "
                     f"{count(len(doc.roles), 'role')}, {count(len(doc.accounts), 'account')} "
                     f"({sourced.file})", style="dim")
        if len(documents) > DOMAIN_LINES:
            out.text(f"… and {count(len(documents) - DOMAIN_LINES, 'more domain')}", style="dim")
    if omitted or len(result.findings) > SUMMARY_FROM:
        for code, severity, number in by_code(result.findings):
            noun = severity if number == 1 else severity + "s"
            out.styled((f"  {code}  ", "bold"), (f"{number:>9,} {noun:<8}", _SEVERITY_STYLE[severity]),
                       (f"  {title_of(code)}", None))
    # Silenced findings are counted on either line, so a suppression is never invisible.
    suppressed = f" ({result.suppressed:,} suppressed)" if result.suppressed else ""
    if not result.findings and result.loaded is not None:
        out.text(f"ok: {count(len(result.loaded.documents), 'domain')}, "
                 f"{count(len(result.loaded.rules), 'rule')}, no findings{suppressed}", style="green")
    else:
        out.text(f"{count(len(result.errors), 'error')}, {count(len(result.warnings), 'warning')} in "
                 f"{result.path}{suppressed}", style="bold red" if result.errors else "yellow")


DOMAIN_LINES = 20  # per-domain lines of a check; more domains are counted
SUMMARY_FROM = 10  # the summary by code is printed from this many findings (or when some are hidden)
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


# -- test -----------------------------------------------------------------------------------


def _cmd_test(args: argparse.Namespace) -> int:
    from .testing import TestFileError, render_report, run_tests

    out = _output(args)
    try:
        with out.progress() as progress:
            report = run_tests(args.path, progress=progress)
    except TestFileError as exc:
        if args.format == "json":
            out.data({"ok": False, "errors": [f.to_json() for f in exc.findings]})
        else:
            for finding in exc.findings:
                out.finding(finding)
        return EXIT_FINDINGS if exc.policy_findings else EXIT_USAGE
    render_report(report, out, fmt=args.format, coverage=args.coverage, verbose=args.verbose)
    return EXIT_OK if report.ok else EXIT_FINDINGS


# -- explain / who-can / what-can -----------------------------------------------------------


def _share_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--share", action="append", default=None, metavar="LEVEL:account=A",
                        help="the record carries this share (LEVEL:account=NAME or "
                             "LEVEL:department=NAME; repeat for several)")


def _attribute_option(parser: argparse.ArgumentParser, *, context: bool = False) -> None:
    parser.add_argument("--attribute", action="append", default=None, metavar="NAME=VALUE",
                        help="the record has this attribute (conditions, where:); VALUE is read "
                             "as JSON when it can be (100, true, [\"a\"]), else as text; "
                             "repeat for several")
    if context:
        parser.add_argument("--context", action="append", default=None, metavar="KEY=VALUE",
                            help="the request context (requires:): mfa=true, mfa=2, "
                                 "ip=10.1.2.3, now=2030-03-18T09:00:00+08:00; repeat for several")


def _pairs(texts: list[str] | None, option: str) -> dict[str, Any] | None:
    import json

    if texts is None:
        return None
    found: dict[str, Any] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals or not name:
            raise UsageError(f"{option} {text!r}: write NAME=VALUE, e.g. region=East")
        try:
            found[name] = json.loads(value)
        except ValueError:
            found[name] = value
    return found


def _context(args: argparse.Namespace) -> dict[str, Any] | None:
    from datetime import UTC, datetime

    context = _pairs(args.context, "--context")
    if context is None:
        return None
    unknown = sorted(set(context) - {"mfa", "ip", "now"})
    if unknown:
        raise UsageError(f"--context {unknown[0]!r}: the request context has mfa, ip and now")
    if "now" in context:
        try:
            moment = datetime.fromisoformat(str(context["now"]))
        except ValueError:
            raise UsageError(f"--context now={context['now']!r}: write an ISO time, e.g. "
                             "2030-03-18T09:00:00+08:00") from None
        context["now"] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if "ip" in context:
        context["ip"] = str(context["ip"])
    return context


def _source_options(parser: argparse.ArgumentParser, *, domain: bool = True) -> None:
    parser.add_argument("--domain", required=domain, help="the domain (tenant) to ask about")
    parser.add_argument("--url", default=None, help="read the rules from a store instead, "
                        "e.g. sqlite:///salesauthz.db or postgresql://…")


def _shares(args: argparse.Namespace) -> tuple[Share, ...]:
    from .listings import parse_share

    return tuple(parse_share(text) for text in args.share or ())


def _cmd_explain(args: argparse.Namespace) -> int:
    from .listings import explain

    return _run_listing(args, lambda source, out: explain(
        source, args.account, args.action, args.type, owner=args.owner, department=args.department,
        domain=args.domain, out=out, fmt=args.format, shares=_shares(args),
        attributes=_pairs(args.attribute, "--attribute"), context=_context(args)))


def _cmd_who_can(args: argparse.Namespace) -> int:
    from .listings import who_can

    return _run_listing(args, lambda source, out: who_can(
        source, args.action, args.type, owner=args.owner, department=args.department,
        domain=args.domain, out=out, fmt=args.format, shares=_shares(args),
        attributes=_pairs(args.attribute, "--attribute")))


def _cmd_what_can(args: argparse.Namespace) -> int:
    from .listings import what_can

    return _run_listing(args, lambda source, out: what_can(
        source, args.account, domain=args.domain, out=out, fmt=args.format))


def _run_listing(args: argparse.Namespace, body: Callable[[Source, Output], int]) -> int:
    from .listings import open_source

    out = _output(args)
    try:
        with out.progress() as progress:  # loading a large directory takes a while
            source = open_source(args.path, args.url, progress=progress)
        return body(source, out)
    except UsageError as exc:
        print(f"salesauthz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- diff -----------------------------------------------------------------------------------


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff_sources, render_diff

    out = _output(args)
    sides = [side for side in (args.old, args.new) if side is not None]
    if args.url is not None:
        sides.insert(0, args.url)  # the live store is the old side: what would NEW change in it?
    if len(sides) != 2:
        args.parser.error("compare two versions: OLD NEW, or --url URL NEW")
    try:
        result = diff_sources(sides[0], sides[1], domains=args.domain)
    except UsageError as exc:
        print(f"salesauthz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    render_diff(result, out, fmt=args.format)
    if args.fail_on_gain and result.gained:
        return EXIT_FINDINGS
    if args.fail_on_change and result.changed:
        return EXIT_FINDINGS
    return EXIT_OK


# -- review ---------------------------------------------------------------------------------


def _cmd_review(args: argparse.Namespace) -> int:
    from .listings import open_source
    from .review import build_review, render_review

    out = _output(args)
    try:
        with out.progress() as progress:
            source = open_source(args.path, args.url, progress=progress)
            review = build_review(source, args.domain,
                                  progress=lambda done, total: progress("reviewing", done, total))
    except UsageError as exc:
        print(f"salesauthz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = render_review(review, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(review.rows)} accounts)", file=sys.stderr)
    else:
        out.raw(text)
    return EXIT_OK


# -- review start / review apply: a campaign with sign-off ------------------------------------


def _campaign_parser(command: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"salesauthz review {command}",
                     epilog="Exit codes: 0 done, 1 lines still undecided, refused or stale (apply), "
                            "2 usage error or review files out of shape.")
    parser.add_argument("--no-color", action="store_true", help="plain output, no colours")
    if command == "start":
        parser.description = ("Start an access-review campaign: give each account's roles and "
                              "grants to its reviewer, one review file and HTML page per reviewer.")
        parser.add_argument("source", metavar="SOURCE",
                            help="a policy directory or a store URL (read only)")
        parser.add_argument("--domain", required=True, help="the domain (tenant) to review")
        parser.add_argument("--out", required=True, metavar="DIR",
                            help="the campaign directory to write (new or empty)")
        parser.add_argument("--default-reviewer", metavar="ACCOUNT", default=None,
                            help="who reviews accounts with no reporting superior or department head")
        parser.add_argument("--expiring-days", type=_count_option, default=30, metavar="N",
                            help="flag grants and timed roles ending within N days (default 30)")
        parser.add_argument("--dormant-days", type=_count_option, default=90, metavar="N",
                            help="flag active accounts with no decision in the last N days of the "
                                 "decision log (default 90)")
        parser.add_argument("--decision-log", metavar="PATH", default=None,
                            help="a file of decision-log records (what the salesauthz.decisions "
                                 "logger writes); without it no account is flagged dormant")
        parser.set_defaults(handler=_cmd_review_start)
    else:
        parser.description = ("Carry out a campaign's revocations through the admin API, as each "
                              "reviewer (authorized and audited), and report what is left.")
        parser.add_argument("campaign", metavar="CAMPAIGN_DIR")
        parser.add_argument("--url", required=True, help="the store to change")
        parser.add_argument("--dry-run", action="store_true",
                            help="show what would happen; change nothing")
        parser.add_argument("--format", choices=("text", "json"), default="text")
        parser.set_defaults(handler=_cmd_review_apply)
    parser.set_defaults(parser=parser)
    return parser


def _campaign_main(command: str, words: list[str]) -> int:
    parser = _campaign_parser(command)
    _Parser.words = words
    try:
        args = parser.parse_args(words)
        return int(args.handler(args))
    except SystemExit as exc:
        return int(exc.code or 0)


def _cmd_review_start(args: argparse.Namespace) -> int:
    from .campaign import start_campaign

    try:
        started = start_campaign(args.source, args.domain, Path(args.out),
                                 default_reviewer=args.default_reviewer,
                                 expiring_days=args.expiring_days, dormant_days=args.dormant_days,
                                 decision_log=Path(args.decision_log) if args.decision_log else None)
    except UsageError as exc:
        print(f"salesauthz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = _output(args)
    manifest = started.manifest
    for reviewer, names in manifest["reviewers"].items():
        mine = sum(1 for line in manifest["lines"].values() if line["reviewer"] == reviewer)
        out.text(f"{reviewer}: {count(mine, 'line')} in {Path(args.out) / names['file']}")
    for note in started.notes:
        out.text(f"note: {note}", style="dim")
    out.text(f"started: {count(len(manifest['lines']), 'line')} for "
             f"{count(len(manifest['reviewers']), 'reviewer')} in {args.out}", style="green")
    return EXIT_OK


def _cmd_review_apply(args: argparse.Namespace) -> int:
    from .campaign import CampaignFileError, apply_campaign, render_apply

    try:
        report = apply_campaign(Path(args.campaign), args.url, dry_run=args.dry_run)
    except CampaignFileError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"salesauthz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"salesauthz: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = _output(args)
    if args.format == "json":
        out.data({"domain": report.domain, "store": report.store, "dry_run": report.dry_run,
                  "ok": report.ok, "notes": report.notes, "totals": report.counts(),
                  "by_reviewer": {r: report.counts(r) for r in sorted({o.reviewer for o in report.outcomes})},
                  "lines": [o.to_json() for o in report.outcomes]})
    else:
        for line in render_apply(report):
            out.text(line)
    return EXIT_OK if report.ok else EXIT_FINDINGS


# -- the parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with a "did you mean" for a mistyped command, option or choice (each
    subcommand is one of these too, so its error shows its own usage)."""

    words: Sequence[str] = ()  # the command line being parsed (main() sets it), for suggestions

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def _misspelt(self, words: Sequence[str]) -> list[str]:
        """``--domian: did you mean '--domain'?`` for each option word this parser lacks."""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for word in words:
            name = word.split("=", 1)[0]
            if word.startswith("--") and name not in options and not any(o.startswith(name) for o in options):
                # Compared without the dashes, which every option shares.
                close = closest(name[2:], [o[2:] for o in options])
                if close:
                    hints.append(f"{word}: did you mean '--{close[0]}'?")
        return hints

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice is not None:
            close = did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
            return f" — {close}" if close else ""
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        # A misspelt option is left over, and often reported as the option it meant missing.
        hints = self._misspelt(unknown.group(1).split() if unknown is not None else self.words)
        return f" — {'; '.join(hints)}" if hints else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="salesauthz",
        description="Check, test and explain salesauthz policies.",
        epilog="Exit codes: 0 clean, 1 findings or failures, 2 usage error or unreadable input.",
    )
    parser.add_argument("--version", action="version", version=f"salesauthz {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--no-color", action="store_true", help="plain output, no colours")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser("check", parents=[common], help="validate and lint a policy directory")
    check.add_argument("path", metavar="PATH", help="the policy directory (e.g. policies/)")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--target", choices=("casbin",), default=None,
                       help="also warn about what that store cannot hold (casbin: names a "
                            "casbin+ store refuses, SA210)")
    check.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    check.add_argument("--max-findings", type=_count_option, default=None, metavar="N",
                       help=f"list at most N findings, each code in turn (0: all; default "
                            f"{TEXT_MAX_FINDINGS} for text, all for json and sarif); a summary by "
                            "code counts them all")
    check.set_defaults(handler=_cmd_check)

    test = commands.add_parser("test", parents=[common], help="run the policy tests (*.test.yaml)")
    test.add_argument("path", metavar="PATH", nargs="?", default="policies",
                      help="the policy directory holding *.test.yaml files (default: policies)")
    test.add_argument("--coverage", action="store_true",
                      help="list the rules no test exercised, with a percentage")
    test.add_argument("--verbose", "-v", action="store_true", help="list passing cases too")
    test.add_argument("--format", choices=("text", "json"), default="text")
    test.set_defaults(handler=_cmd_test)

    explain = commands.add_parser("explain", parents=[common],
                                  help="explain one decision, step by step")
    explain.add_argument("account", metavar="ACCOUNT")
    explain.add_argument("action", metavar="ACTION")
    explain.add_argument("type", metavar="TYPE")
    explain.add_argument("path", metavar="PATH", nargs="?", default=None,
                         help="policy directory (default: policies)")
    explain.add_argument("--owner", help="the record's owner account")
    explain.add_argument("--department", help="the record's department (default: the owner's)")
    _share_option(explain)
    _attribute_option(explain, context=True)
    _source_options(explain)
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.set_defaults(handler=_cmd_explain)

    who = commands.add_parser("who-can", parents=[common],
                              help="every account that may do an action on a type (or a record)")
    who.add_argument("action", metavar="ACTION")
    who.add_argument("type", metavar="TYPE")
    who.add_argument("path", metavar="PATH", nargs="?", default=None)
    record = who.add_mutually_exclusive_group()
    record.add_argument("--owner", help="only for a record owned by this account")
    record.add_argument("--department", help="only for a record in this department")
    _share_option(who)
    _attribute_option(who)
    _source_options(who)
    who.add_argument("--format", choices=("text", "json"), default="text")
    who.set_defaults(handler=_cmd_who_can)

    what = commands.add_parser("what-can", parents=[common],
                               help="everything an account may do, with scopes")
    what.add_argument("account", metavar="ACCOUNT")
    what.add_argument("path", metavar="PATH", nargs="?", default=None)
    _source_options(what)
    what.add_argument("--format", choices=("text", "json"), default="text")
    what.set_defaults(handler=_cmd_what_can)

    diff = commands.add_parser("diff", parents=[common],
                               help="who gains or loses which effective access between two policy versions")
    diff.add_argument("old", metavar="OLD", nargs="?",
                      help="a directory, git:REV[:PATH], or a store URL (read only)")
    diff.add_argument("new", metavar="NEW", nargs="?",
                      help="a directory, git:REV[:PATH], or a store URL (read only)")
    diff.add_argument("--url", metavar="URL", default=None,
                      help="the live store as OLD: `diff --url URL policies/` shows what importing "
                           "policies/ would change")
    diff.add_argument("--domain", action="append", default=None,
                      help="compare only this domain (repeat for several; default: all, or the "
                           "directory's domains when the other side is a store)")
    diff.add_argument("--fail-on-gain", action="store_true",
                      help="exit 1 if any account gains access, or sight of a field")
    diff.add_argument("--fail-on-change", action="store_true", help="exit 1 on any gain or loss")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    diff.set_defaults(handler=_cmd_diff)

    review = commands.add_parser("review", parents=[common],
                                 help="the periodic access-review report of one domain "
                                      "(`review start` / `review apply`: a campaign with sign-off)",
                                 epilog="A review campaign: `salesauthz review start SOURCE --domain D "
                                        "--out DIR`, then `salesauthz review apply DIR --url STORE` "
                                        "(each has its own --help).")
    review.add_argument("path", metavar="PATH", nargs="?", default=None)
    _source_options(review)
    review.add_argument("--format", choices=("md", "csv", "html", "json"), default="md")
    review.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    review.set_defaults(handler=_cmd_review)

    # Commands that live in their own modules register themselves here.
    from . import audit_commands, init_command, storage_commands

    storage_commands.register(commands)
    audit_commands.register(commands)
    init_command.register(commands)
    for subparser in commands.choices.values():
        subparser.set_defaults(parser=subparser)  # main() reports leftovers in its usage
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["review"] and words[1:2] in (["start"], ["apply"]):
        # `review PATH` takes a directory; `review start|apply` are the campaign's commands
        # (a policy directory named "start" is reached as ./start).
        return _campaign_main(words[1], words[2:])
    parser = build_parser()
    _Parser.words = words
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse cannot take an optional positional (PATH) after options, as in
        # `salesauthz explain a read customer --domain acme policies/`: accept it here.
        if len(extra) == 1 and not extra[0].startswith("-") and getattr(args, "path", "") is None:
            args.path = extra[0]
        elif extra:
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    try:
        return int(args.handler(args))
    except SystemExit as exc:  # a handler's usage error (argparse's error())
        return int(exc.code or 0)
    except BrokenPipeError:  # pragma: no cover - e.g. `salesauthz review | head`
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
