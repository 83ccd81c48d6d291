"""Offline default LMs: loading, the dequantized cache, its corruption checks, the process memo."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quco.errors import BadInputError, ModelNotFoundError
from quco.models import (
    DEFAULT_LM,
    check_model_cache,
    load_causal_lm,
    model_cache_path,
    tokenizer_dir,
)


def _tiny_model():
    """A random 1-layer Llama (no download) to write small cache entries with."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(cfg)


def _logits(lm, text: str = "The capital of France is"):
    import torch

    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return lm.model(ids).logits


def test_import_quco_lm_stays_light():
    code = "import sys, quco, quco.lm, quco.models; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_default_lm_bundle(small_lm):
    import torch

    assert small_lm.name == DEFAULT_LM
    assert small_lm.device == "cpu" or small_lm.device.startswith("cuda")
    assert small_lm.context_length == 8192
    assert small_lm.source in {"cache", "gguf"}
    assert small_lm.has_chat_template
    if small_lm.device == "cpu":
        assert small_lm.model.dtype == torch.float32
    assert not small_lm.model.training


@pytest.mark.slow
def test_memo_returns_the_same_object(small_lm):
    assert load_causal_lm() is small_lm
    assert load_causal_lm("smollm2") is small_lm  # aliases resolve to the same model


@pytest.mark.slow
def test_second_load_reads_the_cache(small_lm):
    folder = model_cache_path()
    assert check_model_cache(folder) is None  # the session's first load wrote (or found) it
    t = time.perf_counter()
    again = load_causal_lm(reuse=False)
    elapsed = time.perf_counter() - t
    assert again is not small_lm
    assert again.source == "cache" and Path(again.path) == folder
    assert elapsed < 30  # typically < 1 s; generous for a loaded CI machine
    assert (_logits(again) - _logits(small_lm)).abs().max().item() < 1e-5


@pytest.mark.slow
def test_cache_damage_is_detected(small_lm, tmp_path):
    from quco.models import _write_model_cache

    good = tmp_path / "entry"
    _write_model_cache(_tiny_model(), small_lm.tokenizer, good, Path("tiny.gguf"))
    assert check_model_cache(good) is None
    assert not list(tmp_path.glob("entry.tmp*"))  # the temp dir was renamed into place

    def variant(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        return d

    garbled = variant("garbled")
    w = garbled / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-200:-100] = bytes(100)  # same size, different weights
    w.write_bytes(bytes(data))
    assert "checksum" in check_model_cache(garbled)
    assert check_model_cache(garbled, checksums=False) is None  # only the checksum can see it

    truncated = variant("truncated")
    w = truncated / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    assert "size" in check_model_cache(truncated)

    no_config = variant("no_config")
    (no_config / "config.json").unlink()
    assert "config.json" in check_model_cache(no_config)

    no_manifest = variant("no_manifest")
    (no_manifest / "quco-cache.json").unlink()
    assert "quco-cache.json" in check_model_cache(no_manifest)

    assert check_model_cache(tmp_path / "absent") == "missing"


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt(small_lm, tmp_path, monkeypatch, caplog):
    """Garbled cached weights -> warning, rebuilt from the GGUF (a cold load, ~30 s), then sound."""
    src_entry = model_cache_path()
    src_tok = tokenizer_dir()
    monkeypatch.setenv("QUCO_CACHE_DIR", str(tmp_path))
    entry = model_cache_path()
    assert entry.parent.parent == tmp_path
    shutil.copytree(src_entry, entry)
    shutil.copytree(src_tok, tmp_path / "tokenizers" / src_tok.name)  # spare the tokenizer conversion
    w = entry / "model.safetensors"
    with open(w, "r+b") as f:  # garble the middle of the weights, keep the size
        f.seek(w.stat().st_size // 2)
        f.write(b"\xff" * 4096)
    assert check_model_cache(entry) is not None

    with caplog.at_level(logging.WARNING, logger="quco.models"):
        lm = load_causal_lm(reuse=False)
    assert lm.source == "gguf"
    assert any("unusable" in r.getMessage() for r in caplog.records)
    assert check_model_cache(entry) is None
    assert (_logits(lm) - _logits(small_lm)).abs().max().item() < 1e-5
    del lm
    assert load_causal_lm(reuse=False).source == "cache"


def test_bad_names():
    with pytest.raises(BadInputError):
        load_causal_lm(42)  # type: ignore[arg-type]
    with pytest.raises(ModelNotFoundError):
        load_causal_lm("/no/such/model/folder")
    with pytest.raises(ModelNotFoundError):
        model_cache_path("not-a-packaged-model")


def test_torch_threads_env_is_applied_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from quco.errors import BadInputError
    from quco.models import THREADS_ENV, apply_torch_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_ENV, "1")
        assert apply_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "zero")
        with pytest.raises(BadInputError):
            apply_torch_threads()
        monkeypatch.delenv(THREADS_ENV)
        assert apply_torch_threads() is None
    finally:
        torch.set_num_threads(before)
