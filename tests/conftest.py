"""Shared fixtures, in tiers (STYLE.md): tiny corpora written in the test; a real
small index built once per session; the real small models loaded once per session.

Each area keeps its session fixtures in ``tests/fixtures/<area>.py``.
"""

pytest_plugins = [
    "tests.fixtures.index",
    "tests.fixtures.nlp",
    "tests.fixtures.lm",
    "tests.fixtures.retrieval",
]
