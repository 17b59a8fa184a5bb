"""The demo reports in a real browser: headless Chromium at desktop (1400 px) and phone (390 px) width.

Reuses the DevTools-pipe driver of ``test_reports_safety`` (no extra package, no
port; skipped when no Chromium is found).  For the index and one report of each
split it checks: no console error or warning, nothing fetched, no horizontal
scroll of the page at 390 px, the biggest leak named in the first screen, and
it keeps a full-page screenshot of each under the test's tmp folder (or
``$FUNNELKIT_SCREENSHOTS``), printing where.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

# the browser driver of the safety tests (tests/ is on sys.path under pytest)
from test_reports_safety import Browser, chromium_binary

import funnelkit as fk
from funnelkit import reports

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
WIDTHS = (1400, 390)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary (apt-get install chromium); set FUNNELKIT_CHROMIUM to point at one")
    b = Browser(binary, str(tmp_path_factory.mktemp("chromium-profile")))
    try:
        b.send("Browser.getVersion", timeout=60)
    except Exception as exc:  # pragma: no cover - a broken install
        b.proc.kill()
        pytest.skip(f"Chromium did not start: {exc}")
    yield b
    b.close()


@pytest.fixture(scope="module")
def demo_pages(tmp_path_factory):
    """The demo plan run for one value of each split: the index and two reports."""
    root = tmp_path_factory.mktemp("demo-browser")
    data = fk.datasets.write_demo(root / "events.csv")
    spec = yaml.safe_load((REPO / "params" / "demo_monthly.yaml").read_text())
    spec.update(data=str(data), output=str(root / "reports"))
    plan = root / "plan.yaml"
    plan.write_text(yaml.safe_dump(spec), encoding="utf-8")
    status = reports.run_plan(plan, jobs=2, progress=False, only=["product=Enterprise", "source=referral"])
    assert (status["status"] == "ok").all(), status[["split", "value", "error"]].to_string()
    month = Path(status.attrs["folder"])
    return {"index": month / "index.html", "product": month / "product" / "Enterprise.html",
            "source": month / "source" / "referral.html"}


def evaluate(browser: Browser, url: str, width: int, expression: str):
    """Open ``url`` at ``width`` and return the value of a DevTools expression (CSP does not apply to it)."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        browser.send("Page.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}, session=session)
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired", session)
        res = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return res["result"].get("value")
    finally:
        browser.send("Target.closeTarget", {"targetId": target})


def test_pages_render_cleanly_at_desktop_and_phone_width(browser, demo_pages, tmp_path_factory, capsys):
    shots = Path(os.environ.get("FUNNELKIT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    for name, page in demo_pages.items():
        for width in WIDTHS:
            path = shots / f"{name}-{width}.png"
            seen = browser.visit(page.as_uri(), width=width, screenshot=path)
            assert seen["errors"] == [], (name, width, seen["errors"])
            assert seen["dialogs"] == []
            fetched = [u for u in seen["requests"] if u != page.as_uri() and not u.startswith("data:")]
            assert fetched == [], (name, fetched)
            png = path.read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == width
    with capsys.disabled():
        print(f"\nscreenshots: {shots}")


@pytest.mark.parametrize("name", ["index", "product", "source"])
def test_no_horizontal_scroll_on_a_phone(browser, demo_pages, name):
    """At 390 px the page never scrolls sideways: the index's rows become cards, wide tables scroll in their box."""
    width = evaluate(browser, demo_pages[name].as_uri(), 390, "document.documentElement.scrollWidth")
    assert width <= 390, (name, width)


def test_the_index_links_are_not_cut_on_a_phone(browser, demo_pages):
    rights = evaluate(browser, demo_pages["index"].as_uri(), 390,
                      "Array.from(document.querySelectorAll('td.name a')).map(a => a.getBoundingClientRect().right)")
    assert rights and max(rights) <= 390, rights
    assert evaluate(browser, demo_pages["index"].as_uri(), 390,
                    "!!document.querySelector('meta[name=viewport]')")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_first_screen_names_the_biggest_leak(browser, demo_pages, width):
    lead = evaluate(browser, demo_pages["product"].as_uri(), width,
                    "(() => { const e = document.querySelector('.fk-lead'); const r = e.getBoundingClientRect();"
                    " return [e.textContent, r.bottom <= window.innerHeight]; })()")
    text, visible = lead
    assert "Enterprise: proposal -> close converts 20% against 60% for the other products" in text
    assert visible, f"the biggest leak is below the first screen at {width} px"
    # the phone gets the narrow drawing of the funnel chart, the desktop the wide one
    img = evaluate(browser, demo_pages["product"].as_uri(), width,
                   "(() => { const i = document.querySelector('picture img'); return [i.currentSrc === i.src,"
                   " i.naturalWidth]; })()")
    assert img[0] is (width > 600), img
