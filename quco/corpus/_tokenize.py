"""Batched, optionally multi-process tokenization for the index builder.

With one worker the fast tokenizer's own batch encoder is used (it runs its
Rust thread pool over the batch). With more workers, batches go to a
``multiprocessing`` pool (forked, inheriting the loaded tokenizer; spawned
processes load it from its folder where fork is unavailable); the results
come back in order.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

_WORKER_TOKENIZER: Any = None
_WORKER_DTYPE: Any = None


def encode_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens.

    Uses the Rust tokenizer's ``encode_batch_fast`` (no offsets, about twice
    as fast as the Hugging Face call) when the tokenizer has one and pads or
    truncates nothing; otherwise the Hugging Face call. The index
    builder and the query side both go through here, so they always agree.
    """
    backend: Any = getattr(tokenizer, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)
    # a backend configured to pad or truncate (e.g. BERT's tokenizer.json) must go through HF's call
    if fast is not None and backend.padding is None and backend.truncation is None:
        return [e.ids for e in fast(texts, add_special_tokens=False)]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def encode_batch(tokenizer: Any, texts: list[str], dtype: Any) -> list[np.ndarray]:
    """Token ids of each text (no special tokens), as arrays of ``dtype``."""
    return [np.asarray(ids, dtype=dtype) for ids in encode_ids(tokenizer, texts)]


def _init_worker(tokenizer_path: str, dtype: str) -> None:
    global _WORKER_TOKENIZER, _WORKER_DTYPE
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from quco.models import load_tokenizer

    _WORKER_TOKENIZER = load_tokenizer(tokenizer_path)
    _WORKER_DTYPE = np.dtype(dtype)


def _work(texts: list[str]) -> list[np.ndarray]:
    return encode_batch(_WORKER_TOKENIZER, texts, _WORKER_DTYPE)


def encode_stream(
    batches: Iterable[list[str]],
    *,
    tokenizer: Any,
    tokenizer_path: str,
    dtype: Any,
    workers: int = 1,
) -> Iterator[list[np.ndarray]]:
    """Encode batches of texts, in order.

    Args:
        batches: lists of texts.
        tokenizer: the loaded tokenizer (used when ``workers <= 1``).
        tokenizer_path: a local folder or name the workers load it from.
        dtype: numpy dtype of the ids (``uint16`` or ``uint32``).
        workers: processes to use; 1 encodes in this process.

    Returns:
        An iterator of per-batch lists of id arrays.
    """
    if workers <= 1:
        for texts in batches:
            yield encode_batch(tokenizer, texts, dtype)
        return
    global _WORKER_TOKENIZER, _WORKER_DTYPE
    if "fork" in mp.get_all_start_methods():
        # forked workers inherit the loaded tokenizer (no reload); its own threads are off in them
        _WORKER_TOKENIZER, _WORKER_DTYPE = tokenizer, np.dtype(dtype)
        saved = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            with mp.get_context("fork").Pool(workers) as pool:
                yield from pool.imap(_work, batches, chunksize=1)
        finally:
            _WORKER_TOKENIZER = _WORKER_DTYPE = None
            if saved is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = saved
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer_path, np.dtype(dtype).str)) as pool:
        yield from pool.imap(_work, batches, chunksize=1)


@functools.lru_cache(maxsize=8)
def cached_tokenizer(name: str) -> tuple[Any, str]:
    """(tokenizer, vocabulary hash) of ``name``, loaded once per process.

    Loading a Hugging Face tokenizer takes seconds; index builds and
    :class:`~quco.corpus.local.LocalStats` instances in one process share it.
    """
    from quco.models import load_tokenizer, vocab_hash

    tok = load_tokenizer(name)
    return tok, vocab_hash(tok)
