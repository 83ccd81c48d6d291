"""What an audit runs with, as a value any process can build its auditor from.

The local engine builds one :class:`~quco.audit.records.Auditor` from an
:class:`AuditSpec` in the calling process; the Ray engine sends the spec to
its actors, and each builds its own (the extractor, the index, memory-mapped,
and the model are loaded once per actor). The spec holds locations and names,
never loaded objects, except the fitted ``combined`` scorer, a small
picklable object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quco.audit.records import Auditor, MemoExtractor
from quco.audit.verdicts import Judge, default_judge
from quco.corpus.base import DEFAULT_WINDOW, CorpusStats
from quco.risk.coverage import DEFAULT_ACTION, DEFAULT_FLOOR
from quco.risk.thresholds import ABSOLUTE_ENTITY, DEFAULT_COOC, DEFAULT_ENTITY, Thresholds, resolve

#: counts kept in memory by each auditor
CACHE_SIZE = 200_000


@dataclass(frozen=True)
class AuditSpec:
    """How to build an audit's :class:`~quco.audit.records.Auditor`.

    Attributes:
        index: the corpus: an index directory, a server URL, several server
            URLs or directories separated by commas (one corpus in shards), or
            a shard-map file (see :func:`quco.corpus.open_stats`). Paths should
            be absolute when the spec travels to other machines.
        remote_index: with one server URL, the index the server should use.
        model: the model that scores answer confidence (a packaged alias, HF
            id or path); ``None``: data side only.
        combined: the fitted scorer of the ``combined`` verdict, or ``None``.
        window: co-occurrence window in tokens.
        claims: the ``quco`` verdict checks each sentence's claims
            (``"triplets"``: triplets and tuples) or every entity pair (``"pairs"``).
        cache: a sqlite file that keeps corpus counts across runs (shared by
            every process that builds from this spec).
        tau_entity: the ``quco`` verdict's τ_entity (a count or a rate
            ``COUNT@TOKENS``, scaled to the index when the auditor is built).
        tau_cooc: its τ_cooc (a count or a rate).
        coverage_floor: below this share of known named entities an answer
            is ``out_of_coverage``.
        on_out_of_coverage: ``"rule"`` (default), ``"retrieve"``, ``"pass"`` or ``"confidence-only"``
            (:mod:`quco.audit.verdicts`).
        ngrams: also compute the answers' n-gram novelty (:mod:`quco.corpus.ngrams`).
    """

    index: str
    remote_index: str | None = None
    model: str | None = None
    combined: Any = None
    window: int = DEFAULT_WINDOW
    claims: str = "triplets"
    cache: str | None = None
    tau_entity: str = DEFAULT_ENTITY
    tau_cooc: str = DEFAULT_COOC
    coverage_floor: float = DEFAULT_FLOOR
    on_out_of_coverage: str = DEFAULT_ACTION
    ngrams: bool = False

    def thresholds(self, stats: CorpusStats | None = None) -> Thresholds:
        """The effective thresholds (rates scaled to ``stats``'s token count).

        Raises:
            BadInputError: a bad spec, or a rate for an index of unknown size.
        """
        return resolve(self.tau_entity, self.tau_cooc, stats=stats)

    def judge(self, thresholds: Thresholds | None = None) -> Judge:
        """The policies of this audit (``quco``; ``flare`` with a model; ``combined`` with a scorer)."""
        return default_judge(
            model=self.model is not None,
            combined=self.combined,
            claims=self.claims,
            thresholds=thresholds,
            coverage_floor=self.coverage_floor,
            on_out_of_coverage=self.on_out_of_coverage,
        )

    def open_stats(self) -> CorpusStats:
        """The corpus backend behind an in-memory (and, with ``cache``, on-disk) count cache."""
        from quco.corpus import open_stats
        from quco.corpus.cache import CachedStats

        kwargs: dict[str, Any] = {"index": self.remote_index} if self.remote_index else {}
        backend = open_stats(self.index, **kwargs)
        return CachedStats(backend, maxsize=CACHE_SIZE, path=self.cache)

    def build(self) -> tuple[Auditor, CorpusStats]:
        """A new auditor and the corpus backend it queries (close it when done).

        Loads the spaCy pipeline now, and the model when there is one.
        """
        from quco.analyze import Analyzer
        from quco.nlp.entities import EntityExtractor

        scorer = None
        if self.model is not None:
            from quco.lm.confidence import ConfidenceScorer

            scorer = ConfidenceScorer(self.model)
        extractor = EntityExtractor()
        extractor.nlp  # noqa: B018 - load the pipeline now, not inside the first batch
        stats = self.open_stats()
        try:
            memo = MemoExtractor(extractor)
            claim_ex = memo.claim_extractor() if self.claims == "triplets" else None
            analyzer = Analyzer(memo, stats, window=self.window, claim_extractor=claim_ex, ngrams=self.ngrams)
            return Auditor(analyzer, self.judge(self.thresholds(stats)), scorer=scorer), stats
        except BaseException:
            stats.close()
            raise

    def settings(self) -> dict[str, Any]:
        """The options that change the output (a resumed run must have the same ones)."""
        remote = self.index.startswith(("http://", "https://"))
        if remote:
            index_id = f"{self.index}#{self.remote_index or ''}"
        elif "," in self.index:
            index_id = ",".join(str(Path(p).resolve()) for p in self.index.split(","))
        else:
            index_id = str(Path(self.index).resolve())
        out: dict[str, Any] = {
            "index": index_id,
            "model": self.model,
            "window": self.window,
            "policies": list(self.judge().names),
            "claims": self.claims,
        }
        # recorded only when they differ from the defaults, so runs started before they existed still resume;
        # τ_entity against its default before issue 11 (absolute 1000), so such a run never resumes on the
        # new default (the paper's rate) and mixes two thresholds in one file
        extra = {
            "tau_entity": (self.tau_entity, ABSOLUTE_ENTITY),
            "tau_cooc": (self.tau_cooc, DEFAULT_COOC),
            "coverage_floor": (self.coverage_floor, DEFAULT_FLOOR),
            "on_out_of_coverage": (self.on_out_of_coverage, DEFAULT_ACTION),
            "ngrams": (self.ngrams, False),
        }
        for k, (v, default) in extra.items():
            if v != default:
                out[k] = v
        return out
