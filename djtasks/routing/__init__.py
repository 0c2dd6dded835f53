"""Routing: the call's options, RoutingRule rows, task_routes, the task, the default (client layer)."""

from djtasks.routing.router import Explanation, Route, Router
from djtasks.routing.rules_cache import RulesCache
from djtasks.routing.settings_routes import PatternRouter, compile_routes, expand

__all__ = ["Explanation", "PatternRouter", "Route", "Router", "RulesCache", "compile_routes", "expand"]
