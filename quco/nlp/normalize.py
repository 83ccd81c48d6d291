"""Lexical rules shared by entity extraction: normalization and matching.

No spaCy here: these functions work on plain strings and :class:`~quco.types.Entity`
objects, so they are cheap and testable without a model.

Normalization (:func:`normalize_entity_text`) turns a surface span into the form
a corpus lookup needs: whitespace collapsed; quotes removed; a leading
"the"/"The" removed (a leading question word is kept: "When Harry Met Sally" is
a title; an entity that is only a question word is dropped by the extractor); a possessive "'s"/"’s" (or a
bare trailing apostrophe, "the Beatles'") removed; trailing punctuation removed
except the final period of an abbreviation ("U.S.", "D.C.", "Inc.").

Matching (:func:`same_entity`) is lexical and case-folded: two entities match
when their keys are equal, when the content words of one are a subset of the
other's ("Obama" / "Barack Obama", "Paris" / "Paris, France"), or when their
content words overlap by more than half (Jaccard > 0.5). Aliases and
abbreviations ("NYC" / "New York City", "JFK" / "John F. Kennedy") do not match;
nor do different spellings or transliterations.
"""

from __future__ import annotations

import re

#: Words that never count as an entity on their own (case-folded).
QUESTION_WORDS = frozenset(
    {"who", "whom", "whose", "what", "which", "when", "where", "why", "how", "whoever", "whatever", "whichever"}
)  # fmt: skip

#: Function words ignored when comparing entities lexically.
_STOP = frozenset({"the", "a", "an", "of", "and", "in", "at", "on", "for", "to", "s", "de", "la", "le", "von", "van"})  # fmt: skip

#: Abbreviations whose final period is kept.
_ABBREV = frozenset(
    {"inc", "jr", "sr", "co", "corp", "ltd", "bros", "st", "mt", "dr", "mr", "mrs", "ms", "prof", "no", "vs", "plc"}
)  # fmt: skip

_WS = re.compile(r"\s+")
_DQUOTES = re.compile(r"[\"“”„«»`]")
_SQUOTE_EDGE = "'‘’"
_LEADING = re.compile(r"^the\s+", re.IGNORECASE)
_POSSESSIVE = re.compile(r"(?:['’]s|s['’])$")
_TRAIL = ".,;:!?)]}-–—/\\'‘’ "
_LEAD = "([{-–—/\\'‘’ "
_WORD = re.compile(r"\w+(?:[.'’]\w+)*")
_YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b")


def _strip_trailing(text: str) -> str:
    while text and text[-1] in _TRAIL:
        if text[-1] == ".":
            last = text[:-1].rsplit(" ", 1)[-1]
            # keep the period of "U.S.", "D.C.", "J.", "Inc."
            if "." in last or (len(last) == 1 and last.isupper()) or last.casefold() in _ABBREV:
                break
        text = text[:-1]
    return text


def normalize_entity_text(surface: str) -> str:
    """The normalized lookup form of an entity span (may be ``""``).

    Args:
        surface: the span as it appears in the text.

    Returns:
        The span with whitespace collapsed, quotes, a leading "the", a
        possessive and trailing punctuation removed.
    """
    text = _WS.sub(" ", _DQUOTES.sub("", surface)).strip()
    for _ in range(4):  # a few rounds: 'the "The Simpsons\'s' needs several
        before = text
        text = text.lstrip(_LEAD)
        text = _LEADING.sub("", text)
        # a possessive may hide behind trailing punctuation: "Obama's,"
        text = _strip_trailing(text)
        text = _POSSESSIVE.sub(lambda m: "s" if m.group(0)[0] == "s" else "", text)
        text = _strip_trailing(text).strip()
        if text == before:
            break
    return text


def year_of(text: str) -> str:
    """The first four-digit year (1000–2099) or decade ("1990s") in a date expression, or ``""``."""
    m = _YEAR.search(text)
    return m.group(0) if m else ""


def content_words(key: str) -> frozenset[str]:
    """Case-folded word tokens of an entity key without function words."""
    words = [w.replace("’", "'") for w in _WORD.findall(key.casefold())]
    content = frozenset(w for w in words if w not in _STOP)
    return content or frozenset(words)


def same_entity(a: str, b: str) -> bool:
    """Whether two entity texts name the same thing, lexically.

    Args:
        a: an entity text (normalized or not; compared case-folded).
        b: another.

    Returns:
        True when the keys are equal, when one's content words are a subset of
        the other's, or when they overlap with Jaccard > 0.5.
    """
    ka, kb = a.casefold(), b.casefold()
    if ka == kb:
        return True
    wa, wb = content_words(ka), content_words(kb)
    if not wa or not wb:
        return False
    if wa <= wb or wb <= wa:
        return True
    return len(wa & wb) / len(wa | wb) > 0.5
