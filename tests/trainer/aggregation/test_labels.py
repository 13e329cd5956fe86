"""LabelSet: records, the CLI's CSV contract, and the store's export pages."""

from __future__ import annotations

import pytest
from crlhf_trainer.aggregation.items import parse_label
from crlhf_trainer.aggregation.labels import LabelSet
from crlhf_trainer.errors import AggregationError, LabelFileError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def as_triples(ls: LabelSet):
    return sorted(
        (ls.items[i], ls.annotators[a], int(y))
        for i, a, y in zip(ls.item_idx, ls.annotator_idx, ls.label, strict=True)
    )


def test_from_records_maps_names_and_keeps_the_last_label_of_a_pair():
    ls = LabelSet.from_records([("x", "a", 1), ("y", "a", 0), ("x", "a", -1), ("x", "b", 1)])
    assert ls.items == ["x", "y"] and ls.annotators == ["a", "b"]
    assert as_triples(ls) == [("x", "a", -1), ("x", "b", 1), ("y", "a", -1)]
    assert ls.item_idx.dtype.name == "int32" and ls.label.dtype.name == "int8"


def test_gold_for_unlabelled_items_is_dropped():
    ls = LabelSet.from_records([("x", "a", 1)], gold={"x": 0, "nobody": 1})
    assert ls.gold == {0: -1}


@pytest.mark.parametrize("value", ["yes", 2, "", None, 0.5])
def test_parse_label_rejects_unknown_codings(value):
    with pytest.raises(ValueError, match="unknown label"):
        parse_label(value)


def test_from_csv_reads_the_contract(tmp_path):
    labels = write(tmp_path, "l.csv", "item,annotator,label\nx,a,1\nx,b,0\ny,a,-1\n\n")
    gold = write(tmp_path, "g.csv", "item,label\ny,-1\nz,1\n")
    ls = LabelSet.from_csv(labels, gold)
    assert as_triples(ls) == [("x", "a", 1), ("x", "b", -1), ("y", "a", -1)]
    assert ls.gold == {ls.items.index("y"): -1}


def test_from_csv_accepts_reordered_columns_and_a_bom(tmp_path):
    labels = write(tmp_path, "l.csv", "\ufefflabel,item,annotator\n1,x,a\n")
    assert as_triples(LabelSet.from_csv(labels)) == [("x", "a", 1)]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", None, "empty file"),
        ("item,annotator,label\n", None, "no labels"),
        ("item,label\nx,1\n", 1, "missing column annotator"),
        ("item,annotator,label\nx,a,1\nx,b,maybe\n", 3, "unknown label 'maybe'"),
        ("item,annotator,label\nx,a\n", 2, "expected 3 fields, got 2"),
        ("item,annotator,label\n,a,1\n", 2, "empty item"),
    ],
)
def test_from_csv_errors_name_file_line_and_problem(tmp_path, text, line, problem):
    path = write(tmp_path, "labels.csv", text)
    with pytest.raises(LabelFileError) as info:
        LabelSet.from_csv(path)
    err = info.value
    assert isinstance(err, AggregationError)
    assert err.line == line and problem in err.problem
    assert str(err).startswith(str(path))


def test_from_csv_gold_errors(tmp_path):
    labels = write(tmp_path, "l.csv", "item,annotator,label\nx,a,1\n")
    gold = write(tmp_path, "g.csv", "item,label\nx,1\nx,-1\n")
    with pytest.raises(LabelFileError, match=r"g\.csv line 3: item 'x' has two different"):
        LabelSet.from_csv(labels, gold)
    with pytest.raises(LabelFileError, match="cannot open"):
        LabelSet.from_csv(labels, tmp_path / "missing.csv")
    # the gold is read first (its items are numbered with the labels') but the labels'
    # errors still come first
    for text in ("item,annotator,label\nx,a,maybe\n", "item,annotator,label\n"):
        with pytest.raises(LabelFileError, match=r"l\.csv"):
            LabelSet.from_csv(write(tmp_path, "l.csv", text), gold)


def test_from_export_newest_label_wins_and_honeypots_become_gold():
    pages = [
        {
            "labels": [
                {
                    "rating_id": 1,
                    "completion_id": "c1",
                    "line": 0,
                    "annotator": "a",
                    "label": 1,
                    "created_at": "2026-01-01T00:00:00Z",
                },
                {
                    "rating_id": 2,
                    "completion_id": "h",
                    "line": 1,
                    "annotator": "a",
                    "label": -1,
                    "created_at": "2026-01-01T00:00:01Z",
                },
            ],
            "honeypots": {"h": [1, -1]},
            "next": "2",
        },
        {
            "labels": [
                {
                    "rating_id": 3,
                    "completion_id": "c1",
                    "line": 0,
                    "annotator": "a",
                    "label": -1,
                    "created_at": "2026-01-02T00:00:00Z",
                },
            ],
            "honeypots": {},
            "next": None,
        },
    ]
    ls = LabelSet.from_export(pages)
    assert as_triples(ls) == [("c1:0", "a", -1), ("h:1", "a", -1)]
    assert ls.gold == {ls.items.index("h:1"): -1}  # h:0 was not labelled


