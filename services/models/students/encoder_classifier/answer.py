"""How an encoder classifier answers a classification workload's eval records."""

from __future__ import annotations

from services.domain.students import StudentKind
from services.models.runtime.chat_format import last_user_text
from services.models.students.answering import Answers, EvalRun, reference, timed


def answer(run: EvalRun) -> Answers:
    """It reads the last user turn; its confidence is `runtime.confidence_of` its head's probabilities."""
    parser = run.parser()
    runner = run.runtime(StudentKind.ENCODER_CLASSIFIER)
    texts = [last_user_text(r["request"]["messages"]) for r in run.records]
    # Scored through the same parser as the teacher: the student's chat answer must parse too.
    answers, seconds = timed(texts, lambda text: runner.answer([{"messages": [
        {"role": "user", "content": text}]}])[0], run.on_progress)
    return Answers([reference(r, run.workload_type, parser) for r in run.records],
                   [parser.parse(text) for text, _ in answers], seconds, [confidence for _, confidence in answers])
