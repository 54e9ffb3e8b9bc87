"""Reviewed production samples as training data: what is skipped and counted, the stable
held-out split, weights and the lineage digests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from production_fixture import START, label, write_part, write_reviewed

from modelship_api import samples as s
from modelship_api.trainingrun import GeneratedDataset, ProductionData
from modelship_trainer import production
from modelship_trainer.data import ArrayDataset
from modelship_trainer.production import ProductionSamples, load
from modelship_trainer.surface_defects import CLASSES, generate
from modelship_trainer.training import fit_classifier, predict_logits

SHAPE = (1, 16, 16)
SPEC = ProductionData.model_validate({"volume": {"hostPath": "/unused"}})


def images(n: int, value: float = 0.5) -> np.ndarray:
    return np.full((n, *SHAPE), value, dtype=np.float32)


def read(volume: Path, spec: ProductionData = SPEC, weighted: bool = True) -> ProductionSamples:
    return load(spec, volume, "defects", CLASSES, SHAPE, weighted)


def area_of(volume: Path) -> Path:
    return s.production_area(volume, "defects")


def test_corrupt_parts_and_bad_label_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    area = area_of(tmp_path)
    good = write_part(area, images(4))
    # Each corrupt part is labelled too: its samples must still never be used.
    short = write_part(area, images(3), at=START + timedelta(minutes=1))
    records = area / s.SAMPLES_FOLDER / short[0].rsplit("/", 1)[0]
    np.save(records / s.IMAGES_FILE, images(2, 0.9))  # 2 rows for 3 records
    garbage = write_part(area, images(2), at=START + timedelta(minutes=2))
    (area / s.SAMPLES_FOLDER / garbage[0].rsplit("/", 1)[0] / s.IMAGES_FILE).write_bytes(
        b"\x93NUMPY truncated")
    other_shape = write_part(area, np.zeros((2, 1, 8, 8)), at=START + timedelta(minutes=3))
    bad_record = write_part(area, images(1), at=START + timedelta(minutes=4))
    with (area / s.SAMPLES_FOLDER / bad_record[0].rsplit("/", 1)[0] / s.RECORDS_FILE).open(
            "a") as f:
        f.write('{"id": "half a line')
    hidden = area / s.SAMPLES_FOLDER / "2026-12-02" / "19" / ".v1-9-pod-a"  # being written
    hidden.mkdir()
    for sample in good + short + garbage + other_shape + bad_record:
        label(area, sample, 1)
    label(area, good[1], s.UNCLEAR, reviewer="ann")  # 1 vs unclear: no majority
    label(area, good[2], 7)  # not a class of the dataset (overrides truth's 1)
    label(area, good[3], 2, reviewer="ann")
    label(area, good[3], 2, reviewer="bob")  # 2 of 3 say 2
    with (area / s.LABELS_FOLDER / "default" / "ann.jsonl").open("a") as f:
        f.write('{"sample": "' + good[0] + '", "lab')  # a crash mid-append

    got = read(tmp_path)

    used = got.used
    assert (used.parts, used.corrupt_parts, used.bad_label_lines) == (1, 4, 1)
    assert used.excluded_labels == 2  # the unresolved and the unknown class
    assert sorted(got.train_ids + got.held_out_ids) == sorted([good[0], good[3]])
    assert used.train + used.held_out == 2
    labels = dict(zip(got.train_ids + got.held_out_ids,
                      got.train.labels.tolist() + got.held_out.labels.tolist(), strict=True))
    assert labels == {good[0]: 1, good[3]: 2}
    assert not np.any(np.concatenate([got.train.images, got.held_out.images]) == 0.9)


def test_held_out_samples_are_never_trained_on_across_runs_and_new_data(
        tmp_path: Path) -> None:
    area = area_of(tmp_path)
    for minute in range(3):
        ids = write_part(area, images(100), at=START + timedelta(minutes=minute))
        for sample in ids:
            label(area, sample, 0)
    first = read(tmp_path)
    assert read(tmp_path).held_out_ids == first.held_out_ids  # same data, same split
    assert 0.2 < len(first.held_out_ids) / 300 < 0.4  # heldOutFraction 0.3

    later = START + timedelta(days=1)
    for sample in write_part(area, images(100), at=later, writer="pod-b"):
        label(area, sample, 0)
    label(area, first.held_out_ids[0], 0, reviewer="ann")  # more labels: still held out
    second = read(tmp_path)

    assert set(first.held_out_ids) <= set(second.held_out_ids)
    assert set(first.train_ids) <= set(second.train_ids)
    assert not set(second.train_ids) & set(second.held_out_ids)
    assert len(second.held_out_ids) > len(first.held_out_ids)
    # Raising the fraction only moves samples from train to held-out.
    more = read(tmp_path, SPEC.model_copy(update={"held_out_fraction": 0.5}))
    assert set(second.held_out_ids) <= set(more.held_out_ids)


def test_weights_undo_over_sampling_and_the_newest_sample_dates_the_data(
        tmp_path: Path) -> None:
    area = area_of(tmp_path)
    probabilities = [0.1, 1.0] * 100  # every other sample over-sampled 10x
    ids = write_part(area, images(200), probabilities=probabilities)
    for sample in ids:
        label(area, sample, 0)
    got = read(tmp_path)
    assert got.train.weights is not None and got.used.weighted
    by_id = dict(zip(got.train_ids, got.train.weights.tolist(), strict=True))
    random_w = [w for i, w in by_id.items() if probabilities[int(i.rsplit("/", 1)[1])] == 0.1]
    over_w = [w for i, w in by_id.items() if probabilities[int(i.rsplit("/", 1)[1])] == 1.0]
    assert np.allclose(np.mean(random_w) / np.mean(over_w), 10.0)
    assert np.isclose(got.train.weights.mean(), 1.0)
    assert got.held_out.weights is None
    assert read(tmp_path, weighted=False).train.weights is None
    newest = max(int(i.rsplit("/", 1)[1]) for i in got.train_ids + got.held_out_ids)
    assert got.newest == START + timedelta(seconds=newest)
    assert got.used.newest_sample == got.newest.isoformat()


def test_lineage_digests_change_when_the_data_changes(tmp_path: Path) -> None:
    area = area_of(tmp_path)
    data = generate(GeneratedDataset(samples=100, image_size=16, brightness=0.2))
    write_reviewed(area, data)
    base = read(tmp_path).used
    assert read(tmp_path).used == base  # same data, same digests
    assert base.parts_digest.startswith("sha256:") and base.labels_digest.startswith("sha256:")

    first_id = read(tmp_path).train_ids[0]
    label(area, first_id, (int(data.labels[int(first_id.rsplit("/", 1)[1])]) + 1) % 3,
          reviewer="truth")  # a correction
    relabelled = read(tmp_path).used
    assert relabelled.labels_digest != base.labels_digest
    assert relabelled.parts_digest == base.parts_digest

    write_reviewed(area, data, at=START + timedelta(hours=1), writer="pod-b")
    grown = read(tmp_path).used
    assert grown.parts_digest != relabelled.parts_digest
    assert grown.labels_digest != relabelled.labels_digest
    assert grown.parts == 2


def test_training_honours_sample_weights() -> None:
    # The same input labelled 0 thrice and 1 once: weights decide which label the model learns.
    x = np.zeros((4, 1, 2, 2), dtype=np.float32)
    y = np.array([0, 0, 0, 1], dtype=np.int64)
    for weights, expected in ((None, 0), (np.array([1, 1, 1, 30], dtype=np.float32), 1)):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        fit_classifier(model, ArrayDataset(x, y, ("a", "b"), weights), epochs=50, lr=0.1,
                       batch_size=4, weight_decay=0.0, seed=0)
        assert int(predict_logits(model, x[:1]).argmax()) == expected


def test_an_area_with_nothing_yet_adds_nothing(tmp_path: Path) -> None:
    got = read(tmp_path)
    assert (got.used.parts, got.used.corrupt_parts, got.used.train, got.used.held_out) == (
        0, 0, 0, 0)
    assert len(got.train) == len(got.held_out) == 0 and got.newest is None
    assert got.train.sample_shape == SHAPE and not got.used.weighted


def test_the_reference_is_the_newest_samples_never_trained_on_since_the_drift(
        tmp_path: Path) -> None:
    area = area_of(tmp_path)
    before = write_part(area, images(50, 0.5))  # bright, before the lights dimmed
    drift = START + timedelta(minutes=10)
    dark = write_part(area, images(150, 0.2), at=drift, writer="pod-b")
    for sample in before + dark[:100]:
        label(area, sample, 0)  # dark[100:] are not reviewed yet
    spec = SPEC.model_copy(update={"reference_since": drift.isoformat()})
    got = read(tmp_path, spec)
    trained = set(got.train_ids)
    # Every dark sample not trained on (held out, or not reviewed), none from before.
    assert len(got.reference.images) == 150 - len(trained & set(dark)) > 50
    assert np.allclose(got.reference.images, 0.2)
    assert got.reference.oldest is not None and got.reference.oldest >= drift
    everything = read(tmp_path)  # no since: the bright held-out and unreviewed ones too
    assert len(everything.reference.images) == 200 - len(everything.train_ids)
    assert np.isclose(everything.reference.weights, 10.0).all()  # 1/probability 0.1
    held_out = read(tmp_path, SPEC.model_copy(update={"reference": "HeldOut"}))
    assert len(held_out.reference.images) == 0  # not collected: the profile is the split's


def test_the_reference_keeps_only_the_newest_samples(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(production, "MAX_REFERENCE", 30)
    area = area_of(tmp_path)
    for minute in range(4):  # 4 unreviewed parts of 25, oldest to newest
        write_part(area, images(25, 0.1 * (minute + 1)), at=START + timedelta(minutes=minute),
                   writer=f"pod-{minute}")
    got = read(tmp_path)
    assert len(got.reference.images) == 30
    newest_two = {round(float(v), 2) for v in got.reference.images.reshape(30, -1)[:, 0]}
    assert newest_two == {0.3, 0.4}  # all 25 of the newest part, 5 of the one before
    assert got.reference.oldest == START + timedelta(minutes=2, seconds=20)
