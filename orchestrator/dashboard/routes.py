"""The dashboard's pages under /dashboard: overview, job, workload; login; a small JSON feed for live progress.

Routes are thin: they fetch what the API fetches, through the API's dependencies (`job_view` /
`job_summary` over the job store, `orchestrator.workloads.workloads_summary`, the route history), shape it with `views`, draw charts with `plots`, and
render a Jinja2 template. Every response carries a strict Content-Security-Policy: no inline
script, nothing from another origin (the page works offline); the one script is served from here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from orchestrator.api.deps import JobStoreDep, RouteStoreDep, SettingsDep, get_settings
from orchestrator.api.errors import error_body
from orchestrator.dashboard import access, plots, views
from orchestrator.jobs.store import JobNotFound
from orchestrator.jobs.view import job_summary, job_view
from orchestrator.workloads import workloads_summary

HERE = Path(__file__).parent
STATIC = {"dashboard.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
JOBS_SHOWN = 50
CURVE_JOBS = 200
MAX_LOGIN_BYTES = 4096

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _when(value: str | None) -> str:
    moment = views.parse_time(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def _unix(value: float | None) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - the loop returns


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True)
_env.filters.update(when=_when, unix=_unix, size=_size, num=_num)
templates = Jinja2Templates(env=_env)


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    auth = get_settings(request).api.auth
    base = {"auth_enabled": auth.enabled, "principal": getattr(request.state, "dashboard_principal", None)}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status, headers=PAGE_HEADERS)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dashboard/login?next={quote(target, safe='')}", 303, headers=PAGE_HEADERS)


def _gate(request: Request) -> Response | None:
    """None when the request may read the dashboard; else the redirect to the login form."""
    principal = access.viewer(request)
    if principal is None:
        return _login_redirect(request)
    request.state.dashboard_principal = principal
    return None


def _not_found(request: Request, what: str) -> Response:
    return _page(request, "not_found.html", {"title": "Not found", "what": what}, 404)


@router.get("")
def overview(request: Request, settings: SettingsDep, store: JobStoreDep, routes: RouteStoreDep) -> Response:
    """Workloads (records, route, traffic, cost avoided) and the newest jobs with their progress."""
    if (denied := _gate(request)) is not None:
        return denied
    workloads = workloads_summary(settings, store, routes)
    jobs, total = store.list_jobs(limit=JOBS_SHOWN)
    rows = []
    now = datetime.now(UTC)
    for job in jobs:
        view = job_view(job)
        rows.append({**job_summary(job), "timeline": plots.stage_timeline(
            views.timeline_bars(view, now=now), ident=f"tl-{job.id}", width=220, compact=True)})
    return _page(request, "overview.html", {
        "title": "Overview", "workloads": workloads, "jobs": rows, "total_jobs": total,
        "live": views.is_live(rows), "live_src": "/dashboard/live.json"})


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, store: JobStoreDep) -> Response:
    """One job: scores with CIs, the learning curve of its workload, confusion, latency/size, decision, stages."""
    if (denied := _gate(request)) is not None:
        return denied
    try:
        job = store.get_job(job_id)
    except JobNotFound:
        return _not_found(request, f"job {job_id}")
    view = job_view(job)
    peers = [job_view(j) for j in store.list_jobs(workload_id=job.workload_id, limit=CURVE_JOBS)[0]]
    metric = views.metric_of([view, *peers])
    confusion = [{**c, "svg": plots.confusion_heatmap(c["labels"], c["matrix"], c["unparseable"],
                                                        ident=f"cm-{i}", title=f"Confusion matrix of {c['candidate']}")}
                 for i, c in enumerate(views.confusions(view))]
    selective = views.selective_rows(view)
    target = next((row.get("target_agreement") for row in selective), None)
    return _page(request, "job.html", {
        "title": f"Job {job_id[:8]}", "job": view, "metric": metric, "selective": selective,
        "coverage_svg": plots.coverage_chart({row["candidate"]: [(p["coverage"], p["agreement"]) for p in
                                                                 row.get("curve") or []] for row in selective},
                                             target=target),
        "scores_svg": plots.score_chart(views.score_points(view), metric=metric),
        "evaluations": views.evaluation_rows(view), "training": views.training_rows(view),
        "curve_svg": plots.learning_curve(views.learning_curve_series(peers), metric=metric),
        "confusions": confusion, "timeline_svg": plots.stage_timeline(views.timeline_bars(view), width=720),
        "train_size": views.train_size(view), "decision": job.decision,
        "live": views.is_live([view]), "live_src": f"/dashboard/live.json?job_id={quote(job_id, safe='')}"})


@router.get("/workloads/{workload_id}")
def workload_page(workload_id: str, request: Request, settings: SettingsDep, store: JobStoreDep,
                  routes: RouteStoreDep) -> Response:
    """One workload: its route now and its history, its jobs, its learning curve."""
    if (denied := _gate(request)) is not None:
        return denied
    entry = next((w for w in workloads_summary(settings, store, routes) if w["workload_id"] == workload_id), None)
    if entry is None:
        return _not_found(request, f"workload {workload_id}")
    jobs = store.list_jobs(workload_id=workload_id, limit=CURVE_JOBS)[0]
    job_views = [job_view(j) for j in jobs]
    metric = views.metric_of(job_views)
    route = routes.get(workload_id, fresh=True)
    live = None
    if route.cascade:  # a selective route: what it promised and what it does now
        (monitored, agreement), (asked, coverage) = routes.agreement(route), routes.coverage(route)
        live = {"monitored": monitored, "agreement": agreement, "asked": asked, "coverage": coverage}
    return _page(request, "workload.html", {
        "title": f"Workload {workload_id}", "workload": entry, "history": routes.history(workload_id),
        "route": route.model_dump(mode="json"), "selective_live": live,
        "jobs": [job_summary(j) for j in jobs[:JOBS_SHOWN]], "metric": metric,
        "curve_svg": plots.learning_curve(views.learning_curve_series(job_views), metric=metric),
        "live": views.is_live(job_views), "live_src": f"/dashboard/live.json?workload_id={quote(workload_id, safe='')}"})


@router.get("/live.json")
def live(request: Request, store: JobStoreDep, job_id: str | None = None, workload_id: str | None = None) -> Response:
    """Status and progress of the jobs a page shows (what GET /api/jobs returns), for the page's poller."""
    if access.viewer(request) is None:
        return JSONResponse(error_body(request, 401, "unauthorized", "log in at /dashboard/login"), 401,
                            headers={"Cache-Control": "no-store"})
    if job_id is not None:
        try:
            jobs = [store.get_job(job_id)]
        except JobNotFound:
            jobs = []
    else:
        jobs = store.list_jobs(workload_id=workload_id, limit=JOBS_SHOWN)[0]
    summaries = [job_summary(j) for j in jobs]
    return JSONResponse({"jobs": summaries, "live": views.is_live(summaries)}, headers={"Cache-Control": "no-store"})


