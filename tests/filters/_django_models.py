"""A small Django model for the ``Q`` tests (configured in ``conftest.py``; no installed app needed)."""

from __future__ import annotations

from django.db import models


class Customer(models.Model):
    tenant: models.CharField[str, str] = models.CharField(max_length=200)
    owner: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    department: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)

    class Meta:
        app_label = "salesauthz_filter_tests"
        # Unique per process so parallel test runs never share it (SQLite in memory anyway).
        db_table = "sz_filter_django_customer"

    def __str__(self) -> str:
        return f"{self.tenant}/{self.owner}/{self.department}"
