"""Scope filters for list views: "which records may this account see?" as a database filter.

:meth:`Authorizer.scope_filter <salesauthz.Authorizer.scope_filter>` answers as data; the
renderers here turn that answer into the ``WHERE`` clause of the caller's own query, exactly
equivalent to :meth:`Authorizer.check <salesauthz.Authorizer.check>` row by row:

- :func:`salesauthz.filters.sql.sql_where` — a parameterised SQL fragment (any DB-API driver);
- :func:`salesauthz.filters.sqlalchemy.scope_clause` — a SQLAlchemy 2.x ``ColumnElement[bool]``;
- :func:`salesauthz.filters.django.scope_q` — a Django ``Q``.

Import the renderer you use from its submodule: this package imports neither SQLAlchemy nor
Django. ``sql_where`` is re-exported here since it needs no third-party library.
"""

from __future__ import annotations

from .sql import quote_identifier, sql_where

__all__ = ["quote_identifier", "sql_where"]
