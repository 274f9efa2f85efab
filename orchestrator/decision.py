"""Decide which student (if any) replaces the teacher: a pure function of evaluations and policy.

A candidate qualifies when its customized evaluation
- applies and has a score with a CI, on at least `min_eval_size` records;
- has a LOWER CI bound at or above `min_score` (a lucky point estimate on a small eval set is not
  enough: this is the statistically sound part);
- meets the per-class F1 floor for every class with enough support (classification);
- is at most `max_latency_p95_ms` per request.
A classification candidate that misses the full bar may qualify *selectively* (policy `selective`):
its evaluation carries a confidence threshold chosen on records disjoint from the eval split
(out-of-fold) and, measured on the eval split, the share it would serve (`min_coverage`) and the
one-sided lower bound of its agreement with the teacher on that share (`min_agreement`). Its cost is
the student on every request plus the teacher on the share it defers.
Qualifying candidates are ranked by `prefer` (default: cheaper, then faster, then better). No
qualifying candidate means "keep the teacher", with the reason of every candidate. Costs per 1k
requests come from the pricing section: the teacher's from its mean token usage, a student's from
its hourly price and measured throughput.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.domain.decisions import CandidateVerdict, DecisionStatus, PromotionDecision, SelectiveCascade
from services.domain.evaluation import EvalKind, EvalResult
from services.domain.settings import PricingSettings, PromotionPolicy


@dataclass(frozen=True)
class TeacherUsage:
    """Mean tokens per teacher request in the job's data (prompt, completion)."""

    prompt_tokens: float
    completion_tokens: float
    estimated: bool = False  # the logs carried no usage: counted from the text (~4 characters per token)


def teacher_cost_per_1k(usage: TeacherUsage | None, pricing: PricingSettings) -> float | None:
    if usage is None:
        return None
    per_request = (usage.prompt_tokens * pricing.teacher_per_1k_input_tokens
                   + usage.completion_tokens * pricing.teacher_per_1k_output_tokens) / 1000
    return round(per_request * 1000, 6)


def student_cost_per_1k(result: EvalResult, pricing: PricingSettings) -> float | None:
    """Hourly price over requests per hour, for 1,000 requests (serving one request at a time)."""
    if result.latency is None or result.latency.throughput_per_s <= 0:
        return None
    hourly = pricing.student_per_hour_by_candidate.get(result.candidate, pricing.student_per_hour)
    return round(hourly / (result.latency.throughput_per_s * 3600) * 1000, 6)


def judge_candidate(result: EvalResult, policy: PromotionPolicy, pricing: PricingSettings,
                    teacher_cost: float | None = None) -> CandidateVerdict:
    """The verdict on one customized evaluation: full, else selective, else the reasons it does not qualify."""
    full = _judge_full(result, policy, pricing)
    if full.qualified or not policy.selective:
        return full
    block = result.metrics.get("selective")
    if not isinstance(block, dict) or result.n < policy.min_eval_size:
        return full
    shortfalls = _selective_shortfalls(block, policy)
    if shortfalls:
        return full.model_copy(update={"reasons": [*full.reasons, *shortfalls]})
    student = full.cost_per_1k_requests
    effective = (round(student + (1 - float(block["coverage"])) * teacher_cost, 6)
                 if student is not None and teacher_cost is not None else None)
    return full.model_copy(update={"qualified": True, "reasons": [], "mode": "selective",
                                   "cascade": SelectiveCascade.model_validate(block),
                                   "effective_cost_per_1k_requests": effective})


def _selective_shortfalls(block: Mapping[str, Any], policy: PromotionPolicy) -> list[str]:
    threshold, coverage, low = block.get("threshold"), block.get("coverage"), block.get("agreement_ci_low")
    if threshold is None or coverage is None or low is None:
        return [f"selective: no confidence threshold reaches agreement {policy.min_agreement:.2f} on its "
                f"{block.get('method', 'calibration')} records"]
    shown = (f"selective: at confidence >= {float(threshold):.3f} it would serve {float(coverage):.0%} of "
             f"{block.get('n_report')} held-out requests at agreement {float(block.get('agreement') or 0):.3f} "
             f"(lower bound {float(low):.3f})")
    short = []
    if float(coverage) < policy.min_coverage:
        short.append(f"below min_coverage {policy.min_coverage:.0%}")
    if float(low) < policy.min_agreement:
        short.append(f"lower bound below min_agreement {policy.min_agreement:.3f}")
    return [f"{shown}: {' and '.join(short)}"] if short else []


def _judge_full(result: EvalResult, policy: PromotionPolicy, pricing: PricingSettings) -> CandidateVerdict:
    reasons: list[str] = []
    if not result.applicable:
        reasons.append(f"not evaluated: {result.reason}")
    elif result.score is None or result.ci is None:
        reasons.append("no score with a confidence interval (bootstrap disabled or evaluation failed)")
    else:
        stopped = result.metrics.get("stopped_early")
        if isinstance(stopped, dict):
            reasons.append(f"evaluation {stopped.get('reason', 'stopped early')}")
        elif result.n < policy.min_eval_size:
            reasons.append(f"eval set has {result.n} records; the policy needs at least {policy.min_eval_size}")
        if result.ci[0] < policy.min_score:
            reasons.append(f"{result.metric_name} lower CI bound {result.ci[0]:.3f} is below the minimum "
                           f"{policy.min_score:.3f} (score {result.score:.3f})")
        reasons.extend(_class_floor_failures(result, policy))
    p95 = result.latency.p95_ms if result.latency else None
    if policy.max_latency_p95_ms is not None and p95 is not None and p95 > policy.max_latency_p95_ms:
        reasons.append(f"p95 latency {p95:.1f} ms exceeds {policy.max_latency_p95_ms:.1f} ms")
    cost = student_cost_per_1k(result, pricing)
    return CandidateVerdict(
        candidate=result.candidate, qualified=not reasons, reasons=reasons, metric_name=result.metric_name,
        score=result.score, ci_low=result.ci[0] if result.ci else None, n=result.n, latency_p95_ms=p95,
        cost_per_1k_requests=cost, model_size_bytes=result.model_size_bytes,
        artifact_id=result.artifact_id, mode="full" if not reasons else None,
        effective_cost_per_1k_requests=cost if not reasons else None,
    )


