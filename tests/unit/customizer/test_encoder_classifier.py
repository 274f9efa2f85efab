"""Encoder classifier on a tiny random BERT: labels from the dataset, teacher's answer format kept."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from services.customizer.service import train_candidate
from services.domain.artifacts import StudentKind
from services.domain.errors import ConfigError
from tests.model_plane import TOPICS, model_plane


def test_full_finetune_learns_keyword_topics(tmp_path: Path) -> None:
    plane = model_plane(tmp_path, records=200, epochs=6, learning_rate=3e-3, finetune="full")
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    assert artifact.kind == StudentKind.ENCODER_CLASSIFIER
    assert artifact.labels == sorted(TOPICS)
    assert artifact.answer_template == "[[[{label}]]]"
    assert (Path(artifact.path) / "model" / "config.json").exists()
    chance = math.log(len(TOPICS))  # cross-entropy of a uniform guess
    assert artifact.metrics["best_val_loss"] < 0.8 * chance, artifact.metrics["val_history"]
    from services.models.students.encoder_classifier.runtime import load_calibration

    confidences, correct, source = load_calibration(Path(artifact.path))  # type: ignore[misc]
    assert source == "val split" and len(confidences) == len(correct) == plane.dataset.splits["val"]["count"]


def test_lora_student_is_merged_into_one_plain_model(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    plane = model_plane(tmp_path, records=120, epochs=1, learning_rate=1e-2)
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    model_dir = Path(artifact.path) / "model"
    assert not (model_dir / "adapter_config.json").exists(), "serving needs no peft"
    merged = load_file(str(model_dir / "model.safetensors"))
    base = load_file(str(Path(plane.settings.models.cache_dir).parent / "src-models" / "tiny-encoder" / "model.safetensors"))
    key = next(k for k in merged if k.endswith("attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith(key.split("encoder.", 1)[1]))
    assert not (merged[key] == base[base_key]).all(), "LoRA deltas are merged into the saved weights"
    head = load_file(str(model_dir / "classifier_head.safetensors"))
    assert head["weight"].shape == (len(TOPICS), 32)
    assert artifact.metrics["trainable_parameters"] < 0.5 * sum(v.numel() for v in merged.values())


@pytest.mark.slow
def test_real_minilm_lora_classifier_learns(tmp_path: Path) -> None:
    """The real MiniLM (from `flywheel models fetch`) with LoRA: val loss well below chance."""
    from services.domain.settings import Settings
    from services.models.cache import ModelCache

    default_cache = Settings().models
    if ModelCache(default_cache).cached("minilm-l6") is None:
        pytest.skip("minilm-l6 is not fetched (run `flywheel models fetch minilm-l6`)")
    plane = model_plane(tmp_path, records=240, epochs=3, learning_rate=2e-3, max_seq_length=48)
    settings = plane.settings.model_copy(update={
        "models": plane.settings.models.model_copy(update={"registry": {
            **plane.settings.models.registry, "minilm-l6": default_cache.registry["minilm-l6"]},
            "cache_dir": default_cache.cache_dir}),
        "candidates": [c.model_copy(update={"model": "minilm-l6"}) if c.name == "tiny-clf" else c
                       for c in plane.settings.candidates],
    })
    artifact = train_candidate(settings, "tiny-clf", plane.dataset.dataset_id)
    assert artifact.metrics["best_val_loss"] < 0.5 * math.log(len(TOPICS)), artifact.metrics["val_history"]


def test_a_classifier_cannot_be_asked_to_learn_chat(tmp_path: Path) -> None:
    logs = [
        {"workload_id": "qa", "client_id": "c", "timestamp": 1_760_000_000 + i,
         "request": {"model": "t", "messages": [{"role": "user", "content": f"question {i} about filings"}]},
         "response": {"choices": [{"message": {"role": "assistant", "content": f"a free text answer number {i}"}}]}}
        for i in range(80)
    ]
    plane = model_plane(tmp_path, logs=logs, workload_id="qa")
    with pytest.raises(ConfigError, match="cannot learn a chat workload"):
        train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)


def test_head_on_a_frozen_encoder_learns_and_keeps_out_of_fold_calibration(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from services.models.students.encoder_classifier.runtime import ClassifierRunner, load_calibration

    plane = model_plane(tmp_path, records=200, finetune="head")
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    model_dir = Path(artifact.path) / "model"
    encoder = load_file(str(model_dir / "model.safetensors"))
    base = load_file(str(Path(plane.settings.models.cache_dir).parent / "src-models" / "tiny-encoder" / "model.safetensors"))
    key = next(k for k in encoder if k.endswith("attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith(key.split("encoder.", 1)[1]))
    assert (encoder[key] == base[base_key]).all(), "the encoder stays frozen"
    calibration = load_calibration(Path(artifact.path))
    assert calibration is not None
    confidences, correct, source = calibration
    assert source.startswith("out-of-fold")
    trained_on = plane.dataset.splits["train"]["count"] + plane.dataset.splits["val"]["count"]
    assert len(confidences) == len(correct) == trained_on, "one out-of-fold score per fitted record"
    assert artifact.metrics["oof_macro_f1"] > 0.5 and artifact.metrics["C"] in (1.0, 4.0, 16.0)
    runner = ClassifierRunner(model_dir)
    eval_records = list(plane.dataset.read_split("eval"))
    answers = runner.answer([r["request"] for r in eval_records])
    hits = sum(a == r["response"]["choices"][0]["message"]["content"] for (a, _), r in zip(answers, eval_records, strict=True))
    assert hits / len(eval_records) > 0.6, "keyword topics are learnable from a random encoder's mean vectors"
    assert all(0 <= p <= 1 for _, p in answers)


def test_head_full_fine_tunes_from_the_fitted_head_and_calibrates_the_served_mix_on_val(tmp_path: Path) -> None:
    """`finetune: head_full`: the cross-fitted head on the train split first (its figures in the metrics), then
    every weight fine-tuned from it; the TF-IDF half is saved beside it, and the val split's calibration is of the
    mix the student serves."""
    import numpy as np
    from safetensors.torch import load_file

    from services.models.students.encoder_classifier.lexical import LexicalHead
    from services.models.students.encoder_classifier.runtime import ClassifierRunner, confidence_of, load_calibration

    plane = model_plane(tmp_path, records=200, epochs=3, learning_rate=1e-3, finetune="head_full")
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    assert artifact.metrics["head_C"] in (1.0, 4.0, 16.0) and artifact.metrics["head_oof_macro_f1"] > 0.5
    assert artifact.metrics["best_val_loss"] < 0.5 * math.log(len(TOPICS)), artifact.metrics["val_history"]
    model_dir = Path(artifact.path) / "model"
    encoder = load_file(str(model_dir / "model.safetensors"))
    base = load_file(str(Path(plane.settings.models.cache_dir).parent / "src-models" / "tiny-encoder" / "model.safetensors"))
    key = next(k for k in encoder if k.endswith("attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith(key.split("encoder.", 1)[1]))
    assert not (encoder[key] == base[base_key]).all(), "the encoder is fine-tuned, not frozen"
    assert LexicalHead.load(model_dir) is not None

    confidences, correct, source = load_calibration(Path(artifact.path))  # type: ignore[misc]
    val = list(plane.dataset.read_split("val"))
    assert source == "val split" and len(confidences) == len(val)
    runner = ClassifierRunner(model_dir)
    probs = runner.probabilities([r["messages"][-2]["content"] for r in val]).numpy()  # with the TF-IDF half
    np.testing.assert_allclose(confidences, confidence_of(probs), atol=1e-4)
    answers = [r["messages"][-1]["content"] for r in val]
    assert correct == [f"[[[{runner.labels[i]}]]]" == a for i, a in zip(probs.argmax(axis=1), answers, strict=True)]


def test_a_students_confidence_is_the_margin_and_an_older_student_keeps_its_top_probability(tmp_path: Path) -> None:
    """New students answer with the top class's lead over the runner-up, the number their out-of-fold calibration
    holds; a student saved before that (no `confidence` in classifier.json) keeps the top probability, the scale its
    route's threshold was chosen on."""
    import json

    import numpy as np

    from services.models.students.encoder_classifier.runtime import META_FILE, ClassifierRunner

    plane = model_plane(tmp_path, records=200, finetune="head")
    model_dir = Path(train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id).path) / "model"
    texts = [r["request"]["messages"][-1]["content"] for r in plane.dataset.read_split("eval")]
    runner = ClassifierRunner(model_dir)
    probs = np.sort(runner.probabilities(texts).numpy(), axis=1)
    np.testing.assert_allclose([c for _, c in runner.classify(texts)], probs[:, -1] - probs[:, -2], atol=1e-6)

    meta = json.loads((model_dir / META_FILE).read_text("utf-8"))
    assert meta.pop("confidence") == "margin"
    (model_dir / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    np.testing.assert_allclose([c for _, c in ClassifierRunner(model_dir).classify(texts)], probs[:, -1], atol=1e-6)


def test_confidence_of_known_probabilities() -> None:
    import numpy as np

    from services.models.students.encoder_classifier.runtime import confidence_of

    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.4, 0.2], [0.05, 0.05, 0.9]])
    np.testing.assert_allclose(confidence_of(probs), [0.3, 0.0, 0.85])
    np.testing.assert_allclose(confidence_of(probs, "probability"), [0.6, 0.4, 0.9])
    np.testing.assert_allclose(confidence_of(np.array([[1.0], [1.0]])), [1.0, 1.0])  # one class: always sure
    with pytest.raises(ValueError, match="unknown confidence 'entropy'"):
        confidence_of(probs, "entropy")


