"""Stratified eval / train / val splits with a fixed seed.

Strata are the label (classification) or tool name (tool calling); chat has one stratum. A
stratum too small to reach every split (fewer than 3 records) is grouped with the other rare
ones, in the stratification key only: its records keep their own labels. Allocation is
proportional with largest remainders, so the result depends only on the records, the config
and the seed, never on input order.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.domain.errors import InsufficientData
from services.domain.records import LogRecord
from services.domain.settings import DataSplitSettings

RARE = "__rare__"
MIN_STRATUM = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Example(Generic[T]):
    record: LogRecord
    stratum: Hashable | None  # label, tool name, or None
    payload: T | None = None


@dataclass(frozen=True)
class DatasetSplits(Generic[T]):
    eval: list[Example[T]]
    train: list[Example[T]]
    val: list[Example[T]]

    def counts(self) -> dict[str, int]:
        return {"eval": len(self.eval), "train": len(self.train), "val": len(self.val)}


def split_examples(
    examples: Sequence[Example[T]], settings: DataSplitSettings, *, seed: int | None = None
) -> DatasetSplits[T]:
    total = len(examples)
    needed = max(settings.min_total_records, settings.eval_size + 2)
    if total < needed:
        raise InsufficientData(
            f"{total} usable records, at least {needed} are needed "
            f"(data_split.min_total_records={settings.min_total_records}, eval_size={settings.eval_size} "
            "plus one train and one val record); log more traffic or lower those settings"
        )
    rng = random.Random(settings.seed if seed is None else seed)
    strata = _strata(examples, rng)
    eval_part, rest = _take(strata, settings.eval_count(total))
    val_n = max(1, round(sum(len(v) for v in rest.values()) * settings.val_ratio)) if settings.val_ratio > 0 else 0
    val_part, train_rest = _take(rest, val_n)
    train = [e for items in train_rest.values() for e in items]
    return DatasetSplits(eval=_ordered(eval_part), train=_ordered(train), val=_ordered(val_part))


def _strata(examples: Sequence[Example[T]], rng: random.Random) -> dict[Hashable, list[Example[T]]]:
    grouped: dict[Hashable, list[Example[T]]] = defaultdict(list)
    for example in examples:
        grouped[example.stratum].append(example)
    keyed: dict[Hashable, list[Example[T]]] = defaultdict(list)
    for key, items in grouped.items():
        keyed[RARE if len(items) < MIN_STRATUM else key].extend(items)
    for key in sorted(keyed, key=repr):
        keyed[key].sort(key=lambda e: e.record.id)  # input order must not matter
        rng.shuffle(keyed[key])
    return dict(sorted(keyed.items(), key=lambda kv: repr(kv[0])))


def _take(
    strata: dict[Hashable, list[Example[T]]], n: int
) -> tuple[list[Example[T]], dict[Hashable, list[Example[T]]]]:
    """Take n examples spread over strata in proportion to their sizes."""
    total = sum(len(v) for v in strata.values())
    quotas = {k: n * len(v) / total for k, v in strata.items()}
    alloc = {k: int(q) for k, q in quotas.items()}
    by_remainder = sorted(strata, key=lambda k: (-(quotas[k] - alloc[k]), repr(k)))
    for key in by_remainder[: n - sum(alloc.values())]:
        alloc[key] += 1
    taken = [e for k, v in strata.items() for e in v[: alloc[k]]]
    rest = {k: v[alloc[k] :] for k, v in strata.items()}
    return taken, rest


def _ordered(items: list[Example[T]]) -> list[Example[T]]:
    return sorted(items, key=lambda e: (e.record.timestamp, e.record.id), reverse=True)
