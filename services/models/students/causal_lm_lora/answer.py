"""How a causal-LM student answers a chat workload's eval records: as it is served."""

from __future__ import annotations

import json
from typing import Any

from services.domain.labels import render_label
from services.domain.students import StudentKind
from services.models.runtime.chat_format import content_text, parse_assistant_text
from services.models.students.answering import Answers, EvalRun, answer_of, pruned_messages, reference, timed

MAX_NEW_TOKENS_CAP = 512


def answer(run: EvalRun) -> Answers:
    """Label scoring (constrained) or generation; for a pruned student the extra metrics say what pruning saved."""
    from services.models.students.causal_lm_lora.runtime import label_confidence

    records, artifact, workload_type, parser = run.records, run.artifact, run.workload_type, run.parser()
    references = [reference(r, workload_type, parser) for r in records]
    decoding = run.settings.evaluation.decoding if workload_type == "classification" else "generate"
    runner = run.runtime(StudentKind.CAUSAL_LM_LORA)
    requests = [{"messages": pruned_messages(r["request"]["messages"], artifact), "tools": r["request"].get("tools")}
                for r in records]
    extra = prompt_token_stats(records, requests, runner) if artifact is not None and artifact.prompt_tag else {}
    if workload_type == "classification" and decoding == "constrained":
        labels = run.dataset.labels()
        template = parser.first_template(content_text(answer_of(r).get("content")) for r in records) or "{label}"
        answers = [render_label(template, label) for label in labels]
        stop = run.stop_when(lambda outs: [labels[best] for best, _ in outs])
        scored, seconds = timed(requests, lambda req: runner.score_labels(req["messages"], answers), run.on_progress,
                                stop=stop, every=run.futility_every)
        confidences = [label_confidence(scores, best) for best, scores in scored]
        return Answers(references, [labels[best] for best, _ in scored], seconds, confidences, extra, decoding)
    budget = max(runner.count_tokens(json.dumps(answer_of(r), ensure_ascii=False)) for r in records) + 16
    max_new = min(MAX_NEW_TOKENS_CAP, budget)

    def predicted(texts: list[str]) -> list[Any]:
        if workload_type == "classification":
            return [parser.parse(t) for t in texts]
        if workload_type == "tool_calling":
            return [(m.get("tool_calls") or m.get("content") or "") for m in map(parse_assistant_text, texts)]
        return texts

    stop = run.stop_when(predicted)
    texts, seconds = timed(requests, lambda req: runner.generate([req], max_new_tokens=max_new)[0], run.on_progress,
                           stop=stop, every=run.futility_every)
    return Answers(references, predicted(texts), seconds, None, extra, decoding)


def prompt_token_stats(records: list[dict[str, Any]], requests: list[dict[str, Any]], runner: Any) -> dict[str, Any]:
    """What pruning saved, recorded with a pruned student's evaluation: mean prompt tokens per request as
    evaluated (and served) and as the teacher was sent them, and how many requests carried the static part."""
    full = [runner.count_tokens(runner.prompt(r["request"]["messages"], r["request"].get("tools"))) for r in records]
    evaluated = [runner.count_tokens(runner.prompt(q["messages"], q["tools"])) for q in requests]
    pruned = sum(q["messages"] is not r["request"]["messages"] for r, q in zip(records, requests, strict=True))
    return {"prompt_tokens": {"full_mean": round(sum(full) / len(full), 1),
                              "evaluated_mean": round(sum(evaluated) / len(evaluated), 1),
                              "pruned_requests": pruned, "requests": len(records)}}
