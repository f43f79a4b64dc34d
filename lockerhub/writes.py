"""Small pieces the actions of every app share when they save a row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction


def save_unique(
    obj: models.Model,
    taken: models.QuerySet,
    refusal: Callable[[], ValidationError],
    *,
    update_fields: list[str] | None = None,
    **clean: Any,
) -> None:
    """Validate and save ``obj`` (only ``update_fields`` if given), refusing it when ``taken``
    (rows holding its unique value; ``obj`` itself excluded) exists or a concurrent save wins
    the race to the constraint.

    Uniqueness is checked here rather than by ``full_clean`` so the refusal can say, in words
    a person understands, what is taken. ``refusal`` is called only once ``obj`` is valid;
    ``clean`` goes to ``full_clean``.
    """
    obj.full_clean(validate_unique=False, **clean)
    if taken.exclude(pk=obj.pk).exists():
        raise refusal()
    try:
        with transaction.atomic():
            obj.save(update_fields=update_fields)
    except IntegrityError:
        raise refusal() from None
