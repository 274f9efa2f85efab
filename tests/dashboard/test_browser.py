"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real app under
uvicorn: pages render without console errors, the charts are there, live progress moves without a
reload and a finished job reloads the page, and the login form works with a real browser's cookies.
Screenshots go to test-artifacts/dashboard-*.png for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.app import create_app
from services.domain.jobs import JobStatus
from tests.conftest import REPO
from tests.dashboard.conftest import READ, WORKLOAD, Site, with_auth
from tests.servers import serve

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        yield None  # each test then FAILS (not skips, not errors) with what to do: see Watched
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield instance
        instance.close()


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, browser: Any) -> None:
        if browser is None:
            pytest.fail(f"{CHROMIUM} is missing: run make setup (it installs Debian's chromium)")
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def test_pages_render_with_charts_and_no_console_errors(site: Site, browser: Any) -> None:
    newest = site.jobs[-1]
    watched = Watched(browser)
    page = watched.page
    with serve(create_app(site.settings, store=site.store)) as base:
        page.goto(f"{base}/dashboard")
        assert page.title() == "Overview · Data flywheel"
        link = page.locator(f'table.jobs a[href="/dashboard/jobs/{newest["id"]}"]')
        assert link.count() == 1 and link.is_visible(), "the newest job is listed"
        assert page.locator(f'tr[data-workload="{WORKLOAD}"]').is_visible()
        assert page.locator('svg[data-chart="timeline"]').count() >= len(site.jobs)
        watched.shot("overview")

        link.click()
        page.wait_for_url(f"{base}/dashboard/jobs/{newest['id']}")
        for chart in ("scores", "curve", "confusion", "timeline"):
            svg = page.locator(f'svg[data-chart="{chart}"]').first
            assert svg.is_visible(), chart
            box = svg.bounding_box()
            assert box["width"] > 100 and box["height"] > 40, (chart, box)
        assert page.locator('svg[data-chart="curve"] circle.point').count() == 2 * len(site.jobs)
        assert page.get_by_text(newest["decision"]["reason"]).is_visible()
        watched.shot("job")

        page.goto(f"{base}/dashboard/workloads/{WORKLOAD}")
        assert page.locator("tr[data-action]").count() == 4
        watched.shot("workload")
        assert watched.errors == []
        page.goto(f"{base}/dashboard/jobs/not-a-job")
        assert page.get_by_role("heading", name="Not found").is_visible()
    watched.context.close()
    assert all("status of 404" in e for e in watched.errors), "only the 404 page's own status is reported"


def test_live_progress_updates_then_reloads_when_the_job_finishes(site: Site, browser: Any) -> None:
    store = site.store
    watched = Watched(browser)
    job = store.create_job(workload_id="live_probe", client_id=None, stages=[("build_dataset", None), ("decide", None)])
    page = watched.page
    try:
        store.set_job(job.id, status=JobStatus.RUNNING)
        store.set_stage(job.id, "build_dataset", status=JobStatus.RUNNING, progress=0.2)
        with serve(create_app(site.settings, store=store)) as base:
            page.goto(f"{base}/dashboard")
            assert page.locator("body").get_attribute("data-live") == "/dashboard/live.json"
            bar = page.locator(f'progress[data-job-id="{job.id}"]')
            assert float(bar.get_attribute("value")) == pytest.approx(0.1)
            store.set_stage(job.id, "build_dataset", progress=0.8)
            page.wait_for_function("id => Math.abs(document.querySelector(`progress[data-job-id='${id}']`).value - 0.4)"
                                   " < 1e-6", arg=job.id, timeout=15_000)
            assert page.locator(f'[data-job-pct="{job.id}"]').inner_text() == "40%", "updated in place"
            watched.shot("live")
            store.set_stage(job.id, "build_dataset", status=JobStatus.COMPLETED)
            store.set_stage(job.id, "decide", status=JobStatus.COMPLETED)
            store.set_job(job.id, status=JobStatus.COMPLETED)
            page.wait_for_selector(f'[data-job-status="{job.id}"] .status-completed', timeout=15_000)
            assert page.locator("body").get_attribute("data-live") is None, "nothing runs: polling stops"
    finally:
        watched.context.close()
        store.set_job(job.id, status=JobStatus.CANCELLED)
        store.delete_job(job.id)
    assert watched.errors == []


def test_login_form_sets_a_cookie_the_browser_sends(site: Site, browser: Any) -> None:
    watched = Watched(browser)
    page = watched.page
    job_id = site.jobs[0]["id"]
    with serve(create_app(with_auth(site.settings), store=site.store)) as base:
        page.goto(f"{base}/dashboard/jobs/{job_id}")
        assert page.url.startswith(f"{base}/dashboard/login?next=")
        page.fill("#token", "wrong-token")
        page.click("button[type=submit]")
        assert page.get_by_role("alert").inner_text() == "unknown token"
        page.fill("#token", READ)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/dashboard/jobs/{job_id}")
        assert page.locator('svg[data-chart="scores"]').is_visible()
        cookie = next(c for c in watched.context.cookies() if c["name"] == "flywheel_dashboard")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
        assert page.evaluate("document.cookie") == "", "no script can read the session"
        page.click("text=Log out")
        page.wait_for_url(f"{base}/dashboard/login")
    watched.context.close()
    # The wrong token's 401 page is expected; the browser logs a failed-resource error for it only.
    assert all("401" in e for e in watched.errors), watched.errors
