"""A tiny Django project for the web integration tests (distinct from the filters' test models).

Django is configured here only if nothing configured it yet (the filters' tests configure it the
same way: SQLite in memory, no installed apps); each test overrides what it needs.
"""

from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
django.setup()
