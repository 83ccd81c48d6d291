"""The audit's steps as a Ray Data pipeline (``quco audit --engine ray``; extra ``distributed``).

The pipeline runs the same steps as the local engine (:mod:`quco.audit.steps`);
only where they run differs:

- the driver cuts the input into the batches the local engine would cut
  (:func:`~quco.audit.steps.spans`: line numbers and byte offsets, no parsing)
  and makes a dataset of them;
- ``map_batches`` hands them to a pool of actors (:class:`AuditActor`,
  ``--workers`` of them). Each actor builds its auditor once from the
  :class:`~quco.audit.spec.AuditSpec` (the spaCy pipeline, the index
  memory-mapped, the model), reads its batches' lines from the input file
  (:func:`~quco.audit.steps.read_span`), parses, analyses and encodes them
  (:func:`~quco.audit.steps.pipelined`, the local engine's function);
- the driver receives the encoded batches in input order (Ray Data's
  ``preserve_order``) and :func:`~quco.audit.runner.run_audit` commits them
  exactly as it commits the local engine's.

A batch's bytes depend only on its lines, so the output and the side file are
byte-identical to the local engine's, and an interrupted run resumes from its
state file under either engine. An actor that dies is restarted by Ray Data
and its unfinished batches are run again; nothing is committed twice because
only the driver writes, once per batch, in order.

Every Ray node must read the input file, the index (or reach the corpus
servers) and the count cache at the paths the driver gives. The driver holds
one small span record per batch (not the rows), and the commits stream.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from quco._ray import cluster_cpus, ray_runtime, reraise
from quco.audit.spec import AuditSpec
from quco.audit.steps import BatchResult, Span, parse_batch, pipelined, read_span, spans
from quco.errors import BadInputError

log = logging.getLogger(__name__)

#: the columns of an encoded batch, as the actors return them
RESULT_COLUMNS = ("seq", "last_line", "end", "records", "bad", "audited", "n_bad")


class AuditActor:
    """One Ray actor: builds an auditor once, then audits the batches it is given.

    Args:
        spec: what to build the auditor from.
        input_path: the input file (absolute; read again here, span by span).
    """

    def __init__(self, spec: AuditSpec, input_path: str) -> None:
        self.auditor, self.stats = spec.build()
        self.input_path = input_path

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Audit the spans of one Ray batch (columns of :class:`~quco.audit.steps.Span`)."""
        batch_spans = [
            Span(int(q), int(f), int(last), int(s), int(e))
            for q, f, last, s, e in zip(
                batch["seq"], batch["first_line"], batch["last_line"], batch["start"], batch["end"]
            )
        ]

        def parsed() -> Iterator[Any]:
            for sp in batch_spans:
                try:
                    raws = read_span(self.input_path, sp)
                except (OSError, ValueError) as exc:
                    raise BadInputError(
                        f"a Ray worker cannot read the audit input {self.input_path} "
                        f"(every node must see it at this path, unchanged): {exc}"
                    ) from exc
                yield parse_batch(sp, raws)

        out: dict[str, list[Any]] = {k: [] for k in RESULT_COLUMNS}
        for res in pipelined(self.auditor, parsed()):
            for k in RESULT_COLUMNS:
                out[k].append(getattr(res, k))
        return out


class RayEngine:
    """Runs the audit's steps in a pool of Ray actors (see the module docs).

    Args:
        spec: what each actor builds its auditor from.
        address: a Ray cluster's address (``HOST:PORT``, ``auto``, ``ray://...``);
            ``None`` starts a local Ray runtime for the run.
        workers: actors in the pool (default: the cluster's CPUs).
        spans_per_call: batches handed to an actor at a time (an actor
            prefetches the next batch's entities while it analyses one).
        cpus_per_worker: CPUs each actor reserves.
    """

    name = "ray"

    def __init__(
        self,
        spec: AuditSpec,
        *,
        address: str | None = None,
        workers: int | None = None,
        spans_per_call: int = 4,
        cpus_per_worker: float = 1.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise BadInputError(f"--workers must be positive, got {workers}")
        if spans_per_call < 1 or cpus_per_worker <= 0:
            raise BadInputError("spans_per_call and cpus_per_worker must be positive")
        self.spec = spec
        self.address = address
        self.workers = workers
        self.spans_per_call = spans_per_call
        self.cpus_per_worker = cpus_per_worker

    def results(
        self, src: Path, fin: BinaryIO, start_line: int, start: int, batch_size: int
    ) -> Iterator[BatchResult]:
        todo = list(spans(fin, start_line, start, batch_size))
        if not todo:
            return
        local_cpus = None if self.address else max(self.workers or 0, os.cpu_count() or 1)
        with ray_runtime(self.address, num_cpus=local_cpus) as ray:
            workers = self.workers or max(1, int(cluster_cpus(ray) / self.cpus_per_worker))
            workers = min(workers, len(todo))  # an actor with no batch would load everything for nothing
            per_call = max(1, min(self.spans_per_call, len(todo) // (2 * workers)))
            ctx = ray.data.DataContext.get_current()
            ctx.execution_options.preserve_order = True
            ds = ray.data.from_items(
                [asdict(sp) for sp in todo], override_num_blocks=-(-len(todo) // per_call)
            ).map_batches(
                AuditActor,
                fn_constructor_args=(self.spec, str(src.resolve())),
                batch_size=per_call,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=self.cpus_per_worker,
            )
            log.info("ray audit: %d batches, %d workers, %d batches per call", len(todo), workers, per_call)
            try:
                for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for i in range(len(block["seq"])):
                        yield BatchResult(
                            seq=int(block["seq"][i]),
                            last_line=int(block["last_line"][i]),
                            end=int(block["end"][i]),
                            records=bytes(block["records"][i]),
                            bad=bytes(block["bad"][i]),
                            audited=int(block["audited"][i]),
                            n_bad=int(block["n_bad"][i]),
                        )
            except Exception as exc:  # noqa: BLE001 - Ray wraps the workers' errors
                reraise(exc)
