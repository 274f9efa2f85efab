# syntax=docker/dockerfile:1
# The worker image: Celery workers for the datastore, evaluator, deployment and orchestrator
# queues, on CPU (the customizer has its own image: docker/customizer.Dockerfile).
# They need torch on CPU: datasets tokenize, evaluations run the students, semantic ICL embeds.
#
#   docker build -f docker/worker.Dockerfile -t flywheel-worker .     (from the repository root)
#
# No model weights inside: models.cache_dir is a volume, filled by `flywheel-fetch-models`
# (docker/fetch-models.sh) or, on a cluster, by `flywheel models fetch` from a hub or a path.

# Pinned by tag (3.11 patch release + Debian release). No digest: none could be looked up offline.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/ requirements/
# torch first, as the CPU build and pinned by the same constraints file as scripts/setup.sh:
# without it pip takes torch from PyPI, a CUDA build several GB larger.
RUN pip install -c requirements/constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        "torch==2.13.0+cpu" \
    && pip install -c requirements/constraints.txt -r requirements/base.txt
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY services/ services/
RUN pip install --no-deps -c requirements/constraints.txt . \
    && python -c "import torch, sys; sys.exit(torch.version.cuda is not None)"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flywheel-worker" \
      org.opencontainers.image.description="Data flywheel Celery workers (datastore, evaluator, deployment, orchestrator queues; CPU)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 flywheel \
    && useradd --system --uid 10001 --gid flywheel --create-home --home-dir /home/flywheel \
        --shell /usr/sbin/nologin flywheel \
    && mkdir -p /etc/flywheel /var/lib/flywheel/artifacts /var/lib/flywheel/models /var/lib/flywheel/state \
    && chown -R flywheel:flywheel /var/lib/flywheel
COPY --from=builder /opt/venv /opt/venv
# requirements/ travels along for docker/fetch-models.sh (models.txt and the constraints).
COPY requirements/ /app/requirements/
COPY docker/healthcheck.py docker/fetch-models.sh /usr/local/lib/flywheel/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLYWHEEL_CONFIG=/etc/flywheel/config.yaml \
    HF_HOME=/var/lib/flywheel/models/huggingface
WORKDIR /app
USER 10001:10001
# The worker answers a Celery control ping (its node name is celery@<container hostname>).
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/flywheel/healthcheck.py", "worker"]
ENTRYPOINT ["flywheel"]
CMD ["worker", "datastore", "evaluator", "deployment", "orchestrator"]
