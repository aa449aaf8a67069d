"""The study view in headless Chromium: Table 2 from the API, curves and scatter drawn,
a hostile study name kept as text; "clone" and "sweep this" from a job page.

The embedded service runs the study's toy members; screenshots go where the dashboard
test's go (``$DASHBOARD_SHOTS``, else ``out/dashboard``). Render times are logged.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.e2e import dashboard_helpers as dash
from tests.factories import tiny_spec, wait_until

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
log = logging.getLogger("dashboard")

XSS_NAME = "<img src=x onerror=alert(1)> sweep"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    reason = dash.missing_service_pieces()
    if reason:
        pytest.skip(reason)
    svc = dash.start_service(tmp_path_factory.mktemp("dashboard-studies"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service.url, headers=service.auth, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def study(client):
    body = {"name": XSS_NAME, "base": tiny_spec(iterations=40, problem={"kind": "toy_biased"}),
            "grid": {"hypergradient.K": [1, 3], "seed": [0, 1]}}  # fmt: skip
    r = client.post("/v1/studies", json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]

    def ended():
        s = client.get(f"/v1/studies/{sid}").json()
        return s if s["status"] == "succeeded" else None

    return wait_until(ended, 120, "the study's members to succeed", poll=0.3)


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


@pytest.fixture(scope="module")
def page(service):
    reason = dash.missing_browser()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs the browser: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=dash.CHROMIUM, args=dash.CHROMIUM_ARGS,
                                    headless=True)  # fmt: skip
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        context.set_default_timeout(20_000)
        context.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        pg = context.new_page()
        pg.errors, pg.dialogs = [], []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        pg.goto(f"{service.url}/#key={service.key}")
        pg.wait_for_selector('#view-jobs[data-ready="1"]')
        yield pg
        context.close()
        browser.close()


def _mean(text: str | None) -> float:
    return float(text or "nan")


def test_the_study_view_shows_the_apis_table_curves_and_scatter(page, study, shots):
    t0 = page.evaluate("() => performance.now()")
    page.evaluate(f"() => {{ location.hash = '#/studies/{study['id']}'; }}")
    page.wait_for_selector('#view-study[data-ready="1"][data-polling="done"]')
    ms = page.evaluate(
        "t0 => { const m = performance.getEntriesByName('bilevel:study-ready');"
        " return m.length ? m[m.length - 1].startTime - t0 : -1; }", t0,
    )  # fmt: skip
    assert page.text_content("#view-study .study-name") == XSS_NAME
    assert page.locator("#view-study img").count() == 0
    assert page.dialogs == []
    # Table 2: one row per K, each cell's mean the API's
    rows = page.locator("#study-table tbody tr")
    assert rows.count() == len(study["table"]) == 2
    for i, row in enumerate(study["table"]):
        cells = rows.nth(i).locator("td[data-mean]")
        means = [_mean(cells.nth(j).get_attribute("data-mean")) for j in range(cells.count())]
        api = [s["mean"] for s in row["stats"].values()]
        assert sorted(means) == pytest.approx(sorted(api), rel=1e-12)
        assert rows.nth(i).locator("td").first.text_content() == str(
            row["values"]["hypergradient.K"]
        )
    assert page.get_attribute("#chart-curves", "data-series") == "4"
    assert page.locator("#chart-curves canvas").count() == 1
    assert page.get_attribute("#chart-scatter", "data-points") == "4"
    assert page.locator("#chart-scatter canvas").count() == 1
    page.select_option("#scatter-x", "peak_bytes")
    assert page.get_attribute("#chart-scatter", "data-points") == "4"
    page.screenshot(path=str(shots / "study.png"), full_page=True)
    log.warning("render: study view (4 members) drawn %.0f ms after navigating to it", ms)
    page.evaluate("() => { location.hash = '#/studies'; }")
    page.wait_for_selector('#view-studies[data-ready="1"]')
    assert page.text_content(f'#studies-table tr[data-id="{study["id"]}"] td.name') == XSS_NAME
    page.screenshot(path=str(shots / "studies.png"), full_page=True)
    assert page.errors == []
    assert page.evaluate("window.__csp") == []


def _open_job(page, job_id):
    page.evaluate(f"() => {{ location.hash = '#/jobs/{job_id}'; }}")
    page.wait_for_selector(f'#view-job[data-ready="1"][data-id="{job_id}"]')


def test_clone_checks_the_spec_against_the_schema_then_submits(page, study, client, shots):
    job_id = study["members"][0]["job_id"]
    _open_job(page, job_id)
    page.click("#clone-job")
    spec = page.input_value("#clone-spec")
    assert '"name": "copy of ' in spec
    bad = spec.replace('"K": 1', '"K": 0').replace('"steps": 10', '"steps": "ten"')
    page.fill("#clone-spec", bad)
    page.click("#clone-check")
    errors = page.locator("#clone-errors li")
    errors.first.wait_for()
    assert sorted(errors.all_text_contents()) == [
        "hypergradient.K: must be >= 1, got 0",
        'inner.steps: must be integer, got "ten"',
    ]
    page.screenshot(path=str(shots / "clone-errors.png"), full_page=True)
    page.fill("#clone-spec", spec.replace('"K": 1', '"K": 2'))
    page.click("#clone-submit")
    page.wait_for_function(
        f"() => /^#\\/jobs\\//.test(location.hash) && !location.hash.includes('{job_id}')"
    )
    new_id = page.evaluate("() => location.hash.split('/')[2]")
    job = client.get(f"/v1/jobs/{new_id}").json()
    assert job["spec"]["hypergradient"]["K"] == 2
    assert job["name"].startswith("copy of ")


def test_sweep_this_creates_a_study_over_the_jobs_spec(page, study, client):
    job_id = study["members"][0]["job_id"]
    _open_job(page, job_id)
    page.click("#sweep-job")
    page.fill("#sweep-path", "hypergradient.K")
    page.fill("#sweep-values", "1, 0")
    page.click("#sweep-create")
    page.locator("#sweep-errors li").first.wait_for()
    assert "grid.hypergradient.K: value 0 is rejected" in page.text_content("#sweep-errors")
    page.fill("#sweep-values", "1, 2")
    page.fill("#sweep-seeds", "0, 1")
    page.click("#sweep-create")
    page.wait_for_function("() => /^#\\/studies\\/[0-9a-f-]{36}$/.test(location.hash)")
    sid = page.evaluate("() => location.hash.split('/')[2]")
    made = client.get(f"/v1/studies/{sid}").json()
    assert [m["values"] for m in made["members"]] == [
        {"hypergradient.K": k, "seed": s} for k in (1, 2) for s in (0, 1)
    ]
    assert made["base"] == client.get(f"/v1/jobs/{job_id}").json()["spec"]
    page.wait_for_selector('#view-study[data-ready="1"]')
    # the refused grid's 422 is logged by the browser as a failed resource, nothing else
    assert [e for e in page.errors if "status of 422" not in e] == []


def test_the_webhooks_view_shows_each_delivery_and_its_answer(page, service, study, client):
    """A webhook put straight into the store: this service allows no address, so the
    executor's sender refuses every attempt and records why; the view shows it."""
    from jobs.store import repo
    from jobs.store.db import make_engine, make_session_factory, sqlite_url
    from jobs.store.models import Team
    from tests.conftest import KEY_SECRET

    engine = make_engine(sqlite_url(service.state))
    try:
        with make_session_factory(engine).begin() as s:
            team = s.query(Team).filter_by(name="local").one()
            hook, _ = repo.create_webhook(s, team.id, "http://127.0.0.1:9/hook",
                                          "dashboard test", actor=repo.Actor.operator(team.id),
                                          key_secret=KEY_SECRET.encode())  # fmt: skip
            # events of jobs that ended before a webhook existed are not sent: backdate it
            hook.created_at = hook.created_at.replace(year=2000)
            hook_id = str(hook.id)
    finally:
        engine.dispose()

    def attempted():
        rows = client.get(f"/v1/webhooks/{hook_id}/deliveries").json()["data"]
        return rows if rows and all(d["attempts"] >= 1 for d in rows) else None

    rows = wait_until(attempted, 30, "the executor's first delivery attempts", poll=0.3)
    page.evaluate("() => { location.hash = '#/webhooks'; }")
    page.wait_for_selector('#view-webhooks[data-ready="1"]')
    card = page.locator(f'#view-webhooks .hook[data-id="{hook_id}"]')
    assert card.locator("h3").text_content() == "http://127.0.0.1:9/hook"
    assert card.locator("tbody tr").count() == len(rows)
    events = sorted(card.locator("tbody tr td:nth-child(2)").all_text_contents())
    assert events == sorted(d["event_type"] for d in rows)
    assert "study.succeeded" in events
    assert "webhook_allow is empty" in card.locator("tbody tr").first.text_content()


