"""Server-side SVG charts for the dashboard: pure functions from small typed inputs to SVG markup.

No plotting library and no JavaScript: each chart is an `<svg role="img">` with a `<title>` and a
`<desc>` (read by screen readers), axis labels and a legend, drawn for a light background. Every
piece of text is escaped here, so a label such as `<script>` or `R&D` is shown, never run. Marks
carry `data-*` attributes (value, series) so tests, and anyone reading the page source, can tell
what each one stands for. Empty input gives a chart-sized "No data yet" box that says what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
KIND_COLOURS = {"base": "#7f7f7f", "icl": "#E69F00", "customized": "#0072B2"}
STATUS_COLOURS = {"queued": "#c8c8c8", "running": "#56B4E9", "completed": "#009E73", "failed": "#D55E00",
                  "cancelled": "#9a9a9a"}
TEXT = "#1f2328"
GRID = "#d8dee4"
SCORE_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)  # scores are shares: quarters read at a glance
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'


@dataclass(frozen=True)
class ScorePoint:
    """One evaluation's headline score and its confidence interval."""

    candidate: str
    kind: str  # base | icl | customized
    score: float
    ci: tuple[float, float] | None


@dataclass(frozen=True)
class CurvePoint:
    """One job's customized score of one candidate against the job's training-set size."""

    x: float
    y: float
    ci: tuple[float, float] | None
    label: str = ""


@dataclass(frozen=True)
class TimelineBar:
    """One stage row in seconds since the job was created (a running stage ends now); None: not yet."""

    label: str
    status: str
    start: float | None
    end: float | None


