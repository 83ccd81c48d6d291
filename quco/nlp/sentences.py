"""A rule-based sentence splitter that needs no model.

The guard and the audit cut answers into sentences with it. Rules:

- a boundary follows ``.``, ``!`` or ``?`` (repeated, possibly followed by a
  closing quote or bracket) when whitespace and then an upper-case letter, a
  digit or an opening quote/bracket follow, or the text ends;
- a period glued to a capitalised word ("century.First", "Cossbysweater.Milhouse",
  as in passages joined without a space) is a boundary when a word of two or
  more letters ending in a lower-case letter precedes it (not an abbreviation);
- a line break is always a boundary;
- no boundary after a title or common abbreviation ("Mr.", "Dr.", "St.",
  "Inc.", "e.g.", "vs.", "No." before a number), after a single initial ("J. R. R. Tolkien"), or inside a
  number ("3.14"). After a dotted acronym ("U.S.", "D.C.") a boundary is made
  only when the next word is a common sentence opener ("It", "He", "The"...):
  "the U.S. Army" stays whole, "moved to the U.S. He" is split.

Limits: rules, not a model; a sentence that really ends with "Mr." or "e.g."
is not split, and a lower-case sentence start after ". " is not a boundary.
"""

from __future__ import annotations

import re

from quco.errors import BadInputError

_ABBREV = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "inc", "ltd", "co",
        "corp", "vol", "gen", "col", "lt", "sgt", "capt", "cmdr", "gov", "sen", "rep", "rev",
        "hon", "pres", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
        "fig", "approx", "dept", "univ", "ave", "blvd", "e.g", "i.e", "cf", "al", "ca",
    }
)  # fmt: skip
_NUMBER_ABBREV = frozenset({"no", "nos"})
_OPENERS = frozenset(
    {
        "it", "he", "she", "they", "we", "i", "you", "the", "this", "that", "these", "those", "there",
        "in", "on", "at", "its", "his", "her", "their", "a", "an", "but", "however", "after", "before",
        "then", "when", "while", "as", "since", "during", "today", "also",
    }
)  # fmt: skip
#: end punctuation, optional closers; then either whitespace or a glued capital
_END = re.compile(r"[.!?]+[\"'”’)\]]*")
_NEXT = re.compile(r"\s+([\"'“‘(\[]?)(\w+)")
_PREV_WORD = re.compile(r"([\w.'’-]*)$")


def _is_boundary(text: str, m: re.Match[str]) -> bool:
    end = m.end()
    punct = m.group(0)
    if end >= len(text):
        return True
    prev = _PREV_WORD.search(text, 0, m.start())
    prev_word = prev.group(1) if prev else ""
    nxt = _NEXT.match(text, end)
    if nxt is None:
        # glued: "century.First"
        return (
            punct[0] in ".!?"
            and text[end].isupper()
            and len(prev_word) >= 2
            and prev_word.isalpha()
            and prev_word[-1].islower()
            and prev_word.casefold() not in _ABBREV
        )
    word = nxt.group(2)
    if not (word[0].isupper() or word[0].isdigit() or nxt.group(1)):
        return False
    if punct[0] != "." or len(punct) > 1 and punct[1] in "!?":
        return True
    if len(punct) > 1 and punct[:3] == "...":
        return True
    low = prev_word.casefold().rstrip(".")
    if low in _NUMBER_ABBREV:
        return not word[0].isdigit()  # "No. 5" vs "No. The answer..."
    if low in _ABBREV:
        return False
    if len(prev_word) == 1 and prev_word.isalpha() and prev_word.isupper():
        return False  # an initial: "J. R. R. Tolkien"
    if "." in prev_word:  # dotted acronym: "U.S.", "D.C."
        return word.casefold() in _OPENERS
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``, stripped, none empty.

    Same rules as :func:`split_sentences`; ``text[a:b]`` for a span is the sentence.

    Raises:
        BadInputError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise BadInputError(f"split_sentences needs a str, got {type(text).__name__}")
    out: list[tuple[int, int]] = []

    def add(a: int, b: int) -> None:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece) - len(piece.rstrip())
        if piece.strip():
            out.append((a + lead, b - trail))

    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        start = 0
        for m in _END.finditer(body):
            if _is_boundary(body, m):
                add(offset + start, offset + m.end())
                start = m.end()
        add(offset + start, offset + len(body))
        offset += len(line)
    return out


def split_sentences(text: str) -> list[str]:
    """Cut a text into sentences with rules (no spaCy needed).

    Args:
        text: any text; empty or whitespace-only gives ``[]``.

    Returns:
        The sentences, stripped, in order, none empty.

    Raises:
        BadInputError: ``text`` is not a string.
    """
    return [text[a:b] for a, b in sentence_spans(text)]
