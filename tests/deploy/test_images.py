"""What is inside the built images, from the file listings `make images` writes (var/images/).

scripts/images.sh lists every file of each image it builds (`<name>.files.tsv`: path, size, uid,
gid, mode, type) and saves its config (`<name>.config.json`), then runs this module on them. Checked
here: no model weights, secrets, caches or build leftovers; the non-root user owns the volumes;
torch only where it belongs, and the CPU build there. The same checks also run on made-up
listings, so each one is shown to catch what it looks for. Without listings (no `make images`
yet) the image tests skip, unless FLYWHEEL_IMAGE_REPORTS_REQUIRED=1 (what images.sh sets).
The images' behaviour (torch import, the user a process runs as) is checked by the smoke run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.dockerfiles import IMAGES, exec_form, final, read_dockerfile

REPO = Path(__file__).resolve().parents[2]
REPORTS = Path(os.environ.get("FLYWHEEL_IMAGE_REPORTS", REPO / "var" / "images"))
REQUIRED = os.environ.get("FLYWHEEL_IMAGE_REPORTS_REQUIRED") == "1"
SITE = "opt/venv/lib/python3.11/site-packages"
CPU_TORCH = "torch-2.13.0+cpu.dist-info"
WEIGHT_SUFFIXES = (".safetensors", ".gguf")
# Weights too when large; small ones are something else (a site-packages .pth is a path file).
LARGE_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack", ".bin")
SECRET_NAMES = {".env", "pip.conf", ".netrc", ".pypirc", "id_rsa", "id_ed25519", ".git-credentials", "credentials"}
SECRET_ENV = re.compile(r"(?i)(token|password|secret|api_?key|pip_config_file|pip_cert)")
VOLUMES = ("var/lib/flywheel/artifacts", "var/lib/flywheel/models", "var/lib/flywheel/state")


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    uid: int
    gid: int
    mode: str
    kind: str  # find's %y: f file, d directory, l link


def parse_listing(text: str) -> dict[str, Entry]:
    entries = {}
    for line in text.splitlines():
        path, size, uid, gid, mode, kind = line.split("\t")
        entries[path] = Entry(path, int(size), int(uid), int(gid), mode, kind)
    return entries


def problems(name: str, files: dict[str, Entry], config: dict[str, Any]) -> list[str]:
    """Everything wrong with image `name`, given its files and its config (empty list: clean)."""
    found: list[str] = []
    paths = list(files)

    # non-root, and the volumes' mount points writable by that user
    if config.get("User") != "10001:10001":
        found.append(f"runs as {config.get('User')!r}, not 10001:10001")
    for volume in VOLUMES:
        entry = files.get(volume)
        if entry is None or entry.kind != "d" or entry.uid != 10001:
            found.append(f"{volume} is missing or not owned by uid 10001")

    # no model weights, anywhere (models.cache_dir is a volume)
    weights = [p for p, e in files.items() if e.kind == "f" and (
        p.endswith(WEIGHT_SUFFIXES) or (p.endswith(LARGE_WEIGHT_SUFFIXES) and e.size > 1 << 20))]
    weights += [p for p in paths if "/models--" in f"/{p}" or (p.startswith("var/lib/flywheel/models/"))]
    found += [f"model weights: {p}" for p in weights]

    # no secrets: credential files, the build's pip configuration, secrets in the environment
    found += [f"secret or build credential: {p}" for p, e in files.items()
              if (e.kind == "f" and p.rsplit("/", 1)[-1] in SECRET_NAMES) or p.startswith("run/pip-sources")]
    found += [f"secret-like variable in the image's environment: {e.split('=')[0]}"
              for e in config.get("Env") or [] if SECRET_ENV.search(e.split("=")[0])]

    # no caches or build leftovers
    found += [f"cache: {p}" for p in paths if re.search(r"(^|/)\.cache(/|$)", p) or "/pip/cache" in p
              or p.startswith(("var/cache/apt/archives/", "var/lib/apt/lists/")) and p.endswith((".deb", "Packages"))]
    found += [f"build leftover: {p}" for p in paths
              if p.split("/")[0] in ("src", "tests", "data", ".git") or re.match(r"tmp/.", p)
              or (p.startswith(("app/", "usr/local/lib/flywheel/")) and "__pycache__" in p)]

    # torch where it belongs, as the CPU build; none in the orchestrator
    torch_files = [p for p in paths if p.startswith(f"{SITE}/torch/") or re.match(rf"{SITE}/torch-.*\.dist-info$", p)]
    cuda = [p for p in paths if p.startswith(f"{SITE}/nvidia/") or re.search(r"/lib(cudart|cudnn|cublas|nccl)[^/]*\.so", p)]
    if name == "orchestrator":
        found += [f"torch in the control plane: {p}" for p in torch_files[:3]]
    else:
        if f"{SITE}/{CPU_TORCH}" not in files:
            found.append(f"no {CPU_TORCH} (torch is missing or not the CPU build: "
                         f"{[p for p in torch_files if p.endswith('.dist-info')]})")
        found += [f"CUDA libraries in a CPU image: {p}" for p in cuda[:3]]
    return found


def dockerfile_config(name: str) -> dict[str, Any]:
    """What the Dockerfile's final stage says the image's config is."""
    instructions = read_dockerfile(REPO / "docker" / f"{name}.Dockerfile")
    return {"Entrypoint": exec_form(final(instructions, "ENTRYPOINT").value),  # type: ignore[union-attr]
            "Cmd": exec_form(final(instructions, "CMD").value),  # type: ignore[union-attr]
            "WorkingDir": final(instructions, "WORKDIR").value}  # type: ignore[union-attr]


# --- the checks, on made-up listings ------------------------------------------------------------------

def _clean(name: str) -> tuple[dict[str, Entry], dict[str, Any]]:
    lines = [f"{v}\t4096\t10001\t10001\t755\td" for v in VOLUMES]
    lines += [f"{SITE}/fastapi/__init__.py\t100\t0\t0\t644\tf"]
    if name != "orchestrator":
        lines += [f"{SITE}/torch/__init__.py\t100\t0\t0\t644\tf", f"{SITE}/{CPU_TORCH}\t4096\t0\t0\t755\td"]
    return parse_listing("\n".join(lines)), {"User": "10001:10001", "Env": ["PATH=/opt/venv/bin:/usr/bin"]}


@pytest.mark.parametrize("name", IMAGES)
def test_a_clean_made_up_image_passes(name: str) -> None:
    assert problems(name, *_clean(name)) == []


@pytest.mark.parametrize(("added", "expected"), [
    ("var/lib/flywheel/models/minilm-l6/model.safetensors\t90000000\t10001\t10001\t644\tf", "model weights"),
    ("home/flywheel/.cache/huggingface/hub/models--x--y/blobs/abc\t10\t10001\t10001\t644\tf", "model weights"),
    ("opt/venv/lib/python3.11/site-packages/x/pytorch_model.bin\t5000000\t0\t0\t644\tf", "model weights"),
    ("root/.cache/pip/http/x\t10\t0\t0\t644\tf", "cache"),
    ("run/pip-sources/pip.conf\t0\t0\t0\t644\tf", "secret or build credential"),
    ("app/.env\t10\t0\t0\t644\tf", "secret or build credential"),
    ("src/pyproject.toml\t10\t0\t0\t644\tf", "build leftover"),
    ("tmp/pip-build-xyz\t4096\t0\t0\t755\td", "build leftover"),
])
def test_the_checks_catch_what_they_look_for(added: str, expected: str) -> None:
    files, config = _clean("worker")
    files.update(parse_listing(added))
    assert any(p.startswith(expected) for p in problems("worker", files, config)), added


def test_the_checks_catch_root_torch_in_the_control_plane_and_cuda() -> None:
    files, config = _clean("worker")
    config = {**config, "User": "", "Env": ["FLYWHEEL__TEACHER__API_KEY=sk-1"]}
    files.pop("var/lib/flywheel/state")
    found = problems("worker", files, config)
    assert any("runs as ''" in p for p in found) and any("var/lib/flywheel/state" in p for p in found)
    assert any("FLYWHEEL__TEACHER__API_KEY" in p for p in found)

    files, config = _clean("orchestrator")
    files.update(parse_listing(f"{SITE}/torch/__init__.py\t100\t0\t0\t644\tf"))
    assert any(p.startswith("torch in the control plane") for p in problems("orchestrator", files, config))

    files, config = _clean("customizer")
    files.pop(f"{SITE}/{CPU_TORCH}")
    files.update(parse_listing(f"{SITE}/torch-2.13.0.dist-info\t4096\t0\t0\t755\td\n"
                               f"{SITE}/nvidia/cu13/lib/libcudart.so.13\t700000\t0\t0\t644\tf"))
    found = problems("customizer", files, config)
    assert any(CPU_TORCH in p for p in found) and any(p.startswith("CUDA libraries") for p in found)


# --- the checks, on the images `make images` built -------------------------------------------------------

def _reports(name: str) -> tuple[dict[str, Entry], dict[str, Any]]:
    listing, config = REPORTS / f"{name}.files.tsv", REPORTS / f"{name}.config.json"
    if not listing.exists() or not config.exists():
        message = f"no listing of the {name} image in {REPORTS}: `make images` builds the images and writes it"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return parse_listing(listing.read_text(encoding="utf-8")), json.loads(config.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", IMAGES)
def test_the_built_image_is_clean(name: str) -> None:
    files, config = _reports(name)
    assert len(files) > 1000, f"{name}: the listing holds {len(files)} entries: not a whole image"
    found = problems(name, files, config)
    assert not found, f"{name}:\n  " + "\n  ".join(found[:30])


@pytest.mark.parametrize("name", IMAGES)
def test_the_built_image_has_the_dockerfiles_command_and_files(name: str) -> None:
    files, config = _reports(name)
    expected = dockerfile_config(name)
    assert {k: config.get(k) for k in expected} == expected
    assert "FLYWHEEL_CONFIG=/etc/flywheel/config.yaml" in config["Env"]
    assert "usr/local/lib/flywheel/healthcheck.py" in files
    assert f"{SITE}/orchestrator/cli/main.py" in files and f"{SITE}/services/domain/settings/__init__.py" in files
    if name == "worker":  # docker/fetch-models.sh and what it reads
        assert {"usr/local/lib/flywheel/fetch-models.sh", "app/requirements/models.txt",
                "app/requirements/constraints.txt"} <= set(files)
    if name == "customizer":
        assert config["Labels"]["io.flywheel.torch-variant"] == "cpu"
