"""Annotator votes: per-item vote counts read by the corpus adapters, turned into the soft training targets of
`label_targets: soft` (a distribution over the recipe's labels), with a count of what did not fit.

A record may carry `votes: {label: count}` in the corpus's own label names (the names `label` uses), before
`label_map`. `vote_distributions` maps the vote labels with `label_map`, keeps the votes for the recipe's labels and
normalises them; votes for other classes are counted per class in the report, never dropped unseen. An item without
votes (or whose votes all fall outside the labels) trains on its one-hot hard label, and is counted.
"""

from __future__ import annotations

import json
import math
from collections import Counter

# The column (and batch key) of the soft targets: one probability per label, in label-id order.
LABEL_DISTRIBUTION = "label_distribution"


def parse_vote_counts(value, where: str) -> dict[str, float]:
    """`{label: count}` from a dict or its JSON text (a manifest's `votes` cell); counts are non-negative numbers.
    `where` names the file and row for the error."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f'{where}: votes {value!r} is not JSON ({error.msg}); write e.g. {{"angry": 2}}') from None
    if not isinstance(value, dict):
        raise ValueError(f'{where}: votes must map labels to counts, e.g. {{"angry": 2, "sad": 1}}, got {value!r}')
    counts = {}
    for label, count in value.items():
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not math.isfinite(count) or count < 0:
            raise ValueError(f"{where}: vote count {count!r} for {label!r} is not a non-negative number")
        counts[str(label)] = float(count)
    return counts


def vote_distributions(records: list[dict], label_names: list[str], label_map: dict) -> tuple[list[list[float]], dict]:
    """Each record's training target over `label_names` and a summary for the data report.

    The target is the record's in-label votes normalised to sum to one, or the one-hot hard label when it has none.
    The summary counts the items with a vote distribution, the items that fell back to one-hot (no votes at all, or
    votes only for classes outside the labels), and the votes cast for each class outside the labels."""
    index = {name: i for i, name in enumerate(label_names)}
    targets, outside = [], Counter()
    with_votes = without_votes = only_outside = 0
    for record in records:
        in_labels = [0.0] * len(label_names)
        for vote_label, count in (record.get("votes") or {}).items():
            mapped = label_map.get(vote_label, vote_label)
            if mapped in index:
                in_labels[index[mapped]] += count
            elif count:
                outside[mapped] += count
        total = sum(in_labels)
        if total > 0:
            with_votes += 1
            targets.append([count / total for count in in_labels])
            continue
        if record.get("votes") and any(record["votes"].values()):
            only_outside += 1
        else:
            without_votes += 1
        one_hot = [0.0] * len(label_names)
        one_hot[index[record["label"]]] = 1.0
        targets.append(one_hot)
    summary = {
        "label_targets": "soft",
        "items_with_votes": with_votes,
        "one_hot_without_votes": without_votes,
        "one_hot_votes_outside_labels": only_outside,
        "votes_outside_labels": {label: _whole(count) for label, count in sorted(outside.items())},
    }
    return targets, summary


def _whole(count: float) -> float | int:
    return int(count) if float(count).is_integer() else count


def describe_votes(summary: dict) -> str:
    """The data report's vote summary in one line, for the split summary a run prints."""
    outside = summary["votes_outside_labels"]
    outside_text = ", ".join(f"{label} {count}" for label, count in outside.items()) or "none"
    return (
        f"soft labels: {summary['items_with_votes']} item(s) train on annotator votes; one-hot hard label for "
        f"{summary['one_hot_without_votes']} without votes and {summary['one_hot_votes_outside_labels']} whose votes "
        f"are all outside the labels; votes outside the labels: {outside_text}"
    )
