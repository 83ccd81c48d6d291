"""Benchmarks: metrics, labels and the head-to-head detector evaluation.

Submodules import scikit-learn and matplotlib lazily; ``import quco.evaluation``
stays light.
"""

from __future__ import annotations

__all__: list[str] = []
