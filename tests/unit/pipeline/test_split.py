"""Stratified splits: sizes, proportions, rare classes, determinism, clear errors."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.datastore.pipeline.split import Example, split_examples
from services.domain.errors import InsufficientData
from services.domain.settings import DataSplitSettings
from tests.factories import make_record


def _examples(label_counts: dict[str, int]) -> list[Example[None]]:
    out, i = [], 0
    for label, n in label_counts.items():
        for _ in range(n):
            out.append(Example(make_record(i), label))
            i += 1
    return out


def test_sizes_and_proportions() -> None:
    examples = _examples({"a": 600, "b": 300, "c": 100})
    splits = split_examples(examples, DataSplitSettings(eval_size=100, eval_ratio=None, val_ratio=0.1, limit=None))
    assert splits.counts() == {"eval": 100, "train": 810, "val": 90}
    assert Counter(e.stratum for e in splits.eval) == {"a": 60, "b": 30, "c": 10}
    ids = [e.record.id for part in (splits.eval, splits.train, splits.val) for e in part]
    assert len(ids) == len(set(ids)) == 1000


def test_rare_classes_are_grouped_only_for_stratification() -> None:
    examples = _examples({"big": 200, "rare1": 1, "rare2": 2})
    splits = split_examples(examples, DataSplitSettings(eval_size=50, val_ratio=0.2, limit=None, min_total_records=10))
    labels = {e.stratum for part in (splits.eval, splits.train, splits.val) for e in part}
    assert labels == {"big", "rare1", "rare2"}  # labels untouched


def test_same_result_whatever_the_input_order_and_seed_changes_it() -> None:
    examples = _examples({"a": 150, "b": 90})
    settings = DataSplitSettings(eval_size=40, limit=None)
    shuffled = list(examples)
    random.Random(1).shuffle(shuffled)
    first, second = split_examples(examples, settings), split_examples(shuffled, settings)
    assert [e.record.id for e in first.eval] == [e.record.id for e in second.eval]
    other = split_examples(examples, settings, seed=7)
    assert [e.record.id for e in other.eval] != [e.record.id for e in first.eval]


@pytest.mark.parametrize(("n", "settings"), [
    (40, DataSplitSettings(min_total_records=50, eval_size=10)),
    (100, DataSplitSettings(min_total_records=50, eval_size=200)),
])
def test_too_few_records_say_how_many_are_needed(n: int, settings: DataSplitSettings) -> None:
    with pytest.raises(InsufficientData, match=r"at least \d+ are needed"):
        split_examples(_examples({"a": n}), settings)


def test_eval_ratio_holds_out_a_share_between_eval_size_and_eval_max() -> None:
    settings = DataSplitSettings(eval_size=200, eval_ratio=0.2, eval_max=1000, limit=None)
    assert [settings.eval_count(n) for n in (500, 1000, 2000, 10_000)] == [200, 200, 400, 1000]
    assert DataSplitSettings(eval_size=200, eval_ratio=None, limit=None).eval_count(2000) == 200  # exactly
    assert DataSplitSettings(eval_size=150, limit=None).eval_count(2000) == 150  # set alone: exactly
    assert DataSplitSettings(limit=None).eval_count(2000) == 500  # the defaults: 25%
    splits = split_examples(_examples({"a": 1200, "b": 800}), settings)
    assert splits.counts()["eval"] == 400
