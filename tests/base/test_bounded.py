"""Bounded tables drop their oldest entries in batches and stay within their limit."""

from __future__ import annotations

from otel_overspend.base.bounded import make_room


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
