"""`modelship review` refuses bad flags before serving, naming the flag and the fix; its
server answers bad requests with a clear error and writes nothing."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelship import cli
from modelship.review.server import Review, Settings, make_server
from modelship.review.store import Area
from modelship_api import samples as s
from tests.production_area import Sample, write_part


def _review(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.main, ["review", *args])
    return result.exit_code, result.output


def _area(tmp_path: Path) -> list[str]:
    images = np.zeros((2, 1, 4, 4), dtype=np.float32)
    return write_part(s.production_area(tmp_path, "defects"), 1,
                      datetime(2026, 12, 2, 19, tzinfo=UTC), images,
                      [Sample(0, 0.9), Sample(1, 0.5)])


def test_bad_flags_are_refused_by_name(tmp_path: Path) -> None:
    base = ["--volume-path", str(tmp_path), "--model", "defects"]
    code, out = _review(*base, "--reviewer", "alice")
    assert code == 2 and "Invalid value for --volume-path: no production area" in out
    assert "check --volume-path and --model" in out
    _area(tmp_path)
    code, out = _review(*base, "--reviewer", "al ice")
    assert code == 2 and "Invalid value for --reviewer: 'al ice': use letters" in out
    code, out = _review(*base, "--reviewer", "alice", "--listen", "8090")
    assert code == 2 and "Invalid value for --listen: '8090': expected HOST:PORT" in out

    s.write_settings(s.production_area(tmp_path, "defects"), "default",
                     s.LabelSetSettings(resolution="consensus"))
    code, out = _review(*base, "--reviewer", "alice", "--resolution", "unclear")
    assert code == 2 and "label set 'default' resolves by consensus" in out
    assert "drop --resolution or start a new --label-set" in out

    settings = s.production_area(tmp_path, "defects") / "labels" / "default" / "settings.json"
    settings.write_text('{"resolution": "majority"}')
    code, out = _review(*base, "--reviewer", "alice")
    assert code == 1 and f"Error: {settings}: expected {{\"resolution\": \"consensus\" or " \
        "\"unclear\"}: Input should be 'consensus' or 'unclear'" in out, out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[str], Path]]:
    ids = _area(tmp_path)
    area = s.production_area(tmp_path, "defects")
    review = Review(Area(area, "default", 200), Settings("defects", "alice", 0.6, None, None))
    httpd = make_server(review, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", ids, area
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url + "/api/labels", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_bad_requests_get_clear_errors_and_write_nothing(
        server: tuple[str, list[str], Path]) -> None:
    url, ids, area = server
    form = b"sample=x&label=1"
    assert _post(url, form, "application/x-www-form-urlencoded") == (
        415, {"error": "send application/json"})
    # No CORS preflight is ever granted, so another site cannot post JSON from a browser.
    preflight = urllib.request.Request(url + "/api/labels", method="OPTIONS")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(preflight, timeout=10)
    assert refused.value.code == 501
    assert _post(url, b'{"sample": "2026-12-02/19/nope/0", "label": 0}') == (
        404, {"error": "no sample '2026-12-02/19/nope/0' in this production area"})
    # Classes unknown (no --classes, no repository): the indices seen, 0..1.
    assert _post(url, json.dumps({"sample": ids[0], "label": 5}).encode()) == (
        400, {"error": 'label: a class index 0..1 or "unclear"'})
    assert _post(url, b"[1]")[0] == 400
    assert not (area / s.LABELS_FOLDER).exists()
    code, body = _post(url, json.dumps({"sample": ids[0], "label": "unclear"}).encode())
    assert code == 200 and body["item"]["resolved"] == {
        "label": "unclear", "reviewers": 1, "disagreement": False}
    with urllib.request.urlopen(url + "/api/state", timeout=10) as r:
        state = json.load(r)
    assert state["classes"] == ["0", "1"] and state["progress"]["unclear"] == 1
    assert [i["id"] for i in state["queue"]] == [ids[1]]
