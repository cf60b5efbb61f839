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


class CustomerShare(models.Model):
    """A share of a customer (相关团队): with an account or a department, at a level."""

    customer: models.ForeignKey[Customer, Customer] = models.ForeignKey(
        Customer, on_delete=models.CASCADE, db_constraint=False, related_name="shares")
    customer_id: int
    account: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    department: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    level: models.CharField[str, str] = models.CharField(max_length=200)

    class Meta:
        app_label = "salesauthz_filter_tests"
        db_table = "sz_filter_django_customer_share"

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.level}:{self.account or self.department}"


class AttributedCustomer(models.Model):
    """A customer with record attributes in its own fields (the conditions differential)."""

    id: models.IntegerField[int, int] = models.IntegerField(primary_key=True)
    owner_name: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    dept: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    region_code: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    amount: models.FloatField[float | None, float | None] = models.FloatField(null=True)
    pool: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    customer_id: models.CharField[str | None, str | None] = models.CharField(max_length=200, null=True)
    score: models.FloatField[float | None, float | None] = models.FloatField(null=True)

    class Meta:
        app_label = "salesauthz_filter_tests"
        db_table = "sz_filter_django_attributed_customer"

    def __str__(self) -> str:
        return f"{self.id}/{self.owner_name}/{self.region_code}"