@router.get("/login")
def login_form(request: Request, settings: SettingsDep, next: str | None = None) -> Response:  # noqa: A002
    """The token form (auth mode); without auth there is nothing to log in to."""
    if not settings.api.auth.enabled:
        return RedirectResponse(access.safe_next(next), 303)
    return _page(request, "login.html", {"title": "Log in", "next": access.safe_next(next), "error": None})


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    """Check the token against the API's token list; a read token gets the session cookie."""
    auth = settings.api.auth
    body = await request.body()
    form = {k: v[0] for k, v in parse_qs(body[:MAX_LOGIN_BYTES].decode("utf-8", "replace")).items()}
    target = access.safe_next(form.get("next"))
    if not auth.enabled:
        return RedirectResponse(target, 303)
    if not access.same_origin(request):
        return _page(request, "login.html", {"title": "Log in", "next": target,
                                             "error": "this form was posted from another site"}, 403)
    token = form.get("token", "").strip()
    principal = access.principal_for_token(auth, token) if token else None
    if principal is None:
        return _page(request, "login.html", {"title": "Log in", "next": target, "error": "unknown token"}, 401)
    if access.SCOPE not in principal.scopes:
        return _page(request, "login.html", {"title": "Log in", "next": target,
                                             "error": f"token {principal.name!r} lacks the 'read' scope"}, 403)
    response = RedirectResponse(target, 303, headers=PAGE_HEADERS)
    response.set_cookie(access.COOKIE, access.session_cookie(token, principal), max_age=access.SESSION_S,
                        path="/dashboard", httponly=True, samesite="strict", secure=access.is_https(request))
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/dashboard/login", 303, headers=PAGE_HEADERS)
    response.delete_cookie(access.COOKIE, path="/dashboard", httponly=True, samesite="strict",
                           secure=access.is_https(request))
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The stylesheet and the live-progress script (vendored here: the page needs no other site)."""
    if name not in STATIC:
        return Response("not found", 404, media_type="text/plain")
    return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


@router.get("/{rest:path}")
def unknown_page(rest: str, request: Request) -> Response:
    """Any other path under /dashboard: the HTML 404 page (registered last, so every real page wins)."""
    if (denied := _gate(request)) is not None:
        return denied
    return _not_found(request, f"page /dashboard/{rest}")
