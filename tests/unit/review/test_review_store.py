"""The review page's view of a production area: complete parts with matching images only,
labels of other processes seen as their files change, nothing re-read while nothing moves."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from prometheus_client.parser import text_string_to_metric_families

from modelship.review.server import Review, Settings
from modelship.review.store import Area, UnknownSampleError
from modelship_api import samples as s
from tests.production_area import Sample, write_part

T0 = datetime(2026, 12, 2, 19, 5, tzinfo=UTC)


def _area(tmp_path: Path) -> tuple[Path, list[str]]:
    area = s.production_area(tmp_path, "defects")
    images = np.linspace(0, 1, 2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    ids = write_part(area, 1, T0, images, [Sample(0, 0.9), Sample(1, 0.4)])
    # A part whose images.npy holds fewer rows than its records: corrupt, skipped.
    bad = write_part(area, 1, T0.replace(minute=6), images[:1], [Sample(0, 0.9)])
    np.save(area / s.SAMPLES_FOLDER / bad[0].rsplit("/", 1)[0] / s.IMAGES_FILE, images[:0])
    return area, ids


def test_only_parts_whose_images_match_their_records_are_shown(tmp_path: Path) -> None:
    area, ids = _area(tmp_path)
    snap = Area(area, "default", 200).snapshot()
    assert [r.id for r in snap.records] == ids
    assert snap.corrupt_parts == 1


def test_images_are_served_as_the_model_saw_them(tmp_path: Path) -> None:
    area, ids = _area(tmp_path)
    pixels = np.asarray(PILImage.open(io.BytesIO(Area(area, "default", 200).image_png(ids[1]))))
    want = np.round(np.linspace(0, 1, 32, dtype=np.float32)[16:] * 255).reshape(4, 4)
    np.testing.assert_array_equal(pixels, want)
    with pytest.raises(UnknownSampleError):
        Area(area, "default", 200).image_png("2026-12-02/19/nope/0")


def test_labels_written_elsewhere_show_up_and_an_idle_area_is_not_read_again(
        tmp_path: Path) -> None:
    area, ids = _area(tmp_path)
    store = Area(area, "default", 200)
    first = store.snapshot()
    assert store.snapshot() is first  # nothing changed: the same snapshot, nothing re-read
    store.append("alice", ids[0], 1)
    s.append_label(area, s.LabelRecord(sample=ids[0], label=0, reviewer="bob",
                                       at="2026-12-02T20:00:00Z", label_set="default"))
    snap = store.snapshot()
    assert snap is not first
    assert {who: r.label for who, r in snap.latest[ids[0]].items()} == {"alice": 1, "bob": 0}
    assert snap.resolved[ids[0]] == s.Resolved(label=None, reviewers=2, disagreement=True)
    s.write_settings(area, "default", s.LabelSetSettings(resolution="unclear"))
    assert store.snapshot().resolved[ids[0]].label == s.UNCLEAR


def test_metrics_are_the_gauges_of_the_label_files(tmp_path: Path) -> None:
    area, ids = _area(tmp_path)
    review = Review(Area(area, "default", 200),
                    Settings("defects", "alice", 0.6, ["ok", "scratch"], None))
    review.label({"sample": ids[0], "label": 1})
    review.label({"sample": ids[1], "label": 1})
    with pytest.raises(ValueError, match=r"label: a class index 0\.\.1 or \"unclear\""):
        review.label({"sample": ids[1], "label": 7})
    families = {f.name: f for f in text_string_to_metric_families(review.metrics().decode())}
    values = {(x.name, tuple(sorted(x.labels.items()))): x.value
              for f in families.values() for x in f.samples}
    for source in ("human", "all"):
        labels = (("model", "defects"), ("source", source), ("version", "1"))
        assert values[("modelship_reviewed_accuracy", labels)] == 0.5
        assert values[("modelship_reviewed_samples", labels)] == 2
    assert values[("modelship_reviewed_labels_total", (("model", "defects"),))] == 2
    assert not [k for k in values if ("source", "automated") in k[1]]


def test_label_files_are_read_on_from_where_the_last_read_stopped(tmp_path: Path) -> None:
    area, ids = _area(tmp_path)
    store = Area(area, "default", 200)
    store.append("alice", ids[0], 0)
    assert len(store.snapshot().labels) == 1
    path = area / s.LABELS_FOLDER / "default" / "alice.jsonl"
    line = s.LabelRecord(sample=ids[1], label=1, reviewer="alice", at="2026-12-02T20:00:00Z",
                         label_set="default").model_dump_json(by_alias=True)
    with path.open("a") as f:  # a line still being written: not read, not counted bad
        f.write(line[:20])
    snap = store.snapshot()
    assert (len(snap.labels), snap.bad_label_lines) == (1, 0)
    with path.open("a") as f:
        f.write(line[20:] + "\n{broken\n")
    snap = store.snapshot()
    assert [r.sample for r in snap.labels] == [ids[0], ids[1]]
    assert snap.bad_label_lines == 1
    assert (list(snap.labels), snap.bad_label_lines) == s.read_labels(area, "default")
    path.write_text(line + "\n")  # rewritten shorter: read again from the start
    snap = store.snapshot()
    assert ([r.sample for r in snap.labels], snap.bad_label_lines) == ([ids[1]], 0)
