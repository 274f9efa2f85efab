"""A causal-LM student (base model, optionally with a LoRA adapter) answering chat requests.

Two ways to answer a classification request:
- `generate`: greedy decoding until the end-of-turn token or `max_new_tokens`;
- `score_labels`: constrained label scoring. The prompt is run once; its KV cache is repeated
  for every candidate answer, and each answer's log-likelihood (end-of-turn included, so a
  label that is a prefix of another is not favoured) is summed in one batched pass. Always
  returns a valid label, costs about one prompt pass plus one short pass, and never rambles.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import torch

from services.models.locks import MODEL_LOAD_LOCK
from services.models.runtime.chat_format import answer_turn, prompt_text


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class CausalLMRunner:
    """Load once, answer many. Thread-safe for the gateway (one forward pass at a time)."""

    def __init__(self, base_path: str | Path, *, adapter_path: str | Path | None = None,
                 device: torch.device | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or best_device()
        source = adapter_path if adapter_path and (Path(adapter_path) / "tokenizer_config.json").exists() else base_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(source))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        with MODEL_LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=dtype)
            if adapter_path is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers types .to() per model class
        self._lock = threading.Lock()
        self._stop_ids = self._end_of_turn_ids()

    def _end_of_turn_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                ids.add(token_id)
        return sorted(i for i in ids if i is not None)

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        return prompt_text(self.tokenizer, messages, tools)

    def answer_suffix(self, messages: list[dict[str, Any]], answer: str) -> str:
        """How the chat template writes `answer` as the assistant's turn (end-of-turn included)."""
        return answer_turn(self.tokenizer, messages, {"role": "assistant", "content": answer})

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def generate(self, requests: list[dict[str, Any]], *, max_new_tokens: int = 64) -> list[str]:
        """Greedy answers to chat requests ({"messages", "tools"?}), batched with left padding."""
        prompts = [self.prompt(r["messages"], r.get("tools")) for r in requests]
        self.tokenizer.padding_side = "left"
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with self._lock:
            out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                      eos_token_id=self._stop_ids, pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        return [str(self.tokenizer.decode(row, skip_special_tokens=True)).strip() for row in new]

    @torch.inference_mode()
    def answer_logprobs(self, messages: list[dict[str, Any]], answers: list[str]) -> list[float]:
        """Summed log-probability of each full answer turn after the prompt (one prompt pass)."""
        prompt_ids = self.tokenizer(self.prompt(messages), return_tensors="pt", add_special_tokens=False)["input_ids"]
        suffixes = [self.tokenizer(self.answer_suffix(messages, a), add_special_tokens=False)["input_ids"]
                    for a in answers]
        width = max(len(s) for s in suffixes)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(answers), width), pad, dtype=torch.long)
        mask = torch.zeros((len(answers), width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            ids[row, :len(suffix)] = torch.tensor(suffix)
            mask[row, :len(suffix)] = 1
        prompt_ids = prompt_ids.to(self.device)
        with self._lock:
            first = self.model(input_ids=prompt_ids, use_cache=True)
            cache = first.past_key_values
            cache.batch_repeat_interleave(len(answers))
            full_mask = torch.cat([torch.ones((len(answers), prompt_ids.shape[1]), dtype=torch.long), mask], dim=1)
            out = self.model(input_ids=ids.to(self.device), attention_mask=full_mask.to(self.device),
                             past_key_values=cache, use_cache=True)
        # Token t of a suffix is predicted by the logits just before it: the prompt's last logit
        # for t=0, the suffix's own logits for the rest.
        logits = torch.cat([first.logits[:, -1:, :].expand(len(answers), -1, -1), out.logits[:, :-1, :]], dim=1)
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.to(self.device).unsqueeze(-1)).squeeze(-1)
        return (logprobs * mask.to(self.device)).sum(dim=1).tolist()

    def score_labels(self, messages: list[dict[str, Any]], answers: list[str]) -> tuple[int, list[float]]:
        """Index of the most likely answer and every answer's log-probability."""
        scores = self.answer_logprobs(messages, answers)
        return max(range(len(scores)), key=scores.__getitem__), scores


def label_confidence(scores: list[float], best: int) -> float:
    """The chosen label's share of the probability mass over the label set (from `score_labels`' log-probabilities):
    a constrained causal-LM student's confidence, what a selective threshold is set on."""
    return 1.0 / sum(math.exp(score - scores[best]) for score in scores)
