"""`modelship review` in a real headless Chromium (Debian's chromium and chromium-driver over
WebDriver): two reviewers label sampled production images by click and by keystroke, disagree
on one sample, and the label files, the resolution, the progress line and /metrics show it.

Set MODELSHIP_REVIEW_SCREENSHOTS=DIR to keep the screenshots (the README's come from here)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelship_api import samples as s
from modelship_api.trainingrun import GeneratedDataset
from modelship_dev.review_page import ReviewPage
from modelship_dev.webdriver import Browser
from modelship_trainer.surface_defects import CLASSES, generate
from tests.conftest import wait_for
from tests.production_area import Sample, write_part

pytestmark = pytest.mark.integration

MODEL = "surface-defects"
T0 = datetime(2026, 12, 2, 19, 5, tzinfo=UTC)


@dataclass
class Area:
    volume: Path
    repository: Path
    plain: list[str]  # confident, random samples, as a queue orders them
    low: str  # low confidence (over-sampled for it)
    drifted: str  # a drifted-slice sample, over-sampled

    @property
    def root(self) -> Path:
        return s.production_area(self.volume, MODEL)


@pytest.fixture
def area(tmp_path: Path) -> Area:
    """Seven samples in three parts (two versions) of generated surface-defect images, and
    a model repository whose lineage.json names the classes."""
    bright = generate(GeneratedDataset(samples=100, seed=3, brightness=0.55, defect_rate=0.6))
    dark = generate(GeneratedDataset(samples=100, seed=4, brightness=0.25, defect_rate=0.6))
    pick = {k: [int(i) for i in np.flatnonzero(bright.labels == k)] for k in range(3)}
    volume, repository = tmp_path / "volume", tmp_path / "models"
    (repository / MODEL / "2").mkdir(parents=True)
    (repository / MODEL / "2" / "lineage.json").write_text(json.dumps({"classes": CLASSES}))
    root = s.production_area(volume, MODEL)
    first = write_part(root, 1, T0, bright.images[[pick[0][0], pick[1][0], pick[2][0]]],
                       [Sample(0, 0.97), Sample(1, 0.93), Sample(2, 0.91)])
    second = write_part(root, 1, T0 + timedelta(minutes=1),
                        np.stack([bright.images[pick[2][1]], dark.images[0]]),
                        [Sample(1, 0.45, "lowConfidence", 10.0),
                         Sample(0, 0.88, "driftedSlice", 10.0)])
    third = write_part(root, 2, T0 + timedelta(minutes=2),
                       bright.images[[pick[0][1], pick[1][1]]],
                       [Sample(0, 0.95), Sample(1, 0.9)])
    # Unflagged samples: the least confident first, then the newest.
    plain = [third[1], first[2], first[1], third[0], first[0]]
    return Area(volume, repository, plain=plain, low=second[0], drifted=second[1])


@pytest.fixture
def serve(area: Area, tmp_path: Path) -> Iterator[dict[str, ReviewPage]]:
    """`modelship review` for alice and for bob on the same volume, each on its own port."""
    servers: dict[str, ReviewPage] = {}
    try:
        for reviewer in ("alice", "bob"):
            servers[reviewer] = ReviewPage(
                area.volume, MODEL, area.repository, tmp_path / f"review-{reviewer}.log",
                reviewer=reviewer, listen="127.0.0.1:0", args=("--resolution", "unclear"))
            servers[reviewer].start()
            assert servers[reviewer].host == "127.0.0.1", servers[reviewer].url
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    # No Chromium is a failure, not a skip: hack/setup.sh installs it for CI.
    with Browser(tmp_path / "chromedriver.log", width=1100, height=760) as b:
        yield b


def _labels(area: Area, reviewer: str) -> list[dict[str, object]]:
    path = area.root / s.LABELS_FOLDER / "default" / f"{reviewer}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _card(browser: Browser) -> str:
    return browser.attribute("#sample", "data-id") or ""


def _wait_progress(browser: Browser, starts: str) -> str:
    text: str = wait_for(f"progress line {starts!r}", lambda: (
        t if (t := browser.text("#progress")).startswith(starts) else None), timeout=20)
    return text


def _next_card(browser: Browser, after: str) -> str:
    card: str = wait_for("the next sample on the card",
                         lambda: (c if (c := _card(browser)) != after else None), timeout=20)
    return card


def _shot(browser: Browser, tmp_path: Path, name: str) -> None:
    data = browser.screenshot()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    (tmp_path / name).write_bytes(data)
    keep = os.environ.get("MODELSHIP_REVIEW_SCREENSHOTS")
    if keep:
        shutil.copy2(tmp_path / name, Path(keep) / name)


def test_two_reviewers_label_by_click_and_key_and_disagree(
        area: Area, serve: dict[str, ReviewPage], browser: Browser, tmp_path: Path) -> None:
    settings = area.root / s.LABELS_FOLDER / "default" / s.SETTINGS_FILE
    assert json.loads(settings.read_text()) == {"resolution": "unclear"}

    # alice: flagged samples first (low confidence, then the over-sampled drifted slice).
    browser.open(serve["alice"].url)
    _wait_progress(browser, "0 of 7 reviewed · 0 disagree with the model · you: 0 done, 7 to go")
    assert "you are alice" in browser.text("#about")
    assert "marking the sample unclear" in browser.text("#about")
    wait_for("the first card", lambda: _card(browser) == area.low, timeout=20)
    assert browser.text("#flags") == "The model is unsure"
    assert browser.text("#prediction") == "The model says scratch (45% sure)"
    wait_for("the sample's PNG shown", lambda: browser.script(
        "const i = document.getElementById('image'); return i.complete && i.naturalWidth")
        == 32, timeout=20)
    _shot(browser, tmp_path, "review-page.png")

    browser.press("Enter")  # the model is right
    _wait_progress(browser, "1 of 7 reviewed · 0 disagree")
    assert _next_card(browser, area.low) == area.drifted
    assert browser.text("#flags") == "Unusual input (kept 10\u00d7 more often)"
    browser.click('#classes button[data-label="2"]')  # "pit": the model said ok
    _wait_progress(browser, "2 of 7 reviewed · 1 disagree")
    plain = _next_card(browser, area.drifted)
    assert plain == area.plain[0]  # then the least confident unflagged sample
    browser.press("u")  # can't tell
    _wait_progress(browser, "3 of 7 reviewed · 1 disagree with the model · 1 unclear")
    assert [(x["sample"], x["label"]) for x in _labels(area, "alice")] == [
        (area.low, 1), (area.drifted, 2), (plain, "unclear")]

    # bob, on his own server: alice's correction comes first for a second opinion.
    browser.open(serve["bob"].url)
    _wait_progress(browser, "3 of 7 reviewed · 1 disagree with the model · 1 unclear · "
                            "you: 0 done, 7 to go")
    wait_for("bob's first card", lambda: _card(browser) == area.drifted, timeout=20)
    assert browser.text("#flags").startswith("Another reviewer says the model is wrong")
    assert "Others said: alice: pit" in browser.text("#others")
    browser.press("1")  # "ok", as the model said: bob disagrees with alice
    _wait_progress(browser, "3 of 7 reviewed · 0 disagree with the model · 2 unclear")
    assert browser.text("#status") == "Saved: ok. Resolved: unclear (reviewers disagree)."
    assert browser.text("#recent li") == "ok → unclear (reviewers disagree)"
    assert _next_card(browser, area.drifted) == area.low
    browser.press("b")  # back to the one just labelled: both answers and the resolution
    wait_for("the disputed sample again", lambda: _card(browser) == area.drifted, timeout=20)
    assert browser.text("#others") == "Others said: alice: pit"
    assert browser.text("#mine") == ("You said ok; pick again to change it. Resolved: "
                                     "unclear (reviewers disagree)")
    _shot(browser, tmp_path, "review-disagreement.png")
    browser.press("Escape")  # on to the queue, nothing written

    assert _next_card(browser, area.drifted) == area.low
    browser.click("#confirm")  # agrees with alice and the model
    _wait_progress(browser, "3 of 7 reviewed · 0 disagree")
    wait_for("the status line", lambda: browser.text("#status")
             == "Saved: scratch. Resolved: scratch (2 reviewers agree).", timeout=20)
    bobs_next = _next_card(browser, area.low)
    assert bobs_next == area.plain[1]  # alice's "unclear" one waits behind unlabelled ones
    browser.press("2")  # scratch: the model said pit
    _wait_progress(browser, "4 of 7 reviewed · 1 disagree with the model · 2 unclear · "
                            "you: 3 done, 4 to go")

    # The files: every label kept, who, when and which label set; both reviewers' answers
    # for the disputed sample stay side by side.
    bob = _labels(area, "bob")
    assert [(x["sample"], x["label"]) for x in bob] == [
        (area.drifted, 0), (area.low, 1), (area.plain[1], 1)]
    for x in _labels(area, "alice") + bob:
        assert x["labelSet"] == "default" and x["source"] == "human"
        assert datetime.fromisoformat(str(x["at"])).tzinfo is not None
    records, _ = s.read_labels(area.root, "default")
    resolved = s.resolve(records, s.read_settings(area.root, "default"))
    assert resolved[area.drifted] == s.Resolved(label=s.UNCLEAR, reviewers=2,
                                                disagreement=True)
    assert resolved[area.low] == s.Resolved(label=1, reviewers=2, disagreement=False)

    # /metrics (alice's server; it reads bob's file as it changes): version 1 has two samples
    # resolved to a class (low: right, plain[1]: wrong; the drifted one is unclear), version
    # 2 none (plain[0] is unclear), so it has no series.
    with urllib.request.urlopen(serve["alice"].url + "metrics", timeout=10) as r:
        text = r.read().decode()
    values = {(x.name, x.labels.get("version", ""), x.labels.get("source", "")): x.value
              for f in text_string_to_metric_families(text) for x in f.samples}
    for source in ("human", "all"):
        assert values[("modelship_reviewed_accuracy", "1", source)] == 0.5
        assert values[("modelship_reviewed_samples", "1", source)] == 2
    assert not [k for k in values if k[1] == "2" or k[2] == "automated"], values
    assert values[("modelship_reviewed_labels_total", "", "")] == 2
