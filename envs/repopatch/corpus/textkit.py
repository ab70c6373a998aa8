"""Corpus repo ``textkit``: small string utilities (fixed code, hidden tests, injected bugs)."""

NAME = "textkit"

FILES = {
    "textkit/__init__.py": "from textkit.case import camel_to_snake, snake_to_camel, title_words\n"
                           "from textkit.wrap import truncate, wrap_words\n"
                           "from textkit.count import word_counts, most_common, is_palindrome\n",
    "textkit/case.py": '''\
def camel_to_snake(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def snake_to_camel(name, upper_first=False):
    parts = [p for p in name.split("_") if p]
    if not parts:
        return ""
    head = parts[0].capitalize() if upper_first else parts[0].lower()
    return head + "".join(p.capitalize() for p in parts[1:])


def title_words(text, small=("a", "an", "the", "of")):
    words = text.split()
    out = []
    for i, w in enumerate(words):
        if i > 0 and w.lower() in small:
            out.append(w.lower())
        else:
            out.append(w[:1].upper() + w[1:].lower())
    return " ".join(out)
''',
    "textkit/wrap.py": '''\
def truncate(text, width, suffix="..."):
    if len(text) <= width:
        return text
    if width <= len(suffix):
        return suffix[:width]
    return text[: width - len(suffix)] + suffix


def wrap_words(text, width):
    lines, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur:
        lines.append(cur)
    return lines
''',
    "textkit/count.py": '''\
def word_counts(text):
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,!?;:")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts


def most_common(text, n=1):
    counts = word_counts(text)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:n]]


def is_palindrome(text):
    chars = [c.lower() for c in text if c.isalnum()]
    return chars == chars[::-1]
''',
    "tests/test_basic.py": '''\
from textkit import camel_to_snake, truncate, word_counts


def test_camel_simple():
    assert camel_to_snake("fooBar") == "foo_bar"


def test_truncate_short():
    assert truncate("abc", 10) == "abc"


def test_counts_basic():
    assert word_counts("a b a") == {"a": 2, "b": 1}
''',
}

HIDDEN = {
    "tests/test_textkit_hidden.py": '''\
from textkit import (camel_to_snake, is_palindrome, most_common, snake_to_camel, title_words, truncate,
                     word_counts, wrap_words)


def test_camel_leading_upper():
    assert camel_to_snake("FooBar") == "foo_bar"


def test_camel_many():
    assert camel_to_snake("parseHTTPResponse") == "parse_h_t_t_p_response"


def test_snake_lower():
    assert snake_to_camel("foo_bar_baz") == "fooBarBaz"


def test_snake_upper_first():
    assert snake_to_camel("foo_bar", upper_first=True) == "FooBar"


def test_snake_empty():
    assert snake_to_camel("__") == ""


def test_title_small_words():
    assert title_words("the lord OF the rings") == "The Lord of the Rings"


def test_title_first_small():
    assert title_words("a tale") == "A Tale"


def test_truncate_exact():
    assert truncate("abcdef", 6) == "abcdef"


def test_truncate_long():
    assert truncate("abcdefgh", 6) == "abc..."


def test_truncate_tiny_width():
    assert truncate("abcdefgh", 2) == ".."


def test_wrap_basic():
    assert wrap_words("aa bb cc dd", 5) == ["aa bb", "cc dd"]


def test_wrap_exact_width():
    assert wrap_words("abc de", 6) == ["abc de"]


def test_wrap_long_word():
    assert wrap_words("abcdefgh ij", 4) == ["abcdefgh", "ij"]


def test_counts_punctuation():
    assert word_counts("Hi, hi! HI.") == {"hi": 3}


def test_most_common_tie():
    assert most_common("b a b a c", 2) == ["a", "b"]


def test_most_common_default():
    assert most_common("x y y") == ["y"]


def test_palindrome_phrase():
    assert is_palindrome("A man, a plan, a canal: Panama")


def test_not_palindrome():
    assert not is_palindrome("abca")
''',
}

# (task id, file, function, fixed text, buggy text, problem statement)
BUGS = [
    ("case-leading-upper", "textkit/case.py", "camel_to_snake", 'if ch.isupper() and i > 0:', 'if ch.isupper():',
     "camel_to_snake puts a stray leading underscore in front of names that start with a capital letter "
     "(e.g. a class name like `FooBar`)."),
    ("case-upper-first", "textkit/case.py", "snake_to_camel",
     'head = parts[0].capitalize() if upper_first else parts[0].lower()',
     'head = parts[0].lower() if upper_first else parts[0].capitalize()',
     "snake_to_camel gets the case of the first word backwards: with upper_first=True the first word stays "
     "lower-case, and by default it is capitalised."),
    ("case-empty", "textkit/case.py", "snake_to_camel", '    if not parts:\n        return ""\n', '',
     "snake_to_camel raises IndexError for names made only of underscores instead of returning an empty string."),
    ("title-small", "textkit/case.py", "title_words", 'if i > 0 and w.lower() in small:', 'if w.lower() in small:',
     "title_words lower-cases a small word (a, an, the, of) even when it is the first word of the title."),
    ("truncate-boundary", "textkit/wrap.py", "truncate", 'if len(text) <= width:', 'if len(text) < width:',
     "truncate shortens text whose length is exactly the requested width, although it already fits."),
    ("truncate-slice", "textkit/wrap.py", "truncate", 'return text[: width - len(suffix)] + suffix',
     'return text[: width] + suffix',
     "truncate returns strings longer than the requested width: the suffix is not counted in the width."),
    ("wrap-width", "textkit/wrap.py", "wrap_words", 'len(cur) + 1 + len(word) > width',
     'len(cur) + 1 + len(word) >= width',
     "wrap_words breaks a line too early when the words fit exactly in the width."),
    ("counts-strip", "textkit/count.py", "word_counts", 'word = word.strip(".,!?;:")', 'word = word.strip(".")',
     "word_counts counts 'hi,' and 'hi!' as words different from 'hi': punctuation other than a full stop "
     "sticks to the words."),
    ("most-common-tie", "textkit/count.py", "most_common", 'key=lambda kv: (-kv[1], kv[0])', 'key=lambda kv: -kv[1]',
     "most_common breaks ties between equally frequent words by first appearance instead of alphabetically."),
]
