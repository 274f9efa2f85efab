"""Tool-calling metrics: did the student call the same functions, with the same arguments, as the teacher?

Each reference/prediction is one assistant turn: a list of OpenAI tool_call dicts
(`{"type": "function", "function": {"name", "arguments"}}`), or text (a str) when no tool was
called, or None for a candidate output that could not be parsed at all (always wrong).
Parallel calls compare as an unordered multiset; arguments compare as parsed JSON, so key order
and whitespace do not matter and invalid JSON never matches.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.evaluator.metrics.bootstrap import bootstrap_mean, require_aligned

ToolTurn = Sequence[Mapping[str, Any]] | str | None

# Stands in for arguments that are not valid JSON: it equals nothing, not even another invalid one.
_INVALID = object()


def _normalise(value: Any) -> Any:
    # JSON has one number type: 2 and 2.0 are the same argument value.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def canonical_arguments(arguments: Any) -> str | None:
    """Arguments as canonical JSON (sorted keys, no whitespace); None when they are not valid JSON."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    try:
        return json.dumps(_normalise(arguments), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _calls(turn: ToolTurn) -> list[tuple[str, Any]]:
    """(name, canonical args or _INVALID) for each call of a turn; [] for a text answer."""
    if turn is None or isinstance(turn, str):
        return []
    out: list[tuple[str, Any]] = []
    for item in turn:
        # Typed records (services.domain ToolCall) arrive as pydantic models; the wire format as dicts.
        call = item.model_dump() if hasattr(item, "model_dump") else item
        function = call.get("function", call)  # tolerate bare {"name", "arguments"} calls
        args = canonical_arguments(function.get("arguments", "{}"))
        out.append((str(function.get("name", "")), _INVALID if args is None else args))
    return out


def _args_match(reference: list[tuple[str, Any]], predicted: list[tuple[str, Any]]) -> bool:
    if any(args is _INVALID for _, args in reference + predicted):
        return False
    return Counter(reference) == Counter(predicted)


def score_turn(reference: ToolTurn, predicted: ToolTurn) -> tuple[bool, bool]:
    """(name correct, name and arguments correct) for one record."""
    if predicted is None:
        return False, False
    ref_calls, pred_calls = _calls(reference), _calls(predicted)
    if not ref_calls:
        # The teacher answered in text: the student is right exactly when it did not call a tool either.
        return (not pred_calls,) * 2
    names_ok = Counter(name for name, _ in ref_calls) == Counter(name for name, _ in pred_calls)
    return names_ok, names_ok and _args_match(ref_calls, pred_calls)


def tool_calling_report(
    reference: Sequence[ToolTurn],
    predicted: Sequence[ToolTurn],
    *,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Function-name accuracy and name+arguments accuracy (the score), with a bootstrap CI."""
    require_aligned(reference, predicted)
    outcomes = [score_turn(r, p) for r, p in zip(reference, predicted, strict=True)]
    name_ok = np.array([o[0] for o in outcomes], dtype=np.float64)
    args_ok = np.array([o[1] for o in outcomes], dtype=np.float64)
    invalid = sum(args is _INVALID for p in predicted for _, args in _calls(p))
    ci = bootstrap_mean(args_ok, samples=bootstrap_samples, confidence=confidence, seed=seed)
    return {
        "n": len(reference),
        "unparseable": sum(p is None for p in predicted),
        "name_accuracy": float(name_ok.mean()),
        "name_args_accuracy": float(args_ok.mean()),
        "name_args_accuracy_ci": list(ci) if ci is not None else None,
        "teacher_called": sum(bool(_calls(r)) for r in reference),
        "student_called": sum(bool(_calls(p)) for p in predicted),
        "invalid_arguments": invalid,
    }
