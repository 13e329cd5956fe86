"""LabelSet: records, the CLI's CSV contract, and the store's export pages."""

from __future__ import annotations

import pytest
from crlhf_trainer.aggregation.labels import LabelSet, parse_label
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
