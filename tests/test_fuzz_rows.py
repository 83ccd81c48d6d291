"""Property tests of the audit row parser (quco/audit/rows.py) over arbitrary bytes and JSON.

Invariants:

1. ``parse_line`` never raises: any bytes give an AuditRow, a BadRow (with the
   line number and a one-line reason) or None (a blank line);
2. an AuditRow holds what the contract promises (non-empty string question,
   string answer, context None or strings, label None/0/1), all of it writable
   as UTF-8 JSON;
3. good rows are kept: in a file mixing good rows with junk lines, every good row
   comes out of ``read_lines`` + ``parse_raw`` with its line number and fields.
"""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quco.audit.rows import AuditRow, BadRow, parse_line, parse_raw, read_lines

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
row_like = st.fixed_dictionaries(
    {},
    optional={
        "question": json_values | st.text(max_size=30),
        "answer": json_values | st.text(max_size=30),
        "id": json_values,
        "context": json_values | st.lists(st.text(max_size=10), max_size=3),
        "label": json_values | st.sampled_from([0, 1, 0.0, 1.0, True, False, 2, -1]),
        "extra": json_values,
    },
)


def _check_result(res: AuditRow | BadRow | None, line: int) -> None:
    if res is None:
        return
    if isinstance(res, BadRow):
        assert res.line == line and res.reason and "\n" not in res.reason
        json.dumps(res.to_dict(), ensure_ascii=False).encode("utf-8")
        return
    assert isinstance(res, AuditRow) and res.line == line
    assert isinstance(res.question, str) and res.question.strip() and isinstance(res.answer, str)
    assert res.context is None or all(isinstance(c, str) for c in res.context)
    assert res.label in (None, 0, 1)
    assert isinstance(res.id, str | int) and not isinstance(res.id, bool)
    # everything of a valid row can be written back out as UTF-8 JSON
    json.dumps([res.question, res.answer, res.context, res.id, res.extra], ensure_ascii=False).encode("utf-8")


@SETTINGS
@given(raw=st.binary(max_size=300), line=st.integers(1, 10**6))
@example(raw=b"[" * 100_000, line=1)
@example(raw=b'{"question": "q", "answer": "a", "n": ' + b"9" * 5000 + b"}", line=1)
@example(raw=b'{"question": "q \\ud800", "answer": "a"}', line=2)
@example(raw=b'{"question": "q", "answer": "a", "meta": {"x": "\\udfff"}}', line=3)
@example(raw=b'{"question": "q", "answer": "a", "label": NaN}', line=4)
def test_any_bytes_give_a_row_a_bad_row_or_nothing(raw: bytes, line: int) -> None:
    _check_result(parse_line(raw, line), line)


@SETTINGS
@given(row=row_like, line=st.integers(1, 1000))
def test_any_json_object_gives_a_row_or_a_clear_bad_row(row: dict, line: int) -> None:
    raw = json.dumps(row).encode()
    res = parse_line(raw, line)
    _check_result(res, line)
    q, a = row.get("question"), row.get("answer")
    if isinstance(q, str) and q.strip() and isinstance(a, str) and isinstance(res, AuditRow):
        assert (res.question, res.answer) == (q, a)
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str):
        assert isinstance(res, BadRow)


good_row = st.fixed_dictionaries(
    {
        "question": st.text(min_size=1, max_size=30).filter(lambda s: s.strip()),
        "answer": st.text(max_size=30),
    },
    optional={"id": st.integers(0, 10**9) | st.text(max_size=8), "label": st.sampled_from([0, 1])},
)
junk = st.binary(max_size=80).filter(lambda b: b"\n" not in b)


@SETTINGS
@given(items=st.lists(st.one_of(good_row.map(lambda r: ("good", r)), junk.map(lambda b: ("junk", b))), max_size=25))
def test_good_rows_are_kept_among_junk_lines(items) -> None:
    data = b"".join(
        (json.dumps(v, ensure_ascii=False).encode("utf-8") if kind == "good" else v) + b"\n" for kind, v in items
    )
    out = {r.line: parse_raw(r) for r in read_lines(io.BytesIO(data))}
    for i, (kind, v) in enumerate(items, start=1):
        res = out[i]
        _check_result(res, i)
        if kind == "good":
            assert isinstance(res, AuditRow), (v, res)
            assert (res.question, res.answer, res.label) == (v["question"], v["answer"], v.get("label"))
            assert res.id == v.get("id", i)
