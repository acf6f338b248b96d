"""Stream files that used to break the cascade (issue 16): huge CSV fields, byte-order marks, bad
UTF-8, out-of-range options; and a property-based fuzz of the JSONL and CSV readers.

Fuzz invariant: a generated file parses to exactly the rows written (ids, texts, labels: nothing
dropped, nothing invented), or, when it was made unreadable on purpose (another encoding, a
flipped byte, a broken quote), the reader raises a StreamError that names the file and a line;
never any other exception. Example counts: `fuzz_settings` (bounded in the default suite,
x50 with ATLAS_FUZZ=nightly)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from atlas.cli.main import app
from benchmarks.streams.items import StreamError, load_stream
from tests.fuzzing import fuzz_settings

runner = CliRunner()
LABELS = ("negative", "positive")


def test_a_csv_field_over_128_kb_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    long = "great film " * 20000  # 220 KB in one field
    path.write_text(f'text,label\n"{long}",positive\nbad,negative\n', encoding="utf-8")
    before = csv.field_size_limit(131072)  # Python's default, whatever an earlier test set
    try:
        items = load_stream(str(path)).items
        assert [len(i.text) for i in items] == [len(long), 3] and [i.label for i in items] == [1, 0]
        assert csv.field_size_limit() == 131072  # the process-wide limit is left as it was
    finally:
        csv.field_size_limit(before)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("first", ["id", "text"])
def test_a_utf8_bom_is_read_like_utf8_sig(tmp_path: Path, suffix: str, first: str) -> None:
    path = tmp_path / f"bom{suffix}"
    rows = [{"id": "A1", "text": "good movie", "label": "positive"}, {"id": "B2", "text": "bad movie", "label": "negative"}]
    if suffix == ".csv":
        columns = ["id", "text", "label"] if first == "id" else ["text", "id", "label"]
        body = ",".join(columns) + "\n" + "".join(",".join(r[c] for c in columns) + "\n" for r in rows)
    else:
        body = "".join(json.dumps({k: r[k] for k in ([first] + [c for c in r if c != first])}) + "\n" for r in rows)
    path.write_bytes(codecs.BOM_UTF8 + body.encode())
    items = load_stream(str(path)).items
    assert [i.id for i in items] == ["A1", "B2"] and [i.text for i in items] == ["good movie", "bad movie"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bad_utf8_names_its_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin1{suffix}"
    lines = ["text", "fine", "ok", "caf\xe9 noir"] if suffix == ".csv" else ['{"text": "fine"}', '{"text": "ok"}', '{"text": "caf\xe9 noir"}']
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    with pytest.raises(StreamError, match=rf"latin1{suffix}, line {len(lines)}: not UTF-8 text \(byte 0xe9 at column"):
        load_stream(str(path))


def test_a_csv_row_with_too_many_fields_is_an_error_not_a_cut_text(tmp_path: Path) -> None:
    path = tmp_path / "commas.csv"
    path.write_text("text,label\ngood, really good,positive\n")
    with pytest.raises(StreamError, match="line 2: 3 fields but the header has 2"):
        load_stream(str(path))


@pytest.mark.parametrize("args, fragment", [(["--mu", "-5"], "must be a number >= 0, got -5"),
                                            (["--mu", "nan"], "must be a number >= 0"),
                                            (["--threshold", "-3", "--policy", "threshold"], "in [0, 1], got -3"),
                                            (["--threshold", "1.5"], "in [0, 1], got 1.5")])
def test_out_of_range_options_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = runner.invoke(app, ["cascade", "run", "--limit", "5", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and fragment in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "o").exists()  # refused before anything ran


# --- fuzz ---------------------------------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30).filter(lambda t: t.strip())
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)
labels = st.sampled_from(["negative", "positive", "NEGATIVE", "0", "1", ""])
rows = st.lists(st.tuples(ids, texts | st.just("x" * 140_000), labels), min_size=1, max_size=6,
                unique_by=lambda r: r[0]).filter(lambda rs: sum(len(r[1]) > 1000 for r in rs) <= 1)
damage = st.one_of(st.just(None), st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(128, 255)),
                   st.tuples(st.just("encoding"), st.sampled_from(["latin-1", "utf-16", "cp1252"]), st.none()))


def render(fmt: str, data: list[tuple[str, str, str]], bom: bool) -> str:
    if fmt == "csv":
        sink = io.StringIO(newline="")
        writer = csv.writer(sink)
        writer.writerow(["id", "text", "label"])
        writer.writerows(data)
        return sink.getvalue()
    return "".join(json.dumps({"id": i, "text": t, "label": y or None}, ensure_ascii=bool(bom)) + "\n" for i, t, y in data)


def expected_label(value: str) -> int | None:
    return None if not value else int(value) if value.isdigit() else LABELS.index(value.lower())


@fuzz_settings(60)
@given(fmt=st.sampled_from(["csv", "jsonl"]), data=rows, bom=st.booleans(), harm=damage)
def test_fuzz_stream_readers(fmt: str, data: list[tuple[str, str, str]], bom: bool, harm) -> None:
    text = render(fmt, data, bom)
    raw = (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")
    if harm is not None and harm[0] == "encoding":
        try:
            raw = text.encode(harm[1])
        except UnicodeEncodeError:
            harm = None
    elif harm is not None:
        position = harm[1] % len(raw)
        raw = raw[:position] + bytes([harm[2]]) + raw[position + 1:]
    clean = harm is None or (harm[0] == "encoding" and raw.decode("utf-8", errors="replace") == text)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"stream.{fmt}"
        path.write_bytes(raw)
        try:
            stream = load_stream(str(path))
        except StreamError as error:
            assert str(path) in str(error) and "line" in str(error), str(error)
            assert not clean, f"a clean file was refused: {error}"
            return
    if clean:  # a correct parse: every row, in order, exactly as written
        assert [(i.id, i.text, i.label) for i in stream.items] == [(i, t, expected_label(y)) for i, t, y in data]
