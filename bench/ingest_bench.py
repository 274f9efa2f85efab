"""Ingestion throughput and memory, against a parse-only baseline in the same run.

    python -m bench.ingest_bench [--lines N] [--bad-share 0.01]

Writes a JSONL.gz of N teacher logs (1% malformed by default), then measures
1. baseline: gunzip + json.loads of every line (the floor any ingester pays),
2. flywheel ingest into a fresh SQLite store (validation, ids, quarantine, writes),
and prints a table + writes bench/results/ingest.json. Peak RSS is measured in a child process
per stage so the numbers do not mix; compare peak RSS at two sizes to see memory stay flat.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from tests.factories import chat_record_dict

RESULTS = Path(__file__).parent / "results"


def _make_file(path: Path, lines: int, bad_share: float) -> None:
    every = int(1 / bad_share) if bad_share > 0 else 0
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for i in range(lines):
            if every and i % every == every - 1:
                handle.write('{"workload_id": "news_topic", "broken": \n')
                continue
            record = chat_record_dict(timestamp=1_700_000_000 + i)
            record["request"]["messages"][1]["content"] = f"Headline {i}: shares move on results"
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
    from services.datastore.stores.sqlite import SqliteLogStore

    started = time.perf_counter()
    with SqliteLogStore(store_path) as store:
        summary = ingest_files([Path(path)], store=store, max_record_bytes=1 << 20, batch_size=1000)
    queue.put({"seconds": time.perf_counter() - started, "lines": summary.read, "stored": summary.stored,
               "quarantined": summary.quarantined,
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
    parser.add_argument("--lines", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--bad-share", type=float, default=0.01)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            path = Path(tmp) / f"logs-{lines}.jsonl.gz"
            _make_file(path, lines, args.bad_share)
            base = _run(_baseline, str(path))
            ours = _run(_ingest, str(path), str(Path(tmp) / f"store-{lines}.sqlite"))
            rows.append({"lines": lines, "file_mb": round(path.stat().st_size / 1e6, 1),
                         "baseline_lines_per_s": round(base["lines"] / base["seconds"]),
                         "ingest_lines_per_s": round(ours["lines"] / ours["seconds"]),
                         "ingest_vs_baseline": round(base["seconds"] / ours["seconds"], 3),
                         "baseline_peak_rss_mb": round(base["peak_rss_mb"]),
                         "ingest_peak_rss_mb": round(ours["peak_rss_mb"]),
                         "stored": ours["stored"], "quarantined": ours["quarantined"]})
    header = ["lines", "file_mb", "baseline_lines_per_s", "ingest_lines_per_s", "ingest_vs_baseline",
              "baseline_peak_rss_mb", "ingest_peak_rss_mb", "stored", "quarantined"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps({"rows": rows}, indent=2))
    print(f"wrote {RESULTS / 'ingest.json'}")


if __name__ == "__main__":
    main()
