"""Tiny random models built offline from a config in milliseconds: real code paths, no weights.

`tiny_model_dir(tmp, "causal_lm" | "encoder")` writes a Hugging Face model directory (model +
fast tokenizer with a ChatML chat template), the same layout `flywheel models fetch` caches.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "stocks rally as earnings beat estimates", "fed holds rates steady", "central bank signals cuts",
    "company announces dividend increase", "ipo priced above range", "bond yields climb on inflation data",
    "markets fall on trade worries", "merger talks between two banks", "analyst upgrades shares to buy",
    "Classify the headline. Answer with the label in triple brackets. Markets Macro Earnings Dividend IPO",
    '<tool_call>{"name": "get_quote", "arguments": {"ticker": "AAPL"}}</tool_call> system user assistant',
]


def tiny_tokenizer(directory: Path) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", unk_token="<unk>")
    fast.chat_template = CHATML
    fast.save_pretrained(str(directory))
    return fast


def tiny_model_dir(root: Path, kind: str, *, name: str | None = None) -> Path:
    """A tiny random `causal_lm` (Llama) or `encoder` (BERT) model directory under `root`."""
    import torch

    directory = root / (name or f"tiny-{kind}")
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(directory)
    vocab = len(tokenizer)  # type: ignore[arg-type]
    torch.manual_seed(0)
    if kind == "causal_lm":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             tie_word_embeddings=True, pad_token_id=0, eos_token_id=2, bos_token_id=1)
        LlamaForCausalLM(config).save_pretrained(str(directory))
    else:
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=512, pad_token_id=0)
        BertModel(config).save_pretrained(str(directory))
    return directory