def _class_floor_failures(result: EvalResult, policy: PromotionPolicy) -> list[str]:
    if policy.class_f1_floor is None or result.workload_type != "classification":
        return []
    per_class = result.metrics.get("per_class") or {}
    low = sorted(
        (label, stats["f1"]) for label, stats in per_class.items()
        if stats.get("support", 0) >= policy.class_floor_min_support and stats.get("f1", 0.0) < policy.class_f1_floor
    )
    if not low:
        return []
    listed = ", ".join(f"{label} {f1:.2f}" for label, f1 in low[:5]) + (f" (+{len(low) - 5} more)" if len(low) > 5 else "")
    return [f"{len(low)} classes with support >= {policy.class_floor_min_support} are below the F1 floor "
            f"{policy.class_f1_floor:.2f}: {listed}"]


def _rank_key(verdict: CandidateVerdict, prefer: Sequence[str]) -> tuple[float | str, ...]:
    inf = float("inf")
    cost = verdict.effective_cost_per_1k_requests
    if cost is None:  # unknown teacher cost: a full student before a selective one, then by the student's own cost
        cost = inf if verdict.mode == "selective" else (verdict.cost_per_1k_requests or inf)
    keys = {
        "cost": cost,
        "latency": verdict.latency_p95_ms if verdict.latency_p95_ms is not None else inf,
        "score": -(verdict.score or 0.0),
    }
    return (*(keys[k] for k in prefer), verdict.candidate)


def decide(
    workload_id: str,
    results: Sequence[EvalResult],
    policy: PromotionPolicy,
    pricing: PricingSettings,
    *,
    teacher_usage: TeacherUsage | None = None,
    failed: dict[str, str] | None = None,
    skipped: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> PromotionDecision:
    """Choose a student or keep the teacher. `failed` names candidates whose training or evaluation failed,
    `skipped` those the job left out (with why)."""
    teacher_cost = teacher_cost_per_1k(teacher_usage, pricing)
    verdicts = [judge_candidate(r, policy, pricing, teacher_cost) for r in results
                if r.eval_kind is EvalKind.CUSTOMIZED]
    verdicts += [CandidateVerdict(candidate=name, qualified=False, reasons=[f"failed: {why}"])
                 for name, why in sorted((failed or {}).items())]
    verdicts += [CandidateVerdict(candidate=name, qualified=False, reasons=[f"skipped: {why}"])
                 for name, why in sorted((skipped or {}).items())]
    qualified = sorted((v for v in verdicts if v.qualified), key=lambda v: _rank_key(v, policy.prefer))
    common = {
        "workload_id": workload_id, "rollout": policy.rollout, "requires_approval": policy.require_approval,
        "teacher_cost_per_1k_requests": teacher_cost, "policy": policy.model_dump(mode="json"),
        "teacher_cost_estimated": teacher_usage.estimated if teacher_usage is not None else None,
        "skipped": dict(skipped or {}), "notes": list(notes or []),
    }
    if not qualified:
        reason = ("keep the teacher: no candidate was evaluated" if not verdicts
                  else f"keep the teacher: none of {len(verdicts)} candidates meets the policy")
        return PromotionDecision(chosen=None, reason=reason, verdicts=verdicts, canary_percent=None,
                                 status=DecisionStatus.KEEP_TEACHER, **common)
    best = qualified[0]
    ranked = {v.candidate: i for i, v in enumerate(qualified)}
    verdicts = [v if v.candidate not in ranked or v is best else v.model_copy(update={
        "reasons": [f"qualifies, but ranks #{ranked[v.candidate] + 1} by {'/'.join(policy.prefer)} after {best.candidate}"]})
        for v in verdicts]
    saving = ""
    cost = best.effective_cost_per_1k_requests or best.cost_per_1k_requests
    if teacher_cost is not None and cost is not None:
        saving = f"; cost per 1k requests {teacher_cost:.4f} -> {cost:.4f}"
    if best.mode == "selective" and best.cascade is not None:
        block = best.cascade
        reason = (f"promote {best.candidate} selectively: it answers requests at confidence >= "
                  f"{float(block.threshold or 0):.3f} ({block.coverage:.0%} of {block.n_report} held-out "
                  f"records) with agreement {float(block.agreement or 0):.3f} (lower bound "
                  f"{float(block.agreement_ci_low or 0):.3f} >= {policy.min_agreement:.3f}); the teacher answers the "
                  f"rest. On every request its {best.metric_name} is {best.score:.3f} (lower bound {best.ci_low:.3f} "
                  f"< {policy.min_score:.3f}){saving}")
    else:
        reason = (f"promote {best.candidate}: {best.metric_name} {best.score:.3f} (lower CI bound {best.ci_low:.3f} "
                  f">= {policy.min_score:.3f}){saving}")
    return PromotionDecision(
        chosen=best.candidate, artifact_id=best.artifact_id, reason=reason, verdicts=verdicts,
        canary_percent=policy.canary_percent if policy.rollout == "canary" else None,
        chosen_cost_per_1k_requests=cost, mode=best.mode, cascade=best.cascade,
        status=DecisionStatus.initial(chosen=best.candidate, requires_approval=policy.require_approval), **common,
    )
