"""Benchmark: retrieval on FinanceBench filings for the base MiniLM, the mpnet teacher and distilled MiniLMs.

    python -m bench.embedding_retrieval [--json] [--steps N] [--rounds R] [--listwise-temperature T]
                                        [--search-corpus N] [--threads T] [--split-seed S]

Corpus, relevance and the company split: bench/retrieval_corpus.py. Evaluated on the held-out
companies' questions against the whole chunked corpus (every company's evidence pages). Two students
are distilled from train-company logs only, through the customizer's trainer: `distilled_vector`
(vector losses only) and `distilled_listwise` (vector losses + the listwise ranking loss with hard
negatives mined each round); `distilled`, the shipped default (`distillation.soup`), is the uniform
average of those two students' weights (`services/models/students/embedding_distill/soup.py`: the same
weights the trainer serves with `soup: true`, tests/unit/customizer/test_embedding_listwise.py checks the
identity), composed here from the two so that each ingredient is trained once. With `--judge oracle` a
third, `distilled_judged`, adds the relevance judge's term, the judge being a stand-in that grades from the
benchmark's own labels (an upper bound). Per model and Matryoshka size: MRR@5, nDCG@10, Recall@10 with
bootstrap CIs, top-10 agreement with the teacher, encode speed (texts/s) and index size; a paired
bootstrap of (distilled - base) MRR@5. Then the two-stage search (128-d prefilter + full rerank) on
the distilled student's vectors over >= 50k chunks (FinanceBench chunks + filler, stated).
Encodings and trained students are cached under ~/.cache/flywheel/bench (keyed by model files +
texts / by recipe). `--json` prints one JSON document on stdout; table and progress go to stderr.
Results are also written to bench/results/embedding_retrieval.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, machine, print_table
from bench.retrieval_corpus import Corpus, filler_texts, load_financebench, split_companies, training_logs
from services.domain.settings import default_models_dir
from services.models.students.embedding_distill.soup import average_students

CACHE = Path.home() / ".cache" / "flywheel" / "bench"
MODELS = default_models_dir()
DIMS = (256, 128, 64)
KS = {"mrr": 5, "ndcg": 10, "recall": 10}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_key(path: Path) -> str:
    """Identity of a model directory: its files' names, sizes and modification times."""
    return _sha(sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                       for p in path.rglob("*") if p.is_file()))


def encode_cached(name: str, path: Path, texts: list[str]) -> np.ndarray:
    from services.models.students.embedding_distill.runtime import Embedder

    target = CACHE / "vectors" / f"{name}-{model_key(path)}-{_sha(texts)}.npy"
    if target.exists():
        loaded: np.ndarray = np.load(target)
        return loaded
    say(f"encoding {len(texts)} texts with {name} ({path})")
    vectors = Embedder(path, device="cpu").encode(texts, batch_size=32)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, vectors)
    return vectors


def teacher_vectors(texts: list[str]) -> np.ndarray:
    """The teacher's vectors through the trainer's own cache, so training and evaluation embed each text once."""
    from services.models.students.embedding_distill.data import TEACHER_CACHE_DIR, embed_with_cache, teacher_cache_dir

    cache = teacher_cache_dir(CACHE / "train" / "work" / TEACHER_CACHE_DIR, MODELS / "mpnet-base")
    return embed_with_cache(texts, teacher_path=MODELS / "mpnet-base", cache_dir=cache)


