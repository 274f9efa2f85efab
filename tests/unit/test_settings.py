"""Configuration: defaults, the repo's config.yaml, env overrides, and actionable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.domain.errors import ConfigError
from services.domain.settings import Settings, load_settings
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("isolated_env")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repo_config_is_valid_and_matches_the_code_defaults() -> None:
    from_file = load_settings(REPO / "config.yaml")
    defaults = Settings()
    # The YAML documents the defaults; a drift between the two is a bug (the peer had it).
    assert from_file.training == defaults.training
    assert from_file.lora == defaults.lora
    assert from_file.distillation == defaults.distillation
    assert from_file.data_split == defaults.data_split
    assert [c.name for c in from_file.candidates] == [c.name for c in defaults.candidates]
    assert from_file.models.registry == defaults.models.registry


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, "log_store: {sqlite_path: logs/x.sqlite}\n"))
    assert settings.log_store.sqlite_path == tmp_path / "logs" / "x.sqlite"
    assert settings.job_store.url == f"sqlite:///{tmp_path}/var/jobs.sqlite"


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("lora: {rank: 0}\n", ["lora.rank = 0", "greater than or equal to 1"]),
        ("log_store: {backend: mongo}\n", ["log_store.backend = 'mongo'", "'sqlite', 'opensearch' or 'elasticsearch'"]),
        ("lora: {rnak: 8}\n", ["lora.rnak", "unknown key", "allowed keys here: alpha, dropout, rank, target_modules"]),
        ("trainig: {}\n", ["trainig", "unknown key", "training"]),
        ("log_store: {backend: opensearch}\n", ["log_store.url is required"]),
        ("candidates: [{name: x, model: nope, kind: causal_lm_lora}]\n", ["'nope' is not in models.registry"]),
        ("candidates: [{name: x, model: minilm-l6, kind: causal_lm_lora}]\n", ["needs a causal_lm model"]),
        (
            "candidates: [{name: x, model: minilm-l6, kind: encoder_classifier, training: {learning_rate: -1}}]\n",
            ["candidates[0].training.learning_rate = -1", "greater than 0"],
        ),
        ("workloads: {w: {label_pattern: '(unclosed'}}\n", ["not a valid regex"]),
        ("workloads: {w: {label_pattern: 'no group'}}\n", ["needs one capture group"]),
        ("workloads: {w: {limits: {requests_per_minute: 0}}}\n",
         ["workloads.w.limits.requests_per_minute = 0", "greater than or equal to 1"]),
        ("gateway: {keys: [{name: a, token: t}, {name: a, token: u}]}\n", ["names in keys must be unique", "repeated: a"]),
        # Limits are the gateway's: an API token refuses them rather than ignoring them.
        ("api: {auth: {tokens: [{name: a, token: t, limits: {tokens_per_day: 5}}]}}\n",
         ["api.auth.tokens[0].limits", "unknown key"]),
        ("icl: {min_examples: 5, max_examples: 2}\n", ["icl.min_examples (5) exceeds icl.max_examples (2)"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("lora: {rank: [\n", ["not valid YAML"]),
        ("distillation: {judge_relevance: true}\n", ["distillation.judge_relevance", "evaluation.judge.enabled"]),
    ],
)
def test_invalid_files_fail_with_key_value_and_what_is_allowed(
    tmp_path: Path, yaml_text: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_write(tmp_path, yaml_text))
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, message


def test_env_overrides_win_over_the_file_and_are_named_in_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "lora: {rank: 8, alpha: 16}\n")
    monkeypatch.setenv("FLYWHEEL__LORA__RANK", "64")
    settings = load_settings(path)
    assert (settings.lora.rank, settings.lora.alpha) == (64, 16)
    monkeypatch.setenv("FLYWHEEL__LORA__RANK", "-3")
    with pytest.raises(ConfigError, match=r"lora.rank = '-3' \(from env FLYWHEEL__LORA__RANK\)"):
        load_settings(path)


def test_secrets_are_secret_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLYWHEEL__TEACHER__API_KEY", "sk-very-secret")
    settings = load_settings(_write(tmp_path, "evaluation: {judge: {enabled: true, base_url: http://j, model: m, api_key: hush}}\n"))
    assert settings.teacher.api_key is not None
    assert settings.teacher.api_key.get_secret_value() == "sk-very-secret"
    dumped = str(settings.masked())
    assert "sk-very-secret" not in dumped and "hush" not in dumped
    assert "**********" in dumped


def test_candidate_overrides_merge_over_global_training() -> None:
    settings = Settings()
    smol = next(c for c in settings.candidates if c.name == "smollm2-lora")
    merged = settings.training_for(smol)
    assert merged.max_steps == 50
    assert merged.learning_rate == settings.training.learning_rate


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_flywheel_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "lora: {rank: 4}\n")
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(path))
    assert load_settings().lora.rank == 4


def test_overrides_are_validated_and_limited_to_allowed_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.domain.settings import apply_overrides

    monkeypatch.setenv("FLYWHEEL__DATA_SPLIT__SEED", "9")
    base = Settings()
    updated = apply_overrides(base, {"data_split.eval_size": 50, "icl": {"max_examples": 1}}, allowed=("data_split", "icl"))
    assert (updated.data_split.eval_size, updated.icl.max_examples, updated.data_split.seed) == (50, 1, 9)
    assert base.data_split.eval_size == 200  # the original is untouched
    with pytest.raises(ConfigError, match=r"(?s)override: invalid configuration.*data_split.eval_size = -1"):
        apply_overrides(base, {"data_split.eval_size": -1})
    with pytest.raises(ConfigError, match="override of lora is not allowed here"):
        apply_overrides(base, {"lora.rank": 4}, allowed=("data_split",))
    with pytest.raises(ConfigError, match="data_split.nope: unknown key"):
        apply_overrides(base, {"data_split.nope": 1})


def test_colliding_overrides_are_a_config_error_not_a_crash() -> None:
    """Found by hand while fuzzing the jobs API: a value and a dotted key under it used to raise TypeError."""
    import pytest

    from services.domain.errors import ConfigError
    from services.domain.settings import Settings, apply_overrides

    with pytest.raises(ConfigError, match="conflicts"):
        apply_overrides(Settings(), {"icl": 1, "icl.max_examples": 2})
    with pytest.raises(ConfigError, match="conflicts"):
        apply_overrides(Settings(), {"icl.max_examples": 2, "icl.max_examples.x": 3})


def test_the_commented_limits_example_in_config_yaml_is_valid(tmp_path: Path) -> None:
    """config.yaml documents the gateway's keys and limits as comments: uncommented, they must load."""
    lines, out, in_gateway = (REPO / "config.yaml").read_text(encoding="utf-8").splitlines(), [], False
    for line in lines:
        in_gateway = line.startswith("# gateway:") or (in_gateway and line.startswith("#  "))
        if in_gateway:
            line = line[2:]
        elif line.strip().startswith("# limits:"):
            line = line.replace("# limits:", "limits:", 1)
        out.append(line)
    settings = load_settings(_write(tmp_path, "\n".join(out) + "\n"))
    (key,) = settings.gateway.keys
    assert (key.name, key.limits.requests_per_minute, key.limits.tokens_per_day) == ("desk-7", 600, 2_000_000)
    assert settings.workloads["news_topic"].limits.tokens_per_day is None


def test_gateway_keys_with_limits_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The helm chart hands the keys over as JSON in FLYWHEEL__GATEWAY__KEYS (from a Secret)."""
    monkeypatch.setenv("FLYWHEEL__GATEWAY__KEYS", '[{"name": "desk", "token": "sk-1", "scopes": ["write"], '
                                                  '"limits": {"requests_per_minute": 60}}]')
    settings = load_settings(_write(tmp_path, "gateway: {auth_enabled: true}\n"))
    assert settings.gateway.keys[0].limits.requests_per_minute == 60
    assert settings.gateway.keys[0].limits.tokens_per_day is None
