"""Loading `config.yaml` (plus the environment), per-request overrides, and readable validation errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from services.domain.errors import ConfigError
from services.domain.settings.root import ENV_PREFIX, Settings

CONFIG_ENV_VAR = "FLYWHEEL_CONFIG"
DEFAULT_CONFIG_PATH = Path("config.yaml")


def apply_overrides(settings: Settings, overrides: dict[str, Any], *, allowed: tuple[str, ...] | None = None) -> Settings:
    """A new Settings with `overrides` (nested dict or dotted keys) merged in and validated.

    Used for per-request overrides (CLI --set, the jobs API). `allowed` limits which top-level
    sections may change; errors name the key as `override <key>`.
    """
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        node = nested
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with the override of {part!r} (a value, not a section)")
        if isinstance(node.get(last), dict) and not isinstance(value, dict):
            raise ConfigError(f"override {key!r} conflicts with overrides inside it ({last}.*)")
        node[last] = value
    if allowed is not None:
        refused = sorted(set(nested) - set(allowed))
        if refused:
            raise ConfigError(f"override of {', '.join(refused)} is not allowed here; allowed sections: {', '.join(allowed)}")
    merged = _deep_merge(settings.model_dump(exclude_unset=True), nested)  # unset stays unset (eval_count)
    try:
        updated = Settings.model_validate(merged)  # no __init__: the environment is not applied twice
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source="override")) from None
    _resolve_paths(updated, Path.cwd())
    return updated


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, else $FLYWHEEL_CONFIG, else ./config.yaml."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> Settings:
    """Load and validate the configuration; raise ConfigError with actionable messages.

    A missing file is an error only when `required` (or when named explicitly); otherwise the
    defaults plus environment apply, which is what the embedded demo needs.
    """
    file = config_path(path)
    explicit = path is not None or CONFIG_ENV_VAR in os.environ
    data: dict[str, Any] = {}
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    elif required or explicit:
        raise ConfigError(f"config file {file} does not exist (set --config or {CONFIG_ENV_VAR})")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=str(file))) from None
    _resolve_paths(settings, (file.parent if file.exists() else Path.cwd()).resolve())
    return settings


def format_validation_error(exc: ValidationError, *, source: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem: where, the value, and what is allowed (keys of `model`, default Settings,
    at the problem's place)."""
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s))"]
    for error in exc.errors(include_url=False):
        loc = _dotted(error["loc"])
        env_name = ENV_PREFIX + "__".join(str(p).upper() for p in error["loc"] if not isinstance(p, int))
        origin = f" (from env {env_name})" if env_name in os.environ else ""
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model or Settings, error["loc"][:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {loc}{origin}: unknown key{hint}")
            continue
        value = error.get("input")
        shown = "" if error["type"] in {"missing", "value_error"} else f" = {_short(value)}"
        msg = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '<top level>'}{shown}{origin}: {msg}")
    return "\n".join(lines)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "function-before")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = _inner_model(field.annotation) if field else None
        else:
            current = None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _resolve_paths(model: BaseModel, base: Path) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(model, name, base / value)
        elif isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)
    # SQLite URLs with relative paths are resolved the same way.
    for name in ("url", "tracking_uri"):
        value = getattr(model, name, None)
        if isinstance(value, str) and value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            object.__setattr__(model, name, "sqlite:///" + str(base / value.removeprefix("sqlite:///")))