def train_student(name: str, corpus: Corpus, companies: set[str], distillation: Any, training: Any, *,
                  queries_per_chunk: int = 1, judge: Any = None) -> tuple[Path, dict[str, Any]]:
    """Distil MiniLM on logs from `companies` (cached by recipe); the artifact's path and its metrics."""
    from services.domain.artifacts import StudentKind
    from services.domain.datasets import DatasetRef
    from services.domain.settings import LoraSettings
    from services.models.students.embedding_distill.trainer import EmbeddingDistillTrainer
    from services.models.training.base import TrainControl, TrainRequest

    logs = training_logs(corpus, companies, teacher_model="sentence-transformers/all-mpnet-base-v2",
                         queries_per_chunk=queries_per_chunk)
    val = [r for r in logs if r["request"]["input_type"] == "query"][:32] + \
        [r for r in logs if r["request"]["input_type"] == "passage"][:2]
    train = [r for r in logs if r not in val]
    # The soup fields are left out of the key: students here are trained with the soup off (the bench composes it).
    recipe = distillation.model_dump(mode="json", exclude={"soup", "soup_batch_size"})
    key = _sha([name, train, val, recipe, training.model_dump(mode="json")])
    out = CACHE / "students" / f"{name}-{key}"
    if (out / "flywheel-artifact.json").exists():
        return out, json.loads((out / "flywheel-artifact.json").read_text("utf-8")).get("metrics", {})
    folder = CACHE / "train" / key
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, records in (("train", train), ("val", val)):
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        (folder / f"{split}.jsonl").write_bytes(body)
        splits[split] = {"sha256": hashlib.sha256(body).hexdigest(), "count": len(records),
                         "path": str(folder / f"{split}.jsonl")}
    dataset = DatasetRef(_sha(splits), splits, {"workload_id": "filings_search", "client_id": "bench",
                                                "workload_type": "embedding"})
    request = TrainRequest(
        candidate=name, kind=StudentKind.EMBEDDING_DISTILL, base_model="minilm-l6", base_model_path=MODELS / "minilm-l6",
        dataset=dataset, training=training, lora=LoraSettings(), output_dir=out, work_dir=CACHE / "train" / "work" / key,
        teacher_model_path=MODELS / "mpnet-base", distillation=distillation, relevance_judge=judge)
    say(f"training {name}: {len(train)} train / {len(val)} val log records (train companies only)")
    artifact = EmbeddingDistillTrainer().train(request, TrainControl(report_every_s=60))
    return Path(artifact.path), artifact.metrics


def encode_speed(paths: dict[str, Path], texts: list[str], *, rounds: int = 2) -> dict[str, float]:
    """texts/s per model, batch 32, best of `rounds` interleaved runs after a warm-up."""
    from services.models.students.embedding_distill.runtime import Embedder

    models = {name: Embedder(path, device="cpu") for name, path in paths.items()}
    for model in models.values():
        model.encode(texts[:16])
    best = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.encode(texts, batch_size=32)
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    return best


def _unit(vectors: np.ndarray, dims: int | None = None) -> np.ndarray:
    from services.models.students.embedding_distill.runtime import truncate

    return truncate(vectors, dims)


