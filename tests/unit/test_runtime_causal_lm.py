"""Causal-LM runtime on a tiny random Llama: cached label scoring equals the naive full pass."""

from __future__ import annotations

import pytest
import torch

from services.models.runtime.chat_format import parse_assistant_text, template_messages
from services.models.students.causal_lm_lora.runtime import CausalLMRunner
from tests.tiny_models import tiny_model_dir

MESSAGES = [{"role": "system", "content": "Classify the headline."}, {"role": "user", "content": "fed holds rates"}]
ANSWERS = ["[[[Markets]]]", "[[[Macro]]]", "[[[Earnings]]]", "[[[Dividend increase]]]"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> CausalLMRunner:
    return CausalLMRunner(tiny_model_dir(tmp_path_factory.mktemp("lm"), "causal_lm"))


def naive_logprob(runner: CausalLMRunner, answer: str) -> float:
    prompt = runner.tokenizer(runner.prompt(MESSAGES), add_special_tokens=False)["input_ids"]
    suffix = runner.tokenizer(runner.answer_suffix(MESSAGES, answer), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + suffix])
    with torch.inference_mode():
        logits = runner.model(input_ids=ids).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(logprobs[len(prompt) + i - 1, token]) for i, token in enumerate(suffix))


def test_cached_label_scores_equal_full_passes(runner: CausalLMRunner) -> None:
    best, scores = runner.score_labels(MESSAGES, ANSWERS)
    expected = [naive_logprob(runner, a) for a in ANSWERS]
    assert scores == pytest.approx(expected, abs=1e-3)
    assert best == max(range(len(expected)), key=expected.__getitem__)


def test_answer_suffix_ends_the_turn(runner: CausalLMRunner) -> None:
    assert runner.answer_suffix(MESSAGES, "[[[Macro]]]") == "[[[Macro]]]<|im_end|>\n"


def test_generate_returns_one_answer_per_request(runner: CausalLMRunner) -> None:
    answers = runner.generate([{"messages": MESSAGES}, {"messages": MESSAGES[1:]}], max_new_tokens=5)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # Greedy and batched with left padding: the same request alone gives the same answer.
    assert runner.generate([{"messages": MESSAGES[1:]}], max_new_tokens=5)[0] == answers[1]


def test_tool_calls_round_trip_through_the_text_convention() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "x", "type": "function", "function": {"name": "get_quote", "arguments": '{"ticker": "AAPL"}'}},
        {"id": "y", "type": "function", "function": {"name": "get_news", "arguments": '{"n": 3}'}}]}
    rendered = template_messages([message])[0]["content"]
    parsed = parse_assistant_text(rendered)
    assert parsed["content"] is None
    assert [c["function"]["name"] for c in parsed["tool_calls"]] == ["get_quote", "get_news"]
    assert [c["function"]["arguments"] for c in parsed["tool_calls"]] == ['{"ticker": "AAPL"}', '{"n": 3}']
    assert parse_assistant_text("plain answer") == {"role": "assistant", "content": "plain answer"}


def test_tools_go_into_the_system_prompt() -> None:
    tools = [{"type": "function", "function": {"name": "get_quote", "parameters": {"type": "object"}}}]
    messages = template_messages([{"role": "user", "content": "price of AAPL?"}], tools)
    assert messages[0]["role"] == "system" and '"name": "get_quote"' in messages[0]["content"]
    assert messages[1] == {"role": "user", "content": "price of AAPL?"}
