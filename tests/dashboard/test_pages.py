"""The dashboard's pages through the real app (TestClient) over a real flywheel history (see conftest):
what each page shows, the 404 pages, and the login flow when the API's auth is on."""

from __future__ import annotations

import html
import re
import time

from fastapi.testclient import TestClient

from orchestrator.dashboard import access
from tests.dashboard.conftest import NO_READ, READ, WORKLOAD, Site


def test_overview_shows_workloads_route_traffic_and_jobs(site: Site, client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"] and "default-src 'none'" in \
        page.headers["content-security-policy"]
    text = page.text
    summary = next(w for w in client.get("/api/workloads").json()["workloads"] if w["workload_id"] == WORKLOAD)
    row = re.search(rf'<tr data-workload="{WORKLOAD}">(.*?)</tr>', text, re.S).group(1)
    assert f'href="/dashboard/workloads/{WORKLOAD}"' in row
    assert '<span class="phase phase-full">full</span>' in row, "rolled back to the full route of the first job"
    champion = site.jobs[0]["decision"]["chosen"]  # chosen by measured cost: either student may win
    assert summary["route"]["student"] == champion and f"<td>{champion}</td>" in row
    assert "<td>12 / 88</td>" in row, "teacher / student requests from the gateway's traffic counters"
    cost = summary["traffic"]["teacher_cost_avoided_usd"]
    assert cost == round(88 / 1000 * site.jobs[0]["decision"]["teacher_cost_per_1k_requests"], 6) and cost > 0
    assert f"{cost:.4f}" in row
    for job in site.jobs:
        assert f'href="/dashboard/jobs/{job["id"]}"' in text
        assert f'<progress data-job-id="{job["id"]}" max="1" value="1.0"' in text
    assert text.index(site.jobs[1]["id"]) < text.index(site.jobs[0]["id"]), "newest job first"
    assert text.count('data-chart="timeline"') >= 2, "a stage timeline per job"
    assert "data-live=" not in text, "nothing runs: the page does not poll"


def test_job_page_shows_scores_curve_confusion_decision_and_stages(site: Site, client: TestClient) -> None:
    job = site.jobs[0]
    page = client.get(f"/dashboard/jobs/{job['id']}")
    assert page.status_code == 200
    text = page.text
    assert job["id"] in text and html.escape(job["decision"]["reason"]) in text
    assert job["decision"]["reason"].startswith(f"promote {job['decision']['chosen']}")
    for chart in ("scores", "curve", "confusion", "timeline"):
        assert f'data-chart="{chart}"' in text, chart
    assert "No data yet" not in text
    # The score chart: every evaluation with a score, at its value (ICL and base of the LoRA student too).
    lora = next(c for c in job["candidates"] if c["name"] == "tiny-lora")
    for kind in ("base", "icl", "customized"):
        value = lora["evaluations"][kind]["f1_vs_teacher"]
        assert f'data-candidate="tiny-lora" data-kind="{kind}" data-value="{value:.4f}"' in text
    assert 'data-candidate="tiny-clf" data-kind="base"' not in text, "not applicable: no dot"
    # The LoRA student was trained without the static system prompt (auto pruning): its token savings show.
    metrics = lora["training"]["metrics"]
    assert metrics["pruned"] and (f"{metrics['prompt_tokens_pruned_mean']:g} (pruned from "
                                  f"{metrics['prompt_tokens_unpruned_mean']:g}") in text
    assert "base evaluation does not apply" in text, "the reason is in the table instead"
    # Selective answering: every classifier's threshold, coverage and agreement bound, and the coverage chart.
    clf = next(c for c in job["candidates"] if c["name"] == "tiny-clf")
    block = clf["evaluations"]["customized"]["metrics"]["selective"]
    assert "Selective answering" in text and 'data-chart="coverage"' in text
    row = re.search(r'<table class="selective">(.*?)</table>', text, re.S).group(1)
    assert "<td>tiny-clf</td>" in row and f"<td>{block['n_calibration']} / {block['n_report']}</td>" in row
    assert f'data-value="{block["target_agreement"]:.4f}"' in text, "the policy's target is drawn"
    # The learning curve spans both jobs of the workload: one series per candidate, one point per job.
    sizes = sorted(j["dataset"]["counts"]["train"] for j in site.jobs)
    assert sizes[0] < sizes[1]
    for name in ("tiny-clf", "tiny-lora"):
        points = re.findall(rf'class="point" data-series="{name}" data-x="(\d+)"', text)
        assert sorted(int(p) for p in points) == sizes, name
    # The confusion matrix of each customized evaluation, with the teacher's labels.
    clf = next(c for c in job["candidates"] if c["name"] == "tiny-clf")
    confusion = clf["evaluations"]["customized"]["metrics"]["confusion"]
    counts = [int(n) for n in re.findall(r'data-count="(\d+)"', text.split("Confusion matrix of tiny-clf")[1]
                                         .split("</svg>")[0])]
    assert sum(counts) == sum(map(sum, confusion["matrix"])) + sum(confusion["unparseable"]) == clf[
        "evaluations"]["customized"]["n"]
    for label in confusion["labels"]:
        assert f'data-row="{label}"' in text
    # Latency and size, and every stage in the timeline.
    latency = clf["evaluations"]["customized"]["latency"]
    assert f"{latency['p50_ms']:.1f} / {latency['p95_ms']:.1f}" in text
    assert text.count('class="bar"') == len(job["stages"])
    assert f"train {job['dataset']['counts']['train']}" in text


def test_workload_page_shows_route_history_and_jobs(site: Site, client: TestClient) -> None:
    page = client.get(f"/dashboard/workloads/{WORKLOAD}")
    assert page.status_code == 200
    text = page.text
    actions = re.findall(r'<tr data-action="([a-z]+)">', text)
    assert actions == ["rollback", "deploy", "promote", "deploy"], "newest first"
    assert "operator anonymous" in text, "the reason of the manual promote and rollback"
    rows = re.findall(r'<tr data-action="[a-z]+">(.*?)</tr>', text, re.S)
    assert site.jobs[1]["id"][:8] in rows[1] and site.jobs[0]["id"][:8] in rows[3], "each deploy links its job"
    assert "promotion decision" in rows[1]
    assert f'href="/dashboard/jobs/{site.jobs[0]["id"]}"' in text and site.jobs[1]["id"] in text
    assert '<span class="phase phase-full">full</span>' in text
    assert f"<strong>{site.jobs[0]['decision']['chosen']}</strong>" in text
    assert text.count('class="point" data-series=') == 4
    assert "student requests" in text


def test_unknown_job_and_workload_are_html_404_pages(client: TestClient) -> None:
    for path, what in (("/dashboard/jobs/no-such-job", "job no-such-job"),
                       ("/dashboard/workloads/no_such_workload", "workload no_such_workload")):
        page = client.get(path)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert f"There is no {what}." in page.text and "Traceback" not in page.text
    page = client.get("/dashboard/workloads/%3Cscript%3Ealert(1)%3C")
    assert page.status_code == 404 and "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;" in page.text
    page = client.get("/dashboard/workloads/a/b")
    assert page.status_code == 404 and "There is no page /dashboard/workloads/a/b." in page.text


def test_live_feed_and_static_assets(site: Site, client: TestClient) -> None:
    feed = client.get("/dashboard/live.json").json()
    assert feed["live"] is False and {j["id"] for j in feed["jobs"]} >= {j["id"] for j in site.jobs}
    one = client.get("/dashboard/live.json", params={"job_id": site.jobs[0]["id"]}).json()
    assert [j["id"] for j in one["jobs"]] == [site.jobs[0]["id"]] and one["jobs"][0]["progress"] == 1.0
    script = client.get("/dashboard/static/live.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "fetch(" in script.text
    assert client.get("/dashboard/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert client.get("/dashboard/static/..%2Froutes.py").status_code == 404
    assert client.get("/dashboard/login", follow_redirects=False).headers["location"] == "/dashboard", \
        "without auth there is nothing to log in to"


def test_auth_mode_redirects_to_login_and_the_cookie_opens_the_pages(site: Site, auth_client: TestClient) -> None:
    job_path = f"/dashboard/jobs/{site.jobs[0]['id']}"
    for path in ("/dashboard", job_path, f"/dashboard/workloads/{WORKLOAD}"):
        answer = auth_client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/dashboard/login?next=%2Fdashboard")
    assert auth_client.get("/dashboard/live.json").status_code == 401
    assert auth_client.get("/api/jobs").status_code == 401, "the API itself stays bearer-only"
    form = auth_client.get(auth_client.get(job_path).headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text and f'value="{job_path}"' in form.text

    wrong = auth_client.post("/dashboard/login", data={"token": "not-a-token", "next": job_path})
    assert wrong.status_code == 401 and "unknown token" in wrong.text and 'name="token"' in wrong.text
    assert access.COOKIE not in wrong.headers.get("set-cookie", "")
    no_read = auth_client.post("/dashboard/login", data={"token": NO_READ, "next": job_path})
    assert no_read.status_code == 403 and "lacks the &#39;read&#39; scope" in no_read.text
    for foreign_headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        foreign = auth_client.post("/dashboard/login", data={"token": READ}, headers=foreign_headers)
        assert foreign.status_code == 403 and access.COOKIE not in foreign.headers.get("set-cookie", "")

    ok = auth_client.post("/dashboard/login", data={"token": READ, "next": job_path})
    assert ok.status_code == 303 and ok.headers["location"] == job_path
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{access.COOKIE}=") and READ not in cookie, "the cookie is not the token"
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/dashboard", "Max-Age="):
        assert attribute.lower() in cookie.lower(), attribute
    page = auth_client.get(job_path)
    assert page.status_code == 200 and site.jobs[0]["id"] in page.text and "signed in as viewer" in page.text
    assert auth_client.get("/dashboard/live.json").status_code == 200

    session = auth_client.cookies[access.COOKIE]
    auth_client.cookies.clear()
    tampered = session[:-2] + ("00" if not session.endswith("00") else "11")
    assert auth_client.get("/dashboard", headers={"Cookie": f"{access.COOKIE}={session}"}).status_code == 200
    assert auth_client.get("/dashboard", headers={"Cookie": f"{access.COOKIE}={tampered}"}).status_code == 303, \
        "a tampered cookie is no session"
    bearer = auth_client.get("/dashboard", headers={"Authorization": f"Bearer {READ}"})
    assert bearer.status_code == 200 and WORKLOAD in bearer.text
    assert auth_client.get("/dashboard", headers={"Authorization": "Bearer nope"}).status_code == 303

    away = auth_client.post("/dashboard/login", data={"token": READ, "next": "https://evil.example/x"})
    assert away.headers["location"] == "/dashboard", "no open redirect"
    assert auth_client.get("/dashboard").status_code == 200, "logged in again"
    out = auth_client.post("/dashboard/logout")
    assert out.status_code == 303 and "max-age=0" in out.headers["set-cookie"].lower()
    assert auth_client.get("/dashboard").status_code == 303


def test_session_cookies_expire_and_die_with_their_token(site: Site) -> None:
    from tests.dashboard.conftest import with_auth

    auth = with_auth(site.settings).api.auth
    principal = access.principal_for_token(auth, READ)
    assert principal is not None and principal.name == "viewer" and access.principal_for_token(auth, "x") is None
    now = time.time()
    value = access.session_cookie(READ, principal, now=now)
    assert access.principal_for_cookie(auth, value, now=now + 60).name == "viewer"
    assert access.principal_for_cookie(auth, value, now=now + access.SESSION_S + 1) is None, "expired"
    rotated = auth.model_copy(update={"tokens": [t for t in auth.tokens if t.name != "viewer"]})
    assert access.principal_for_cookie(rotated, value, now=now) is None, "token removed from config: session over"
    for bad in ("", "a.b", "x.1.y", f"{value}.extra", value.replace(".", "!", 1)):
        assert access.principal_for_cookie(auth, bad, now=now) is None
    assert access.safe_next("//evil.example/dashboard") == "/dashboard"
    assert access.safe_next("/dashboard/jobs/1?x=2") == "/dashboard/jobs/1?x=2"
    assert access.safe_next("/api/jobs") == "/dashboard"


def test_a_queued_job_page_renders_its_plan_and_polls(site: Site, client: TestClient) -> None:
    job = site.store.create_job(workload_id="queued_probe", client_id="desk-1",
                                stages=[("build_dataset", None), ("customize", "tiny-clf"), ("decide", None)])
    try:
        page = client.get(f"/dashboard/jobs/{job.id}")
        assert page.status_code == 200
        assert f'data-live="/dashboard/live.json?job_id={job.id}"' in page.text and 'data-live-mode="reload"' in page.text
        assert "No decision yet" in page.text and page.text.count('class="no-data"') == 2, "scores and curve are empty"
        assert page.text.count('<span class="status status-queued">queued</span>') >= 4, "job and planned stages"
        workload = client.get("/dashboard/workloads/queued_probe")
        assert workload.status_code == 200 and "No route changes yet" in workload.text
        assert client.get("/dashboard").text.count("data-live=") == 1
    finally:
        site.store.request_cancel(job.id)
        site.store.delete_job(job.id)


def test_workload_page_shows_a_selective_routes_promise_and_live_figures(site: Site, client: TestClient) -> None:
    from services.deployment.routes import RouteStore

    routes = RouteStore(site.settings.job_store.url)
    original = routes.get(WORKLOAD, fresh=True)
    cascade = {"threshold": 0.61, "coverage": 0.55, "agreement": 0.96, "agreement_ci_low": 0.92,
               "target_agreement": 0.9, "n_report": 200, "confidence": 0.95}
    selective = routes.set(original.model_copy(update={"cascade": cascade}), action="test", detail={"reason": "test"})
    try:
        routes.add_route_counts({(WORKLOAD, selective.since): (40, 30)})
        for agree in (True, True, False, True):
            routes.add_sample(selective, agree=agree)
        text = client.get(f"/dashboard/workloads/{WORKLOAD}").text
        table = re.search(r'<table class="selective-route">(.*?)</table>', text, re.S).group(1)
        assert "confidence ≥ 0.610" in table and "lower bound 0.920 ≥ 0.90" in table
        assert "0.750 of 40 asked" in table and "0.750 over 4 monitored" in table
    finally:
        routes.set(original, action="test", detail={"reason": "test: restore"})
        routes.engine.dispose()
