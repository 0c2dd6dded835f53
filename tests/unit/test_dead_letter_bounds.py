"""Dead letters: their reason codes, and the table bounded by count and by age."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import ContentDisallowed as KombuContentDisallowed
from kombu.exceptions import DecodeError

from djtasks import App, conf, protocol
from djtasks.exceptions import (
    ContentDisallowed,
    InvalidEta,
    MessageTooLarge,
    NotRegistered,
    ProtocolError,
)
from djtasks.models import DeadLetter
from djtasks.worker.housekeeping import expire_dead_letters
from djtasks.worker.rejected import reason_code_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("error", "code"), [
    (DecodeError("bad json"), "decode_error"),
    (RecursionError("too deep"), "decode_error"),
    (ContentDisallowed("pickle"), "content_disallowed"),
    (KombuContentDisallowed("pickle"), "content_disallowed"),
    (NotRegistered("no.such"), "not_registered"),
    (ProtocolError("no id"), "invalid_envelope"),
    (InvalidEta("eta"), "invalid_eta"),
    (MessageTooLarge("big"), "too_large"),
    (RuntimeError("other"), "unexpected"),
])
def test_each_rejection_has_its_reason_code(error, code):
    assert reason_code_of(error) == code
    assert code in {value for value, _label in DeadLetter._meta.get_field("reason_code").choices}


def keep(n: int, keep_at_most: int | None) -> list[DeadLetter]:
    return [DeadLetter.objects.keep_unreadable(f"message {i}", "rejected", reason_code="decode_error",
                                               keep_at_most=keep_at_most) for i in range(n)]


def test_each_new_dead_letter_keeps_the_table_to_its_newest_rows():
    kept = keep(25, keep_at_most=10)
    assert list(DeadLetter.objects.order_by("pk").values_list("message", flat=True)) == [
        f"message {i}" for i in range(15, 25)]
    assert DeadLetter.objects.filter(pk=kept[-1].pk).exists()


def test_no_count_limit_keeps_them_all():
    keep(25, keep_at_most=None)
    assert DeadLetter.objects.count() == 25


def test_the_daily_cleanup_deletes_dead_letters_past_their_age():
    old, new = keep(2, keep_at_most=None)
    now = timezone.now()
    DeadLetter.objects.filter(pk=old.pk).update(date_created=now - timedelta(days=31))
    assert expire_dead_letters(now, 30 * 86400.0) == 1
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [new.pk]
    assert expire_dead_letters(now - timedelta(days=400), None) == 0


def test_size_is_checked_in_bytes_against_the_limit():
    protocol.check_size(b"x" * 10, 10)
    protocol.check_size(b"x" * 10**7, None)
    with pytest.raises(MessageTooLarge, match="the body is 11 bytes, over task_max_message_size 10"):
        protocol.check_size(b"x" * 11, 10)


def test_the_producer_refuses_a_body_over_the_limit_before_sending_it():
    app = App(conf.load({"broker_url": "memory://", "task_max_message_size": 1000}, {}))
    try:
        with pytest.raises(MessageTooLarge, match=r"^a\.task\[.*\] is not sent: the body is "
                                                  r"\d,\d{3} bytes, over task_max_message_size 1,000$"):
            app.send_task("a.task", args=("x" * 2000,))
        app.send_task("a.task", args=("x" * 100,))  # within the limit: sent
    finally:
        app.close()
