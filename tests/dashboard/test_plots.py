"""The dashboard's SVG charts: marks land where their values say, CIs are drawn, text is escaped,
empty input says "No data yet", and every chart is an accessible, well-formed SVG image."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.dashboard import plots, views
from orchestrator.dashboard.plots import CurvePoint, ScorePoint, TimelineBar

NS = {"s": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"s:title[@id='{title_id}']", NS).text
    assert root.find(f"s:desc[@id='{desc_id}']", NS).text
    return root


def tick_y(root: ET.Element, value: str) -> float:
    return float(root.find(f".//s:line[@data-tick='{value}']", NS).get("y1"))


def test_score_chart_places_points_and_error_bars_on_the_axis() -> None:
    points = [ScorePoint("clf", "customized", 0.5, (0.25, 0.75)), ScorePoint("lora", "base", 1.0, None),
              ScorePoint("lora", "customized", 0.0, (0.0, 0.2))]
    root = parse(plots.score_chart(points, metric="f1_vs_teacher"))
    circles = root.findall(".//s:circle[@class='point']", NS)
    assert [(c.get("data-candidate"), c.get("data-kind")) for c in circles] == [
        ("clf", "customized"), ("lora", "base"), ("lora", "customized")]
    y0, y_half, y1 = tick_y(root, "0"), tick_y(root, "0.5"), tick_y(root, "1")
    assert y1 < y_half < y0, "higher scores are drawn higher"
    assert float(circles[0].get("cy")) == pytest.approx(y_half)
    assert float(circles[1].get("cy")) == pytest.approx(y1)
    assert float(circles[2].get("cy")) == pytest.approx(y0)
    assert float(circles[0].get("cx")) < float(circles[1].get("cx")) < float(circles[2].get("cx"))
    bars = root.findall(".//s:g[@class='ci']", NS)
    assert len(bars) == 2, "one error bar per score with a CI"
    whisker = bars[0].find("s:line", NS)
    assert sorted([float(whisker.get("y1")), float(whisker.get("y2"))]) == pytest.approx(
        sorted([(y0 + y_half) / 2, (y_half + y1) / 2]))
    assert float(whisker.get("x1")) == float(circles[0].get("cx"))
    legend = [t.text for t in root.findall(".//s:g[@class='legend']/s:text", NS)]
    assert legend == ["base", "customized"]
    assert root.find(".//s:text[@class='axis-label']", NS).text == "f1_vs_teacher"


def test_learning_curve_one_series_per_candidate_in_x_order() -> None:
    series = {"clf": [CurvePoint(400, 0.8, (0.7, 0.9)), CurvePoint(100, 0.5, (0.4, 0.6))],
              "lora": [CurvePoint(100, 0.6, None)]}
    root = parse(plots.learning_curve(series, metric="f1_vs_teacher"))
    groups = root.findall(".//s:g[@class='series']", NS)
    assert [g.get("data-series") for g in groups] == ["clf", "lora"]
    clf = groups[0].findall("s:circle", NS)
    assert [c.get("data-x") for c in clf] == ["100", "400"], "points sorted by training-set size"
    x_of = {t.get("data-tick"): float(t.get("x1")) for t in root.findall(".//s:line[@class='xtick']", NS)}
    assert float(clf[1].get("cx")) == pytest.approx(x_of["400"])
    assert float(clf[0].get("cx")) == pytest.approx(x_of["0"] + (x_of["400"] - x_of["0"]) / 4)
    assert float(clf[1].get("cy")) < float(clf[0].get("cy")), "the better score sits higher"
    assert groups[0].find("s:polyline", NS) is not None and groups[1].find("s:polyline", NS) is None
    assert len(groups[0].findall("s:g[@class='ci']", NS)) == 2 and not groups[1].findall("s:g[@class='ci']", NS)
    assert "training-set size" in "".join(t.text or "" for t in root.iter(f"{{{NS['s']}}}text"))


def test_confusion_heatmap_cells_counts_and_shading() -> None:
    labels = ["Macro", "Markets"]
    root = parse(plots.confusion_heatmap(labels, [[8, 2], [0, 10]], [1, 0]))
    cells = {(g.get("data-row"), g.get("data-col")): g for g in root.findall(".//s:g[@class='cell']", NS)}
    assert set(cells) == {(r, c) for r in labels for c in [*labels, "(unparseable)"]}
    assert cells[("Macro", "Markets")].get("data-count") == "2"
    assert cells[("Macro", "Macro")].find("s:text", NS).text == "8"
    assert cells[("Markets", "Macro")].find("s:text", NS) is None, "zero cells stay empty"
    full, empty = (cells[k].find("s:rect", NS).get("fill") for k in (("Markets", "Markets"), ("Markets", "Macro")))
    assert empty == "#ffffff" and full == "#0072b2", "shade is the share of the teacher label's row"
    assert "3 on the diagonal" not in root.find("s:desc", NS).text
    assert "18 on the diagonal" in root.find("s:desc", NS).text


def test_confusion_heatmap_out_of_set_labels_are_columns_and_all_unparseable_still_shows() -> None:
    # classification_report's shape: rows and columns over teacher labels + labels only the student used.
    root = parse(plots.confusion_heatmap(["a", "b", "zz"], [[3, 0, 1], [0, 2, 0], [0, 0, 0]], [0, 1, 0]))
    cells = root.findall(".//s:g[@class='cell']", NS)
    assert {c.get("data-row") for c in cells} == {"a", "b"}, "no row for a label the teacher never used"
    assert {c.get("data-col") for c in cells} == {"a", "b", "zz", "(unparseable)"}
    assert sum(int(c.get("data-count")) for c in cells) == 7
    unparsed = parse(plots.confusion_heatmap(["a"], [[0]], [5]))
    assert unparsed.find(".//s:g[@data-col='(unparseable)']", NS).get("data-count") == "5"


def test_timeline_bars_span_their_stage_and_queued_stages_have_none() -> None:
    bars = [TimelineBar("build_dataset", "completed", 0.0, 10.0),
            TimelineBar("customize · clf", "running", 10.0, 40.0),
            TimelineBar("decide", "queued", None, None)]
    root = parse(plots.stage_timeline(bars))
    rects = root.findall(".//s:rect[@class='bar']", NS)
    assert [r.get("data-stage") for r in rects] == ["build_dataset", "customize · clf"]
    x_of = {t.get("data-tick"): float(t.get("x1")) for t in root.findall(".//s:line[@class='xtick']", NS)}
    assert float(rects[0].get("x")) == pytest.approx(x_of["0"])
    assert float(rects[0].get("x")) + float(rects[0].get("width")) == pytest.approx(x_of["10"])
    assert float(rects[1].get("x")) + float(rects[1].get("width")) == pytest.approx(x_of["40"])
    assert rects[1].get("fill") == plots.STATUS_COLOURS["running"]
    assert "so far" in rects[1].find("s:title", NS).text
    labels = [t.text for t in root.findall(".//s:text[@class='stage-label']", NS)]
    assert labels == ["build_dataset", "customize · clf", "decide"]


@pytest.mark.parametrize("svg", [
    plots.score_chart([], metric="f1_vs_teacher"),
    plots.learning_curve({"clf": []}, metric="f1_vs_teacher"),
    plots.confusion_heatmap([], []),
    plots.stage_timeline([]),
])
def test_empty_input_says_no_data_yet(svg: str) -> None:
    root = parse(svg)
    assert root.find(".//s:text[@class='no-data']", NS).text == "No data yet"
    assert root.find("s:desc", NS).text.startswith("No data yet")
    assert not root.findall(".//s:circle", NS)


def test_every_text_is_escaped() -> None:
    evil = '<script>alert("x")</script> & "R&D"'
    svgs = [plots.score_chart([ScorePoint(evil, "customized", 0.5, (0.4, 0.6))], metric=evil),
            plots.learning_curve({evil: [CurvePoint(10, 0.5, None, label=evil)]}, metric=evil),
            plots.confusion_heatmap([evil, "b"], [[1, 0], [0, 1]], title=evil),
            plots.stage_timeline([TimelineBar(evil, evil, 0, 1)])]
    for svg in svgs:
        assert "<script>" not in svg
        root = parse(svg)  # would not parse with a raw '&' or '<'
        texts = " ".join(e.text or "" for e in root.iter()) + " ".join(v for e in root.iter() for v in e.attrib.values())
        assert "<script>" in texts, "escaped, the text still reads as written"


def test_views_shape_real_job_views_into_chart_inputs() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    evaluation = {"metric_name": "f1_vs_teacher", "applicable": True, "f1_vs_teacher": 0.8,
                  "f1_vs_teacher_ci": [0.7, 0.9], "n": 50,
                  "metrics": {"confusion": {"labels": ["a", "b"], "matrix": [[5, 1], [0, 4]], "unparseable": [0, 0]}}}
    view = {"id": "job-1", "created_at": created.isoformat(), "dataset": {"counts": {"train": 300, "eval": 50}},
            "candidates": [{"name": "clf", "status": "completed", "training": None, "evaluations": {
                "base": {"metric_name": "f1_vs_teacher", "applicable": False, "reason": "no head",
                         "f1_vs_teacher": None, "f1_vs_teacher_ci": None},
                "icl": {"status": "running", "error": None, "progress": 0.5}, "customized": evaluation}}],
            "stages": [{"name": "build_dataset", "candidate": None, "status": "completed",
                        "started_at": (created + timedelta(seconds=1)).isoformat(),
                        "finished_at": (created + timedelta(seconds=3)).isoformat()},
                       {"name": "customize", "candidate": "clf", "status": "running",
                        "started_at": (created + timedelta(seconds=3)).isoformat(), "finished_at": None}]}
    assert views.score_points(view) == [ScorePoint("clf", "customized", 0.8, (0.7, 0.9))]
    assert views.learning_curve_series([view]) == {"clf": [CurvePoint(300.0, 0.8, (0.7, 0.9), label="job job-1")]}
    assert views.confusions(view)[0]["matrix"] == [[5, 1], [0, 4]]
    rows = {r["kind"]: r for r in views.evaluation_rows(view)}
    assert rows["base"]["note"] == "no head" and rows["icl"]["note"] == "running" and rows["customized"]["n"] == 50
    bars = views.timeline_bars(view, now=created + timedelta(seconds=10))
    assert bars == [TimelineBar("build_dataset", "completed", 1.0, 3.0), TimelineBar("customize · clf", "running", 3.0, 10.0)]
    assert views.metric_of([view]) == "f1_vs_teacher"
