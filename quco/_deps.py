"""Lazy imports of optional dependencies with errors that name the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from quco.errors import MissingDependencyError

#: module name -> (extra, pip name)
_EXTRAS: dict[str, tuple[str, str]] = {
    "infini_gram": ("index", "infini-gram"),
    "transformers": ("lm", "transformers"),
    "tokenizers": ("index", "tokenizers"),
    "torch": ("lm", "torch"),
    "gguf": ("lm", "gguf"),
    "spacy": ("nlp", "spacy"),
    "bm25s": ("retrieval", "bm25s"),
    "faiss": ("retrieval", "faiss-cpu"),
    "sentence_transformers": ("retrieval", "sentence-transformers"),
    "langchain_core": ("langchain", "langchain-core"),
    "langchain_huggingface": ("langchain", "langchain-huggingface"),
    "sklearn": ("eval", "scikit-learn"),
    "matplotlib": ("eval", "matplotlib"),
    "zstandard": ("index", "zstandard"),
    "tqdm": ("index", "tqdm"),
    "rich": ("index", "rich"),
    "numpy": ("index", "numpy"),
    "ray": ("distributed", "ray[data]"),
}


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the extra to install.

    Args:
        module: dotted module name, e.g. ``"infini_gram.engine"``.
        extra: the quco extra that provides it; looked up when omitted.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        top = module.split(".")[0]
        ex, pip_name = _EXTRAS.get(top, (extra or "all", top))
        ex = extra or ex
        raise MissingDependencyError(
            f"{module} is needed for this feature: pip install 'quco[{ex}]' (or {pip_name})"
        ) from exc
