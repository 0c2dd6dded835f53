"""The database column of a model field, for the statements written by hand (storage layer)."""

from __future__ import annotations

from django.core.exceptions import FieldError
from django.db.models import Field, Model


def column(model: type[Model], name: str) -> str:
    """Return the column of ``model``'s concrete field ``name``.

    Django types ``Field.column`` as optional (a reverse relation has none); every field
    a hand-written statement names is concrete, so a missing column is a programming error.
    """
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise FieldError(f"{model.__name__}.{name} has no database column")
    return field.column
