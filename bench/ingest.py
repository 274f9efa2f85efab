"""Ingestion and dataset-build speed and memory, against a parse-only baseline in the same run.

    python -m bench.ingest [--lines N [N ...]] [--bad-share 0.01] [--no-opensearch]

For each N, writes a JSONL.gz of N distinct teacher logs (1% malformed by default), then measures
1. baseline: gunzip + json.loads of every line (the floor any ingester pays),
2. flywheel ingest into a fresh SQLite store (validation, ids, quarantine, writes),
3. the same into OpenSearch (the bundled osmem-server on loopback),
4. a dataset build from the SQLite store (redact, dedup, labels, split, uniform ICL, write),
and prints a table + writes bench/results/ingest.json. Each stage runs in a child process, so
peak RSS does not mix; compare peak RSS at two sizes to see memory stay flat.
Targets (this 2-core machine): >= 20k records/s into SQLite; 100k-record build < 20 s.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from osmem_server import OsmemServer

from tests.factories import chat_record_dict

RESULTS = Path(__file__).parent / "results"
LABELS = ["Earnings", "Macro", "Markets", "IPO", "Dividend"]


def _make_file(path: Path, lines: int, bad_share: float) -> None:
    every = int(1 / bad_share) if bad_share > 0 else 0
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(lines):
            if every and i % every == every - 1:
                handle.write('{"workload_id": "news_topic", "broken": \n')
                continue
            record = chat_record_dict(timestamp=1_700_000_000 + i)
            record["request"]["messages"][1]["content"] = f"Headline {i}: shares move on results"
            record["response"]["choices"][0]["message"]["content"] = f"[[[{LABELS[i % len(LABELS)]}]]]"
            handle.write(json.dumps(record) + "\n")


def _baseline(path: str, queue: mp.Queue) -> None:
    started = time.perf_counter()
    n = 0
    with gzip.open(path, "rb") as handle:
        for line in handle:
            try:
                json.loads(line)
            except ValueError:
                pass
            n += 1
    queue.put({"seconds": time.perf_counter() - started, "lines": n,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _ingest(path: str, store_path: str, queue: mp.Queue) -> None:
    from services.datastore.ingest import ingest_files
    from services.datastore.stores.opensearch import OpenSearchLogStore
    from services.datastore.stores.sqlite import SqliteLogStore

    store = OpenSearchLogStore(store_path) if store_path.startswith("http") else SqliteLogStore(store_path)
    started = time.perf_counter()
    with contextlib.closing(store):
        summary = ingest_files([Path(path)], store=store, max_record_bytes=1 << 20, batch_size=1000, pause_gc=True)
    queue.put({"seconds": time.perf_counter() - started, "lines": summary.read, "stored": summary.stored,
               "quarantined": summary.quarantined,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _build(store_path: str, root: str, queue: mp.Queue) -> None:
    from services.datastore.datasets import build_dataset
    from services.datastore.stores.sqlite import SqliteLogStore
    from services.domain.settings import DataSplitSettings, Settings

    settings = Settings(data_split=DataSplitSettings(eval_size=1000, limit=None))
    started = time.perf_counter()
    with SqliteLogStore(store_path) as store:
        ref = build_dataset(store, settings, workload_id="news_topic", client_id=None, root=Path(root))
    queue.put({"seconds": time.perf_counter() - started, "usable": ref.manifest["counts"]["usable"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _run(target, *args) -> dict:  # type: ignore[no-untyped-def]
    queue: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--no-opensearch", action="store_true", help="Skip the OpenSearch stage.")
    args = parser.parse_args()
    rows = []
    server = None if args.no_opensearch else OsmemServer.start()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if server is not None:
            stack.callback(server.close)
        for lines in args.lines:
            path = Path(tmp) / f"logs-{lines}.jsonl.gz"
            _make_file(path, lines, args.bad_share)
            sqlite_path = str(Path(tmp) / f"store-{lines}.sqlite")
            base = _run(_baseline, str(path))
            ours = _run(_ingest, str(path), sqlite_path)
            build = _run(_build, sqlite_path, str(Path(tmp) / f"datasets-{lines}"))
            row = {"lines": lines, "file_mb": round(path.stat().st_size / 1e6, 1),
                   "baseline_lines_per_s": round(base["lines"] / base["seconds"]),
                   "sqlite_lines_per_s": round(ours["lines"] / ours["seconds"]),
                   "sqlite_vs_baseline": round(base["seconds"] / ours["seconds"], 3),
                   "opensearch_lines_per_s": None,
                   "build_s": round(build["seconds"], 1),
                   "baseline_peak_rss_mb": round(base["peak_rss_mb"]),
                   "sqlite_peak_rss_mb": round(ours["peak_rss_mb"]),
                   "build_peak_rss_mb": round(build["peak_rss_mb"]),
                   "stored": ours["stored"], "quarantined": ours["quarantined"]}
            if server is not None:
                with server.clone() as clone:
                    remote = _run(_ingest, str(path), clone.url)
                row["opensearch_lines_per_s"] = round(remote["lines"] / remote["seconds"])
            rows.append(row)
    header = list(rows[0])
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps({"rows": rows}, indent=2))
    print(f"wrote {RESULTS / 'ingest.json'}")


if __name__ == "__main__":
    main()
