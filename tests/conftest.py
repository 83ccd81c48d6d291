"""Shared fixtures, in tiers (STYLE.md): tiny corpora written in the test; a real
small index built once per session; the real small models loaded once per session.

Each area keeps its session fixtures in ``tests/fixtures/<area>.py``.
"""

import os

# Tests share two cores with subprocesses they start; one torch thread per
# process avoids the oversubscription measured in quco.models.apply_torch_threads.
os.environ.setdefault("QUCO_TORCH_THREADS", "1")

pytest_plugins = [
    "tests.fixtures.index",
    "tests.fixtures.nlp",
    "tests.fixtures.lm",
    "tests.fixtures.retrieval",
    "tests.fixtures.ray",
    "tests.fixtures.upstream",
]
