"""Bounded tables drop their oldest entries in batches and stay within their limit."""

from __future__ import annotations

import pytest

from otel_overspend.base.bounded import Recent, make_room


def test_nothing_goes_below_the_limit() -> None:
    table = {i: i for i in range(10)}
    assert make_room(table, 11) == 0
    assert len(table) == 10


def test_a_full_table_drops_its_oldest_eighth() -> None:
    table = {i: str(i) for i in range(80)}
    assert make_room(table, 80) == 10  # 80 // 8
    assert list(table) == list(range(10, 80))  # the oldest went, order kept


def test_a_small_table_drops_at_least_one() -> None:
    table = {"a": 1, "b": 2}
    assert make_room(table, 2) == 1
    assert table == {"b": 2}


def test_many_inserts_stay_bounded() -> None:
    table: dict[int, None] = {}
    dropped = 0
    for i in range(100_000):
        dropped += make_room(table, 1_000)
        table[i] = None
    assert len(table) <= 1_000
    assert dropped + len(table) == 100_000
    assert max(table) == 99_999


def test_recent_keeps_at_least_the_last_size_keys_and_at_most_twice_as_many() -> None:
    recent: Recent[int, str] = Recent(4)
    for key in range(10):
        recent.put(key, str(key))
        assert len(recent) <= 8
    # Put 0..9 with size 4: the generations turn at 4 and at 8, so 4..7 are old, 8 and 9
    # young, and 0..3 are gone.
    assert len(recent) == 6
    assert (recent.get(3), recent.get(4), recent.get(7), recent.get(9)) == (None, "4", "7", "9")


def test_a_key_read_from_the_old_generation_survives_the_next_rotation() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    recent.put("c", 3)  # rotation: a, b old; c young
    assert recent.get("a") == 1  # moves a into the young generation
    recent.put("d", 4)  # young is full (c, a): rotation, b is dropped
    assert recent.get("b") is None
    assert (recent.get("a"), recent.get("c"), recent.get("d")) == (1, 3, 4)


def test_putting_an_existing_key_again_does_not_rotate() -> None:
    recent: Recent[str, int] = Recent(1)
    recent.put("a", 1)
    recent.put("a", 2)
    assert recent.get("a") == 2
    assert len(recent) == 1


def test_recent_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Recent(0)
