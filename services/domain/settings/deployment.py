"""Where promoted students run (local, an OpenAI-compatible server, vLLM on Kubernetes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from services.domain.settings._section import _Section


class DeploymentSettings(_Section):
    backend: Literal["local", "openai", "kubernetes"] = Field(
        "local", description="Where promoted students run: local (in the gateway process), an OpenAI-compatible "
                             "server (vLLM, NIM) at base_url, or vLLM Deployments the deployment manager creates.")
    namespace: str = Field("flywheel", description="Kubernetes namespace of the vLLM Deployments (backend=kubernetes).")
    vllm_image: str = Field("vllm/vllm-openai:v0.8.5", description="vLLM image (backend=kubernetes).")
    replicas: int = Field(1, ge=1, le=100, description="Replicas per base model (backend=kubernetes).")
    gpus_per_replica: int = Field(1, ge=0, le=16)
    artifacts_pvc: str = Field("flywheel-artifacts", description="PVC holding artifacts.root, mounted read-only.")
    artifacts_mount: str = Field("/artifacts", description="Where that PVC is mounted in the vLLM pods.")
    ready_timeout_s: float = Field(900.0, gt=0, description="How long a new vLLM rollout may take to become ready.")
    base_url: str | None = Field(None, description="OpenAI-compatible URL of the student server (backend=openai).")
    api_key: SecretStr | None = None
    timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of a student call (then the teacher answers).")
