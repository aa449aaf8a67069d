"""The dashboard end to end, in Debian's headless Chromium driven by Playwright.

The embedded service runs in a subprocess (SQLite under a temporary state directory); jobs
are submitted over the REST API, one 100,000-point job is written straight into the store.
Screenshots go to ``$DASHBOARD_SHOTS``, else to a temporary folder copied to ``out/dashboard``.
Render times are logged (``-s`` or the captured log shows them), not asserted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.e2e import dashboard_helpers as dash
from tests.factories import tiny_spec

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
log = logging.getLogger("dashboard")

XSS_NAME = "<img src=x onerror=alert(1)>"
ITERATIONS = 200


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs the browser: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    reason = dash.missing_service_pieces()
    if reason:
        pytest.skip(reason)
    svc = dash.start_service(tmp_path_factory.mktemp("dashboard-state"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.auth, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def jobs(service, client):
    """The 100,000-point job (seeded first), then two toy runs with K=1 and K=3 and the
    job with a hostile name, submitted over the API; the executor runs them in order."""
    ids = {"long": dash.seed_long_job(service.state, tiny_spec(name="trace of 100k points"))}
    biased = {"kind": "toy_biased"}
    for key, name, method, n in (
        ("k1", "toy biased K=1", {"method": "truncated", "K": 1}, ITERATIONS),
        ("full", "toy biased full", {"method": "full"}, ITERATIONS),
        ("xss", XSS_NAME, {"method": "truncated", "K": 3}, 20),
    ):
        spec = tiny_spec(iterations=n, name=name, problem=biased, hypergradient=method)
        r = client.post("/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        ids[key] = r.json()["id"]
    return ids


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    env = os.environ.get("DASHBOARD_SHOTS")
    path = Path(env) if env else tmp_path_factory.mktemp("dashboard-shots")
    path.mkdir(parents=True, exist_ok=True)
    yield path
    if not env:
        out = dash.ROOT / "out" / "dashboard"
        out.mkdir(parents=True, exist_ok=True)
        for f in path.glob("*.png"):
            shutil.copy2(f, out / f.name)


class Watch:
    """What the page did: dialogs, console errors, page errors, CSP violations, requests."""

    def __init__(self, page):
        self.dialogs, self.errors, self.requests, self.responses = [], [], [], []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("response", lambda r: self.responses.append((r.url, r.status)))

    def api(self, job_id: str, suffix: str = "/trace") -> list[tuple[dict, int]]:
        """(query, status) of the responses to ``/v1/jobs/<id><suffix>``."""
        out = []
        for url, status in self.responses:
            u = urlparse(url)
            if u.path == f"/v1/jobs/{job_id}{suffix}":
                out.append(({k: v[0] for k, v in parse_qs(u.query).items()}, status))
        return out


@pytest.fixture(scope="module")
def browser():
    reason = dash.missing_browser()
    if reason:
        _skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=dash.CHROMIUM, args=dash.CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, service):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(20_000)
    # collects CSP violations; init scripts are injected by the driver, not inline in the page
    context.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    pg = context.new_page()
    pg.watch = Watch(pg)
    yield pg
    context.close()


def _click(page, selector: str) -> None:
    """A click that says, when it cannot happen, what the page looked like."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.click(selector, timeout=30_000)  # generous: a loaded CI machine is slow
    except PlaywrightTimeout as exc:
        state = page.evaluate(
            "s => { const b = document.querySelector(s); const v = document.querySelector("
            "'main .view:not([hidden])'); return {button: b && [b.disabled, b.textContent],"
            " view: v && {...v.dataset}, toast: document.getElementById('toast').textContent,"
            " hash: location.hash}; }",
            selector,
        )
        pytest.fail(f"cannot click {selector}: {state}\n{exc}")


def _row(page, job_id):
    return page.locator(f'#jobs-table tr[data-id="{job_id}"]')