def test_the_tfidf_half_is_saved_without_pickle_and_serves_as_fitted(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from services.models.students.encoder_classifier.lexical import LexicalHead

    texts = ["acme dividend raised", "globex profit beats", "markets fall hard", "acme dividend cut",
             "initech profit misses", "stocks rally today"] * 5
    targets = [0, 1, 2, 0, 1, 2] * 5
    features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, dtype=np.float32)
    model = LogisticRegression(C=16.0).fit(features.fit_transform(texts), targets)
    head = LexicalHead(features.vocabulary_, features.idf_, model.coef_.astype(np.float32),
                       model.intercept_.astype(np.float32), 0.5)
    head.save(tmp_path)
    assert {p.name for p in (tmp_path / "lexical").iterdir()} == {"vocabulary.json", "head.npz"}
    loaded = LexicalHead.load(tmp_path)
    assert loaded is not None and loaded.mix == 0.5
    probe = ["acme dividend", "profit at globex", "unseen words only"]
    np.testing.assert_allclose(loaded.probabilities(probe), model.predict_proba(features.transform(probe)), atol=1e-5)

    plane = model_plane(tmp_path / "plane", records=200, finetune="head")
    artifact = train_candidate(plane.settings, "tiny-clf", plane.dataset.dataset_id)
    assert artifact.metrics["head"] == "logistic_regression+tfidf" and artifact.metrics["lexical_mix"] == 0.5
    assert LexicalHead.load(Path(artifact.path) / "model") is not None


