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

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_VARIANT=cuda
ARG TORCH_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/ requirements/
# torch first, pinned by the constraints file, as the build the variant asks for; the rest of
# base.txt then keeps it (torch==2.13.0 is already satisfied).
RUN case "$TORCH_VARIANT" in \
      cpu) pip install -c requirements/constraints.txt \
             --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
             "torch==2.13.0+cpu" ;; \
      cuda) if [ -n "$TORCH_INDEX_URL" ]; then \
              pip install -c requirements/constraints.txt \
                --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple "torch==2.13.0"; \
            else \
              pip install -c requirements/constraints.txt "torch==2.13.0"; \
            fi ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac \
    && pip install -c requirements/constraints.txt -r requirements/base.txt
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY services/ services/
# Fails the build when the torch build does not match the variant (no GPU is needed to tell).
RUN pip install --no-deps -c requirements/constraints.txt . \
    && python -c "import sys, torch; sys.exit((torch.version.cuda is not None) != ('$TORCH_VARIANT' == 'cuda'))"

FROM ${PYTHON_IMAGE}
ARG TORCH_VARIANT=cuda
LABEL org.opencontainers.image.title="flywheel-customizer" \
      org.opencontainers.image.description="Data flywheel customizer worker (training; CUDA or CPU variant)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.flywheel.torch-variant="${TORCH_VARIANT}"
RUN groupadd --system --gid 10001 flywheel \
    && useradd --system --uid 10001 --gid flywheel --create-home --home-dir /home/flywheel \
        --shell /usr/sbin/nologin flywheel \
    && mkdir -p /etc/flywheel /var/lib/flywheel/artifacts /var/lib/flywheel/models /var/lib/flywheel/state \
    && chown -R flywheel:flywheel /var/lib/flywheel
COPY --from=builder /opt/venv /opt/venv
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
