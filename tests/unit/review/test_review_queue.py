"""What a reviewer sees first, the progress line's counts, and the reviewed-accuracy figures."""

from __future__ import annotations

from modelship.core.review import figures
from modelship.core.review.queue import items, progress, queue
from modelship_api import samples as s


def _rec(i: int, prediction: int = 0, confidence: float = 0.9, version: int = 1,
         reason: s.SampleReason = "random", oversampling: float = 1.0,
         minute: int = 0) -> s.SampleRecord:
    return s.SampleRecord(id=f"2026-12-02/19/p/{i}", version=version,
                          time=f"2026-12-02T19:{minute:02d}:00Z", prediction=prediction,
                          confidence=confidence, reason=reason, oversampling=oversampling,
                          probability=0.01 * oversampling)


def _label(i: int, label: int | str, reviewer: str,
           source: str = "human") -> s.LabelRecord:
    return s.LabelRecord.model_validate({
        "sample": f"2026-12-02/19/p/{i}", "label": label, "reviewer": reviewer,
        "at": "2026-12-02T20:00:00Z", "labelSet": "default", "source": source})


def _accuracy(records: list[s.SampleRecord], labels: list[s.LabelRecord],
              settings: s.LabelSetSettings, window: int) -> list[figures.Accuracy]:
    return figures.reviewed_accuracy(figures.newest_first(records), labels, settings, window)


def _view(records: list[s.SampleRecord], labels: list[s.LabelRecord], reviewer: str,
          resolution: str = "consensus") -> list[str]:
    settings = s.LabelSetSettings.model_validate({"resolution": resolution})
    every = items(records, s.latest_per_reviewer(labels), s.resolve(labels, settings),
                  reviewer, low_confidence=0.6)
    return [i.record.id.rsplit("/", 1)[1] for i in queue(every)]


def test_flagged_samples_come_first_and_a_reviewers_own_labels_leave_their_queue() -> None:
    records = [
        _rec(0, minute=1),                            # plain, older
        _rec(1, minute=2),                            # plain, newer
        _rec(2, confidence=0.3, reason="lowConfidence", oversampling=10),
        _rec(3, confidence=0.55),                     # low confidence by the threshold
        _rec(4, reason="driftedSlice", oversampling=10),
        _rec(5, prediction=1),                        # bob says the model is wrong
        _rec(6, prediction=2),                        # bob and carol disagree
        _rec(7),                                      # bob agrees with the model
        _rec(8),                                      # alice already labelled it
    ]
    labels = [_label(5, 0, "bob"), _label(6, 2, "bob"), _label(6, 0, "carol"),
              _label(7, 0, "bob"), _label(8, 0, "alice")]
    assert _view(records, labels, "alice") == ["6", "5", "2", "3", "4", "1", "0", "7"]
    # bob has labelled 5, 6 and 7: only alice's 8 (agreeing with the model) is left last.
    assert _view(records, labels, "bob") == ["2", "3", "4", "1", "0", "8"]


def test_progress_counts_reviewed_disagreeing_unresolved_and_unclear_samples() -> None:
    records = [_rec(i, prediction=0) for i in range(6)]
    labels = [_label(0, 0, "alice"),                           # agrees with the model
              _label(1, 2, "alice"),                           # disagrees
              _label(2, 1, "alice"), _label(2, 2, "bob"),      # no majority
              _label(3, "unclear", "bob")]
    settings = s.LabelSetSettings()
    every = items(records, s.latest_per_reviewer(labels), s.resolve(labels, settings),
                  "alice", 0.6)
    p = progress(every)
    assert (p.samples, p.reviewed, p.mine, p.disagree, p.unresolved, p.unclear,
            p.to_review) == (6, 4, 3, 1, 1, 1, 3)


def test_accuracy_is_per_version_and_source_over_the_newest_window() -> None:
    records = ([_rec(i, prediction=0, minute=i) for i in range(5)]
               + [_rec(10, prediction=1, version=2)])
    labels = [
        _label(0, 1, "alice"),                          # oldest: out of a window of 3
        _label(1, 0, "alice"), _label(2, 1, "alice"),
        _label(3, "unclear", "alice"),                  # in the window, counts neither way
        _label(4, 0, "truth", source="automated"),
        _label(10, 1, "truth", source="automated"),
    ]
    got = {(a.version, a.source): (a.accuracy, a.samples)
           for a in _accuracy(records, labels, s.LabelSetSettings(), 3)}
    assert got == {
        (1, "human"): (0.5, 2),        # 3 (unclear), 2 (wrong), 1 (right)
        (1, "automated"): (1.0, 1),
        (1, "all"): (0.5, 2),          # 4 (right), 3 (unclear), 2 (wrong)
        (2, "automated"): (1.0, 1),
        (2, "all"): (1.0, 1),
    }
    resolved = s.resolve(labels, s.LabelSetSettings())
    assert figures.labels_total(records, resolved) == 5  # the unclear one is left out


def test_disagreeing_reviewers_resolve_by_the_label_sets_rule_in_the_figures() -> None:
    records = [_rec(0, prediction=1)]
    labels = [_label(0, 1, "alice"), _label(0, 2, "bob")]
    consensus = _accuracy(records, labels, s.LabelSetSettings(), 10)
    assert [(a.source, a.samples) for a in consensus] == []  # no majority: not counted
    unclear = s.LabelSetSettings(resolution="unclear")
    assert _accuracy(records, labels, unclear, 10) == []
    assert figures.labels_total(records, s.resolve(labels, unclear)) == 0
    labels.append(_label(0, 1, "carol"))
    [a] = [a for a in _accuracy(records, labels, s.LabelSetSettings(), 10)
           if a.source == "all"]
    assert (a.accuracy, a.samples) == (1.0, 1)
