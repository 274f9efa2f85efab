"""Static prompt detection and stripping: the one definition the datastore, customizer, evaluator
and gateway share."""

from __future__ import annotations

from services.domain.prompts import detect_static_prompt, resolve_pruning, static_sha, strip_static, task_tag

LONG = "You classify finance headlines. " + "Label definitions and examples. " * 40


def chat(system: str | None, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]


def test_the_common_system_prompt_is_detected_with_its_share_and_tokens() -> None:
    requests = [chat(LONG, f"{c} shares rise") for c in ("Acme", "Globex", "Initech", "Hooli", "Stark", "Wayne", "Umbrella", "Vandelay", "Tyrell")] + [chat("Another prompt", "Fed holds")]
    static = detect_static_prompt(requests, min_share=0.8)
    assert static is not None and static.system == LONG and static.user_prefix == ""
    assert (static.share, static.records) == (0.9, 10)
    assert static.tokens == len(LONG) // 4 and static.ratio > 50
    assert static.sha256 == static_sha(LONG, "")


def test_no_static_part_when_too_few_records_share_one() -> None:
    requests = [chat(LONG, "a"), chat(LONG, "b"), chat("other", "c"), chat(None, "d")]
    assert detect_static_prompt(requests, min_share=0.8) is None
    assert detect_static_prompt([chat(None, "only user turns")] * 5) is None


def test_a_fixed_prefix_of_the_user_turn_is_static_too_cut_at_a_word() -> None:
    requests = [chat(LONG, f"Headline to classify follows. Headline: Acme {w}") for w in ("rises", "falls", "rallies")]
    static = detect_static_prompt(requests)
    assert static is not None and static.user_prefix == "Headline to classify follows. Headline: Acme "
    short = detect_static_prompt([chat(LONG, "Acme up"), chat(LONG, "Acme down")])
    assert short is not None and short.user_prefix == "", "a short shared start is a coincidence, not a template"


def test_strip_replaces_exactly_the_static_part_and_refuses_anything_else() -> None:
    requests = [chat(LONG, f"Headline to classify follows. Headline: Acme {w}") for w in ("rises", "falls")]
    static = detect_static_prompt(requests)
    assert static is not None
    stripped = strip_static(requests[0], static, task_tag("news_topic"))
    assert stripped == [{"role": "system", "content": "task: news_topic"}, {"role": "user", "content": "rises"}]
    assert requests[0][1]["content"].endswith("rises"), "the caller's messages are not changed"
    assert strip_static(chat(LONG + " v2", "Headline to classify follows. Headline: Acme x"), static, "t") is None
    assert strip_static(chat(LONG, "Different framing: Acme rises"), static, "t") is None
    assert strip_static(chat(None, "Headline to classify follows. Headline: Acme x"), static, "t") is None


def test_pruning_modes() -> None:
    static = detect_static_prompt([chat(LONG, f"Acme {i}") for i in range(3)])
    small = detect_static_prompt([chat("Be brief.", text) for text in (
        "Acme's quarterly revenue rose on strong cloud demand", "Globex cuts guidance after a weak quarter in Europe")])
    assert static is not None and small is not None
    assert resolve_pruning("auto", static, min_ratio=2.0) and not resolve_pruning("auto", small, min_ratio=2.0)
    assert resolve_pruning("on", small, min_ratio=2.0) and not resolve_pruning("off", static, min_ratio=2.0)
    assert not resolve_pruning("on", None, min_ratio=2.0)
