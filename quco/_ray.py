"""A Ray runtime for quco's distributed engines (extra ``distributed``).

:func:`ray_runtime` connects to a running cluster (``--address``) or starts a
local Ray runtime in this process, and shuts down what it started. Ray is
imported here, inside the functions, never by ``import quco``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from quco._deps import require
from quco.errors import BackendUnavailableError, QucoError

log = logging.getLogger(__name__)

#: object store of a local runtime: the engines move small batches, not datasets
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def import_ray() -> Any:
    """``ray`` with Ray Data, or an ImportError that names the ``distributed`` extra."""
    ray = require("ray", "distributed")
    require("ray.data", "distributed")
    return ray


@contextmanager
def ray_runtime(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected to ``address`` or to a local runtime started for the block.

    Args:
        address: a cluster's address (``HOST:PORT`` of its head, ``auto``, or
            ``ray://...``); ``None`` starts a local runtime in this process.
        num_cpus: CPUs of a local runtime (default: this machine's).

    Yields:
        The ``ray`` module, initialised.

    Raises:
        BackendUnavailableError: the cluster cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():  # someone else's runtime: use it, leave it running
        yield ray
        return
    verbose = logging.getLogger("quco").isEnabledFor(logging.INFO)
    common: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": verbose,
        # Ray's own notices (token auth, deprecations, progress bars off) only with quco -v
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    try:
        if address:
            ray.init(address=address, **common)
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(
                address="local",
                num_cpus=num_cpus or os.cpu_count() or 1,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **common,
            )
    except (ConnectionError, TimeoutError) as exc:
        raise BackendUnavailableError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise BackendUnavailableError(f"cannot start or join {where}: {exc}") from exc
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    if not verbose:
        data_log.setLevel(logging.ERROR)
    try:
        _quiet_ray_data(ray)
        yield ray
    finally:
        data_log.setLevel(level)
        ray.shutdown()


def _quiet_ray_data(ray: Any) -> None:
    """quco shows its own progress: no Ray Data progress bars or start-up banners."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False


def cluster_cpus(ray: Any) -> int:
    """Whole CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def unwrap_error(exc: BaseException) -> BaseException:
    """The quco error inside a Ray exception chain, or a :class:`QucoError` that says what failed.

    Ray wraps an exception raised in a task or actor (``RayTaskError``, Ray
    Data's ``UserCodeException``); the original, when it is one of quco's,
    carries the message the user needs.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        inner = getattr(cur, "cause", None)  # RayTaskError: the exception raised in the worker
        if isinstance(inner, BaseException):
            cur = inner
            continue
        if isinstance(cur, QucoError):
            return cur
        cur = cur.__cause__ or cur.__context__
    first = str(exc).strip().splitlines()
    return QucoError(f"the Ray job failed: {type(exc).__name__}: {first[-1] if first else ''}")


def reraise(exc: BaseException) -> NoReturn:
    """Raise the quco error inside ``exc`` (see :func:`unwrap_error`), or ``exc`` itself."""
    err = unwrap_error(exc)
    if err is exc:
        raise exc
    raise err from exc
