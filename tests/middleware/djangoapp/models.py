"""A CRM customer table for the Django tests (created per test session by a fixture)."""

from __future__ import annotations

from django.db import models

from salesauthz import Record


class Customer(models.Model):
    domain: models.CharField[str, str] = models.CharField(max_length=64)
    name: models.CharField[str, str] = models.CharField(max_length=200)
    owner: models.CharField[str, str] = models.CharField(max_length=64)
    department: models.CharField[str, str] = models.CharField(max_length=64)

    class Meta:
        app_label = "salesauthz_web_tests"
        db_table = "sz_web_django_customer"

    def __str__(self) -> str:
        return self.name

    def salesauthz_record(self) -> Record:
        return Record("customer", owner=self.owner, department=self.department, id=str(self.pk))
