"""``salesauthz import`` and ``salesauthz export``: moving policies between files and stores.

``import PATH --into URL`` validates the policy directory first (nothing is written if any
document has an error), then makes every domain the directory defines equal to its files — adding
and removing rules — in ONE store transaction with one audit record per domain. Domains the
directory does not define are left alone. ``--dry-run`` prints the rule diff and writes nothing.

``import --from-casbin MODEL.conf POLICY DIR`` translates a Casbin RBAC policy (a CSV file, or the
other application's rows of a ``casbin+URL`` store) into a new policy directory ``DIR`` and prints
what could not be translated and which decisions differ (:func:`salesauthz.casbin.import_policy`);
with ``--into URL`` it then imports ``DIR`` into that store.

``export URL --domain acme --to DIR`` writes the domain back as a policy document (plus the
bundled ``model.conf``); importing that directory again changes nothing. It writes into a
temporary directory first and moves the files into place only when all of them are written.

Exit codes: 0 done, 1 the policy has errors (or a Casbin model cannot be translated), 2 usage
error or unreadable input (including a store that cannot be reached, or holds malformed rules).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salesauthz._rules import Rule, check_rule, domain_of
from salesauthz._wording import capped, count
from salesauthz.models.write import document_file_name

from .output import Progress

__all__ = ["document_file_name", "export_domains", "import_directory", "register"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2



def _error(message: str) -> None:
    print(f"salesauthz: error: {message}", file=sys.stderr)


def _rule_text(rule: Rule) -> str:
    # JSON: every hostile value (commas, quotes, newlines) stays unambiguous on one line.
    return json.dumps(list(rule), ensure_ascii=False)


# -- import ---------------------------------------------------------------------------------


def import_directory(path: str | Path, url: str, *, dry_run: bool = False, actor: str | None = None,
                     progress: Progress | None = None) -> dict[str, tuple[list[Rule], list[Rule]]]:
    """Make the store at ``url`` hold exactly the rules of every domain defined under ``path``.

    Returns ``domain → (added, removed)``. Raises :class:`~salesauthz.errors.PolicyError` (the
    directory is invalid; nothing written) or :class:`~salesauthz.errors.StorageError`.
    ``progress`` hears of the ``loading``, ``validating`` and ``importing`` phases (reading the
    store, comparing, writing: the write is one transaction).
    """
    from salesauthz.adapters import open_adapter
    from salesauthz.audit import AuditDraft
    from salesauthz.models import load_directory

    report = progress or (lambda phase, done, total: None)
    policy = load_directory(path, progress=progress)  # validate everything before touching the store
    wanted: dict[str, set[Rule]] = {domain: set() for domain in policy.domains}
    for rule in policy.rules:
        wanted.setdefault(domain_of(rule), set()).add(rule)
    report("importing", 0, 3)
    store = open_adapter(url)
    try:
        present: dict[str, set[Rule]] = {domain: set() for domain in wanted}
        for rule in store.load(sorted(wanted)):
            present[domain_of(rule)].add(rule)
        report("importing", 1, 3)
        diff = {domain: (sorted(wanted[domain] - present[domain]), sorted(present[domain] - wanted[domain]))
                for domain in sorted(wanted)}
        changed = {domain: change for domain, change in diff.items() if change[0] or change[1]}
        report("importing", 2, 3)
        if not dry_run and changed:
            who = actor or _default_actor()
            now = time.time()
            audit = [AuditDraft(now, who, domain, "import", str(Path(path)), tuple(added),
                                tuple(removed), detail=f"salesauthz import {Path(path)}")
                     for domain, (added, removed) in changed.items()]
            store.apply([r for a, _ in changed.values() for r in a],
                        [r for _, rm in changed.values() for r in rm], audit)
        report("importing", 3, 3)
        return diff
    finally:
        store.close()


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (some containers)
        return "cli"


def _cmd_import(args: argparse.Namespace) -> int:
    from salesauthz.adapters import mask_url

    if args.from_casbin is not None:
        return _cmd_import_casbin(args)
    if args.into is None:
        _error("the store to import into is missing: --into URL (or --from-casbin MODEL POLICY DIR "
               "to translate a Casbin policy)")
        return EXIT_USAGE
    if not Path(args.path).is_dir():
        _error(f"{args.path} does not exist" if not os.path.lexists(args.path)
               else f"{args.path} is not a directory of policy files")
        return EXIT_USAGE
    diff = _store_directory(args)
    if isinstance(diff, int):
        return diff
    target = mask_url(args.into)
    if args.format == "json":
        print(json.dumps(_diff_json(args, diff), ensure_ascii=False, indent=2))
        return EXIT_OK
    for domain, (added, removed) in diff.items():
        if args.dry_run:
            for rule in removed:
                print(f"- {_rule_text(rule)}")
            for rule in added:
                print(f"+ {_rule_text(rule)}")
        verb = "would change" if args.dry_run else "changed"
        if not added and not removed:
            verb = "unchanged"
        print(f"{domain}: {verb} (+{len(added)} -{len(removed)} rules)")
    print(("dry run: nothing written to " if args.dry_run else "imported into ") + target)
    return EXIT_OK


def _store_directory(args: argparse.Namespace) -> dict[str, tuple[list[Rule], list[Rule]]] | int:
    """:func:`import_directory` of ``args.path`` into ``args.into``, or the exit code of its
    failure (reported)."""
    from salesauthz.errors import AuditError, PolicyError, StorageError

    from .output import Output

    try:
        with Output().progress() as progress:
            return import_directory(args.path, args.into, dry_run=args.dry_run, actor=args.actor,
                                    progress=progress)
    except PolicyError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        _error(f"{count(len(exc.issues), 'problem')} in {args.path}; nothing was imported")
        return EXIT_FINDINGS
    except (StorageError, AuditError) as exc:  # AuditError: a malformed key, a tampered trail
        _error(f"{exc}; nothing was imported" if isinstance(exc, AuditError) else str(exc))
        return EXIT_USAGE


def _diff_json(args: argparse.Namespace, diff: dict[str, tuple[list[Rule], list[Rule]]]) -> dict[str, Any]:
    from salesauthz.adapters import mask_url

    return {
        "into": mask_url(args.into), "dry_run": args.dry_run,
        "domains": {d: {"added": [list(r) for r in a], "removed": [list(r) for r in rm]}
                    for d, (a, rm) in diff.items()},
    }


def _cmd_import_casbin(args: argparse.Namespace) -> int:
    from salesauthz.adapters import mask_url
    from salesauthz.casbin import import_policy
    from salesauthz.errors import PolicyError, StorageError

    model, policy = args.from_casbin
    target = Path(args.path)
    shown_policy = mask_url(policy)
    for path, what in ((model, "model"), *(() if policy.startswith("casbin+") else ((policy, "policy"),))):
        if not Path(path).is_file():
            _error(f"the Casbin {what} {path} is not a file")
            return EXIT_USAGE
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        _error(f"{target} already exists and is not an empty directory; nothing written")
        return EXIT_USAGE
    try:
        result = import_policy(model, policy, default_domain=args.default_domain,
                               wildcard_domains=args.wildcard_domains, compare_limit=args.compare_limit,
                               compare_seconds=args.compare_seconds or None)
    except PolicyError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        _error(f"cannot translate {model} + {shown_policy}; nothing written")
        return EXIT_FINDINGS
    except StorageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    try:
        written = result.write(target)
    except OSError as exc:
        _error(f"cannot write {target}: {exc}; nothing written")
        return EXIT_USAGE
    report: dict[str, Any] = {**result.to_json(), "written": [str(f) for f in written]}
    if args.format == "text":
        for line in result.report():
            print(line)
        print(f"wrote {target} ({', '.join(f.name for f in written)})")
    if args.into is not None:
        args.path = str(target)
        diff = _store_directory(args)
        if isinstance(diff, int):
            return diff
        report["import"] = _diff_json(args, diff)
        if args.format == "text":
            changed = sum(len(a) + len(r) for a, r in diff.values())
            print(("dry run: would change " if args.dry_run else "imported into ")
                  + f"{mask_url(args.into)} ({count(changed, 'rule change')})")
    if args.format == "json":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    return EXIT_OK


# -- export ---------------------------------------------------------------------------------


EXPORT_HEADER = "# Exported by `salesauthz export`; `salesauthz import` restores it exactly.\n"


def base_documents(directory: Path, domains: Collection[str]) -> dict[str, tuple[Path, str]]:
    """domain → (file, text) of the policy documents of ``domains`` in ``directory`` (tests
    aside). Raises :class:`~salesauthz.errors.PolicyError` for such a document that does not
    load: merging with it could only lose more."""
    from salesauthz.errors import PolicyError, PolicyIssue
    from salesauthz.models.loader import load_document, policy_files, read_text_file

    if not directory.is_dir():
        return {}
    found: dict[str, tuple[Path, str]] = {}
    problems: list[PolicyIssue] = []
    for file in policy_files(directory):
        try:
            text = read_text_file(file)
        except PolicyError:
            continue  # not a document of ours to merge with: `check` reports it
        named = _domain_line(text)
        if named is not None and named not in domains:
            continue  # (only the documents being exported are parsed: a directory may be large)
        try:
            document = load_document(text, str(file))
        except PolicyError as exc:
            if named is not None:
                problems.extend(exc.issues)
            continue
        if document.document.domain in domains:
            found.setdefault(document.document.domain, (file, text))
    if problems:
        raise PolicyError(problems)
    return found


_DOMAIN_LINE = re.compile(r"^domain:[ \t]*(.+?)[ \t]*(?:#.*)?$", re.MULTILINE)


def _domain_line(text: str) -> str | None:
    """The domain a document names on its top-level ``domain:`` line (``None``: not found)."""
    import yaml

    match = _DOMAIN_LINE.search(text)
    if match is None:
        return None
    try:
        value = yaml.safe_load("domain: " + match.group(1))
    except yaml.YAMLError:
        return None
    return value.get("domain") if isinstance(value, dict) and isinstance(value.get("domain"), str) else None


@dataclass(slots=True)
class Exported:
    """What :func:`export_domains` wrote, and what merging with the existing documents dropped."""

    files: list[Path]
    merged_with: dict[str, Path] = field(default_factory=dict)  # domain -> the document it kept from
    kept: int = 0  # comments put back
    dropped: list[str] = field(default_factory=list)  # comments whose key is no longer in the store


def export_domains(url: str, domains: list[str], directory: str | Path, *,
                   base: str | Path | None = None, merge: bool = True) -> Exported:
    """Write each domain of the store at ``url`` as a policy document into ``directory``.

    When the domain already has a document — in ``base``, by default ``directory`` itself — the
    new one is merged with it (unless ``merge`` is false): the rules come from the store; the
    descriptions, comments (``# salesauthz: ignore[…]`` suppressions among them), key order and
    layout from the existing document, which keeps its file name.

    All or nothing: the rules are read and validated and every file is written into a temporary
    directory first; only then are the files moved into ``directory``. Raises
    :class:`LookupError` naming a domain the store does not hold,
    :class:`~salesauthz.errors.PolicyError` when the store holds malformed or inconsistent rules
    for them (or an existing document to merge with does not load),
    :class:`~salesauthz.errors.StorageError`, or :class:`OSError` — in each case having written
    nothing.
    """
    from pydantic import ValidationError

    from salesauthz.adapters import mask_url
    from salesauthz.errors import PolicyError, PolicyIssue
    from salesauthz.models import decompile_rules
    from salesauthz.models.loader import bundled_model_text

    from .export_merge import render_document
    from .readonly import open_read_only

    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is not a directory")
    bases = base_documents(Path(base) if base is not None else target, domains) if merge else {}
    store = open_read_only(url)
    try:
        rules = store.load(domains)
    finally:
        store.close()
    # Shape only: an inconsistent store (a dangling reference …) is still exported, so that it
    # can be reviewed and repaired; a malformed rule cannot be written as a document at all.
    malformed = [PolicyIssue(f"{problem}: {rule!r}", mask_url(url), code="SA100")
                 for rule in rules if (problem := check_rule(rule)) is not None]
    if malformed:
        raise PolicyError(malformed)
    found = {domain_of(r) for r in rules}
    missing = [d for d in domains if d not in found]
    if missing:
        raise LookupError(", ".join(repr(d) for d in missing))
    try:
        documents = decompile_rules(rules)
    except ValidationError as exc:
        raise PolicyError([PolicyIssue(f"cannot write the rules as a policy document: {error['msg']}",
                                       mask_url(url), code="SA100") for error in exc.errors()]) from None
    result = Exported([])
    files: dict[str, str] = {}
    for document in documents:
        existing = bases.get(document.domain)
        if existing is None:
            files[document_file_name(document.domain)] = render_document(document, header=EXPORT_HEADER).text
            continue
        file, text = existing
        merged = render_document(document, text, header=EXPORT_HEADER)
        root = Path(base) if base is not None else target
        files[file.relative_to(root).as_posix() if file.is_relative_to(root) else file.name] = merged.text
        result.merged_with[document.domain] = file
        result.kept += merged.kept
        result.dropped.extend(merged.dropped)
    if not (target / "model.conf").exists():
        files = {"model.conf": bundled_model_text(), **files}
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.export.", dir=target.parent))
    try:
        for name, text in files.items():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            (scratch / name).write_text(text, encoding="utf-8")
        if not target.exists():
            scratch.rename(target)
        else:
            for name in files:
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(scratch / name, target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.files = [target / name for name in files]
    return result


def _foreign_hint(url: str) -> str:
    """A hint when a ``casbin+`` store holds another Casbin application's rows."""
    if not url.startswith("casbin+"):
        return ""
    from salesauthz.adapters.casbin_compat import CasbinRuleAdapter
    from salesauthz.errors import StorageError

    store: CasbinRuleAdapter | None = None
    try:
        store = CasbinRuleAdapter(url[len("casbin+"):], create=False)
        rows = len(store.foreign_rows())
    except StorageError:  # only a hint: it must not hide the error being reported
        return ""
    finally:
        if store is not None:
            store.close()
    if not rows:
        return ""
    return (f" (its table holds {count(rows, 'row')} of another Casbin application, which salesauthz "
            "ignores; translate them with `salesauthz import --from-casbin MODEL.conf URL DIR`)")


def _cmd_export(args: argparse.Namespace) -> int:
    from salesauthz.adapters import mask_url
    from salesauthz.errors import PolicyError, StorageError

    domains = list(dict.fromkeys(args.domain))
    try:
        exported = export_domains(args.url, domains, args.to, base=args.base, merge=not args.no_merge)
    except LookupError as exc:
        _error(f"no rules for domain {exc.args[0]} in {mask_url(args.url)}; nothing written"
               + _foreign_hint(args.url))
        return EXIT_USAGE
    except PolicyError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        if any(issue.file is not None and issue.code != "SA100" for issue in exc.issues):
            _error("the existing documents to merge with do not load (fix them, or export with "
                   "--no-merge); nothing written")
        else:
            _error(f"{mask_url(args.url)} holds rules that are not a valid salesauthz policy; "
                   "nothing written")
        return EXIT_USAGE
    except StorageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _error(f"cannot write to {args.to}: {exc}")
        return EXIT_USAGE
    for file in exported.files:
        print(f"wrote {file}")
    for domain, file in exported.merged_with.items():
        print(f"{domain}: kept the descriptions, comments and layout of {file}")
    if exported.dropped:
        print(f"dropped {count(len(exported.dropped), 'comment')} about keys no longer in the store: "
              + capped([repr(c) for c in exported.dropped], 3), file=sys.stderr)
    return EXIT_OK


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``salesauthz`` parser."""
    importer = commands.add_parser(
        "import", help="validate a policy directory and write it into a store, in one transaction; "
                       "or translate a Casbin policy into a policy directory (--from-casbin)")
    importer.add_argument("path", metavar="PATH",
                          help="the policy directory (e.g. policies/); with --from-casbin, the new "
                               "directory to write")
    importer.add_argument("--into", metavar="URL",
                          help="the store: sqlite:///salesauthz.db, postgresql://…, casbin+<url>")
    importer.add_argument("--dry-run", action="store_true", help="print the rule diff; write nothing")
    importer.add_argument("--actor", default=None, help="who to name in the audit trail")
    importer.add_argument("--format", choices=("text", "json"), default="text")
    casbin = importer.add_argument_group("translating a Casbin policy")
    casbin.add_argument("--from-casbin", nargs=2, metavar=("MODEL", "POLICY"), default=None,
                        help="a Casbin model.conf and its policy: a CSV file, or casbin+<url> (the "
                             "rows of another application in a casbin_rule table)")
    casbin.add_argument("--default-domain", default="default", metavar="NAME",
                        help="the domain of a Casbin model without domains (default: default)")
    casbin.add_argument("--wildcard-domains", action="store_true",
                        help="read a role assignment in domain '*' as one in every domain (your "
                             "application registers a domain matching function)")
    casbin.add_argument("--compare-limit", type=int, default=10_000, metavar="N",
                        help="decide at most N requests in both engines to find differences: all, or "
                             "a sample spread over all (0: skip; default 10000)")
    casbin.add_argument("--compare-seconds", type=float, default=60.0, metavar="S",
                        help="stop comparing after S seconds (0: no time limit; default 60)")
    importer.set_defaults(handler=_cmd_import)

    exporter = commands.add_parser("export", help="write domains of a store back as policy files")
    exporter.add_argument("url", metavar="URL", help="the store to read")
    exporter.add_argument("--domain", action="append", required=True,
                          help="a domain to export (repeat for several)")
    exporter.add_argument("--to", required=True, metavar="DIR", help="the directory to write into")
    exporter.add_argument("--base", metavar="DIR", default=None,
                          help="keep the descriptions, comments (suppressions too) and layout of the "
                               "domain's documents in DIR (default: the --to directory)")
    exporter.add_argument("--no-merge", action="store_true",
                          help="write the documents from the store alone, ignoring existing ones")
    exporter.set_defaults(handler=_cmd_export)
