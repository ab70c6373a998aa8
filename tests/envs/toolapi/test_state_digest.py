"""The grader's database digest: the same rows in any order agree; any difference in a value, its
type, a row or a table does not (a policy that leaves the database almost right must not pass)."""

from __future__ import annotations

import sqlite3

import pytest

from rowgym.envs.toolapi.base import state_digest


def _db(rows, table="t", extra=None):
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE {table} (a, b)")
    db.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
    if extra:
        db.execute("CREATE TABLE u (x)")
        db.executemany("INSERT INTO u VALUES (?)", extra)
    return db


def _digest(db):
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    return state_digest(db, tables)


BASE = [(1, "x"), (2, None), (3, 2.5), (4, b"\x00\xff"), (5, 'q"\\ \u00e9 \U0001f600\n')]


def test_row_order_does_not_matter():
    assert _digest(_db(BASE)) == _digest(_db(list(reversed(BASE))))


@pytest.mark.parametrize("change", [
    [(1, "x "), *BASE[1:]],               # one character
    [(1, "1"), (2, None), *BASE[2:]],     # a string for another string
    [*BASE[:2], (3, 2.5000001), *BASE[3:]],  # a float
    [*BASE[:1], (2, 0), *BASE[2:]],       # NULL -> 0
    [*BASE[:1], (2, ""), *BASE[2:]],      # NULL -> ""
    [*BASE, (6, "y")],                    # one row more
    BASE[:-1],                            # one row fewer
    [*BASE, BASE[0]],                     # a duplicate row
    [*BASE[:3], (4, b"\x00\xfe"), BASE[4]],  # a blob's byte
])
def test_any_difference_changes_the_digest(change):
    assert _digest(_db(change)) != _digest(_db(BASE))


def test_types_stay_distinct():
    values = (1, 1.0, "1", b"1", "b'1'", '{"blob": "31"}', '{"blob":"31"}', None, "null", "")
    assert len({_digest(_db([(1, v)])) for v in values}) == len(values)


def test_rows_moved_between_tables_or_columns_differ():
    assert _digest(_db([(1, "x")], extra=[(2,)])) != _digest(_db([(1, "x")], extra=[(3,)]))
    assert _digest(_db([(1, 2)])) != _digest(_db([(2, 1)]))
    assert _digest(_db([(1, "x")], table="t")) != _digest(_db([(1, "x")], table="t2"))