def _ready_ms(page, name: str, t0: float = 0.0) -> float:
    """Milliseconds from ``t0`` (a performance.now() in the page) to the view's first draw."""
    return page.evaluate(
        "([n, t0]) => { const m = performance.getEntriesByName('bilevel:' + n + '-ready');"
        " return m.length ? m[m.length - 1].startTime - t0 : -1; }",
        [name, t0],
    )


def test_the_router_serves_only_its_static_files_with_csp_and_etags():
    # no service, no browser: the router alone on a bare app
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.errors import install_error_handlers
    from api.routes import dashboard

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(dashboard.router)
    with TestClient(app) as c:
        r = c.get("/static/style.css")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
        assert r.headers["content-security-policy"] == dashboard.CSP
        again = c.get("/static/style.css", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
        assert c.get("/static/js/app.js").headers["content-type"].startswith("text/javascript")
        for bad in ("/static/%2e%2e/routes/dashboard.py", "/static/js", "/static/nope.js",
                    "/static/..%2f..%2fpyproject.toml"):  # fmt: skip
            assert c.get(bad).status_code == 404, bad
        index = c.get("/").text
        # every script and stylesheet is a same-origin file; nothing inline
        assert re.findall(r"<script[^>]*>", index) == [
            '<script src="/static/vendor/uplot/uPlot.iife.min.js" defer>',
            '<script type="module" src="/static/js/app.js">',
        ]
        assert "<style" not in index and " style=" not in index
        assert not re.search(r"\son[a-z]+\s*=", index)
    vendor = dashboard.STATIC_DIR / "vendor" / "uplot"
    assert {p.name for p in vendor.iterdir()} >= {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for js in (dashboard.STATIC_DIR / "js").glob("*.js"):
        src = js.read_text()
        assert "innerHTML" not in src and "insertAdjacentHTML" not in src, js.name
        assert "eval(" not in src and "new Function" not in src, js.name


def test_dashboard_responses_carry_a_strict_csp(service):
    for path in (
        "/",
        "/static/js/app.js",
        "/static/style.css",
        "/static/vendor/uplot/uPlot.iife.min.js",
    ):
        r = httpx.get(service.url + path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "style-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(service.url + "/static/../api/main.py").status_code == 404
    assert httpx.get(service.url + "/static/vendor/../../routes/dashboard.py").status_code == 404
    html = httpx.get(service.url + "/").text
    assert (
        "<script>" not in html
        and "style=" not in html
        and "http" not in html.lower().replace("http-equiv", "")
    )


def test_sign_in_by_pasting_a_key_and_sign_out(browser, service):
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(service.url + "/")
        pg.wait_for_selector("#signin-form")
        assert pg.is_hidden("#view-jobs")
        pg.fill("#signin-key", "blv_not_a_key")
        pg.click("#signin-form button[type=submit]")
        pg.wait_for_selector("#signin-error:has-text('not accepted')")
        assert pg.evaluate("localStorage.getItem('bilevel.apiKey')") is None
        pg.fill("#signin-key", service.key)
        pg.click("#signin-form button[type=submit]")
        pg.wait_for_selector('#view-jobs[data-ready="1"]')
        assert pg.evaluate("localStorage.getItem('bilevel.apiKey')") == service.key
        assert pg.input_value("#signin-key") == ""
        pg.click("#signout")
        pg.wait_for_selector("#signin-form")
        assert pg.evaluate("localStorage.getItem('bilevel.apiKey')") is None
    finally:
        context.close()


def test_sign_in_from_the_printed_url_and_rows_reach_succeeded(page, service, jobs, shots):
    page.goto(f"{service.url}/#key={service.key}")
    page.wait_for_selector('#view-jobs[data-ready="1"]')
    # the key moved to localStorage and left the address bar
    assert page.evaluate("localStorage.getItem('bilevel.apiKey')") == service.key
    assert service.key not in page.url
    for key in ("k1", "full", "xss"):
        _row(page, jobs[key]).and_(page.locator('[data-status="succeeded"]')).wait_for(
            timeout=45_000
        )
    # the hostile name is text: no element parsed out of it, no request for its image
    cell = _row(page, jobs["xss"]).locator("td.name a")
    assert cell.text_content() == XSS_NAME
    assert page.locator("#jobs-table img").count() == 0
    assert not [u for u in page.watch.requests if urlparse(u).path == "/x"]
    row = _row(page, jobs["k1"])
    assert row.locator("td.method").text_content() == "truncated K=1"
    assert row.locator("td.problem").text_content() == "toy_biased"
    assert _row(page, jobs["full"]).locator("td.method").text_content() == "full K=T=10"
    assert row.locator("progress").get_attribute("value") == str(ITERATIONS)
    assert re.fullmatch(r"[0-9.e+-]+", row.locator("td.best").text_content())
    # the status filter asks the API for that status only
    page.select_option("#status-filter", "succeeded")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs-table tbody tr')]"
        ".every(r => r.dataset.status === 'succeeded')"
    )
    assert "status=succeeded" in page.url
    page.select_option("#status-filter", "")
    page.wait_for_selector(f'#jobs-table tr[data-id="{jobs["long"]}"]')
    # paging follows the API's cursor, newest first
    page.evaluate("() => { location.hash = '#/jobs?limit=2'; }")
    newest = [jobs["xss"], jobs["full"]]
    oldest = [jobs["k1"], jobs["long"]]
    rows = "() => [...document.querySelectorAll('#jobs-table tbody tr')].map(r => r.dataset.id)"
    page.wait_for_function(f"ids => ({rows})().join() === ids.join()", arg=newest)
    page.click("#page-next")
    page.wait_for_function(f"ids => ({rows})().join() === ids.join()", arg=oldest)
    assert page.is_disabled("#page-next") and not page.is_disabled("#page-prev")
    page.click("#page-prev")
    page.wait_for_function(f"ids => ({rows})().join() === ids.join()", arg=newest)
    page.evaluate("() => { location.hash = '#/jobs'; }")
    page.wait_for_selector(f'#jobs-table tr[data-id="{jobs["long"]}"]')
    # a fresh load of the list, timed from navigation start
    page.reload()
    page.wait_for_selector('#view-jobs[data-ready="1"]')
    log.warning(
        "render: job list (%d rows) ready %.0f ms after navigation start",
        int(page.get_attribute("#view-jobs", "data-rows")),
        _ready_ms(page, "jobs"),
    )
    page.screenshot(path=str(shots / "list.png"), full_page=True)


def test_detail_charts_the_whole_trace_offers_downloads_and_stops_polling(
    page, jobs, shots, client
):
    job_id = jobs["k1"]
    page.click(f'#jobs-table tr[data-id="{job_id}"] td.name a')
    page.wait_for_selector('#view-job[data-ready="1"][data-polling="done"]')
    chart = page.locator("#chart-loss")
    trace = client.get(f"/v1/jobs/{job_id}/trace").json()
    assert chart.get_attribute("data-points") == str(len(trace["iteration"])) == str(ITERATIONS)
    assert chart.get_attribute("data-first") == "1"
    assert chart.get_attribute("data-last") == str(ITERATIONS)
    assert chart.locator("canvas").count() == 1
    # diagnostics were recorded every 5 iterations: their chart is shown
    assert page.locator("#chart-diag").is_visible()
    assert page.locator("#chart-norms .u-legend").text_content().count("exact") == 1
    assert page.text_content("#view-job .job-name") == "toy biased K=1"
    assert '"K": 1' in page.text_content("#view-job pre.spec")
    assert "queued → running" in page.text_content("#view-job .history-box")
    metrics = client.get(f"/v1/jobs/{job_id}/result").json()["metrics"]
    shown = page.text_content("#view-job .metrics")
    assert all(name in shown for name in metrics) and (metrics or "none" in shown)
    assert page.is_disabled("#cancel-job")
    with page.expect_download() as d:
        page.click("#download-csv")
    lines = Path(d.value.path()).read_text().splitlines()
    assert lines[0].startswith("iteration,outer_loss") and len(lines) == ITERATIONS + 1
    with page.expect_download() as d:
        page.click("#download-hparams")
    assert Path(d.value.path()).read_bytes()[:2] == b"PK"  # an .npz is a zip
    page.screenshot(path=str(shots / "detail.png"), full_page=True)
    # a finished job is not polled again
    seen = len(page.watch.api(job_id, "")) + len(page.watch.api(job_id))
    page.wait_for_timeout(2500)
    assert len(page.watch.api(job_id, "")) + len(page.watch.api(job_id)) == seen


def test_compare_overlays_the_chosen_trace_of_two_jobs(page, jobs, shots):
    page.goto(page.url.split("#")[0] + "#/jobs")
    page.wait_for_selector('#view-jobs[data-ready="1"]')
    for key in ("k1", "full"):
        _row(page, jobs[key]).locator("input.pick").check()
    page.click("#compare-selected")
    chart = page.locator('#chart-compare[data-ready="1"]')
    chart.wait_for()
    assert chart.get_attribute("data-series") == "2"
    assert int(chart.get_attribute("data-points")) == ITERATIONS
    legend = chart.locator(".u-legend").text_content()
    assert "toy biased K=1" in legend and "toy biased full" in legend
    page.select_option("#compare-field", "grad_norm")
    page.wait_for_selector('#chart-compare[data-ready="1"][data-series="2"]')
    assert "field=grad_norm" in page.url
    assert "hypergradient norm" in page.text_content("#chart-compare h3")
    page.select_option("#compare-field", "outer_loss")
    page.wait_for_selector('#chart-compare[data-ready="1"][data-series="2"]')
    page.screenshot(path=str(shots / "compare.png"), full_page=True)


def test_polling_uses_etags_and_after_and_a_running_job_is_cancelled_from_its_page(
    page, client, shots
):
    base = page.url.split("#")[0]
    long_spec = tiny_spec(iterations=100_000, name="long run to cancel")
    running = client.post("/v1/jobs", json=long_spec).json()["id"]
    queued = client.post("/v1/jobs", json=tiny_spec(name="waits behind it")).json()["id"]
    dash.wait_job(client, running, lambda j: j["progress"]["iteration"] >= 3)
    # a queued job's unchanged trace: 304 on the second poll, and the poller backs off
    page.goto(f"{base}#/jobs/{queued}")
    page.wait_for_function(
        "() => Number(document.getElementById('view-job').dataset.pollDelay) > 1000", timeout=8000
    )
    assert 304 in [status for _, status in page.watch.api(queued)]
    client.post(f"/v1/jobs/{queued}/cancel")
    # the running job: new points come with after=<last iteration>
    page.goto(f"{base}#/jobs/{running}")
    page.wait_for_selector('#view-job[data-status="running"][data-ready="1"]')
    page.wait_for_function(
        "() => Number(document.getElementById('chart-loss').dataset.last) > 5", timeout=10_000
    )
    page.wait_for_timeout(1500)
    afters = [int(q.get("after", 0)) for q, s in page.watch.api(running) if s == 200]
    assert afters[0] == 0 and max(afters) > 0
    assert all(int(q["max_points"]) >= 200 for q, _ in page.watch.api(running))
    eta = page.text_content("#view-job .job-progress .label")
    assert "ETA" in eta and "/ 100000" in eta
    page.screenshot(path=str(shots / "detail-running.png"), full_page=True)
    _click(page, "#cancel-job")
    assert page.text_content("#cancel-job") == "Confirm cancel"
    _click(page, "#cancel-job")
    page.wait_for_selector('#view-job[data-status="cancelled"][data-polling="done"]')
    job = client.get(f"/v1/jobs/{running}").json()
    assert job["status"] == "cancelled" and job["progress"]["iteration"] < 100_000
    assert page.get_attribute("#chart-loss", "data-last") == str(job["progress"]["iteration"])
    assert page.get_attribute("#chart-loss", "data-total") == str(job["progress"]["iteration"])


def _trace_ms(page, job_id: str) -> float:
    """How long the browser waited on the job's last trace response (Resource Timing)."""
    return page.evaluate(
        "id => { const e = performance.getEntriesByType('resource')"
        ".filter(r => r.name.includes('/v1/jobs/' + id + '/trace'));"
        " return e.length ? e[e.length - 1].duration : -1; }",
        job_id,
    )


def test_a_100000_point_job_is_drawn_downsampled_to_the_chart_width(page, jobs, shots):
    job_id = jobs["long"]
    t0 = page.evaluate("() => performance.now()")
    page.evaluate(f"() => {{ location.hash = '#/jobs/{job_id}'; }}")
    page.wait_for_selector('#view-job[data-ready="1"][data-polling="done"]')
    ms, trace_ms = _ready_ms(page, "job", t0), _trace_ms(page, job_id)
    chart = page.locator("#chart-loss")
    drawn = int(chart.get_attribute("data-points"))
    limit = int(page.get_attribute("#view-job", "data-max-points"))
    assert chart.get_attribute("data-total") == "100000"
    assert chart.get_attribute("data-first") == "1" and chart.get_attribute("data-last") == "100000"
    assert 200 <= drawn <= limit < 100_000
    page.screenshot(path=str(shots / "detail-100k.png"), full_page=True)
    log.warning(
        "render: detail of the 100,000-point job drawn %.0f ms after navigating to it "
        "(its trace response took %.0f ms; %d points drawn, max_points=%d)",
        ms, trace_ms, drawn, limit,
    )  # fmt: skip
    # the same page loaded afresh (HTML, scripts, then the API), and the list holding the job
    page.reload()
    page.wait_for_selector('#view-job[data-ready="1"]')
    log.warning(
        "render: 100,000-point detail page loaded afresh: drawn %.0f ms after navigation "
        "start (trace response %.0f ms)",
        _ready_ms(page, "job"), _trace_ms(page, job_id),
    )  # fmt: skip
    page.goto(page.url.split("#")[0] + "#/jobs")
    page.reload()
    page.wait_for_selector('#view-jobs[data-ready="1"]')
    log.warning(
        "render: job list (%s rows) loaded afresh: drawn %.0f ms after navigation start",
        page.get_attribute("#view-jobs", "data-rows"), _ready_ms(page, "jobs"),
    )  # fmt: skip


def test_the_pool_page_shows_the_teams_share_the_busy_worker_and_the_queue(page, client, shots):
    base = page.url.split("#")[0]
    hog = client.post("/v1/jobs", json=tiny_spec(iterations=100_000, name="pool hog")).json()["id"]
    spec = tiny_spec(name="pool waiter", priority="high")
    waiting = client.post("/v1/jobs", json=spec).json()["id"]
    dash.wait_job(client, hog, lambda j: j["progress"]["iteration"] >= 3)
    page.goto(f"{base}#/pool")
    page.wait_for_selector('#view-pool[data-ready="1"]')
    # the page shows a reading of the pool up to pool_cache_s old (api.settings), and polls:
    # one read between the hog's claim and the waiter's submission has no queued job yet
    page.wait_for_function(
        "() => document.querySelector('#pool-teams tr[data-kind=\"cpu\"] .queued')"
        "?.textContent === '1'",
        timeout=15_000,
    )
    assert page.get_attribute("#nav-pool", "class") == "active"
    row = page.locator('#pool-teams tr[data-kind="cpu"]')
    assert row.count() == 1
    assert row.locator(".running").text_content() == "1"
    assert row.locator(".queued").text_content() == "1"
    bar = row.locator("svg.share-bar")
    assert bar.get_attribute("aria-label") == "share 100%, fair share 100%"
    queued = page.locator(f'#pool-queued tr[data-id="{waiting}"]')
    assert queued.locator(".position").text_content() == "1"
    assert queued.locator(".priority").text_content() == "high"
    assert queued.locator(".start").text_content().startswith("in ")
    worker = page.locator('#pool-workers tr[data-worker="embedded"]')
    assert worker.locator(".state").text_content() == "busy"
    assert "preemption on" in page.text_content("#pool-summary")
    page.screenshot(path=str(shots / "pool.png"), full_page=True)
    for job_id in (waiting, hog):
        client.post(f"/v1/jobs/{job_id}/cancel")
    # the page polls: the cancelled jobs leave the queue and the team's row
    page.wait_for_selector("#pool-queued tr.empty", timeout=20_000)
    page.wait_for_selector("#pool-teams tr.empty", timeout=20_000)


def test_datasets_lists_the_teams_data_sets_with_their_arrays_and_jobs(
    page, service, client, jobs, shots
):
    from tests.dataset_files import digits_arrays, npz_bytes

    # a hostile name, as for jobs: it must stay text
    data = npz_bytes(digits_arrays(n_train=100, n_val=50))
    r = client.post("/v1/datasets", params={"name": XSS_NAME}, content=data,
                    headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    spec = tiny_spec(name="mlp on an upload", iterations=3,
                     problem={"kind": "mlp", "dataset": dataset_id, "hidden": [4]})  # fmt: skip
    spec["diagnostics"]["every"] = 0
    job = client.post("/v1/jobs", json=spec)
    assert job.status_code == 201, job.text
    page.evaluate("() => { location.hash = '#/datasets'; }")
    row = page.locator(f'#datasets-table tr[data-id="{dataset_id}"]')
    row.wait_for()
    assert row.locator("td.name strong").text_content() == XSS_NAME
    assert page.locator("#datasets-table img").count() == 0
    assert row.locator("td.task").text_content().startswith("classification, 10 classes")
    arrays = row.locator("ul.arrays li")
    assert arrays.count() == 6
    assert row.locator('li[data-array="x_train"]').text_content() == "x_train float64 [100 × 64]"
    # the job that names it is listed, linked to its page
    link = row.locator(f'li[data-job="{job.json()["id"]}"] a')
    assert link.text_content() == "mlp on an upload"
    assert "of 10.0 GiB used" in page.text_content("#storage-text")
    assert page.evaluate("document.title") == "bilevel · datasets"
    page.screenshot(path=str(shots / "datasets.png"), full_page=True)


def test_no_script_ran_no_console_error_no_csp_violation_and_no_key_in_the_log(page, service, jobs):
    page.evaluate(f"() => {{ location.hash = '#/jobs/{jobs['xss']}'; }}")
    page.wait_for_selector('#view-job[data-ready="1"][data-polling="done"]')
    assert page.text_content("#view-job .job-name") == XSS_NAME
    assert page.locator("#view-job img").count() == 0
    assert page.evaluate("document.title") == "bilevel · job"
    assert page.watch.dialogs == []
    assert page.watch.errors == []
    assert page.evaluate("window.__csp") == []
    served = service.log_path.read_text()
    assert "GET /v1/jobs" in served  # the access log is on
    # serve prints the key at start (alone, and in the signed-in dashboard link); no request
    # line ever carries it: the link's #fragment stays in the browser
    startup = [line for line in served.splitlines() if line.startswith("bilevel: ")]
    assert served.count(service.key) == sum(line.count(service.key) for line in startup)
    assert not [line for line in served.splitlines() if "HTTP/1.1" in line and service.key in line]
