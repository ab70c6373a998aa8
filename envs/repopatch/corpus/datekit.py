"""Corpus repo ``datekit``: intervals and calendar arithmetic (fixed code, hidden tests, injected bugs)."""

NAME = "datekit"

FILES = {
    "datekit/__init__.py": "",
    "datekit/calendar.py": '''\
DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year, month):
    if month == 2 and is_leap(year):
        return 29
    return DAYS[month - 1]


def day_of_year(year, month, day):
    return sum(days_in_month(year, m) for m in range(1, month)) + day


def add_months(year, month, n):
    total = year * 12 + (month - 1) + n
    return total // 12, total % 12 + 1
''',
    "datekit/intervals.py": '''\
def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def merge(intervals):
    out = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def total_length(intervals):
    return sum(end - start for start, end in merge(intervals))


def parse_hhmm(text):
    hours, minutes = text.split(":")
    h, m = int(hours), int(minutes)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"bad time {text!r}")
    return h * 60 + m
''',
    "tests/test_basic.py": '''\
from datekit.calendar import days_in_month
from datekit.intervals import overlaps


def test_january():
    assert days_in_month(2023, 1) == 31


def test_overlap_simple():
    assert overlaps((1, 5), (3, 8))
''',
}

HIDDEN = {
    "tests/test_datekit_hidden.py": '''\
import pytest
from datekit.calendar import add_months, day_of_year, days_in_month, is_leap
from datekit.intervals import merge, overlaps, parse_hhmm, total_length


def test_leap_years():
    assert [is_leap(y) for y in (1900, 2000, 2024, 2023)] == [False, True, True, False]


def test_february():
    assert (days_in_month(2024, 2), days_in_month(2023, 2)) == (29, 28)


def test_december():
    assert days_in_month(2023, 12) == 31


def test_day_of_year():
    assert (day_of_year(2023, 1, 1), day_of_year(2024, 3, 1)) == (1, 61)


def test_add_months_wrap():
    assert add_months(2023, 11, 3) == (2024, 2)


def test_add_months_december():
    assert add_months(2023, 1, 11) == (2023, 12)


def test_touching_do_not_overlap():
    assert not overlaps((1, 3), (3, 5))


def test_merge_touching():
    assert merge([(5, 7), (1, 3), (3, 4)]) == [(1, 4), (5, 7)]


def test_merge_nested():
    assert merge([(1, 10), (2, 3)]) == [(1, 10)]


def test_total_length():
    assert total_length([(0, 2), (1, 3), (10, 11)]) == 4


def test_parse_hhmm():
    assert parse_hhmm("09:30") == 570


def test_parse_hhmm_bounds():
    with pytest.raises(ValueError):
        parse_hhmm("24:00")
''',
}

BUGS = [
    ("leap-century", "datekit/calendar.py", "is_leap", '(year % 100 != 0 or year % 400 == 0)', '(year % 100 != 0)',
     "is_leap says the year 2000 is not a leap year (the 400-year rule is missing)."),
    ("leap-feb", "datekit/calendar.py", "days_in_month", 'if month == 2 and is_leap(year):', 'if month == 2:',
     "days_in_month returns 29 for February in every year, leap or not."),
    ("month-index", "datekit/calendar.py", "days_in_month", 'return DAYS[month - 1]', 'return DAYS[month % 12]',
     "days_in_month gives the length of the wrong month for most months."),
    ("doy-range", "datekit/calendar.py", "day_of_year", 'for m in range(1, month))', 'for m in range(1, month + 1))',
     "day_of_year counts the whole current month before adding the day, so January 1st is not day 1."),
    ("add-months", "datekit/calendar.py", "add_months", 'return total // 12, total % 12 + 1', 'return total // 12, total % 12',
     "add_months returns month numbers from 0 to 11 instead of 1 to 12."),
    ("overlap-touch", "datekit/intervals.py", "overlaps", 'return a[0] < b[1] and b[0] < a[1]',
     'return a[0] <= b[1] and b[0] <= a[1]',
     "overlaps reports half-open intervals that only touch at an end point (like (1, 3) and (3, 5)) as overlapping."),
    ("merge-max", "datekit/intervals.py", "merge", 'out[-1] = (out[-1][0], max(out[-1][1], end))',
     'out[-1] = (out[-1][0], end)',
     "merge shrinks an interval when a later interval is nested inside it."),
    ("merge-touch", "datekit/intervals.py", "merge", 'if out and start <= out[-1][1]:', 'if out and start < out[-1][1]:',
     "merge does not join intervals that touch at an end point."),
    ("hhmm-bounds", "datekit/intervals.py", "parse_hhmm", '0 <= h < 24', '0 <= h <= 24',
     "parse_hhmm accepts the invalid time 24:00."),
]
