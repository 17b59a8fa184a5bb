"""Reports are safe by construction (issue #12): no markup from the data runs, pages work offline,
one run per month folder at a time, plan mistakes are typed errors, honest warnings and empty segments.

The browser tests drive headless Chromium (from the OS packages: ``apt-get install chromium``)
through the DevTools protocol over a pipe (``--remote-debugging-pipe``): no extra Python package,
no port.  They are skipped when no Chromium binary is found.  Set ``FUNNELKIT_SCREENSHOTS=<folder>``
to keep the screenshots they take.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

import funnelkit as fk
from funnelkit import reports
from funnelkit.cli import main
from funnelkit.exceptions import PlanError
from funnelkit.reports import sections

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg onload=alert(1)>"]


def write_plan(folder: Path, name: str = "plan.yaml", **spec) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def quick_template(folder: Path, seconds: float = 1.0) -> Path:
    """A template declaring the runner's parameters that just waits: tests the runner, not the report."""
    nb = nbformat.v4.new_notebook()
    params = "\n".join(f"{p} = {v!r}" for p, v in [
        ("data", ""), ("columns", {}), ("stages", ""), ("read_options", {}), ("segment_column", ""),
        ("segment_value", ""), ("month", ""), ("as_of", ""), ("revenue_target", 0.0), ("title", "")])
    nb.cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})\nprint(segment_value)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "quick.ipynb"
    nbformat.write(nb, path)
    return path


