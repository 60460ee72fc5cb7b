"""The report in a real browser: headless Chromium, driven over the DevTools protocol.

Skipped where Chromium or websocket-client is missing (CI installs both)."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from npgpt.glassbox.report import write_report
from tests.glassbox.run_fixture import make_run

CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")


class DevTools:
    """One page of a headless Chromium: commands in, events kept."""

    def __init__(self, profile):
        websocket = pytest.importorskip("websocket")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--disable-sync",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                pytest.skip("chromium did not start a DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60)
        self.next_id, self.events = 0, []

    def send(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)     # the browser's own process group
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def browser(tmp_path):
    devtools = DevTools(tmp_path / "profile")
    yield devtools
    devtools.close()


def open_page(browser, page):
    for domain in ("Network", "Runtime", "Log", "Page"):
        browser.send(f"{domain}.enable")
    url = page.resolve().as_uri()
    browser.send("Page.navigate", url=url)
    deadline = time.monotonic() + 60
    while browser.evaluate("document.body && document.body.dataset.ready") != "1":
        assert time.monotonic() < deadline, "the page's script never finished"
        time.sleep(0.1)
    return url


# every canvas drawn (some pixel not white), every <img> decoded
PICTURES = """(() => {
  const canvases = [...document.querySelectorAll('canvas')];
  const blank = canvases.filter(c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) return false;
    return true;
  });
  const images = [...document.querySelectorAll('img')];
  return {canvases: canvases.length, blank: blank.length,
          images: images.length, broken: images.filter(i => !i.complete || !i.naturalWidth).length,
          missing: [...document.querySelectorAll('.missing')].map(e => e.textContent)};
})()"""

ATTENTION = "[...document.querySelectorAll('#attention canvas')].map(c => c.toDataURL()).join()"
LENS = "[...document.querySelectorAll('#lens td')].map(td => td.style.background).join()"


def test_report_opens_offline_draws_everything_and_its_controls_redraw(tmp_path, browser):
    page = write_report(make_run(tmp_path / "run"))
    url = open_page(browser, page)

    pictures = browser.evaluate(PICTURES)
    # 3 curves, 2 heatmaps, 4 lecture panels, 2 layers x 2 heads of attention, 1 projection
    assert pictures["canvases"] >= 14 and pictures["blank"] == 0, pictures
    assert pictures["broken"] == 0 and not pictures["missing"], pictures

    before = browser.evaluate(ATTENTION)
    assert browser.evaluate("document.getElementById('probe-step').textContent") == "6"
    browser.evaluate("(() => { const s = document.getElementById('probe-slider');"
                     " s.value = 0; s.dispatchEvent(new Event('input')); })()")
    assert browser.evaluate("document.getElementById('probe-step').textContent") == "3"
    assert browser.evaluate(ATTENTION) != before, "the slider did not change the attention grid"

    outlined = browser.evaluate(ATTENTION)          # hovering a token outlines its row
    browser.evaluate("document.querySelectorAll('#attention .token')[4]"
                     ".dispatchEvent(new MouseEvent('mouseenter'))")
    assert browser.evaluate(ATTENTION) != outlined
    assert "->" in browser.evaluate("document.querySelector('#attention .cap').textContent")

    colours = browser.evaluate(LENS)
    browser.evaluate("document.querySelector('input[name=lens-mode][value=kl]').click()")
    assert browser.evaluate(LENS) != colours, "the KL switch did not recolour the logit lens"

    requests = [e["params"]["request"]["url"] for e in browser.events
                if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(r == url or r.startswith("data:") for r in requests), requests
    errors = [e["params"] for e in browser.events
              if e.get("method") == "Runtime.exceptionThrown"
              or e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")
              or e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
    assert not errors, errors


def test_report_without_statistics_renders_without_errors(tmp_path, browser):
    page = write_report(make_run(tmp_path / "run", stats=False))
    open_page(browser, page)
    pictures = browser.evaluate(PICTURES)
    assert pictures["blank"] == 0 and pictures["canvases"] >= 4, pictures      # curves, PCA
    assert any("--stats-interval" in m for m in pictures["missing"])
    assert not [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