def _t(value: object) -> str:
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _svg(*, ident: str, kind: str, width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{_t(kind)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-labelledby="{_t(ident)}-title {_t(ident)}-desc" {FONT} font-size="12" fill="{TEXT}">'
            f'<title id="{_t(ident)}-title">{_t(title)}</title><desc id="{_t(ident)}-desc">{_t(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def no_data(*, ident: str, kind: str, title: str, message: str, width: int = 480, height: int = 120) -> Markup:
    """A chart-sized box saying that there is nothing to plot yet, and why."""
    body = [f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f6f8fa" stroke="{GRID}" rx="4"/>',
            f'<text class="no-data" x="{width / 2}" y="{height / 2 - 4}" text-anchor="middle" font-size="14" '
            f'font-weight="600">No data yet</text>',
            f'<text x="{width / 2}" y="{height / 2 + 16}" text-anchor="middle" fill="#57606a">{_t(message)}</text>']
    return _svg(ident=ident, kind=kind, width=width, height=height, title=title, desc=f"No data yet: {message}",
                body=body)


class Scale:
    """A linear map from data values to pixels."""

    def __init__(self, lo: float, hi: float, start: float, stop: float) -> None:
        self.lo, self.hi, self.start, self.stop = lo, (hi if hi != lo else lo + 1), start, stop

    def __call__(self, value: float) -> float:
        return round(self.start + (value - self.lo) / (self.hi - self.lo) * (self.stop - self.start), 2)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks, value = [], first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _y_axis(scale: Scale, ticks: Sequence[float], *, left: float, right: float, label: str, top: float,
            bottom: float) -> list[str]:
    out = []
    for tick in ticks:
        y = scale(tick)
        out.append(f'<line class="tick" data-tick="{_n(tick)}" x1="{left}" x2="{right}" y1="{y}" y2="{y}" '
                   f'stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{_t(_n(tick))}</text>')
    middle = (top + bottom) / 2
    out.append(f'<text class="axis-label" x="14" y="{middle}" text-anchor="middle" '
               f'transform="rotate(-90 14 {middle})">{_t(label)}</text>')
    return out


def _error_bar(x: float, y_lo: float, y_hi: float, colour: str, *, cap: float = 5) -> str:
    return (f'<g class="ci" stroke="{colour}" stroke-width="1.5"><line x1="{x}" x2="{x}" y1="{y_lo}" y2="{y_hi}"/>'
            f'<line x1="{x - cap}" x2="{x + cap}" y1="{y_lo}" y2="{y_lo}"/>'
            f'<line x1="{x - cap}" x2="{x + cap}" y1="{y_hi}" y2="{y_hi}"/></g>')


def _legend(entries: Sequence[tuple[str, str]], *, x: float, y: float) -> list[str]:
    out = ['<g class="legend">']
    cursor = x
    for label, colour in entries:
        out.append(f'<circle cx="{cursor + 5}" cy="{y - 4}" r="5" fill="{colour}"/>'
                   f'<text x="{cursor + 14}" y="{y}">{_t(label)}</text>')
        cursor += 28 + 7 * len(label)
    out.append("</g>")
    return out


def score_chart(points: Sequence[ScorePoint], *, metric: str, ident: str = "scores") -> Markup:
    """Dot and error-bar chart: each candidate's base / ICL / customized score with its CI (0..1)."""
    title = f"{metric} per candidate and evaluation"
    if not points:
        return no_data(ident=ident, kind="scores", title=title, message="no evaluation has a score")
    candidates = list(dict.fromkeys(p.candidate for p in points))
    kinds = [k for k in KIND_COLOURS if any(p.kind == k for p in points)]
    group = 150
    left, top, bottom_margin = 56, 34, 44
    width = max(left + group * len(candidates) + 20, 320)
    height = 300
    bottom = height - bottom_margin
    y = Scale(0.0, 1.0, bottom, top)
    body = _y_axis(y, SCORE_TICKS, left=left, right=width - 20, label=metric, top=top, bottom=bottom)
    for i, candidate in enumerate(candidates):
        centre = left + group * i + group / 2
        body.append(f'<text class="category" x="{centre}" y="{bottom + 18}" text-anchor="middle">'
                    f'{_t(candidate)}</text>')
        present = [k for k in kinds if any(p.candidate == candidate and p.kind == k for p in points)]
        for j, kind in enumerate(present):
            point = next(p for p in points if p.candidate == candidate and p.kind == kind)
            x = round(centre + (j - (len(present) - 1) / 2) * 30, 2)
            colour = KIND_COLOURS.get(kind, PALETTE[0])
            if point.ci is not None:
                body.append(_error_bar(x, y(point.ci[0]), y(point.ci[1]), colour))
            ci_text = f" (CI {point.ci[0]:.3f}–{point.ci[1]:.3f})" if point.ci else ""
            body.append(f'<circle class="point" data-candidate="{_t(candidate)}" data-kind="{_t(kind)}" '
                        f'data-value="{point.score:.4f}" cx="{x}" cy="{y(point.score)}" r="5" fill="{colour}">'
                        f'<title>{_t(candidate)} {_t(kind)}: {point.score:.3f}{_t(ci_text)}</title></circle>')
    body.append(f'<text class="axis-label" x="{(left + width) / 2}" y="{bottom + 36}" text-anchor="middle">'
                f'candidate</text>')
    body += _legend([(k, KIND_COLOURS[k]) for k in kinds], x=left, y=14)
    desc = "; ".join(f"{p.candidate} {p.kind} {p.score:.3f}" + (f" [{p.ci[0]:.3f}, {p.ci[1]:.3f}]" if p.ci else "")
                     for p in points)
    return _svg(ident=ident, kind="scores", width=width, height=height, title=title, desc=desc, body=body)


def learning_curve(series: Mapping[str, Sequence[CurvePoint]], *, metric: str, ident: str = "curve") -> Markup:
    """The headline chart: each candidate's customized score against training-set size, over jobs."""
    title = f"{metric} against training-set size (one line per candidate)"
    series = {name: sorted(points, key=lambda p: p.x) for name, points in series.items() if points}
    if not series:
        return no_data(ident=ident, kind="curve", title=title,
                       message="no completed customized evaluation in this workload", width=560)
    xs = [p.x for points in series.values() for p in points]
    width, height, left, top, right, bottom = 560, 320, 56, 20, 20, 270
    x_ticks = nice_ticks(0, max(xs))
    x = Scale(0, x_ticks[-1], left, width - right)
    y = Scale(0.0, 1.0, bottom, top)
    body = _y_axis(y, SCORE_TICKS, left=left, right=width - right, label=metric, top=top, bottom=bottom)
    for tick in x_ticks:
        body.append(f'<line class="xtick" data-tick="{_n(tick)}" x1="{x(tick)}" x2="{x(tick)}" y1="{bottom}" '
                    f'y2="{bottom + 4}" stroke="{TEXT}"/>'
                    f'<text x="{x(tick)}" y="{bottom + 16}" text-anchor="middle">{_t(_n(tick))}</text>')
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="{TEXT}"/>')
    body.append(f'<text class="axis-label" x="{(left + width - right) / 2}" y="{height - 18}" text-anchor="middle">'
                f'training-set size (train split records)</text>')
    legend = []
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        legend.append((name, colour))
        body.append(f'<g class="series" data-series="{_t(name)}">')
        if len(points) > 1:
            path = " ".join(f"{x(p.x)},{y(p.y)}" for p in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in points:
            if p.ci is not None:
                body.append(_error_bar(x(p.x), y(p.ci[0]), y(p.ci[1]), colour, cap=4))
            tip = f"{name}: {p.y:.3f} with {_n(p.x)} training records" + (f" ({p.label})" if p.label else "")
            body.append(f'<circle class="point" data-series="{_t(name)}" data-x="{_n(p.x)}" data-value="{p.y:.4f}" '
                        f'cx="{x(p.x)}" cy="{y(p.y)}" r="4.5" fill="{colour}"><title>{_t(tip)}</title></circle>')
        body.append("</g>")
    body += _legend(legend, x=left, y=height - 2)
    desc = "; ".join(f"{name}: " + ", ".join(f"{_n(p.x)} records -> {p.y:.3f}" for p in points)
                     for name, points in series.items())
    return _svg(ident=ident, kind="curve", width=width, height=height, title=title, desc=desc, body=body)


def coverage_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, target: float | None,
                   ident: str = "coverage") -> Markup:
    """Selective answering: agreement with the teacher on the share a student serves, against that share
    (its most confident answers first), with the policy's agreement target as a dashed line."""
    title = "Agreement with the teacher on the served share, against coverage (most confident first)"
    series = {name: sorted(points) for name, points in series.items() if points}
    if not series:
        return no_data(ident=ident, kind="coverage", title=title, message="no classification candidate with "
                       "confidence scores", width=560)
    width, height, left, top, right, bottom = 560, 320, 56, 20, 20, 270
    x = Scale(0.0, 1.0, left, width - right)
    y = Scale(0.0, 1.0, bottom, top)
    body = _y_axis(y, SCORE_TICKS, left=left, right=width - right, label="agreement", top=top, bottom=bottom)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line class="xtick" x1="{x(tick)}" x2="{x(tick)}" y1="{bottom}" y2="{bottom + 4}" '
                    f'stroke="{TEXT}"/><text x="{x(tick)}" y="{bottom + 16}" text-anchor="middle">{tick:.0%}</text>')
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="{TEXT}"/>')
    body.append(f'<text class="axis-label" x="{(left + width - right) / 2}" y="{height - 18}" text-anchor="middle">'
                f'coverage: share of eval requests the student answers</text>')
    if target is not None:
        body.append(f'<line class="target" data-value="{target:.4f}" x1="{left}" x2="{width - right}" y1="{y(target)}" '
                    f'y2="{y(target)}" stroke="{TEXT}" stroke-dasharray="4 3"><title>{_t(f"target {target:.2f}")}'
                    f'</title></line>')
    legend = []
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        legend.append((name, colour))
        path = " ".join(f"{x(c)},{y(a)}" for c, a in points)
        body.append(f'<g class="series" data-series="{_t(name)}"><polyline points="{path}" fill="none" '
                    f'stroke="{colour}" stroke-width="2"/>')
        for c, a in points:
            body.append(f'<circle class="point" data-x="{c:.4f}" data-value="{a:.4f}" cx="{x(c)}" cy="{y(a)}" r="3" '
                        f'fill="{colour}"><title>{_t(f"{name}: {a:.3f} agreement at {c:.0%} coverage")}</title></circle>')
        body.append("</g>")
    body += _legend(legend, x=left, y=height - 2)
    desc = "; ".join(f"{name}: " + ", ".join(f"{c:.0%} -> {a:.3f}" for c, a in points) for name, points in series.items())
    return _svg(ident=ident, kind="coverage", width=width, height=height, title=title, desc=desc, body=body)


def _cell_fill(share: float) -> str:
    # White to the palette's blue (#0072B2), by the share of the teacher label's rows.
    r, g, b = (round(255 + (c - 255) * share) for c in (0x00, 0x72, 0xB2))
    return f"#{r:02x}{g:02x}{b:02x}"


def _short(label: str, limit: int = 22) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def confusion_heatmap(labels: Sequence[str], matrix: Sequence[Sequence[int]], unparseable: Sequence[int] | None = None,
                      *, ident: str = "confusion", title: str = "Confusion matrix") -> Markup:
    """Rows: the teacher's label; columns: the student's label (plus unparseable answers); colour by row share."""
    missed = list(unparseable or [0] * len(matrix))
    if not labels or not matrix or not (any(any(row) for row in matrix) or any(missed)):
        return no_data(ident=ident, kind="confusion", title=title, message="no confusion matrix in this evaluation")
    columns = [*labels, "(unparseable)"] if any(missed) else list(labels)
    # A label only the student used (out of the teacher's set) is a column with no row of its own.
    kept = [i for i, row in enumerate(matrix) if sum(row) + missed[i] > 0]
    row_labels = [labels[i] for i in kept]
    rows = [list(matrix[i]) + ([missed[i]] if any(missed) else []) for i in kept]
    cell = 30 if len(columns) <= 12 else 24
    left = 24 + 7 * max(len(_short(label)) for label in row_labels)
    top = 24 + 6 * max(len(_short(label)) for label in columns)
    width = left + cell * len(columns) + 16 + 5 * len(_short(columns[-1]))
    height = top + cell * len(rows) + 16
    body = []
    for j, label in enumerate(columns):
        cx = left + cell * j + cell / 2
        body.append(f'<text class="col-label" x="{cx}" y="{top - 6}" transform="rotate(-45 {cx} {top - 6})">'
                    f'{_t(_short(label))}<title>{_t(label)}</title></text>')
    for i, row in enumerate(rows):
        total = sum(row) or 1
        cy = top + cell * i
        body.append(f'<text class="row-label" x="{left - 6}" y="{cy + cell / 2 + 4}" text-anchor="end">'
                    f'{_t(_short(row_labels[i]))}<title>{_t(row_labels[i])}</title></text>')
        for j, count in enumerate(row):
            share = count / total
            cx = left + cell * j
            colour = "#ffffff" if share > 0.55 else TEXT
            body.append(f'<g class="cell" data-row="{_t(row_labels[i])}" data-col="{_t(columns[j])}" data-count="{count}">'
                        f'<rect x="{cx}" y="{cy}" width="{cell}" height="{cell}" fill="{_cell_fill(share)}" '
                        f'stroke="#d0d7de"/><title>teacher {_t(row_labels[i])}, student {_t(columns[j])}: {count}</title>'
                        + (f'<text x="{cx + cell / 2}" y="{cy + cell / 2 + 4}" text-anchor="middle" font-size="10" '
                           f'fill="{colour}">{count}</text>' if count else "") + "</g>")
    body.append(f'<text class="axis-label" x="{left + cell * len(columns) / 2}" y="12" text-anchor="middle">'
                f'student label</text>')
    body.append(f'<text class="axis-label" x="12" y="{top + cell * len(rows) / 2}" text-anchor="middle" '
                f'transform="rotate(-90 12 {top + cell * len(rows) / 2})">teacher label</text>')
    correct = sum(matrix[i][i] for i in range(min(len(matrix), len(labels))))
    total_all = sum(sum(r) for r in rows)
    desc = (f"{len(row_labels)} teacher labels, {total_all} eval records, {correct} on the diagonal (student agrees "
            f"with the teacher); darker cells hold a larger share of the teacher label's records.")
    return _svg(ident=ident, kind="confusion", width=width, height=height, title=title, desc=desc, body=body)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{_n(round(seconds, 1))}s"
    if seconds < 7200:
        return f"{_n(round(seconds / 60, 1))}m"
    return f"{_n(round(seconds / 3600, 1))}h"


def stage_timeline(bars: Sequence[TimelineBar], *, ident: str = "timeline", width: int = 640,
                   compact: bool = False) -> Markup:
    """Stages as bars over time since the job was created, coloured by status (compact: no labels)."""
    title = "Stage timeline"
    if not bars:
        return no_data(ident=ident, kind="timeline", title=title, message="the job has no stages",
                       width=width, height=40 if compact else 120)
    row = 5 if compact else 20
    left = 4 if compact else 20 + 7 * min(40, max(len(b.label) for b in bars))
    top, right = (2, 4) if compact else (8, 16)
    axis = 0 if compact else 30
    height = top + row * len(bars) + axis + 2
    end = max([b.end or 0.0 for b in bars] + [b.start or 0.0 for b in bars] + [1.0])
    ticks = nice_ticks(0, end, 4)
    x = Scale(0, ticks[-1], left, width - right)
    body = []
    if not compact:
        for tick in ticks:
            body.append(f'<line class="xtick" data-tick="{_n(tick)}" x1="{x(tick)}" x2="{x(tick)}" y1="{top}" '
                        f'y2="{top + row * len(bars)}" stroke="{GRID}"/>'
                        f'<text x="{x(tick)}" y="{top + row * len(bars) + 14}" text-anchor="middle">'
                        f'{_t(_duration(tick))}</text>')
        body.append(f'<text class="axis-label" x="{(left + width - right) / 2}" y="{height - 4}" '
                    f'text-anchor="middle">time since the job was created</text>')
    for i, bar in enumerate(bars):
        y = top + row * i
        colour = STATUS_COLOURS.get(bar.status, STATUS_COLOURS["queued"])
        if not compact:
            body.append(f'<text class="stage-label" x="{left - 6}" y="{y + row / 2 + 4}" text-anchor="end">'
                        f'{_t(bar.label)}</text>')
        if bar.start is None:
            if not compact:
                body.append(f'<text x="{left + 4}" y="{y + row / 2 + 4}" fill="#57606a" font-style="italic">'
                            f'{_t(bar.status)}</text>')
            continue
        stop = bar.end if bar.end is not None else end
        x0, x1 = x(bar.start), x(stop)
        spent = _duration(stop - bar.start) + (" so far" if bar.status == "running" else "")
        body.append(f'<rect class="bar" data-stage="{_t(bar.label)}" data-status="{_t(bar.status)}" x="{x0}" '
                    f'y="{y + (2 if not compact else 0.5)}" width="{max(3.0, round(x1 - x0, 2))}" height="{row - 4 if not compact else row - 1}" '
                    f'rx="2" fill="{colour}"><title>{_t(bar.label)}: {_t(bar.status)}, {_t(spent)}</title></rect>')
    desc = "; ".join(f"{b.label} {b.status}" + (f" from {_duration(b.start)}" if b.start is not None else "")
                     + (f" to {_duration(b.end)}" if b.end is not None else "") for b in bars)
    return _svg(ident=ident, kind="timeline", width=width, height=height, title=title, desc=desc, body=body)
