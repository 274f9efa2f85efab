"""The offline model cache: a tiny local model (fast) and the real packaged models (slow)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from services.domain.errors import ModelUnavailable
from services.domain.settings import ModelSpec, ModelsSettings
from services.models import packaged
from services.models.cache import ModelCache

log = logging.getLogger(__name__)


@pytest.fixture
def tiny_encoder_dir(tmp_path: Path) -> Path:
    """A tiny random BERT (milliseconds to build) with MiniLM's real tokenizer files."""
    import shutil

    from transformers import BertConfig, BertModel

    target = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    BertModel(config).save_pretrained(str(target))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        shutil.copy(packaged.minilm_dir() / name, target / name)
    return target


def test_local_model_is_registered_verified_and_tamper_checked(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    cache = ModelCache(ModelsSettings(
        cache_dir=tmp_path / "cache",
        registry={"tiny": ModelSpec(source="local", kind="encoder", path=tiny_encoder_dir)},
    ))
    entry = cache.fetch("tiny")
    assert entry.verified["forward_pass"] == "ok"
    assert entry.verified["output_shape"][-1] == 32
    assert "model.safetensors" in entry.files
    assert cache.path("tiny") == tiny_encoder_dir
    assert cache.list()[0]["fetched"] is True
    (tiny_encoder_dir / "vocab.txt").write_text("tampered")
    with pytest.raises(ModelUnavailable, match="fails its sha256 check"):
        cache.fetch("tiny")


def test_unfetched_and_unknown_models_say_what_to_do(tmp_path: Path) -> None:
    cache = ModelCache(ModelsSettings(cache_dir=tmp_path))
    with pytest.raises(ModelUnavailable, match="flywheel models fetch minilm-l6"):
        cache.path("minilm-l6")
    with pytest.raises(ModelUnavailable, match="no model named"):
        cache.fetch("nope")


def test_hub_model_without_network_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = ModelCache(ModelsSettings(
        cache_dir=tmp_path,
        registry={"remote": ModelSpec(source="hub", kind="causal_lm", hub_id="org/not-cached-model")},
    ))
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache"):
        cache.fetch("remote")


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache(ModelsSettings(cache_dir=tmp_path_factory.mktemp("models")))


@pytest.mark.slow
def test_smollm2_gguf_becomes_safetensors_that_generate(real_cache: ModelCache) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    entry = real_cache.fetch("smollm2-135m-instruct")
    build_s = time.perf_counter() - started
    assert "model.safetensors" in entry.files and entry.verified["forward_pass"] == "ok"
    assert entry.verified["parameters"] > 100_000_000
    config = json.loads((Path(entry.path) / "config.json").read_text())
    assert "quantization_config" not in config, "dequantized weights must not claim to be GGUF-quantized"
    started = time.perf_counter()
    path = real_cache.path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    load_s = time.perf_counter() - started
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    batch = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    log.warning("SmolLM2: GGUF->safetensors %.1f s, reload %.2f s, answer %r", build_s, load_s, answer)
    assert "Paris" in answer


@pytest.mark.slow
def test_minilm_trains_offline_for_20_steps(real_cache: ModelCache) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from services.datastore.convert import read_twitter_topic
    from tests.conftest import REPO

    real_cache.fetch("minilm-l6", forward_pass=False)
    path = real_cache.path("minilm-l6")
    labels, examples = read_twitter_topic(REPO / "data" / "twitter_financial_news_topic", "train")
    rows = list(examples)[::500][:32]  # the CSV is sorted by label: stride to mix classes
    texts = [r.text for r in rows]
    targets = torch.tensor([labels.index(r.answer.strip("[]")) for r in rows])
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=len(labels))
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    batches = [
        (tokenizer(texts[i:i + 8], padding=True, truncation=True, max_length=64, return_tensors="pt"), targets[i:i + 8])
        for i in range(0, 32, 8)
    ]

    def mean_loss() -> float:
        model.eval()
        with torch.no_grad():
            value = sum(model(**b, labels=t).loss.item() for b, t in batches) / len(batches)
        model.train()
        return value

    before = mean_loss()
    started = time.perf_counter()
    for step in range(20):  # 5 passes over 32 examples: enough to show the gradient flows
        batch, target = batches[step % len(batches)]
        loss = model(**batch, labels=target).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - started
    after = mean_loss()
    log.warning("MiniLM LoRA: 20 steps x 8 examples in %.1f s = %.1f examples/s; loss %.3f -> %.3f",
                seconds, 160 / seconds, before, after)
    assert after < before * 0.9


@pytest.mark.slow
def test_semantic_icl_with_real_minilm(real_cache: ModelCache) -> None:
    from sentence_transformers import SentenceTransformer

    from services.datastore.pipeline.icl import approx_tokens, select_similar
    from tests.unit.pipeline.test_icl import _ex

    real_cache.fetch("minilm-l6", forward_pass=False)
    model = SentenceTransformer(str(real_cache.path("minilm-l6")), device="cpu")
    train = [_ex("Energy | Oil", 1, text="Brent crude climbs as OPEC+ extends output cuts"),
             _ex("Fed | Central Banks", 2, text="Powell signals the Fed will hold rates higher for longer"),
             _ex("IPO", 3, text="Chip designer Arm prices its Nasdaq listing at top of range")]
    query = _ex("?", 9, text="Oil prices jump after Saudi Arabia announces a production cut").record
    (chosen,) = select_similar(train, [query], embed=model.encode, max_examples=1, budget_tokens=1000,
                               count_tokens=approx_tokens, pool_cap=10, seed=0)
    assert chosen[0][1]["content"] == "[[[Energy | Oil]]]"
