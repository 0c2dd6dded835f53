"""Helpers with Celery's module names that users import (pure layer): ``djtasks.utils.log``."""
