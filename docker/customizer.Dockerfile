# syntax=docker/dockerfile:1
# The customizer image: the Celery worker of the customizer queue (LoRA / full fine-tuning,
# embedding distillation). Two variants from one file:
#
#   docker build -f docker/customizer.Dockerfile -t flywheel-customizer:cuda .                          (GPU nodes)
#   docker build -f docker/customizer.Dockerfile --build-arg TORCH_VARIANT=cpu -t flywheel-customizer:cpu .  (laptops)
#
# cuda: torch==2.13.0 from PyPI, which is the CUDA build and brings the CUDA runtime, cuDNN and
# NCCL as pip wheels (nvidia-*-cu13), so the base stays python-slim: an nvidia/cuda base would
# carry a second copy of those libraries and has no Python 3.11. The host needs only the NVIDIA
# driver (CUDA 13 wheels: driver >= 580) and the NVIDIA Container Toolkit. For older drivers,
# build with TORCH_INDEX_URL set to a PyTorch wheel index of an older CUDA (e.g. .../whl/cu128)
# if one is published for torch 2.13.0.
# No model weights inside: models.cache_dir is a volume (see docker/worker.Dockerfile).

# Pinned by tag (3.11 patch release + Debian release). No digest: none could be looked up offline.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie
# torch: cuda (GPU nodes, the default) or cpu (see the builder).
ARG TORCH_VARIANT=cuda
ARG TORCH_INDEX_URL=""
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu

# Package sources for pip, at build time only (never in an image). This stage is empty: pip then
# uses PyPI, and the CPU images take torch from the PyTorch CPU index. Where those cannot be
# reached, a build replaces it with a directory (`--build-context pip-sources=DIR`, what
# scripts/images.sh does from the host's pip configuration): DIR/pip.conf points pip at the CA
# bundle, find-links and file indexes under DIR, and `--build-arg TORCH_CPU_INDEX_URL=` (empty)
# takes the CPU torch wheel from those sources. See docs/docker.md.
FROM scratch AS pip-sources

# The builder: the same text in gateway, worker and customizer.Dockerfile (tests/deploy/test_docker.py
# keeps it so), so that building one reuses the layers of another with the same TORCH_VARIANT.
# The variables' defaults are the global ARGs above (per image).
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VARIANT
ARG TORCH_INDEX_URL
ARG TORCH_CPU_INDEX_URL
# PIP_CONFIG_FILE: pip ignores it while the pip-sources mount holds no pip.conf (the default).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_CONFIG_FILE=/run/pip-sources/pip.conf
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/ requirements/
# torch first, pinned by the constraints file, as the build TORCH_VARIANT asks for (without it pip
# takes PyPI's torch, the CUDA build); the rest of base.txt then keeps it (torch==2.13.0 is satisfied).
#   cpu:  torch==2.13.0+cpu from TORCH_CPU_INDEX_URL (the PyTorch CPU index), or, when that is
#         empty, from the pip-sources stage;
#   cuda: torch==2.13.0 from PyPI (CUDA 13 runtime, cuDNN and NCCL as pip wheels), or from
#         TORCH_INDEX_URL (a PyTorch index of another CUDA, e.g. .../whl/cu128);
#   none: no model plane at all: base.txt up to its "# model plane" line.
RUN --mount=type=bind,from=pip-sources,target=/run/pip-sources \
    case "$TORCH_VARIANT" in \
      cpu) if [ -n "$TORCH_CPU_INDEX_URL" ]; then \
             pip install -c requirements/constraints.txt \
               --index-url "$TORCH_CPU_INDEX_URL" --extra-index-url https://pypi.org/simple "torch==2.13.0+cpu"; \
           else \
             pip install -c requirements/constraints.txt "torch==2.13.0+cpu"; \
           fi \
           && cp requirements/base.txt /tmp/requirements.txt ;; \
      cuda) if [ -n "$TORCH_INDEX_URL" ]; then \
              pip install -c requirements/constraints.txt \
                --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple "torch==2.13.0"; \
            else \
              pip install -c requirements/constraints.txt "torch==2.13.0"; \
            fi \
            && cp requirements/base.txt /tmp/requirements.txt ;; \
      none) sed '/^# model plane/,$d' requirements/base.txt > /tmp/requirements.txt ;; \
      *) echo "TORCH_VARIANT must be cpu, cuda or none, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac \
    && pip install -c requirements/constraints.txt -r /tmp/requirements.txt
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY services/ services/
# Fails the build when torch is not the build TORCH_VARIANT asks for (no GPU is needed to tell).
RUN --mount=type=bind,from=pip-sources,target=/run/pip-sources \
    pip install --no-deps -c requirements/constraints.txt . \
    && python -c "import importlib.util as u, sys; \
torch = u.find_spec('torch') and __import__('torch'); \
got = 'none' if not torch else 'cuda' if torch.version.cuda else 'cpu'; \
sys.exit(0 if got == '$TORCH_VARIANT' else f'TORCH_VARIANT=$TORCH_VARIANT, but torch is {torch and torch.__version__}')"

FROM ${PYTHON_IMAGE}
# Up to the virtualenv, the same steps as the other CPU images' runtime stage, so that they share
# these layers (the venv is 2 GB): what differs comes after.
RUN groupadd --system --gid 10001 flywheel \
    && useradd --system --uid 10001 --gid flywheel --create-home --home-dir /home/flywheel \
        --shell /usr/sbin/nologin flywheel \
    && mkdir -p /etc/flywheel /var/lib/flywheel/artifacts /var/lib/flywheel/models /var/lib/flywheel/state \
    && chown -R flywheel:flywheel /var/lib/flywheel
COPY --from=builder /opt/venv /opt/venv
ARG TORCH_VARIANT
LABEL org.opencontainers.image.title="flywheel-customizer" \
      org.opencontainers.image.description="Data flywheel customizer worker (training; CUDA or CPU variant)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.flywheel.torch-variant="${TORCH_VARIANT}"
COPY docker/healthcheck.py /usr/local/lib/flywheel/
# NVIDIA_*: read by the NVIDIA Container Toolkit, which mounts the host's driver (ignored on CPU).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLYWHEEL_CONFIG=/etc/flywheel/config.yaml \
    HF_HOME=/var/lib/flywheel/models/huggingface \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
USER 10001:10001
# A Celery control ping; the prefork pool answers it while a child process trains.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/flywheel/healthcheck.py", "worker"]
ENTRYPOINT ["flywheel"]
# One task at a time per container: bound GPU work by worker concurrency (one per GPU).
CMD ["worker", "customizer", "--concurrency", "1"]
