"""Pair construction: labelled texts -> (text, same-label, other-label); retrieval rows -> component labels."""

from __future__ import annotations

from mote.data.pairs import NO_LABEL, LabelSpace, build_pairs, detect_schema, labelled_pairs, retrieval_pairs


def _labelled_rows():
    return [{"text": f"{lab} text {i}", "label": lab} for lab in ("a", "b", "c") for i in range(5)] + [
        {"text": "lonely", "label": "d"}  # a label with one text: no positive, no pair
    ]


def test_labelled_pairs_positive_same_label_negative_other_label():
    space = LabelSpace()
    rows = _labelled_rows()
    label_of = {r["text"]: r["label"] for r in rows}
    pairs = labelled_pairs(rows, "toy", space, seed=3)
    assert len(pairs) == 15  # "lonely" has no same-label partner
    for p in pairs:
        assert p.positive != p.anchor and label_of[p.positive] == label_of[p.anchor]
        assert p.negative is not None and label_of[p.negative] != label_of[p.anchor]
        assert p.label == space.id(("toy", "class", label_of[p.anchor]))
        assert p.negative_label == space.id(("toy", "class", label_of[p.negative]))
    assert labelled_pairs(rows, "toy", LabelSpace(), seed=3) == pairs  # deterministic
    assert labelled_pairs(rows, "toy", LabelSpace(), seed=4) != pairs


def test_labels_are_unique_across_datasets():
    space = LabelSpace()
    a = labelled_pairs(_labelled_rows(), "one", space)
    b = labelled_pairs(_labelled_rows(), "two", space)
    assert not {p.label for p in a} & {p.label for p in b}


def test_clustering_sets_are_flattened_and_deduplicated():
    rows = [{"sentences": ["x1", "x2", "y1", "y2", "x1"], "labels": ["x", "x", "y", "y", "x"]}]
    assert detect_schema(rows[0]) == "sets"
    pairs = build_pairs(rows, "labelled", "sets", LabelSpace())
    assert sorted(p.anchor for p in pairs) == ["x1", "x2", "y1", "y2"]


def test_retrieval_rows_sharing_a_query_or_positive_share_a_label():
    rows = [
        {"query": "q1", "positive": "passage A", "negative": "passage B"},
        {"query": "q2", "positive": "passage A"},  # same paragraph, another question (SQuAD)
        {"query": "q3", "positive": "passage B"},
        {"query": "q3", "positive": "passage C"},  # same question, another answer (TrecQA)
        {"query": "q4", "positive": "passage D", "negative": "never a positive"},
    ]
    space = LabelSpace()
    p = retrieval_pairs(rows, "qa", space)
    assert p[0].label == p[1].label != p[2].label
    assert p[2].label == p[3].label
    assert p[0].negative_label == p[2].label  # q1's hard negative is q3's positive: same component
    assert p[1].negative is None and p[1].negative_label == NO_LABEL
    assert p[4].negative_label not in {q.label for q in p}


def test_split_by_keeps_negatives_within_a_source():
    rows = [{"text": f"{src} {lab} {i}", "label": f"{src}:{lab}", "source": src}
            for src in ("MR", "CR") for lab in ("pos", "neg") for i in range(4)]
    pairs = build_pairs(rows, "labelled", "senteval", LabelSpace(), split_by="source")
    assert len(pairs) == 16
    assert all(p.anchor.split()[0] == p.negative.split()[0] == p.positive.split()[0] for p in pairs)


def test_sentence_pair_rows_keep_positives_only():
    rows = [{"sentence1": "a", "sentence2": "b", "label": 1}, {"sentence1": "c", "sentence2": "d", "label": 0}]
    assert detect_schema(rows[0]) == "sentence-pairs"
    assert [(p.anchor, p.positive) for p in build_pairs(rows, "pairs", "msrp", LabelSpace())] == [("a", "b")]
