"""RoutingRule: a route for task names, edited live in the admin or the ORM (storage layer).

Every process reads the enabled rules at most every ``routing_rules_refresh`` seconds
(``djtasks.backends.routing_rules``), so an edit moves the next matching task without a
restart. Validation here is what the admin's form shows, field by field.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from djtasks.utils.broker_names import name_problem
from djtasks.utils.route_rules import RULE_ROUTE_KEYS, RouteRule, compile_pattern


class RoutingRuleQuerySet(models.QuerySet["RoutingRule"]):
    def enabled(self) -> RoutingRuleQuerySet:
        """The rules that route, in the order they are tried."""
        return self.filter(enabled=True).order_by("order", "name")


# mypy cannot use the class from_queryset() builds as a base; django-stubs' plugin types it.
class RoutingRuleManager(models.Manager.from_queryset(RoutingRuleQuerySet)):  # type: ignore[misc]
    def get_by_natural_key(self, name: str) -> RoutingRule:
        return self.get(name=name)


class RoutingRule(models.Model):
    """Send the tasks whose name matches ``pattern`` to this route."""

    class Match(models.TextChoices):
        EXACT = "exact", _("exact name")
        GLOB = "glob", _("glob (* and ?)")
        REGEX = "regex", _("regular expression")

    class ExchangeType(models.TextChoices):
        DIRECT = "direct", "direct"
        TOPIC = "topic", "topic"
        FANOUT = "fanout", "fanout"
        HEADERS = "headers", "headers"

    name = models.CharField(_("name"), max_length=200, unique=True)
    pattern = models.CharField(_("pattern"), max_length=255,
                               help_text=_("matched against the task name, e.g. reports.tasks.*"))
    match = models.CharField(_("match"), max_length=8, choices=Match.choices, default=Match.GLOB)
    order = models.IntegerField(_("order"), default=0, help_text=_("lower is tried first; ties by name"))
    enabled = models.BooleanField(_("enabled"), default=True)
    description = models.TextField(_("description"), blank=True)
    queue = models.CharField(_("queue"), max_length=255, blank=True)
    exchange = models.CharField(_("exchange"), max_length=255, blank=True)
    exchange_type = models.CharField(_("exchange type"), max_length=8, blank=True,
                                     choices=ExchangeType.choices)
    routing_key = models.CharField(_("routing key"), max_length=255, blank=True)
    priority = models.PositiveSmallIntegerField(
        _("priority"), null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(9)],
        help_text=_("0-9; empty: the task's or the default"),
    )
    date_changed = models.DateTimeField(_("changed"), auto_now=True)

    objects = RoutingRuleManager()

    class Meta:
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")
        ordering = ("order", "name")
        indexes = [models.Index(fields=["enabled", "order", "name"], name="djtasks_rule_enabled_idx")]

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            compile_pattern(self.pattern, self.match)
        except re.error as exc:
            errors["pattern"] = f"expected a regular expression, got {self.pattern!r}: {exc}"
        except ValueError as exc:
            errors["match"] = str(exc)
        for field, what in (("queue", "queue"), ("exchange", "exchange"), ("routing_key", "routing key")):
            problem = getattr(self, field) and name_problem(getattr(self, field), what)
            if problem:
                errors[field] = problem
        if not any(getattr(self, key) not in ("", None) for key in RULE_ROUTE_KEYS):
            errors.setdefault("queue", "expected a route: set a queue, exchange, routing key or priority")
        if errors:
            raise ValidationError(errors)

    def as_rule(self) -> RouteRule:
        """Return the rule as the value the router matches with."""
        route = {key: getattr(self, key) for key in RULE_ROUTE_KEYS
                 if getattr(self, key) not in ("", None)}
        return RouteRule(name=self.name, pattern=self.pattern, match=self.match, order=self.order,
                         route=route)