def evaluate(queries: np.ndarray, chunks: np.ndarray, qrels: list[dict[int, float]], teacher_top: np.ndarray,
             *, samples: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Retrieval report at full size and every Matryoshka size, plus top-10 agreement with the teacher."""
    from services.evaluator.metrics.retrieval import per_query, retrieval_report, top_k

    out: dict[str, Any] = {}
    values: dict[str, np.ndarray] = {}
    for dims in (None, *DIMS):
        if dims is not None and dims >= queries.shape[1]:
            continue
        top = top_k(_unit(queries, dims), _unit(chunks, dims), 10)
        rankings = [list(map(int, row)) for row in top]
        report = retrieval_report(rankings, qrels, ks=KS, min_gain=2.0, bootstrap_samples=samples)
        report["top10_agreement"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, teacher_top, strict=True)]))
        if dims is None:
            out.update(report)
            values = per_query(rankings, qrels, ks=KS, min_gain=2.0)
        else:
            out.setdefault("matryoshka", {})[str(dims)] = {k: v for k, v in report.items() if not k.endswith("_ci")}
    return out, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="Print one JSON document on stdout.")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2, help="distillation.mining_rounds of the listwise student")
    parser.add_argument("--listwise-weight", type=float, default=1.0)
    parser.add_argument("--listwise-temperature", type=float, default=0.05,
                        help="distillation.listwise_temperature of the listwise student (both softmaxes)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--chunk-words", type=int, default=80)
    parser.add_argument("--search-corpus", type=int, default=50_000, help="0 skips the two-stage search measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--queries-per-chunk", type=int, default=1, help="pseudo-queries cut from each train chunk")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the company split (another seed: other held-out companies, students trained anew)")
    parser.add_argument("--judge", choices=["none", "oracle"], default="none",
                        help="oracle: also train `distilled_judged` (the listwise recipe + distillation.judge_relevance) "
                             "against a stand-in judge that grades from FinanceBench's labels (bench/oracle_judge.py)")
    parser.add_argument("--out", type=Path, default=RESULTS / "embedding_retrieval.json")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from services.domain.settings import DistillationSettings, TrainingSettings
    from services.evaluator.metrics.retrieval import paired_bootstrap, top_k

    started = time.perf_counter()
    corpus = load_financebench(words=args.chunk_words)
    train_companies, held_out = split_companies(corpus, seed=args.split_seed)
    rows = [i for i, company in enumerate(corpus.question_company) if company in held_out]
    questions, qrels = [corpus.questions[i] for i in rows], [corpus.qrels[i] for i in rows]
    say(f"corpus: {len(corpus.chunks)} chunks of {corpus.pages} evidence pages; {len(rows)} held-out questions "
        f"({len(held_out)} companies), training on {len(train_companies)} other companies")

    training = TrainingSettings(finetune="full", learning_rate=args.lr, batch_size=32, max_steps=args.steps,
                                warmup_ratio=0.1, max_seq_length=128, early_stopping_patience=0,
                                checkpoint_every_steps=50, seed=42)
    # The ingredients, each trained alone (soup off); mining_rounds is unused by the vector recipe.
    vector_recipe = DistillationSettings(matryoshka_dims=list(DIMS), listwise_weight=0.0, mining_rounds=1, soup=False)
    ranking_recipe = DistillationSettings(matryoshka_dims=list(DIMS), listwise_weight=args.listwise_weight,
                                          listwise_temperature=args.listwise_temperature, mining_rounds=args.rounds,
                                          soup=False)
    students: dict[str, tuple[Path, dict[str, Any]]] = {
        "distilled_vector": train_student("distilled-vector", corpus, train_companies, vector_recipe, training,
                                          queries_per_chunk=args.queries_per_chunk),
        "distilled_listwise": train_student("distilled-listwise", corpus, train_companies, ranking_recipe,
                                            training.model_copy(update={"batch_size": 8}),
                                            queries_per_chunk=args.queries_per_chunk),
    }
    ingredients = [students["distilled_listwise"][0], students["distilled_vector"][0]]
    soup_path = CACHE / "students" / ("soup-" + "-".join(p.name for p in ingredients))
    if not (soup_path / "model.safetensors").exists():  # kept: its vectors are cached by its files
        average_students(ingredients, soup_path)
    students["distilled"] = (soup_path, {"soup_of": [str(p) for p in ingredients]})
    judge_calls = None
    if args.judge == "oracle":
        from bench.oracle_judge import OracleJudge
        from bench.retrieval_corpus import oracle_grades
        from services.domain.settings import JudgeSettings

        oracle = OracleJudge(oracle_grades(corpus, train_companies, queries_per_chunk=args.queries_per_chunk))
        with oracle as url:
            students["distilled_judged"] = train_student(
                "distilled-judged", corpus, train_companies,
                ranking_recipe.model_copy(update={"judge_relevance": True}), training.model_copy(update={"batch_size": 8}),
                queries_per_chunk=args.queries_per_chunk,
                judge=JudgeSettings(enabled=True, base_url=url, model="financebench-oracle"))
        judge_calls = {"requests": oracle.requests, "unmatched": oracle.unmatched, "graded_pairs": len(oracle.grades)}
    paths = {"teacher": MODELS / "mpnet-base", "base": MODELS / "minilm-l6",
             **{name: path for name, (path, _) in students.items()}}
    texts = corpus.chunks + questions
    vectors = {"teacher": teacher_vectors(texts)}
    vectors.update({name: encode_cached(name, path, texts) for name, path in paths.items() if name != "teacher"})
    n = len(corpus.chunks)
    teacher_top = top_k(_unit(vectors["teacher"][n:]), _unit(vectors["teacher"][:n]), 10)
    results: dict[str, Any] = {}
    per_query: dict[str, dict[str, np.ndarray]] = {}
    for name, matrix in vectors.items():
        results[name], per_query[name] = evaluate(matrix[n:], matrix[:n], qrels, teacher_top, samples=args.bootstrap)
        results[name]["dim"] = int(matrix.shape[1])
        results[name]["index_bytes"] = int(n * matrix.shape[1] * 4)
    speed = encode_speed(paths, corpus.chunks[:96])
    for name, value in speed.items():
        results[name]["encode_texts_per_s"] = round(value, 1)
    for name, (_, metrics) in students.items():
        results[name]["training"] = {k: metrics.get(k) for k in ("steps", "train_seconds", "best_val_loss", "ranking")}
    paired = {f"{a}-{b}": {metric: paired_bootstrap(per_query[a][metric], per_query[b][metric], samples=args.bootstrap)
                           for metric in ("mrr_at_5", "ndcg_at_10")}
              for a, b in (("distilled", "base"), ("distilled", "distilled_listwise"), ("distilled", "distilled_vector"),
                           ("distilled", "teacher"), ("distilled_listwise", "base"), ("distilled_vector", "base"),
                           ("distilled_listwise", "distilled_vector"), ("distilled_judged", "base"),
                           ("distilled_judged", "distilled_listwise")) if a in per_query}
    search = search_bench(corpus, paths["distilled"], args.search_corpus) if args.search_corpus else None

    def goals_of(name: str) -> dict[str, Any]:
        figures = {
            "ndcg_at_10_vs_teacher": results[name]["ndcg_at_10"] / results["teacher"]["ndcg_at_10"],
            "mrr_at_5_gain_over_base": results[name]["mrr_at_5"] / results["base"]["mrr_at_5"] - 1,
            "mrr_at_5_paired_lower_bound": paired[f"{name}-base"]["mrr_at_5"]["ci"][0],
            "speedup": results[name]["encode_texts_per_s"] / results["teacher"]["encode_texts_per_s"],
        }
        figures["met"] = {
            "ndcg_95pct_of_teacher_at_5x": figures["ndcg_at_10_vs_teacher"] >= 0.95 and figures["speedup"] >= 5,
            "mrr_plus_15pct_with_lower_bound_above_0": figures["mrr_at_5_gain_over_base"] >= 0.15
            and figures["mrr_at_5_paired_lower_bound"] > 0}
        return figures

    # `distilled` is the shipped recipe (the soup); its ingredients' figures beside.
    goals = {**goals_of("distilled"), "listwise": goals_of("distilled_listwise"), "vector": goals_of("distilled_vector")}
    speedup = goals["speedup"]
    if "distilled_judged" in results:  # the same figures for the judged recipe (a stand-in judge: stated)
        goals["judged"] = {**goals_of("distilled_judged"),
                           "judge": "oracle: graded from FinanceBench's labels (bench/oracle_judge.py)", "calls": judge_calls}
    if search is not None:
        goals["met"]["two_stage_within_1pt_at_2x"] = search["recall_gap"] <= 0.01 and search["speedup"] >= 2
    document = {**results, "speedup": round(speedup, 2), "paired": paired, "goals": goals, "search": search,
                "corpus": {"chunks": n, "pages": corpus.pages, "chunk_words": args.chunk_words,
                           "held_out_questions": len(rows), "held_out_companies": sorted(held_out),
                           "train_companies": sorted(train_companies), "relevance": "MRR/Recall: chunks holding the "
                           "evidence text (gain 2); nDCG: those 2, other chunks of an evidence page 1"},
                "settings": {**vars(args), "out": str(args.out), "training": training.model_dump(mode="json"),
                             "distillation": ranking_recipe.model_dump(mode="json")},
                "machine": machine(), "seconds": round(time.perf_counter() - started, 1)}
    with contextlib.redirect_stdout(sys.stderr):
        table(document)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=float) + "\n", "utf-8")
    if args.json:
        print(json.dumps(document, default=float))


def search_bench(corpus: Corpus, student: Path, size: int) -> dict[str, Any]:
    """Two-stage (128-d prefilter, 100 candidates, full rerank) vs exact search over `size` chunks, per query."""
    from services.evaluator.metrics.retrieval import retrieval_report
    from services.models.students.embedding_distill.search import TwoStageIndex

    filler, sources = filler_texts(max(0, size - len(corpus.chunks)))
    matrix = encode_cached("search-distilled", student, corpus.chunks + filler + corpus.questions)
    docs, queries = matrix[:-len(corpus.questions)], matrix[-len(corpus.questions):]
    index = TwoStageIndex(docs, prefilter_dims=128, candidates=100)
    timings: dict[str, float] = {}
    tops: dict[str, list[list[int]]] = {}
    for name, fn in (("full", index.exact), ("two_stage", index.search)):
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            found = [fn(q[None, :], 10)[0][0].tolist() for q in queries]
            best = min(best, time.perf_counter() - began)
        timings[name], tops[name] = best / len(queries) * 1000, found
    reports = {name: retrieval_report(top, corpus.qrels, ks=KS, min_gain=2.0, bootstrap_samples=0)
               for name, top in tops.items()}
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops["full"], tops["two_stage"], strict=True)]))
    return {"chunks": len(docs), "financebench_chunks": len(corpus.chunks), "filler": sources,
            "queries": len(queries), "recall_at_10_full": reports["full"]["recall_at_10"],
            "recall_at_10_two_stage": reports["two_stage"]["recall_at_10"],
            "recall_gap": reports["full"]["recall_at_10"] - reports["two_stage"]["recall_at_10"],
            "top10_overlap_with_full": overlap, "ms_per_query_full": timings["full"],
            "ms_per_query_two_stage": timings["two_stage"], "speedup": timings["full"] / timings["two_stage"],
            "index_bytes": index.nbytes}


def table(doc: dict[str, Any]) -> None:
    rows = []
    for name in ("teacher", "base", "distilled_vector", "distilled_listwise", "distilled", "distilled_judged"):
        if name not in doc:
            continue
        r = doc[name]
        rows.append({"model": name, "dim": r["dim"], "MRR@5": r["mrr_at_5"], "CI": r["mrr_at_5_ci"],
                     "nDCG@10": r["ndcg_at_10"], "nDCG CI": r["ndcg_at_10_ci"], "R@10": r["recall_at_10"],
                     "top-10 agr": r["top10_agreement"], "texts/s": r["encode_texts_per_s"],
                     "index KB": r["index_bytes"] // 1024})
        for dims, m in r.get("matryoshka", {}).items():
            rows.append({"model": f"  {name}@{dims}", "dim": int(dims), "MRR@5": m["mrr_at_5"], "nDCG@10": m["ndcg_at_10"],
                         "R@10": m["recall_at_10"], "top-10 agr": m["top10_agreement"],
                         "index KB": doc["corpus"]["chunks"] * int(dims) * 4 // 1024})
    print_table(rows)
    print(json.dumps({"goals": doc["goals"], "paired": {k: {m: {"mean_diff": v["mean_diff"], "ci": v["ci"]}
                                                               for m, v in d.items()} for k, d in doc["paired"].items()},
                      "search": doc["search"]}, indent=1, default=float))


if __name__ == "__main__":
    main()
