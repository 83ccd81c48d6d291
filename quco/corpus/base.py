"""The CorpusStats contract shared by every corpus backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

from quco.types import Count

CoocMode = Literal["doc", "window"]

#: Paper default: a head/tail pair must co-occur within this many tokens.
DEFAULT_WINDOW = 1000


class CorpusStats(ABC):
    """Counts of terms and term pairs in a corpus.

    Subclasses implement :meth:`count` and :meth:`cooccur`; the batched forms
    loop over them unless a backend can do better.

    Term matching (all backends): a term matches its word-initial form
    (``" Paris"``, as after a space) and its document/sentence-initial form
    (``"Paris"``, as at the start of a document or after punctuation with no
    space). With ``casefold=True`` the lower-case and capitalised variants of
    the term are counted too. Counts of the variants are summed; they never
    overlap because they are distinct token sequences at distinct positions.
    """

    @abstractmethod
    def count(self, term: str) -> Count:
        """Occurrences of ``term`` in the corpus."""

    @abstractmethod
    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        """Co-occurrence of ``a`` and ``b``.

        Args:
            a: first term.
            b: second term.
            window: in ``"window"`` mode, the largest distance in tokens between
                the starts of an occurrence of ``a`` and one of ``b`` in the same
                document for the pair to count.
            mode: ``"doc"`` counts documents containing both terms;
                ``"window"`` counts occurrence pairs (one of ``a``, one of ``b``)
                in the same document within ``window`` tokens.
        """

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        """Batched :meth:`count`."""
        return [self.count(t) for t in terms]

    def cooccur_many(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
    ) -> list[Count]:
        """Batched :meth:`cooccur`."""
        return [self.cooccur(a, b, window=window, mode=mode) for a, b in pairs]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections."""

    def __enter__(self) -> CorpusStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
