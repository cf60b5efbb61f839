"""``salesauthz import`` and ``salesauthz export``: moving policies between files and stores.

``import PATH --into URL`` validates the policy directory first (nothing is written if any
document has an error), then makes every domain the directory defines equal to its files — adding
and removing rules — in ONE store transaction with one audit record per domain. Domains the
directory does not define are left alone. ``--dry-run`` prints the rule diff and writes nothing.

``export URL --domain acme --to DIR`` writes the domain back as a policy document (plus the
bundled ``model.conf``); importing that directory again changes nothing.

Exit codes: 0 done, 1 the policy has errors, 2 usage error or unreadable input (including a
store that cannot be reached).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from salesauthz._rules import Rule, domain_of

__all__ = ["document_file_name", "export_domains", "import_directory", "register"]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


def _error(message: str) -> None:
    print(f"salesauthz: error: {message}", file=sys.stderr)


def _rule_text(rule: Rule) -> str:
    # JSON: every hostile value (commas, quotes, newlines) stays unambiguous on one line.
    return json.dumps(list(rule), ensure_ascii=False)


# -- import ---------------------------------------------------------------------------------


def import_directory(path: str | Path, url: str, *, dry_run: bool = False, actor: str | None = None,
                     ) -> dict[str, tuple[list[Rule], list[Rule]]]:
    """Make the store at ``url`` hold exactly the rules of every domain defined under ``path``.

    Returns ``domain → (added, removed)``. Raises :class:`~salesauthz.errors.PolicyError` (the
    directory is invalid; nothing written) or :class:`~salesauthz.errors.StorageError`.
    """
    from salesauthz.adapters import open_adapter
    from salesauthz.audit import AuditDraft
    from salesauthz.models import load_directory

    policy = load_directory(path)  # validate everything before touching the store
    wanted: dict[str, set[Rule]] = {domain: set() for domain in policy.domains}
    for rule in policy.rules:
        wanted.setdefault(domain_of(rule), set()).add(rule)
    store = open_adapter(url)
    try:
        present: dict[str, set[Rule]] = {domain: set() for domain in wanted}
        for rule in store.load(sorted(wanted)):
            present[domain_of(rule)].add(rule)
        diff = {domain: (sorted(wanted[domain] - present[domain]), sorted(present[domain] - wanted[domain]))
                for domain in sorted(wanted)}
        changed = {domain: change for domain, change in diff.items() if change[0] or change[1]}
        if not dry_run and changed:
            who = actor or _default_actor()
            now = time.time()
            audit = [AuditDraft(now, who, domain, "import", str(Path(path)), tuple(added),
                                tuple(removed), detail=f"salesauthz import {Path(path)}")
                     for domain, (added, removed) in changed.items()]
            store.apply([r for a, _ in changed.values() for r in a],
                        [r for _, rm in changed.values() for r in rm], audit)
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
    from salesauthz.errors import AuditError, PolicyError, StorageError

    if not Path(args.path).is_dir():
        _error(f"{args.path} is not a directory of policy files")
        return EXIT_USAGE
    try:
        diff = import_directory(args.path, args.into, dry_run=args.dry_run, actor=args.actor)
    except PolicyError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        _error(f"{len(exc.issues)} problem(s) in {args.path}; nothing was imported")
        return EXIT_FINDINGS
    except (StorageError, AuditError) as exc:  # AuditError: a malformed key, a tampered trail
        _error(f"{exc}; nothing was imported" if isinstance(exc, AuditError) else str(exc))
        return EXIT_USAGE
    target = mask_url(args.into)
    if args.format == "json":
        print(json.dumps({
            "into": target, "dry_run": args.dry_run,
            "domains": {d: {"added": [list(r) for r in a], "removed": [list(r) for r in rm]}
                        for d, (a, rm) in diff.items()},
        }, ensure_ascii=False, indent=2))
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


# -- export ---------------------------------------------------------------------------------


def document_file_name(domain: str) -> str:
    """A safe file name for a domain's document (the document itself carries the real name)."""
    if _PLAIN_NAME.match(domain) and not domain.endswith((".test", ".test.yaml")):
        return f"{domain}.yaml"
    return "domain-" + hashlib.sha256(domain.encode("utf-8")).hexdigest()[:12] + ".yaml"


def document_yaml(document: Any) -> str:
    import yaml

    data = document.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=1_000_000)
    return "# Exported by `salesauthz export`; `salesauthz import` restores it exactly.\n" + body


def export_domains(url: str, domains: list[str], directory: str | Path) -> list[Path]:
    """Write each domain of the store at ``url`` as a policy document into ``directory``.

    Raises :class:`LookupError` naming a domain the store does not hold (nothing is written), or
    :class:`~salesauthz.errors.StorageError`.
    """
    from salesauthz.adapters import open_adapter
    from salesauthz.models import decompile_rules
    from salesauthz.models.loader import bundled_model_text

    store = open_adapter(url)
    try:
        rules = store.load(domains)
    finally:
        store.close()
    found = {domain_of(r) for r in rules}
    missing = [d for d in domains if d not in found]
    if missing:
        raise LookupError(", ".join(repr(d) for d in missing))
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    model = target / "model.conf"
    if not model.exists():
        model.write_text(bundled_model_text(), encoding="utf-8")
        written.append(model)
    for document in decompile_rules(rules):
        file = target / document_file_name(document.domain)
        file.write_text(document_yaml(document), encoding="utf-8")
        written.append(file)
    return written


def _cmd_export(args: argparse.Namespace) -> int:
    from salesauthz.adapters import mask_url
    from salesauthz.errors import StorageError

    domains = list(dict.fromkeys(args.domain))
    try:
        written = export_domains(args.url, domains, args.to)
    except LookupError as exc:
        _error(f"no rules for domain {exc.args[0]} in {mask_url(args.url)}; nothing written")
        return EXIT_USAGE
    except StorageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _error(f"cannot write to {args.to}: {exc}")
        return EXIT_USAGE
    for file in written:
        print(f"wrote {file}")
    return EXIT_OK


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the ``salesauthz`` parser."""
    importer = commands.add_parser(
        "import", help="validate a policy directory and write it into a store, in one transaction")
    importer.add_argument("path", metavar="PATH", help="the policy directory (e.g. policies/)")
    importer.add_argument("--into", required=True, metavar="URL",
                          help="the store: sqlite:///salesauthz.db, postgresql://…, casbin+<url>")
    importer.add_argument("--dry-run", action="store_true", help="print the rule diff; write nothing")
    importer.add_argument("--actor", default=None, help="who to name in the audit trail")
    importer.add_argument("--format", choices=("text", "json"), default="text")
    importer.set_defaults(handler=_cmd_import)

    exporter = commands.add_parser("export", help="write domains of a store back as policy files")
    exporter.add_argument("url", metavar="URL", help="the store to read")
    exporter.add_argument("--domain", action="append", required=True,
                          help="a domain to export (repeat for several)")
    exporter.add_argument("--to", required=True, metavar="DIR", help="the directory to write into")
    exporter.set_defaults(handler=_cmd_export)
