"""Working with Casbin itself: evaluate salesauthz's model in plain pycasbin, bring an existing
Casbin policy in, and know which names a Casbin store can hold.

* :func:`register_functions` teaches a plain pycasbin ``Enforcer`` the helper functions the
  shipped ``model.conf`` (:func:`model_path`) calls, and :class:`StoreAdapter` loads the rules of
  any salesauthz store into it — so ``enforcer.enforce(sub, dom, typ, act, owner, dept, shares)``
  decides exactly as :meth:`salesauthz.Authorizer.check` does.
* :func:`import_policy` translates an RBAC or RBAC-with-domains Casbin policy into salesauthz
  policy documents, with a report of everything it could not translate and of every decision
  that differs (``salesauthz import --from-casbin``).
* :func:`value_problem` says why a value would not survive Casbin's line-based policy loaders
  (stores opened with ``casbin+…`` refuse such values).

See docs/coming-from-casbin.md.

(This module is ``salesauthz.casbin``; inside it, ``import casbin`` is the pycasbin library.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import casbin
from casbin import persist

from salesauthz._rules import Rule
from salesauthz._rules import casbin_value_problem as value_problem  # public here
from salesauthz.reference import MATCHER_FUNCTIONS, register_functions

if TYPE_CHECKING:
    from salesauthz._casbin_import import ImportNote, ImportResult
    from salesauthz.adapters.base import Adapter

__all__ = [
    "MATCHER_FUNCTIONS",
    "ImportNote",
    "ImportResult",
    "StoreAdapter",
    "enforcer",
    "import_policy",
    "model_path",
    "model_text",
    "register_functions",
    "value_problem",
]


def model_text() -> str:
    """The text of salesauthz's ``model.conf``."""
    from salesauthz.models.loader import bundled_model_text

    return bundled_model_text()


def model_path() -> str:
    """The path of the ``model.conf`` shipped inside the salesauthz package (for
    ``casbin.Enforcer(model_path(), adapter)``)."""
    return str(Path(str(resources.files("salesauthz").joinpath("data/model.conf"))))


class StoreAdapter(persist.Adapter):  # type: ignore[misc]  # pycasbin ships no type hints
    """A read-only pycasbin adapter over a salesauthz store: ``casbin.Enforcer(model_path(),
    StoreAdapter("sqlite:///salesauthz.db"))``.

    It loads every rule (or those of ``domains``) exactly — values are handed to pycasbin as
    they are stored, never joined into a line and re-split. ``store`` is a store URL (anything
    :func:`salesauthz.adapters.open_adapter` opens, ``casbin+…`` included) or an open
    :class:`~salesauthz.adapters.base.Adapter`, which the caller keeps and closes.

    Writing through pycasbin (``add_policy`` with auto-save, ``save_policy`` …) raises
    :class:`NotImplementedError`: change rules through salesauthz, which validates and audits
    them.
    """

    def __init__(self, store: str | Adapter, *, domains: Collection[str] | None = None) -> None:
        self._store = store
        self._domains = None if domains is None else list(domains)

    def load_policy(self, model: Any) -> None:
        from salesauthz.adapters import open_adapter

        if isinstance(self._store, str):
            opened = open_adapter(self._store)
            try:
                rules = opened.load(self._domains)
            finally:
                opened.close()
        else:
            rules = self._store.load(self._domains)
        load_rules(model, rules)

    def _read_only(self, *args: object) -> None:
        raise NotImplementedError("salesauthz.casbin.StoreAdapter is read-only: change rules "
                                  "through salesauthz (Authorizer.apply_changes, its admin API, "
                                  "or `salesauthz import`)")

    save_policy = add_policy = add_policies = remove_policy = remove_policies = _read_only
    remove_filtered_policy = update_policy = update_policies = _read_only


def load_rules(model: Any, rules: Iterable[Rule]) -> None:
    """Append salesauthz rules to a pycasbin model built on ``model.conf`` (exactly, no line
    parsing), skipping duplicates."""
    seen: set[Rule] = set()
    for rule in rules:
        if rule in seen:
            continue
        seen.add(rule)
        section = "g" if rule[0].startswith("g") else "p"
        model.model[section][rule[0]].policy.append(list(rule[1:]))


def enforcer(store: str | Adapter | Iterable[Rule], *, clock: Callable[[], float] = time.time,
             domains: Collection[str] | None = None) -> Any:
    """A plain pycasbin ``Enforcer`` on the shipped ``model.conf``, with the helper functions
    registered and the rules of ``store`` (a store URL, an open adapter, or rules) loaded."""
    from salesauthz.adapters.base import Adapter

    if isinstance(store, str | Adapter):
        built = casbin.Enforcer(model_path(), StoreAdapter(store, domains=domains))
    else:
        built = casbin.Enforcer(model_path())
        load_rules(built.get_model(), store)
    register_functions(built, clock=clock)
    return built


def import_policy(model: str | Path, policy: str | Path | Iterable[Iterable[str]], *,
                  default_domain: str = "default", wildcard_domains: bool = False,
                  compare_limit: int = 10_000, compare_seconds: float | None = 60.0) -> ImportResult:
    """Translate a Casbin RBAC (or RBAC-with-domains) policy into salesauthz policy documents.

    Args:
        model: the Casbin model: a path to its ``.conf`` file, or its text.
        policy: a policy CSV file (read by pycasbin's own file adapter), a ``casbin+<url>``
            store (the rows of its ``casbin_rule`` table that are not salesauthz's, read as
            ``casbin-sqlalchemy-adapter`` reads them), or the policy lines themselves as
            sequences ``(ptype, value, ...)``.
        default_domain: the salesauthz domain of a model without domains.
        wildcard_domains: read a role assignment in domain ``*`` as "in every domain" (as an
            application does that registers a domain matching function, e.g.
            ``add_domain_matching_func(key_match2_func)`` — pass it only then, or the import
            allows what Casbin does not); otherwise ``*`` is a literal domain, which salesauthz
            cannot hold, and such assignments are reported.
        compare_limit: at most this many requests are decided by both pycasbin and salesauthz
            to find the differences — all of them when there are no more, else a sample spread
            over all of them, the same on every run (0 skips the comparison).
        compare_seconds: stop the comparison after this long (``None``: no time limit);
            pycasbin decides a request by scanning every policy line, so on large policies
            this bounds the wait.

    Returns an :class:`ImportResult`: the documents, the rules, and the report. Raises
    :class:`~salesauthz.errors.PolicyError` when the model is not one this translator knows
    (the message says which part), and :class:`~salesauthz.errors.StorageError` when a
    ``casbin+`` store cannot be read.
    """
    from salesauthz._casbin_import import import_policy as translate

    return translate(model, policy, default_domain=default_domain, wildcard_domains=wildcard_domains,
                     compare_limit=compare_limit, compare_seconds=compare_seconds)


def __getattr__(name: str) -> object:
    # The importer is loaded only when asked for.
    if name in ("ImportResult", "ImportNote"):
        from salesauthz import _casbin_import

        return getattr(_casbin_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
