"""Lease: leadership among any number of beats, held in one database row (processes layer).

Only the holder sends periodic tasks. It renews the lease on every loop; a beat that
stops renewing (kill -9, a lost machine) is replaced by another once ``expires_at`` is
past. The run claim in the store is a second guard: even two beats that both believe they
lead can never send one run twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from djtasks.models import BeatLease

Clock = Callable[[], datetime]


class Lease:
    """The ``name`` lease, as seen by ``holder``."""

    def __init__(self, holder: str, timeout: float, name: str = "beat",
                 clock: Clock = timezone.now) -> None:
        if timeout <= 0:
            raise ValueError(f"beat_lease_timeout: expected a positive number, got {timeout!r}")
        self.holder = holder
        self.timeout = timeout
        self.name = name
        self.clock = clock
        self.held = False

    def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if ours; return whether held."""
        now = self.clock()
        until = now + timedelta(seconds=self.timeout)
        rows = BeatLease.objects.filter(name=self.name)
        free = Q(holder="") | Q(expires_at__lte=now)  # released, or its holder stopped renewing
        taken = rows.filter(free | Q(holder=self.holder)).update(
            holder=self.holder, expires_at=until)
        if not taken and not rows.exists():
            try:
                with transaction.atomic():
                    BeatLease.objects.create(name=self.name, holder=self.holder, expires_at=until)
                taken = 1
            except IntegrityError:  # another beat created it first
                taken = 0
        self.held = bool(taken)
        return self.held

    def release(self) -> None:
        """Give the lease up now, so that another beat need not wait for it to expire."""
        if self.held:
            BeatLease.objects.filter(name=self.name, holder=self.holder).update(
                holder="", expires_at=self.clock())
            self.held = False