# ---------------------------------------------------------------------------
# an independent checker of executable markup (not funnelkit's scrubber)
# ---------------------------------------------------------------------------
class PageAudit(HTMLParser):
    """Collects what a browser could run or fetch, and the page's visible text."""

    RUNNABLE = {"script", "iframe", "frame", "object", "embed", "applet", "base", "link", "form"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []
        self.csp: list[str] = []
        self._style = 0

    def handle_starttag(self, tag, attrs):
        self._check(tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self._check(tag, attrs)

    def _check(self, tag, attrs):
        if tag in self.RUNNABLE:
            self.problems.append(f"<{tag}> element")
        if tag == "style":
            self._style += 1
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy":
            self.csp.append(a.get("content", ""))
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            self.problems.append("<meta http-equiv=refresh>")
        for k, v in a.items():
            flat = re.sub(r"[\s\x00-\x1f]+", "", v).lower()
            if k.startswith("on"):
                self.problems.append(f"<{tag} {k}=...>")
            if "javascript:" in flat or "vbscript:" in flat:
                self.problems.append(f"<{tag} {k}={v[:40]!r}>")
            if k in {"src", "href", "srcset", "xlink:href", "action", "poster", "data"} and (
                    flat.startswith(("http:", "https:", "//", "ftp:"))):
                self.problems.append(f"external <{tag} {k}={v[:60]!r}>")
            if k == "src" and not flat.startswith("data:"):
                self.problems.append(f"<{tag} src={v[:40]!r}> is fetched")

    def handle_endtag(self, tag):
        if tag == "style" and self._style:
            self._style -= 1

    def handle_data(self, data):
        if self._style:
            if re.search(r"url\(\s*['\"]?\s*(https?:|//)", data) or "@import" in data:
                self.problems.append("external resource in <style>")
            return
        self.text.append(data)


def audit(path: Path) -> PageAudit:
    a = PageAudit()
    a.feed(path.read_text(encoding="utf-8"))
    a.close()
    return a


# ---------------------------------------------------------------------------
# a hostile data set: every string the reports show comes from the data
# ---------------------------------------------------------------------------
FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    raw = fk.datasets.load_demo(500, seed=7, canonical=False)
    leads = {d: f"{PAYLOADS[i % 3]}#{i}" for i, d in enumerate(raw["deal"].unique())}
    raw["deal"] = raw["deal"].map(leads)
    owners = {o: f"{PAYLOADS[i % 3]} {o}" for i, o in enumerate(sorted(raw["owner"].unique()))}
    raw["owner"] = raw["owner"].map(owners)
    raw["product"] = raw["product"].map(dict(zip(sorted(raw["product"].unique()), PAYLOADS)))
    raw["source"] = raw["source"].replace({"referral": FORMULA})  # runs in a spreadsheet unless neutralised
    raw = raw.rename(columns={"source": "<b onclick=alert(1)>origin</b>"})
    labels = {"Qualification": PAYLOADS[0], "Meeting": PAYLOADS[1], "Closed Won": "<a href=javascript:alert(1)>w"}
    raw["deal_stage"] = raw["deal_stage"].replace(labels)
    raw.to_csv(root / "crm.csv", index=False)
    stage_set = fk.StageSet("hostile", ["qualification", "meeting", "<svg onload=alert(2)>", "close"], won="won",
                            lost=["lost"], aliases={PAYLOADS[0]: "qualification", PAYLOADS[1]: "meeting",
                                                    "Proposal": "<svg onload=alert(2)>",
                                                    "<a href=javascript:alert(1)>w": "won", "Closed Lost": "lost",
                                                    "Close": "close"})
    stage_set.to_yaml(root / "stages.yaml")
    plan = write_plan(root, title="<script>alert('title')</script> report", data="crm.csv",
                      columns={"deal": "lead_id", "deal_stage": "stage", "entered": "timestamp", "value": "amount"},
                      stages="stages.yaml", splits=["product", "<b onclick=alert(1)>origin</b>"], overall=True,
                      month="2025-06", target=100000, output="out", parameters={"check_months": 0})
    # every string comes from the data; the forecast check writes only numbers and month names (and is
    # most of a report's time), so these pages are made without it
    status = reports.run_plan(plan, jobs=2, progress=False)
    return root, status


@pytest.mark.slow
def test_hostile_strings_are_text_in_every_page(hostile_run):
    root, status = hostile_run
    # small segments may warn (e.g. a funnel with too few conversions to learn a horizon): written all the same
    assert status["status"].isin(["ok", "warning"]).all(), status[["split", "value", "error"]].to_string()
    month_dir = root / "out" / "2025-06"
    pages = sorted(month_dir.rglob("*.html"))
    assert month_dir / "index.html" in pages and len(pages) == len(status) + 1
    seen = ""
    for page in pages:
        a = audit(page)
        assert a.problems == [], (page, a.problems[:5])
        assert a.csp and "default-src 'none'" in a.csp[0] and "script-src" not in a.csp[0], page
        text = " ".join(a.text)
        seen += text
        assert "Traceback" not in text and "DataWarning" not in text, page
    # escaped, not stripped: the payloads are there, as text (lead ids, owners, stage names, values)
    for payload in [*PAYLOADS, "<svg onload=alert(2)>", "<b onclick=alert(1)>origin</b>",
                    "<script>alert('title')</script> report"]:
        assert payload in seen, payload
    # summary.csv: the formula value is there as text, no cell starts a formula
    import csv

    with open(month_dir / "summary.csv", newline="", encoding="utf-8") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert "'" + FORMULA in cells and not [c for c in cells if c[:1] in ("=", "+", "@")]
    report = (month_dir / "product").glob("*.html")
    one = " ".join(" ".join(audit(p).text) for p in report)
    assert "#" in one and any(f"{PAYLOADS[i % 3]}#{i}" in one for i in range(500))  # lead ids in the stale list


def test_tables_escape_every_text_cell_and_label():
    data = pd.DataFrame({PAYLOADS[2]: [PAYLOADS[0], None], "n": [1, 2]}, index=[PAYLOADS[1], "x"])
    page = sections.table(data).html
    a = PageAudit()
    a.feed(page)
    assert a.problems == [] and "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;svg onload=alert(1)&gt;" in page


def test_a_label_matplotlib_cannot_draw_is_a_note_not_a_failed_report():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    ax.set_title(r"stage $\foo{$ from the data")
    out = sections.figure(ax, caption="c")
    assert out.text.startswith("The chart could not be drawn (ValueError") and "<img" not in out.html


def test_scrubber_removes_what_a_browser_would_run():
    nasty = ('<p onclick="x()">a</p><script>alert(1)</script><iframe src="https://e.x"></iframe>'
             '<a href=" JaVa\tscript:alert(1)">j</a><a href="//evil.example/x">e</a><a href="#top">t</a>'
             '<img src="data:image/png;base64,AAAA"><img src="https://cdn.example/x.png">'
             '<svg><animate attributeName="href" values="javascript:alert(1)"/></svg>'
             '<meta http-equiv="refresh" content="0;url=https://e.x"><style>@import url(https://e.x/a.css);</style>')
    out = reports.scrub_html(nasty)
    a = PageAudit()
    a.feed(out)
    assert a.problems == [], a.problems
    assert '<a href="#top">t</a>' in out and 'src="data:image/png;base64,AAAA"' in out
    assert reports.scrub_html("<p>&lt;b&gt; &amp; co</p>") == "<p>&lt;b&gt; &amp; co</p>"


# ---------------------------------------------------------------------------
# a real browser, offline
# ---------------------------------------------------------------------------
def chromium_binary() -> str | None:
    for name in (os.environ.get("FUNNELKIT_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable", "chrome", "headless_shell"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4 of the browser)."""

    def __init__(self, binary: str, profile: str) -> None:
        to_browser_r, self._w = os.pipe()
        self._r, from_browser_w = os.pipe()

        def wire():  # in the child: the protocol pipes become fds 3 (commands) and 4 (replies)
            a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 20)
            b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 20)
            os.dup2(a, 3)
            os.dup2(b, 4)

        cmd = [binary, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
               f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
               # offline: any request the page makes goes to a proxy that does not exist
               "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "about:blank"]
        self.proc = subprocess.Popen(cmd, preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, msg: dict) -> None:
        self.events.append(msg)
        if msg.get("method") == "Page.javascriptDialogOpening":  # never leave a dialog open
            self.send("Page.handleJavaScriptDialog", {"accept": True}, session=msg.get("sessionId"))

    def wait_for(self, method: str, session: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self._event(self._read(deadline))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._event(self._read(deadline))
            except TimeoutError:
                return

    def visit(self, url: str, *, width: int = 1400, screenshot: Path | None = None) -> dict:
        """Open ``url`` in a fresh tab; return its console errors, requests and dialogs (and screenshot it)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        start = len(self.events)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}, session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        self.drain(0.5)  # late errors and requests
        if screenshot is not None:
            size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            height = min(int(size["height"]) + 1, 16000)
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
                      session=session)
            shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=session)
            import base64

            screenshot.write_bytes(base64.b64decode(shot["data"]))
        self.send("Target.closeTarget", {"targetId": target})
        mine = [e for e in self.events[start:] if e.get("sessionId") == session]
        errors = []
        for e in mine:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in {"error", "warning", "assert"}:
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") in {"error", "warning"}:
                errors.append(p["entry"].get("text", ""))
        requests = [e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"]
        dialogs = [e["params"].get("message") for e in mine if e["method"] == "Page.javascriptDialogOpening"]
        return {"errors": errors, "requests": requests, "dialogs": dialogs}


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


def test_browser_check_sees_what_it_must(browser, tmp_path):
    """The check itself: a page with a script, a CDN and an alert is caught on every count."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><script src="https://cdnjs.cloudflare.com/x.js"></script></head>'
                   '<body><script>console.error("boom"); alert("hi")</script></body></html>')
    seen = browser.visit(bad.as_uri())
    assert any("boom" in e for e in seen["errors"])
    assert any(u.startswith("https://cdnjs") for u in seen["requests"])
    assert seen["dialogs"] == ["hi"]


@pytest.mark.slow
def test_every_page_opens_offline_without_errors(hostile_run, browser, tmp_path):
    root, status = hostile_run
    month_dir = root / "out" / "2025-06"
    pages = sorted(month_dir.rglob("*.html"))
    shots = Path(os.environ.get("FUNNELKIT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    for page in pages:
        seen = browser.visit(page.as_uri())
        assert seen["errors"] == [], (page, seen["errors"])
        assert seen["dialogs"] == [], (page, seen["dialogs"])
        other = [u for u in seen["requests"] if u != page.as_uri() and not u.startswith("data:")]
        assert other == [], (page, other)
    report = next(p for p in pages if p.parent.name == "product")
    for page, name in [(month_dir / "index.html", "index"), (report, "report")]:
        for width in (1400, 390):
            path = shots / f"{name}-{width}.png"
            browser.visit(page.as_uri(), width=width, screenshot=path)
            png = path.read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert int.from_bytes(png[16:20], "big") == width  # the page is not wider than the screen


# ---------------------------------------------------------------------------
# one run per month folder
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    return fk.datasets.write_demo(tmp_path_factory.mktemp("data") / "events.csv", 400, seed=3)


def start_run(plan: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "funnelkit", "report", str(plan), "--jobs", "1", "--no-progress", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_nothing_lost(month_dir: Path, expected: int) -> pd.DataFrame:
    summary = pd.read_csv(month_dir / "summary.csv")
    assert len(summary) == expected and summary["status"].isin(["ok", "kept", "skipped"]).all(), summary
    page = (month_dir / "index.html").read_text()
    for r in summary.itertuples():
        assert Path(r.html).is_file() and Path(r.notebook).is_file(), r
        assert Path(r.html).relative_to(month_dir).as_posix() in page
    assert not list(month_dir.glob(".partial*")), list(month_dir.iterdir())
    assert not [p for p in month_dir.rglob("*") if p.name.endswith(".tmp")]
    return summary


@pytest.mark.slow
def test_two_runs_of_one_month_at_once(tmp_path, small_csv):
    plan = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"], overall=True,
                      month="2025-09", output=str(tmp_path / "out"), template=str(quick_template(tmp_path, 1.5)))
    month_dir = tmp_path / "out" / "2025-09"
    # without --wait: one runs, the other stops at once with exit code 2 and says why
    a, b = start_run(plan), start_run(plan)
    out = [p.communicate(timeout=180)[0] for p in (a, b)]
    codes = sorted(p.returncode for p in (a, b))
    assert codes == [0, 2], out
    loser = out[[a.returncode, b.returncode].index(2)]
    assert "another funnelkit run" in loser and "--wait" in loser and "Traceback" not in loser
    assert_nothing_lost(month_dir, 4)
    # with --wait: both run, one after the other; a subset run keeps the others in the index
    a, b = start_run(plan, "--wait"), start_run(plan, "--wait", "--only", "product=Starter")
    out = [p.communicate(timeout=240)[0] for p in (a, b)]
    assert [a.returncode, b.returncode] == [0, 0], out
    assert any("waiting: another funnelkit run" in o for o in out), out
    summary = assert_nothing_lost(month_dir, 4)
    assert set(summary["value"]) == {"all", "Enterprise", "Professional", "Starter"}


def test_a_held_lock_stops_a_run_or_makes_it_wait(tmp_path, small_csv):
    from filelock import FileLock

    plan = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits=["product"], month="2025-09",
                      output=str(tmp_path / "out"), template=str(quick_template(tmp_path, 0.1)))
    month_dir = tmp_path / "out" / "2025-09"
    month_dir.mkdir(parents=True)
    other = month_dir / ".partial-999999999-abc"  # a private folder of a run that died: not ours to keep
    other.mkdir()
    lock = FileLock(str(month_dir / reports.LOCK_NAME))
    with lock:
        with pytest.raises(reports.RunLockedError, match="another funnelkit run is writing"):
            reports.run_plan(plan, progress=False)
        res = CliRunner().invoke(main, ["report", str(plan), "--no-progress"])
        assert res.exit_code == 2 and "--wait" in res.output
        assert other.is_dir()  # nothing was touched while the lock was held
    status = reports.run_plan(plan, progress=False, jobs=1)
    assert (status["status"] == "ok").all() and not other.exists()


# ---------------------------------------------------------------------------
# plan checks: each a PlanError naming the fix, exit code 2 from the CLI
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"splits": {"product": ["Starter", "Nope"]}},
         r"splits: product: no lead has product = 'Nope'.*Values of 'product' in the data: 'Enterprise', "
         r"'Professional', 'Starter'"),
        ({"splits": None, "segment": {"product": "Enterprize"}}, r"segment: no lead has product = 'Enterprize'.*"
                                                                  r"Did you mean 'Enterprise'"),
        ({"as_of": "2025-08-15"}, r"as_of: 2025-08-15 is before the month 2025-09 starts"),
        ({"read_options": {"missing_time": "maybe"}}, r"missing_time: 'maybe' is not allowed; write 'error'.*'keep'"),
        ({"read_options": {"tz": "Europe/Pariss"}}, r"tz: 'Europe/Pariss' is not a time zone\. Did you mean "
                                                    r"'Europe/Paris'"),
        ({"read_options": {"tz": "paris"}}, r"Did you mean 'Europe/Paris'"),
        ({"read_options": {"dayfirst": "yes"}}, r"dayfirst: write true"),
        ({"splits": ["all"]}, r"splits: 'all' is reserved for the report over all leads"),
        ({"splits": None, "segment": {"ALL": "x"}}, r"segment: 'ALL' is reserved"),
        ({"output": "DATA/sub"}, r"output: .*\.csv is a file, not a folder"),
    ],
)
def test_plan_mistakes_are_plan_errors(tmp_path, small_csv, spec, match):
    base = {"data": str(small_csv), "stages": "pipeline4", "splits": ["product"], "month": "2025-09"}
    spec = {k: v.replace("DATA", str(small_csv)) if isinstance(v, str) else v for k, v in spec.items()}
    path = write_plan(tmp_path, **{k: v for k, v in {**base, **spec}.items() if v is not None})
    with pytest.raises(PlanError, match=match):
        plan = reports.load_plan(path)
        reports.expand_plan(plan, plan.load())
    res = CliRunner().invoke(main, ["report", str(path), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and "Traceback" not in res.output


def test_reserved_and_colliding_names_never_share_a_file(tmp_path):
    raw = fk.datasets.load_demo(200, seed=2, canonical=False)
    raw["index.html"] = raw["product"]
    raw["summary.csv"] = raw["source"]
    raw["index"] = "x"
    raw["a/b"] = raw["product"]
    raw["a b"] = raw["source"]
    raw["product"] = raw["product"].replace({"Starter": "x", "Enterprise": "x.failed", "Professional": "X"})
    raw.to_csv(tmp_path / "d.csv", index=False)
    plan = reports.load_plan(write_plan(
        tmp_path, data="d.csv", stages="pipeline4", overall=True, month="2025-06",
        columns={"deal": "lead_id", "deal_stage": "stage", "entered": "timestamp", "value": "amount"},
        splits=["index.html", "summary.csv", "index", "a/b", "a b", "product"]))
    jobs, notes = reports.expand_plan(plan, plan.load())
    files = [f"{j.folder}/{j.name}".lower() for j in jobs]
    assert len(files) == len(set(files))
    folders = {j.split: j.folder for j in jobs}
    assert folders["product"] == "product"
    assert {folders[c].lower() for c in ["index.html", "summary.csv", "index"]}.isdisjoint(
        {"index.html", "summary.csv", "index", "all"})
    assert folders["a/b"] != folders["a b"]
    assert any("'index.html' is reserved" in n for n in notes)
    names = {j.value: j.name for j in jobs if j.split == "product"}
    assert not any(n.lower().endswith(".failed") for n in names.values())
    assert len({n.lower() for n in names.values()}) == 3


@pytest.mark.slow
def test_a_split_named_index_html_runs_to_the_end(tmp_path, small_csv):
    log = pd.read_csv(small_csv)
    log["index.html"] = log["product"]
    log.to_csv(tmp_path / "d.csv", index=False)
    plan = write_plan(tmp_path, data="d.csv", stages="pipeline4", splits=["index.html"], month="2025-09",
                      output="out", template=str(quick_template(tmp_path, 0.1)))
    res = CliRunner().invoke(main, ["report", str(plan), "--no-progress", "--jobs", "2"])
    assert res.exit_code == 0, res.output
    month_dir = tmp_path / "out" / "2025-09"
    assert (month_dir / "index.html").is_file() and "Index:" in res.output
    assert_nothing_lost(month_dir, 3)


# ---------------------------------------------------------------------------
# months the data does not cover, segments with no lead yet
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def late_csv(tmp_path_factory) -> Path:
    """400 demo leads; a product 'Late' whose leads all start after 2025-03-01; the data ends 2025-09-30."""
    raw = fk.datasets.load_demo(400, seed=3, canonical=False)
    first = raw.groupby("deal")["entered"].transform("min")
    raw.loc[pd.to_datetime(first) >= "2025-03-01", "product"] = "Late"
    path = tmp_path_factory.mktemp("late") / "events.csv"
    raw.rename(columns={"deal": "lead_id", "deal_stage": "stage", "entered": "timestamp",
                        "value": "amount"}).to_csv(path, index=False)
    return path


def test_sections_say_when_no_lead_is_known_yet(late_csv):
    rep = reports.MonthlyReport.prepare(str(late_csv), stages="pipeline4", segment_column="product",
                                        segment_value="Late", month="2025-01", revenue_target=1000)
    assert rep.log.empty and rep.warnings == []
    for section in (sections.pipeline, sections.stale, sections.bottleneck, sections.leaks, sections.forecast,
                    sections.leads_needed):
        text = section(rep).text
        assert text.startswith("No lead of product = Late was known on 2025-01-31: the first one came on 2025-03"), \
            (section.__name__, text)
    # the data has amounts: an empty segment does not say it has none
    assert "amount" in pd.read_csv(late_csv, nrows=1).columns
    assert "no amount column" not in sections.headline(rep).text


def test_a_month_past_the_data_is_a_warning_not_raw_output(late_csv):
    rep = reports.MonthlyReport.prepare(str(late_csv), stages="pipeline4", month="2025-12")
    assert len(rep.warnings) == 1 and rep.warnings[0].startswith("The data ends on 2025-09-30, before December")
    head = sections.title(rep).html
    assert 'class="funnelkit-warning"' in head and "before December 2025 begins" in head
    # one date for the data's end: the follow-ups do not repeat it with the segment's last event
    assert "after the data ends" not in sections.followups(rep).text
    assert reports.MonthlyReport.prepare(str(late_csv), stages="pipeline4", month="2025-09").warnings == []


@pytest.mark.slow
def test_past_the_end_and_empty_segment_reports(tmp_path, late_csv):
    """End to end: the report runs, says why in styled notes, and the index shows 'warning'."""
    plan = write_plan(tmp_path, data=str(late_csv), stages="pipeline4", splits={"product": ["Late"]},
                      output="out", target=50000)
    res = CliRunner().invoke(main, ["report", str(plan), "--month", "2025-12", "--no-progress", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "WARNING product=Late: The data ends on 2025-09-30" in res.output
    month_dir = tmp_path / "out" / "2025-12"
    summary = pd.read_csv(month_dir / "summary.csv")
    assert summary["status"].tolist() == ["warning"] and "The data ends on" in summary["warnings"][0]
    index = (month_dir / "index.html").read_text()
    assert 'class="warning"' in index and "The data ends on 2025-09-30" in index
    page = (month_dir / "product" / "Late.html").read_text()
    boxes = re.findall(r'class="funnelkit-warning"[^>]*><strong>Warning:</strong> ([^<]*)<', page)
    assert len(boxes) == len(set(boxes)) == len(summary["warnings"][0].split("\n")), boxes
    assert sum("The data ends on" in b for b in boxes) == 1  # said once, at the top, not again per section
    assert not re.search(r'<div[^>]*data-mime-type="application/vnd.jupyter.stderr"', page)  # no raw stderr
    assert ".py:" not in page and "DataWarning" not in page
    # a month before the segment's first lead: the report is written and says so
    res = CliRunner().invoke(main, ["report", str(plan), "--month", "2025-01", "--no-progress", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "out" / "2025-01" / "product" / "Late.html").read_text()
    assert "No lead of product = Late was known on 2025-01-31" in page
    assert pd.read_csv(tmp_path / "out" / "2025-01" / "summary.csv")["status"].tolist() == ["ok"]


# ---------------------------------------------------------------------------
# the validated log is read once per run
# ---------------------------------------------------------------------------
def test_a_report_from_the_cache_equals_one_from_the_data(tmp_path, small_csv):
    log = fk.read_events(small_csv, stages="pipeline4")
    seg = reports.select_segment(log, "product", "Starter")
    path = reports.write_cache(seg, tmp_path / "c.parquet", source=str(small_csv), sha256="ab" * 32,
                               segment=("product", "Starter"), data_range=(log["timestamp"].min(),
                                                                            log["timestamp"].max()))
    kw = {"stages": "pipeline4", "segment_column": "product", "segment_value": "Starter", "month": "2025-06"}
    direct = reports.MonthlyReport.prepare(str(small_csv), **kw)
    cached = reports.MonthlyReport.prepare(str(small_csv), cache=str(path), **kw)
    pd.testing.assert_frame_equal(cached.log.reset_index(drop=True), direct.log.reset_index(drop=True))
    pd.testing.assert_frame_equal(cached.headline, direct.headline)
    assert cached.notes == direct.notes and cached.data_end == direct.data_end
    assert cached.fingerprint == {"source": str(small_csv), "sha256": "ab" * 32}
    with pytest.raises(fk.ReportError, match="holds the leads of"):
        reports.MonthlyReport.prepare(str(small_csv), cache=str(path), **{**kw, "segment_value": "Enterprise"})


@pytest.mark.slow
def test_kernels_read_the_runs_cache_not_the_data(tmp_path, small_csv):
    plan = write_plan(tmp_path, data=str(small_csv), stages="pipeline4", splits={"product": ["Starter"]},
                      month="2025-06", output="out")
    status = reports.run_plan(plan, jobs=1, progress=False)
    assert status["status"].tolist() == ["ok"]
    nb = nbformat.read(status["notebook"][0], as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    cache = re.search(r'cache = "([^"]+)"', injected.source).group(1)
    assert re.search(r"2025-06/\.partial-\d+-[^/]+/cache/product/Starter\.parquet$", cache)
    assert not Path(cache).exists()  # the run's private folder is gone
    page = Path(status["html"][0]).read_text()
    assert str(Path(small_csv).resolve()) in page and reports.data_fingerprint(str(small_csv))["sha256"] in page


def test_runner_cleans_only_dead_runs_folders(tmp_path):
    from funnelkit.reports import batch

    month = tmp_path / "2025-09"
    (month / "product").mkdir(parents=True)
    mine = month / f".partial-{os.getpid()}-mine"
    alive = month / f".partial-{os.getppid()}-other"
    dead = month / ".partial-999999999-dead"
    for d in (mine, alive, dead, month / ".partial"):
        d.mkdir()
    (month / "product" / ".x.html.abc.tmp").write_text("half")
    batch._clean_stale(month, mine)
    assert mine.is_dir() and alive.is_dir() and not dead.exists() and not (month / ".partial").exists()
    assert not (month / "product" / ".x.html.abc.tmp").exists()


def test_a_warning_raised_while_the_heading_is_made_is_shown_once_in_it(monkeypatch, capsys):
    """Maven CRM, GTK 500 (38 deals): the leak finder warned while the heading was made, and the
    report showed that warning twice, first above the navigation (the kernel displayed it as it came),
    then in the heading."""
    import warnings

    from funnelkit.exceptions import DataWarning

    rep = reports.MonthlyReport.prepare("demo", segment_column="source", segment_value="referral")
    real = sections.biggest_leaks

    def warns(report):
        warnings.warn("no step has conversions to learn a horizon from", DataWarning, stacklevel=2)
        return real(report)

    monkeypatch.setattr(sections, "biggest_leaks", warns)
    before = warnings.showwarning
    try:
        sections.capture_warnings(rep)
        head = sections.title(rep)
        warnings.warn("a later section's warning", DataWarning, stacklevel=1)  # still shown where it comes
    finally:
        warnings.showwarning = before
    shown = capsys.readouterr().out
    assert head.html.count("no step has conversions to learn a horizon from") == 1
    assert "no step has conversions" not in shown and "a later section's warning" in shown
    assert rep.warnings[-2:] == ["no step has conversions to learn a horizon from", "a later section's warning"]
