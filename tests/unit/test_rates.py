"""Rate parsing and the token bucket, with a fake clock."""

from __future__ import annotations

import pytest

from djtasks.utils.rates import TokenBucket, parse_rate


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("value", "per_second"), [
    ("10/s", 10.0), ("100/m", 100 / 60), ("5/h", 5 / 3600), ("6/m", 0.1), ("2.5/s", 2.5),
    ("10", 10.0), (10, 10.0), (0.5, 0.5), (" 3 / min ", 3 / 60), ("1/hour", 1 / 3600),
    ("7/M", 7 / 60),
])
def test_parse_rate(value, per_second):
    assert parse_rate(value) == pytest.approx(per_second)


@pytest.mark.parametrize("value", [None, "", 0, "0", "0/m"])
def test_no_rate_means_no_limit(value):
    assert parse_rate(value) is None


@pytest.mark.parametrize("value", ["10/x", "ten/m", "10/", "/m", "10/m/s", "-1/s", -3, True, [10],
                                   "10 per m"])
def test_a_bad_rate_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="rate_limit") as error:
        parse_rate(value)
    assert repr(value) in str(error.value)


def test_a_bucket_starts_full_and_refills_at_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(0.1, clock=clock)  # 6/m
    assert bucket.take()
    assert not bucket.take()
    assert bucket.wait_time() == pytest.approx(10.0)
    clock.now += 4
    assert not bucket.take()
    assert bucket.wait_time() == pytest.approx(6.0)
    clock.now += 6
    assert bucket.wait_time() == 0
    assert bucket.take()
    assert not bucket.take()


def test_a_bucket_saves_no_more_than_its_capacity():
    clock = FakeClock()
    bucket = TokenBucket(1.0, capacity=2, clock=clock)
    clock.now += 3600
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_sleeping_the_wait_time_is_always_enough():
    clock = FakeClock()
    bucket = TokenBucket(3.0, clock=clock)
    bucket.take()
    for _ in range(1000):
        clock.now += bucket.wait_time()
        assert bucket.take()


def test_a_bucket_needs_a_positive_rate():
    with pytest.raises(ValueError, match="positive rate, got 0"):
        TokenBucket(0)
