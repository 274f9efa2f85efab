# syntax=docker/dockerfile:1
# The gateway image: the OpenAI-compatible gateway (`flywheel serve gateway`). With
# deployment.backend=local it serves promoted students in-process, so it carries torch on CPU;
# build with `--build-arg MODEL_PLANE=none` for a torch-free gateway when students run elsewhere
# (deployment.backend openai or kubernetes).
#
#   docker build -f docker/gateway.Dockerfile -t flywheel-gateway .   (from the repository root)
#
# No model weights inside: models.cache_dir is a volume (see docker/worker.Dockerfile).

# Pinned by tag (3.11 patch release + Debian release). No digest: none could be looked up offline.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ARG MODEL_PLANE=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/ requirements/
# cpu: torch first as the CPU build (else pip takes PyPI's CUDA build), then all of base.txt.
# none: base.txt up to its "# model plane" line, as in the orchestrator image.
RUN case "$MODEL_PLANE" in \
      cpu) pip install -c requirements/constraints.txt \
             --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
             "torch==2.13.0+cpu" \
           && cp requirements/base.txt /tmp/gateway.txt ;; \
      none) sed '/^# model plane/,$d' requirements/base.txt > /tmp/gateway.txt ;; \
      *) echo "MODEL_PLANE must be cpu or none, not '$MODEL_PLANE'" >&2; exit 1 ;; \
    esac \
    && pip install -c requirements/constraints.txt -r /tmp/gateway.txt
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY services/ services/
RUN pip install --no-deps -c requirements/constraints.txt .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flywheel-gateway" \
      org.opencontainers.image.description="Data flywheel OpenAI-compatible gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 flywheel \
    && useradd --system --uid 10001 --gid flywheel --create-home --home-dir /home/flywheel \
        --shell /usr/sbin/nologin flywheel \
    && mkdir -p /etc/flywheel /var/lib/flywheel/artifacts /var/lib/flywheel/models /var/lib/flywheel/state \
    && chown -R flywheel:flywheel /var/lib/flywheel
COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/lib/flywheel/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLYWHEEL_CONFIG=/etc/flywheel/config.yaml \
    HF_HOME=/var/lib/flywheel/models/huggingface
WORKDIR /app
USER 10001:10001
EXPOSE 8001
# GET /health on gateway.port (8001).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/flywheel/healthcheck.py", "gateway"]
ENTRYPOINT ["flywheel"]
CMD ["serve", "gateway"]
