"""Typed records of trained students: what was trained, on what, how, and how it went.

A `StudentArtifact` is written next to the weights (adapter or model directory) as
`flywheel-artifact.json`; everything downstream (evaluator, deployment, the API's lineage for
client erasure) reads it instead of guessing from file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.domain.layout import ArtifactLayout
from services.domain.students import StudentKind, registered_kind

ARTIFACT_MANIFEST = "flywheel-artifact.json"
__all__ = ["ARTIFACT_MANIFEST", "StudentArtifact", "StudentKind", "TrainingProgress", "find_artifacts", "load_artifact"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingProgress(_Record):
    """One progress report of a running training (logged and sent to the orchestrator's callback)."""

    candidate: str
    step: int = Field(ge=0, description="Optimizer steps done.")
    max_steps: int = Field(ge=0, description="Optimizer steps planned.")
    epoch: float = Field(ge=0)
    loss: float | None = Field(None, description="Mean training loss since the last report.")
    val_loss: float | None = Field(None, description="Latest validation loss, if evaluated.")
    examples_per_s: float = Field(ge=0)
    elapsed_s: float = Field(ge=0)
    eta_s: float | None = Field(None, ge=0, description="Estimated seconds left.")

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


class StudentArtifact(_Record):
    """A trained student: versioned, content-addressed, with its lineage."""

    artifact_id: str = Field(description="sha256 over the artifact's files (names and contents).")
    candidate: str = Field(description="Candidate name from config.")
    kind: Annotated[str, AfterValidator(registered_kind)] = Field(description="A registered student kind.")
    base_model: str = Field(description="Registry name of the base model.")
    base_model_sha256: str | None = Field(None, description="sha256 over the base model's cached files.")
    dataset_id: str
    dataset_hashes: dict[str, str] = Field(description="Split name -> sha256 of the split blob trained on.")
    workload_id: str
    client_id: str | None = None
    workload_type: str
    labels: list[str] | None = Field(None, description="Classifier label set, in head order.")
    answer_template: str | None = Field(
        None, description="How the teacher formats a label answer, e.g. '[[[{label}]]]' (classifiers)."
    )
    static_prompt: dict[str, Any] | None = Field(
        None, description="The static prompt part (services.domain.prompts.StaticPrompt) this student was trained "
                          "without: the gateway strips exactly it and sends other prompts to the teacher.")
    prompt_tag: str | None = Field(None, description="What replaced the static system prompt (pruned students).")
    hyperparameters: dict[str, Any] = Field(description="Training and LoRA settings actually used.")
    metrics: dict[str, Any] = Field(description="Training metrics: losses, steps, examples/s, peak memory.")
    code_version: str = Field(description="Platform version (git commit when known).")
    files: dict[str, str] = Field(description="Relative path -> sha256 of every file of the artifact.")
    size_bytes: int = Field(ge=0, description="Bytes of the artifact's own files (adapter only for LoRA).")
    path: str = Field(description="Directory holding the artifact.")
    created_at: float


def load_artifact(directory: Path) -> StudentArtifact:
    """Read an artifact's manifest (raises FileNotFoundError if the directory holds none)."""
    return StudentArtifact.model_validate_json((directory / ARTIFACT_MANIFEST).read_text("utf-8"))


def find_artifacts(root: Path, *, candidate: str | None = None, dataset_id: str | None = None) -> list[StudentArtifact]:
    """Finished artifacts under the artifacts root `root`, newest first, filtered by candidate and dataset."""
    pattern = f"{candidate or '*'}/*/{ARTIFACT_MANIFEST}"
    found = [StudentArtifact.model_validate_json(p.read_text("utf-8"))
             for p in ArtifactLayout(root).students.glob(pattern)]
    if dataset_id is not None:
        found = [a for a in found if a.dataset_id.startswith(dataset_id)]
    return sorted(found, key=lambda a: a.created_at, reverse=True)
