"""A job's page shows what was learned, and a diverged run is flagged; in real Chromium.

The embedded service runs three small jobs of problems with something to draw: per-feature
penalties on diabetes (named features), hypercleaning's example weights (clean vs. corrupted),
an MLP's layer decays with a learned step size; and a toy run chosen to diverge. Screenshots
of each page go to ``$DASHBOARD_SHOTS``, else to a temporary folder copied to
``out/dashboard``.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_diabetes

from tests.e2e import dashboard_helpers as dash
from tests.factories import example

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _small(kind: str, **inner) -> dict:
    spec = copy.deepcopy(example(kind))
    spec["inner"].update(steps=20, **inner)
    spec["hypergradient"] = {"method": "truncated", "K": 5}
    spec["outer"]["iterations"] = 30
    spec["diagnostics"]["every"] = 0
    spec["device"] = "cpu"
    return spec


def _specs() -> dict[str, dict]:
    cleaning = _small("hypercleaning")
    cleaning["problem"].update(n_train=300, n_val=150)
    mlp = _small("mlp", learn_lr=True)
    mlp["problem"]["hidden"] = [16]
    diverging = copy.deepcopy(example("toy"))  # as in tests/worker/test_divergence.py
    diverging["inner"].update(steps=10, lr=0.5, learn_lr=True)
    diverging["hypergradient"] = {"method": "truncated", "K": 5}
    diverging["outer"].update(lr=2.0, iterations=8)
    auto = copy.deepcopy(example("toy"))  # 314 bytes: K=16 of T=20 (16 bytes a step, 48 fixed)
    auto["inner"]["steps"] = 20
    auto["hypergradient"] = {"method": "auto", "memory_mb": 0.0003}
    auto["outer"]["iterations"] = 5
    return {"penalties": _small("feature_regularization", lr=0.1), "cleaning": cleaning,
            "mlp": mlp, "diverging": diverging, "auto": auto}  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    reason = dash.missing_service_pieces()
    if reason:
        pytest.skip(reason)
    svc = dash.start_service(tmp_path_factory.mktemp("learned-state"))
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def jobs(service):
    with httpx.Client(base_url=service.url, headers=service.auth, timeout=30) as client:
        ids = {}
        for key, spec in _specs().items():
            r = client.post("/v1/jobs", json=spec)
            assert r.status_code == 201, r.text
            ids[key] = r.json()["id"]
        for job_id in ids.values():
            job = dash.wait_job(client, job_id, lambda j: j["status"] != "queued"
                                and j["status"] != "running", timeout=180)  # fmt: skip
            assert job["status"] == "succeeded", job
        learned = {k: client.get(f"/v1/jobs/{i}/learned").json() for k, i in ids.items()}
    return ids, learned


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    env = os.environ.get("DASHBOARD_SHOTS")
    path = Path(env) if env else tmp_path_factory.mktemp("learned-shots")
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
        b = p.chromium.launch(executable_path=dash.CHROMIUM, args=dash.CHROMIUM_ARGS, headless=True)
        context = b.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(30_000)
        context.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )
        pg = context.new_page()
        pg.errors = []
        pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
        pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
        pg.goto(f"{service.url}/#key={service.key}")
        pg.wait_for_selector('#view-jobs[data-ready="1"]')
        yield pg
        context.close()
        b.close()


def _open(page, job_id: str) -> None:
    page.evaluate(f"() => {{ location.hash = '#/jobs/{job_id}'; }}")
    page.wait_for_selector(f'#view-job[data-id="{job_id}"][data-ready="1"][data-polling="done"]')
    page.wait_for_selector('#learned[data-ready="1"]')


def test_penalties_are_sorted_bars_named_by_feature_with_their_paths(page, jobs, shots):
    ids, learned = jobs
    _open(page, ids["penalties"])
    bars = page.locator("#learned-penalties svg.bars")
    assert bars.get_attribute("data-bars") == "10"
    labels = bars.locator("text.bar-label").all_text_contents()
    assert labels == learned["penalties"]["penalties"]["labels"]
    assert sorted(labels) == sorted(load_diabetes().feature_names)
    widths = [float(w) for w in bars.locator("rect.bar").evaluate_all(
        "rs => rs.map(r => r.getAttribute('width'))")]  # fmt: skip
    assert widths == sorted(widths, reverse=True)  # largest first, drawn so
    path = page.locator("#learned-path-feature_penalties")
    (kept,) = learned["penalties"]["paths"]
    assert path.get_attribute("data-points") == str(len(kept["iteration"]))
    assert path.locator("canvas").count() == 1
    page.screenshot(path=str(shots / "learned-penalties.png"), full_page=True)


def test_example_weights_are_a_histogram_split_clean_and_corrupted(page, jobs, shots):
    ids, learned = jobs
    _open(page, ids["cleaning"])
    hist = page.locator("#learned-weights svg.histogram")
    assert hist.get_attribute("data-split") == "1"
    w = learned["cleaning"]["example_weights"]
    assert hist.locator("rect.bin-corrupted").count() == sum(1 for c in w["corrupted"] if c)
    assert hist.locator("rect.bin-clean").count() == sum(1 for c in w["clean"] if c)
    caption = page.text_content("#learned-weights p")
    assert caption.startswith("mean weight: clean ") and ", corrupted " in caption
    page.screenshot(path=str(shots / "learned-weights.png"), full_page=True)


def test_layer_decays_and_the_step_size_over_the_iterations(page, jobs, shots):
    ids, learned = jobs
    _open(page, ids["mlp"])
    decays = learned["mlp"]["layer_decays"]["values"]
    assert page.locator("#learned-decays svg.bars").get_attribute("data-bars") == str(len(decays))
    assert page.text_content("#learned-step").startswith("Learned inner step size γ = ")
    for key in ("layer_decay", "log_lr"):
        chart = page.locator(f"#learned-path-{key}")
        assert chart.locator("canvas").count() == 1 and chart.get_attribute("data-points") != "0"
    page.screenshot(path=str(shots / "learned-mlp.png"), full_page=True)


def test_a_diverged_run_is_flagged_on_its_page_and_in_the_list(page, jobs, shots):
    ids, _ = jobs
    _open(page, ids["diverging"])
    warnings = page.locator("#view-job .job-warnings li")
    assert warnings.count() == 2
    assert warnings.nth(0).text_content().startswith("⚠ outer loss jumped to ")
    page.screenshot(path=str(shots / "diverged.png"), full_page=False)
    page.evaluate("() => { location.hash = '#/jobs'; }")
    page.wait_for_selector('#view-jobs[data-ready="1"]')
    row = page.locator(f'#jobs-table tr[data-id="{ids["diverging"]}"]')
    assert row.locator(".flag-diverged").text_content() == " ⚠ diverged"
    others = [ids[k] for k in ("penalties", "cleaning", "mlp")]
    for job_id in others:
        assert page.locator(f'#jobs-table tr[data-id="{job_id}"] .flag-diverged').count() == 0
    assert page.errors == [] and page.evaluate("window.__csp") == []


def test_auto_k_says_why_it_chose_k(page, jobs, service):
    ids, _ = jobs
    with httpx.Client(base_url=service.url, headers=service.auth, timeout=30) as client:
        auto_k = client.get(f"/v1/jobs/{ids['auto']}").json()["summary"]["auto_k"]
    assert auto_k["K"] == 16 and auto_k["method"] == "truncated"
    assert auto_k["reason"].startswith(
        "one recorded inner step holds 16 bytes on top of 48 fixed, so a budget of 314 bytes "
        "holds K=16 of the T=20 steps: K-RMD (Eq. 8)."
    )
    _open(page, ids["auto"])
    facts = page.locator("#view-job .facts dl")
    terms = facts.locator("dt").all_text_contents()
    assert facts.locator("dd").nth(terms.index("Why this K")).text_content() == auto_k["reason"]
