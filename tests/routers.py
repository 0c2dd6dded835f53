"""Keep Django's own apps (auth, admin, sessions, contenttypes) on the default database.

Flushing two databases between transactional tests otherwise recreates permissions on
`postgres` from a ContentType cache filled on `default`, and fails on foreign keys.
"""

import os

DJANGO_APPS = frozenset({"auth", "admin", "contenttypes", "sessions", "messages"})


class DjangoAppsOnDefault:
    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label in DJANGO_APPS:
            return db == "default"
        return None


class DjtasksModelsOn:
    """Route djtasks' own queries (beat's periodic tasks and lease) to DJTASKS_TESTS_MODELS_DB.

    The transport and the result backend name their alias explicitly; this decides where
    beat keeps its schedule, so that beat tests run on SQLite and on PostgreSQL.
    """

    def _alias(self, model):
        if model._meta.app_label == "djtasks":
            return os.environ.get("DJTASKS_TESTS_MODELS_DB") or None
        return None

    def db_for_read(self, model, **hints):
        return self._alias(model)

    def db_for_write(self, model, **hints):
        return self._alias(model)
