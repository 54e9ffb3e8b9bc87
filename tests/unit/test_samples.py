"""The production-data contract: complete parts only, corrupt ones counted, labels resolved."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from modelship_api import samples as s


def _part(area: Path, name: str, lines: list[str], *, images: bool = True) -> Path:
    folder = area / s.SAMPLES_FOLDER / "2026-12-02" / "19" / name
    folder.mkdir(parents=True)
    if images:
        (folder / s.IMAGES_FILE).write_bytes(b"\x93NUMPY")
    (folder / s.RECORDS_FILE).write_text("".join(line + "\n" for line in lines))
    return folder


def _record(index: int, part: str = "v1-1-a") -> str:
    return s.SampleRecord(id=s.sample_id("2026-12-02/19", part, index), version=1,
                          time="2026-12-02T19:00:00Z", prediction=0, confidence=0.9,
                          probability=0.1).model_dump_json(by_alias=True)


def test_only_complete_parts_are_read_and_corrupt_ones_are_counted(tmp_path: Path) -> None:
    _part(tmp_path, "v1-1-a", [_record(0), _record(1)])
    _part(tmp_path, ".v1-2-a", [_record(0)])  # still being written: invisible
    _part(tmp_path, "v1-3-a", [_record(0), "{not json"])
    _part(tmp_path, "v1-4-a", [_record(0)], images=False)
    parts, corrupt = s.read_parts(tmp_path)
    assert [p.path.name for p in parts] == ["v1-1-a"]
    assert [r.id for r in parts[0].records] == ["2026-12-02/19/v1-1-a/0",
                                                "2026-12-02/19/v1-1-a/1"]
    assert corrupt == 2


def _label(sample: str, label: int | str, reviewer: str) -> s.LabelRecord:
    return s.LabelRecord.model_validate({"sample": sample, "label": label, "reviewer": reviewer,
                                         "at": "2026-12-02T19:00:00Z", "labelSet": "default"})


def test_a_correction_replaces_the_reviewers_earlier_label_and_both_lines_stay(
        tmp_path: Path) -> None:
    s.append_label(tmp_path, _label("a", 0, "ann"))
    s.append_label(tmp_path, _label("a", 1, "ann"))
    with (tmp_path / "labels/default/ann.jsonl").open("a") as f:
        f.write('{"sample": "a", "lab')  # a crash mid-append
    records, bad = s.read_labels(tmp_path, "default")
    assert [r.label for r in records] == [0, 1] and bad == 1
    resolved = s.resolve(records, s.LabelSetSettings())
    assert resolved["a"] == s.Resolved(label=1, reviewers=1, disagreement=False)


def test_disagreement_resolves_by_the_label_sets_rule() -> None:
    two_to_one = [_label("a", 0, "ann"), _label("a", 0, "bob"), _label("a", 1, "cy")]
    tie = [_label("b", 0, "ann"), _label("b", 1, "bob")]
    consensus = s.resolve(two_to_one + tie, s.LabelSetSettings(resolution="consensus"))
    assert consensus["a"] == s.Resolved(label=0, reviewers=3, disagreement=True)
    assert consensus["b"].label is None
    unclear = s.resolve(two_to_one + tie, s.LabelSetSettings(resolution="unclear"))
    assert unclear["a"].label == s.UNCLEAR and unclear["b"].label == s.UNCLEAR


def test_settings_round_trip_and_names_are_checked(tmp_path: Path) -> None:
    s.write_settings(tmp_path, "night-shift", s.LabelSetSettings(resolution="unclear"))
    assert s.read_settings(tmp_path, "night-shift").resolution == "unclear"
    assert s.read_settings(tmp_path, "other").resolution == "consensus"
    try:
        s.label_set_folder(tmp_path, "../x")
    except ValueError as e:
        assert "label set" in str(e)
    else:
        raise AssertionError("a path-like label set name was accepted")


def test_partition_and_part_names() -> None:
    t = datetime(2026, 12, 2, 19, 5, 1, 250000, tzinfo=UTC)
    assert s.hour_folder(t) == "2026-12-02/19"
    assert s.part_name(3, t, "pod-a") == "v3-1796238301250-pod-a"
