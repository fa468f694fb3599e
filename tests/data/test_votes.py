"""Specification of the vote distributions behind `label_targets: soft` (hf_ser/data/votes.py)."""

import pytest

from hf_ser.data.votes import describe_votes, parse_vote_counts, vote_distributions

LABELS = ["neutral", "happy", "sad", "angry"]


def test_votes_become_a_distribution_over_the_recipe_labels_after_label_map():
    records = [
        {"label": "happy", "votes": {"excited": 2, "happy": 1, "sad": 1}},  # excited counts as happy
        {"label": "angry", "votes": {"angry": 2, "frustrated": 1}},  # frustrated: outside, counted
        {"label": "sad", "votes": None},  # no votes: one-hot
        {"label": "neutral", "votes": {"frustrated": 3}},  # only outside votes: one-hot, counted apart
        {"label": "neutral", "votes": {"neutral": 0}},  # all-zero counts are no votes
    ]
    targets, summary = vote_distributions(records, LABELS, {"excited": "happy"})
    assert targets == [
        [0.0, 0.75, 0.25, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 1.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0],
    ]
    assert summary == {
        "label_targets": "soft",
        "items_with_votes": 2,
        "one_hot_without_votes": 2,
        "one_hot_votes_outside_labels": 1,
        "votes_outside_labels": {"frustrated": 4},
    }
    assert describe_votes(summary) == (
        "soft labels: 2 item(s) train on annotator votes; one-hot hard label for 2 without votes and 1 whose votes "
        "are all outside the labels; votes outside the labels: frustrated 4"
    )


def test_vote_counts_are_read_from_json_text_or_a_mapping():
    assert parse_vote_counts('{"angry": 2, "sad": 0.5}', "m.csv: row 2") == {"angry": 2.0, "sad": 0.5}
    assert parse_vote_counts({"angry": 1}, "m.jsonl: row 1") == {"angry": 1.0}


@pytest.mark.parametrize(
    "value, message",
    [
        ("{angry: 2}", r"m\.csv: row 4: votes '\{angry: 2\}' is not JSON"),
        ("[1, 2]", r"m\.csv: row 4: votes must map labels to counts"),
        ({"angry": -1}, r"m\.csv: row 4: vote count -1 for 'angry' is not a non-negative number"),
        ({"angry": "two"}, r"m\.csv: row 4: vote count 'two' for 'angry'"),
        ({"angry": True}, r"m\.csv: row 4: vote count True"),
    ],
)
def test_bad_vote_counts_name_the_file_and_row(value, message):
    with pytest.raises(ValueError, match=message):
        parse_vote_counts(value, "m.csv: row 4")
