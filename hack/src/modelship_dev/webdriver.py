"""Headless Chromium driven over the W3C WebDriver protocol with the stdlib (urllib): Debian's
`chromium` and `chromium-driver` (hack/setup.sh installs them), no Selenium. Tests use it to
work a page as a person would: click, type keys, read text, take screenshots."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
KEYS = {"Enter": "\ue007", "Backspace": "\ue003", "Escape": "\ue00c"}


class WebDriverError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_browser() -> tuple[str, str]:
    """chromium and chromedriver on PATH, or an error that says how to get them."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        raise WebDriverError(
            "headless Chromium is needed: apt-get install chromium chromium-driver "
            f"(hack/setup.sh installs them as root); found chromium={chromium}, "
            f"chromedriver={driver}")
    return chromium, driver


class Browser:
    """One chromedriver process and one headless Chromium session; close() ends both."""

    def __init__(self, log: Path, width: int = 1100, height: int = 800,
                 timeout: float = 30) -> None:
        chromium, driver = find_browser()
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._log = log.open("wb")
        # Its own process group: close() ends chromedriver and the browsers it started.
        self._proc = subprocess.Popen([driver, f"--port={port}"], stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.session = ""
        try:
            deadline = time.monotonic() + timeout
            while not self._ready():
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise WebDriverError(f"chromedriver did not start; see {log}")
                time.sleep(0.1)
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", f"--window-size={width},{height}",
                    "--force-device-scale-factor=1"]},
            }}}
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/status", timeout=2) as r:
                return bool(json.load(r)["value"]["ready"])
        except (OSError, ValueError, KeyError):
            return False

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.load(r)["value"]
        except urllib.error.HTTPError as err:
            raise WebDriverError(f"{method} {path}: {err.read().decode()[:500]}") from None

    def _session(self, method: str, path: str, body: object = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        found = self._session("POST", "/element", {"using": "css selector", "value": css})
        return str(found[ELEMENT])

    def find_all(self, css: str) -> list[str]:
        found = self._session("POST", "/elements", {"using": "css selector", "value": css})
        return [str(e[ELEMENT]) for e in found]

    def click(self, css: str) -> None:
        self._session("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css: str) -> str:
        return str(self._session("GET", f"/element/{self.find(css)}/text"))

    def attribute(self, css: str, name: str) -> str | None:
        value = self._session("GET", f"/element/{self.find(css)}/attribute/{name}")
        return None if value is None else str(value)

    def press(self, key: str) -> None:
        """One key, pressed and released on whatever has focus (the page's own handlers)."""
        k = KEYS.get(key, key)
        self._session("POST", "/actions", {"actions": [{
            "type": "key", "id": "keyboard",
            "actions": [{"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]}]})

    def script(self, code: str, *args: object) -> Any:
        return self._session("POST", "/execute/sync", {"script": code, "args": list(args)})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._session("GET", "/screenshot"))

    def close(self) -> None:
        try:
            if self.session and self._proc.poll() is None:
                self._session("DELETE", "")
        except (OSError, WebDriverError):
            pass
        finally:
            self.session = ""
            self._end_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._end_group(signal.SIGKILL)
                self._proc.wait(timeout=10)
            self._log.close()

    def _end_group(self, sig: signal.Signals) -> None:
        """chromedriver's group, which holds the browsers it started even after it exits."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
