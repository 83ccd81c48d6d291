"""The index builder's word-cache tokenization gives exactly the tokenizer's own ids."""

from __future__ import annotations

import numpy as np
import pytest

from quco.corpus._tokenize import (
    GPT2_SPLIT,
    _unsafe_chars,
    cached_tokenizer,
    encode_batch,
    encode_ids,
    word_cache_encoder,
)

pytestmark = pytest.mark.slow

TEXTS = [
    "Paris is the capital of France. It's big; they'll say I'd've 'quoted' it.",
    "  leading spaces,\ttabs\n\nnew lines   and trailing   ",
    "Numbers 12345 and 3.14159, 1,000,000; dates 2024-05-06 and ½ ¾ ² Ⅻ.",
    "Curly “quotes” — dashes – and ellipses… café naïve Zürich São Paulo Łódź.",
    "Greek αβγ, Cyrillic Москва, Arabic القاهرة, Hebrew ירושלים, Hindi नई दिल्ली.",
    "CJK 東京 北京 서울 and kana ひらがな カタカナ, full-width ＡＢＣ１２３.",
    "Emoji 😀👍🏽 and astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 go through the tokenizer whole.",
    "A special token <|endoftext|> inside text, and <|im_start|>user too.",
    "Controls \x00\x01\x1c\x1f\x7f\x85 and no-break\xa0space, zero\u200bwidth, soft\xadhyphen.",
    "",
    " ",
    "x",
    "Unassigned \u0378 and private use \ue000 and newest \u0558 code points.",
    "century.First words glued.Paris and 'tis the season; don't won't shan't.",
    "Mixed1234letters and letters1234 and __under_scores__ and #hash @at $5.",
]


@pytest.fixture(scope="module")
def tok():
    return cached_tokenizer("smollm2-135m-instruct")[0]


def test_word_cache_is_used_for_the_default_tokenizer(tok):
    assert word_cache_encoder(tok) is not None


def test_ids_equal_the_tokenizers_own(tok):
    want = encode_ids(tok, TEXTS)
    want_hf = [list(x) for x in tok(TEXTS, add_special_tokens=False)["input_ids"]]
    assert want == want_hf
    for _ in range(2):  # the second pass is answered from the cache
        got = encode_batch(tok, TEXTS, np.uint16)
        assert [g.tolist() for g in got] == want
        assert all(g.dtype == np.uint16 for g in got)


def test_ids_equal_on_a_corpus_sample(tok, tiny_corpus_docs):
    docs = list(tiny_corpus_docs)
    got = encode_batch(tok, docs, np.uint32)
    assert [g.tolist() for g in got] == encode_ids(tok, docs)


def test_split_agrees_with_the_pre_tokenizer_on_every_admitted_character(tok):
    """Every BMP character the word cache admits is cut alike by both regex engines."""
    import regex

    pre = tok.backend_tokenizer.pre_tokenizer
    spans = regex.compile(GPT2_SPLIT).finditer
    unsafe = _unsafe_chars()
    admitted = [chr(c) for c in range(0x10000) if not unsafe.match(chr(c))]
    assert len(admitted) > 40_000
    for i in range(0, len(admitted), 2000):
        chunk = admitted[i : i + 2000]
        s = "".join(f"a{c}1 {c}  {c}\n" for c in chunk)
        want = [span for _, span in pre.pre_tokenize_str(s)]
        got = [m.span() for m in spans(s)]
        assert got == want, f"characters {ord(chunk[0]):#x}..{ord(chunk[-1]):#x}"


def test_packaged_tokenizer_info_without_transformers_matches(tok):
    from quco.corpus.build import _eos_id, _tokenizer_ref, fast_tokenizer_info
    from quco.models import vocab_hash

    recorded, load_ref = _tokenizer_ref(None)
    info = fast_tokenizer_info(recorded, load_ref)
    assert info is not None
    raw, vhash, size, eos = info
    vocab = tok.get_vocab()
    assert vhash == vocab_hash(tok)
    assert size == max(len(tok), max(vocab.values()) + 1)
    assert eos == _eos_id(tok)
    texts = TEXTS[:8]
    assert [a.tolist() for a in encode_batch(raw, texts, np.uint16)] == encode_ids(tok, texts)
    assert encode_ids(raw, texts) == encode_ids(tok, texts)
    assert fast_tokenizer_info("not-a-packaged-model", load_ref) is None
