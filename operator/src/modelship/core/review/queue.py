"""What a reviewer sees next, and how far the review is.

Flagged samples come first: those reviewers disagree on, then those another reviewer says
the model got wrong, then low-confidence ones, then those kept on purpose more often than
the base rate (over-sampled reasons). Within a rank, the least confident and then the newest
come first. A reviewer's queue holds the samples they have not labelled yet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal

from modelship_api.samples import UNCLEAR, LabelRecord, Resolved, SampleRecord

Flag = Literal["disputed", "corrected", "lowConfidence", "oversampled"]
RANKS: dict[Flag, int] = {"disputed": 0, "corrected": 1, "lowConfidence": 2, "oversampled": 3}
UNFLAGGED, CONFIRMED = 4, 5  # no label yet; others agreed with the model (least needed)


@dataclass(frozen=True)
class Item:
    """One sample as the page shows it."""

    record: SampleRecord
    flags: tuple[Flag, ...]
    labels: tuple[LabelRecord, ...]  # each reviewer's latest, in file order
    resolved: Resolved | None  # None: nobody labelled it yet
    mine: LabelRecord | None  # this reviewer's latest label

    @property
    def rank(self) -> int:
        if self.flags:
            return min(RANKS[f] for f in self.flags)
        return CONFIRMED if self.labels else UNFLAGGED


@dataclass(frozen=True)
class Progress:
    samples: int  # complete samples in the area
    reviewed: int  # with at least one label
    mine: int  # labelled by this reviewer
    disagree: int  # resolved to a class other than the model's prediction
    unresolved: int  # labelled, no majority yet (consensus)
    unclear: int  # resolved as unclear
    to_review: int  # not labelled by this reviewer yet


def when(record: SampleRecord) -> float:
    """Served time as a POSIX timestamp; a time that does not parse sorts as oldest."""
    return _timestamp(record.time)


@lru_cache(maxsize=1 << 16)  # every order and figure sorts by it; parsing is the main cost
def _timestamp(text: str) -> float:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def flags(record: SampleRecord, others: Iterable[LabelRecord],
          low_confidence: float) -> tuple[Flag, ...]:
    """Why a sample deserves a look first; `others`: the other reviewers' labels."""
    votes = {r.label for r in others}
    out: list[Flag] = []
    if len(votes) > 1:
        out.append("disputed")
    elif votes and any(isinstance(v, int) and v != record.prediction for v in votes):
        out.append("corrected")  # an "unclear" alone says the reviewer could not tell
    if record.confidence < low_confidence or record.reason == "lowConfidence":
        out.append("lowConfidence")
    if record.reason == "driftedSlice" or (record.reason == "random"
                                           and record.oversampling > 1.0):
        out.append("oversampled")  # a low-confidence reason is flagged as such above
    return tuple(out)


def items(records: Iterable[SampleRecord],
          latest: Mapping[str, Mapping[str, LabelRecord]],
          resolved: Mapping[str, Resolved], reviewer: str, low_confidence: float,
          unlabelled: dict[str, Item] | None = None) -> list[Item]:
    """Each record as the page shows it. `unlabelled`: the caller's memo of the items of
    samples nobody has labelled (they depend on the record alone), for one reviewer and
    threshold: most samples, rebuilt on every new label otherwise."""
    out = []
    memo: dict[str, Item] = {} if unlabelled is None else unlabelled
    for record in records:
        by_reviewer = latest.get(record.id)
        if not by_reviewer:
            item = memo.get(record.id)
            if item is None:
                item = memo[record.id] = Item(record, flags(record, (), low_confidence), (),
                                              None, None)
            out.append(item)
            continue
        others = [r for who, r in by_reviewer.items() if who != reviewer]
        out.append(Item(record, flags(record, others, low_confidence),
                        tuple(by_reviewer.values()), resolved.get(record.id),
                        by_reviewer.get(reviewer)))
    return out


def queue(all_items: Iterable[Item]) -> list[Item]:
    """The samples this reviewer has not labelled, flagged first."""
    todo = [i for i in all_items if i.mine is None]
    todo.sort(key=lambda i: (i.rank, i.record.confidence, -when(i.record), i.record.id))
    return todo


def progress(all_items: Sequence[Item]) -> Progress:
    reviewed = [i for i in all_items if i.resolved is not None]
    return Progress(
        samples=len(all_items),
        reviewed=len(reviewed),
        mine=sum(1 for i in all_items if i.mine is not None),
        disagree=sum(1 for i in reviewed if i.resolved is not None
                     and isinstance(i.resolved.label, int)
                     and i.resolved.label != i.record.prediction),
        unresolved=sum(1 for i in reviewed if i.resolved is not None
                       and i.resolved.label is None),
        unclear=sum(1 for i in reviewed if i.resolved is not None
                    and i.resolved.label == UNCLEAR),
        to_review=sum(1 for i in all_items if i.mine is None),
    )