def test_a_search_study_shows_its_objective_by_trial_and_its_best_member(page, client, shots):
    """The embedded executor asks for each next trial; the view draws every finished one."""
    page.errors.clear()  # the sweep test's refused grid logged its 422 on this page
    search = {"params": {"outer.lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
              "sampler": "random", "n_trials": 4, "max_concurrent": 2, "seed": 5}  # fmt: skip
    body = {"name": "search", "base": tiny_spec(iterations=30), "search": search}
    r = client.post("/v1/studies", json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]

    def ended():
        s = client.get(f"/v1/studies/{sid}").json()
        return s if s["search_done"] else None

    study = wait_until(ended, 120, "the search to spend its 4 trials", poll=0.3)
    assert [m["position"] for m in study["members"]] == [0, 1, 2, 3]
    page.evaluate(f"() => {{ location.hash = '#/studies/{sid}'; }}")
    page.wait_for_selector('#view-study[data-ready="1"][data-polling="done"]')
    assert page.is_visible("#study-search")
    assert page.get_attribute("#study-search .chart-box", "data-points") == "4"
    assert page.locator("#study-search canvas").count() == 1
    (best,) = study["best"]
    item = page.locator("#study-search .search-best li")
    assert item.count() == 1 and item.get_attribute("data-position") == str(best)
    # four complete members: the importance of its one path, drawn as a bar
    study = client.get(f"/v1/studies/{sid}").json()
    assert list(study["importance"]["params"]) == ["outer.lr"]
    row = page.locator("#study-search .search-importance tr")
    assert row.count() == 1 and row.get_attribute("data-path") == "outer.lr"
    assert page.locator("#study-search .search-importance progress").count() == 1
    page.screenshot(path=str(shots / "study-search.png"), full_page=True)
    assert page.errors == []
    assert page.evaluate("() => window.__csp") == []


def test_search_around_this_creates_a_search_warm_started_by_the_job(page, study, client):
    job_id = study["members"][0]["job_id"]
    _open_job(page, job_id)
    page.click("#around-job")
    page.fill("#around-trials", "2")
    page.fill("#around-concurrent", "1")
    page.select_option("#around-pruner", "median")
    page.click("#around-create")
    page.wait_for_function("() => /^#\\/studies\\/[0-9a-f-]{36}$/.test(location.hash)")
    sid = page.evaluate("() => location.hash.split('/')[2]")
    made = client.get(f"/v1/studies/{sid}").json()
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert made["base"] == job["spec"] and made["warm_start"]["trials"] == 1
    lr = made["search"]["params"]["outer.lr"]
    assert lr["low"] < job["spec"]["outer"]["lr"] < lr["high"] and lr["log"]
    assert made["search"]["n_trials"] == 2 and made["search"]["pruner"]["kind"] == "median"
    page.wait_for_selector('#view-study[data-ready="1"]')
    assert "warm start: 1 earlier" in page.text_content("#study-search .search-summary")
    assert page.evaluate("() => window.__csp") == []
