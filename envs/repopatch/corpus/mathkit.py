"""Corpus repo ``mathkit``: statistics and number helpers (fixed code, hidden tests, injected bugs)."""

NAME = "mathkit"

FILES = {
    "mathkit/__init__.py": "",
    "mathkit/stats.py": '''\
def mean(xs):
    if not xs:
        raise ValueError("mean of empty data")
    return sum(xs) / len(xs)


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("median of empty data")
    mid = n // 2
    if n % 2 == 1:
        return s[mid]
    return (s[mid - 1] + s[mid]) / 2


def variance(xs, sample=True):
    m = mean(xs)
    d = len(xs) - 1 if sample else len(xs)
    return sum((x - m) ** 2 for x in xs) / d


def clamp(x, lo, hi):
    return max(lo, min(x, hi))
''',
    "mathkit/numbers.py": '''\
def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def gcd(a, b):
    while b:
        a, b = b, a % b
    return abs(a)


def digits(n, base=10):
    if n == 0:
        return [0]
    out = []
    n = abs(n)
    while n > 0:
        out.append(n % base)
        n //= base
    return out[::-1]


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
''',
    "tests/test_basic.py": '''\
from mathkit.numbers import gcd
from mathkit.stats import mean


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_gcd():
    assert gcd(12, 18) == 6
''',
}

HIDDEN = {
    "tests/test_mathkit_hidden.py": '''\
import pytest
from mathkit.numbers import digits, fib, gcd, is_prime
from mathkit.stats import clamp, mean, median, variance


def test_mean_empty():
    with pytest.raises(ValueError):
        mean([])


def test_median_odd():
    assert median([3, 1, 2]) == 2


def test_median_even():
    assert median([4, 1, 3, 2]) == 2.5


def test_variance_sample():
    assert variance([1, 2, 3, 4]) == pytest.approx(1.6666666)


def test_variance_population():
    assert variance([1, 2, 3, 4], sample=False) == pytest.approx(1.25)


def test_clamp():
    assert (clamp(5, 0, 3), clamp(-1, 0, 3), clamp(2, 0, 3)) == (3, 0, 2)


def test_primes():
    assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]


def test_prime_square():
    assert not is_prime(49)


def test_gcd_negative():
    assert gcd(4, -6) == 2


def test_digits():
    assert digits(1203) == [1, 2, 0, 3]


def test_digits_base2():
    assert digits(6, base=2) == [1, 1, 0]


def test_fib():
    assert [fib(i) for i in range(8)] == [0, 1, 1, 2, 3, 5, 8, 13]
''',
}

BUGS = [
    ("median-even", "mathkit/stats.py", "median", 'return (s[mid - 1] + s[mid]) / 2', 'return (s[mid] + s[mid + 1]) / 2',
     "median returns the wrong value (or raises IndexError) for data with an even number of values."),
    ("median-parity", "mathkit/stats.py", "median", 'if n % 2 == 1:', 'if n % 2 == 0:',
     "median gives wrong answers for both odd- and even-length data; the two cases seem swapped."),
    ("variance-ddof", "mathkit/stats.py", "variance", 'd = len(xs) - 1 if sample else len(xs)',
     'd = len(xs) if sample else len(xs) - 1',
     "variance mixes up sample and population variance: the sample=True/False results are exchanged."),
    ("clamp-order", "mathkit/stats.py", "clamp", 'return max(lo, min(x, hi))', 'return min(lo, max(x, hi))',
     "clamp does not keep values inside [lo, hi]; values inside the range come back changed."),
    ("prime-square", "mathkit/numbers.py", "is_prime", 'while i * i <= n:', 'while i * i < n:',
     "is_prime reports perfect squares of primes (like 49) as prime."),
    ("prime-small", "mathkit/numbers.py", "is_prime", 'if n < 2:', 'if n < 1:',
     "is_prime claims that 1 is a prime number."),
    ("digits-order", "mathkit/numbers.py", "digits", 'return out[::-1]', 'return out',
     "digits returns the digits of a number in reverse order (least significant first)."),
    ("fib-off-by-one", "mathkit/numbers.py", "fib", 'for _ in range(n):', 'for _ in range(n + 1):',
     "fib(n) returns the (n+1)-th Fibonacci number: fib(0) should be 0."),
    ("gcd-abs", "mathkit/numbers.py", "gcd", 'return abs(a)', 'return a',
     "gcd can return a negative result when an argument is negative."),
]