def test_the_teachers_prompt_is_labelled_data() -> None:
    from services.models.students.encoder_classifier.head import prompt_examples

    system = "\n".join([
        "Classify the headline. Definitions:",
        '- Stock Movement: a stock rising or falling. Examples: "Acme shares jump 12% on a deal" | "Up 2%"',
        "* Stock: not a label here, but a prefix of one",
        "2) Dividend: payouts to shareholders",
        "Answer with the label only, for example [[[Dividend]]].",
    ])
    found = prompt_examples(system, ["Stock Movement", "Dividend", "Macro"])
    assert found == [("a stock rising or falling", "Stock Movement"),
                     ("Acme shares jump 12% on a deal", "Stock Movement"),  # quoted examples of 8+ characters
                     ("payouts to shareholders", "Dividend")]


def test_the_head_chooses_c_on_a_sample_of_many_records_and_cross_fits_all_of_them() -> None:
    """Beyond `grid_records`, C is chosen on a stratified sample; the out-of-fold calibration still covers every
    record, and on easy synthetic classes the sampled choice fits as well as the full grid."""
    import numpy as np

    from services.models.students.encoder_classifier.head import C_GRID, fit_head

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    targets = rng.integers(0, 4, size=600)
    vectors = (centers[targets] + rng.normal(scale=0.8, size=(600, 16))).astype(np.float32)
    sampled = fit_head(vectors, targets, 4, seed=0, grid_records=200)
    full = fit_head(vectors, targets, 4, seed=0, grid_records=None)
    assert sampled["C"] in C_GRID and len(sampled["oof_confidence"]) == len(sampled["oof_correct"]) == 600
    assert sampled["weight"].shape == (4, 16)
    assert sampled["oof_macro_f1"] > 0.8 and abs(sampled["oof_macro_f1"] - full["oof_macro_f1"]) < 0.02