def test_from_export_rejects_pages_that_are_not_label_exports():
    with pytest.raises(LabelFileError, match="export page 1"):
        LabelSet.from_export([{"completions": []}])
    with pytest.raises(LabelFileError, match="export page 1 line 1: bad label row"):
        LabelSet.from_export([{"labels": [{"completion_id": "c", "line": 0}]}])


def test_take_keeps_names_and_selects_rows():
    ls = LabelSet.from_records([("x", "a", 1), ("y", "b", -1), ("z", "a", 1)], {"y": -1})
    sub = ls.take(ls.label > 0)
    assert sub.items == ls.items and sub.n_labels == 2 and sub.gold == ls.gold


def _same(a: LabelSet, b: LabelSet) -> None:
    assert a.items == b.items and a.annotators == b.annotators and a.gold == b.gold
    for name in ("item_idx", "annotator_idx", "label"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tolist() == y.tolist(), name


@pytest.mark.parametrize(
    "text",
    [
        'item,annotator,label\r\nx,a,1\r\ny, b ,0\r\n x ,a,-1\r\n"z,1",b,+1\r\n',
        "annotator,extra,label,item\nb,,1,q\na,e,0,p\nb,e, 1 ,p\nc,,-1,q\n\nb,,0,q\n",
        "item,annotator,label\n" + "".join(f"i{k % 37},a{k % 5},{k % 3 - 1}\n" for k in range(400)),
        # Unicode whitespace strips too; other non-ASCII names are plain
        "item,annotator,label\n\u00a0x,a,1\nx\u3000,b,0\né,a,1\np\u2009,a,0\nq,b,1\n",
    ],
)
def test_columnar_csv_reads_what_the_row_reader_reads(tmp_path, monkeypatch, text):
    from crlhf_trainer.aggregation import label_csv as module

    path = write(tmp_path, "l.csv", text)
    # honeypots labelled or not, numbered with the items by the columnar reader
    gold = write(tmp_path, "g.csv", "item,label\nx,1\nnobody,0\np,0\né,1\n")
    monkeypatch.setattr(module, "_BLOCK_SIZE", 64)  # many blocks, one dictionary each
    assert module.read_labels_columnar(path) is not None
    fast = LabelSet.from_csv(path, gold)
    monkeypatch.setattr(module, "read_labels_columnar", lambda path, also=(): None)
    _same(fast, LabelSet.from_csv(path, gold))


def test_columnar_csv_falls_back_for_what_only_rows_can_name(tmp_path):
    from crlhf_trainer.aggregation import label_csv as module

    for text in ("item,annotator,label\nx,a,1\n   \n", "item,annotator,label\nx,a,maybe\n"):
        assert module.read_labels_columnar(write(tmp_path, "l.csv", text)) is None
    ls = LabelSet.from_csv(write(tmp_path, "l.csv", "item,annotator,label\nx,a,1\n   \n"))
    assert as_triples(ls) == [("x", "a", 1)]


def _export_rows():
    rows = []
    for k in range(300):
        rows.append(
            {
                "completion_id": f"c{k % 7}",
                "line": k % 4,
                "annotator": f"a{k % 5}",
                "label": (1, 0, -1)[k % 3],
                "own": k % 11 == 0,
                "superseded": k % 13 == 0,
            }
        )
    rows.append({"completion_id": "bad", "own": True})  # skipped before it is read
    return rows


def test_from_export_columns_match_the_row_loop(monkeypatch):
    from crlhf_trainer.aggregation import label_export as module

    rows = _export_rows()
    pages = [{"labels": rows[:150], "honeypots": {"c1": [1, 0]}}, {"labels": rows[150:]}]
    assert module.export_columns(rows) is not None
    fast = LabelSet.from_export(pages)
    monkeypatch.setattr(module, "export_columns", lambda rows: None)
    _same(fast, LabelSet.from_export(pages))
    assert fast.n_labels == len(
        {
            (r["completion_id"], r["line"], r["annotator"])
            for r in rows[:-1]
            if not (r["own"] or r["superseded"])
        }
    )


def test_from_export_unusual_rows_take_the_row_loop():
    pages = [{"labels": [{"completion_id": 5, "line": True, "annotator": 3, "label": "1"}]}]
    assert as_triples(LabelSet.from_export(pages)) == [("5:1", "3", 1)]
