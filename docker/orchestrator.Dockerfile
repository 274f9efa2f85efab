# syntax=docker/dockerfile:1
# The orchestrator image: the REST API (`flywheel serve api`, the default command) and the one
# Celery beat (`flywheel beat`): same image, another command. In docker/compose.yaml it also runs
# the MLflow tracking server (`mlflow server`), which ships with the same pinned mlflow.
#
#   docker build -f docker/orchestrator.Dockerfile -t flywheel-orchestrator .   (from the repository root)
#
# No torch: the API and beat never import it (tests/unit/test_architecture.py; checked again
# below), so the model plane of requirements/base.txt (everything after its "# model plane"
# line) is left out. That keeps this image about 2 GB smaller than the workers'.

# Pinned by tag (3.11 patch release + Debian release). No digest: none could be looked up offline.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# Package sources for pip, at build time only (never in an image). This stage is empty: pip then
# uses PyPI, and the CPU images take torch from the PyTorch CPU index. Where those cannot be
# reached, a build replaces it with a directory (`--build-context pip-sources=DIR`, what
# scripts/images.sh does from the host's pip configuration): DIR/pip.conf points pip at the CA
# bundle, find-links and file indexes under DIR, and `--build-arg TORCH_CPU_INDEX_URL=` (empty)
# takes the CPU torch wheel from those sources. See docs/docker.md.
FROM scratch AS pip-sources

FROM ${PYTHON_IMAGE} AS builder
# PIP_CONFIG_FILE: pip ignores it while the pip-sources mount holds no pip.conf (the default).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_CONFIG_FILE=/run/pip-sources/pip.conf
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/ requirements/
# The control plane's requirements: base.txt up to its "# model plane" line.
RUN --mount=type=bind,from=pip-sources,target=/run/pip-sources \
    sed '/^# model plane/,$d' requirements/base.txt > /tmp/control-plane.txt \
    && pip install -c requirements/constraints.txt -r /tmp/control-plane.txt
COPY pyproject.toml README.md ./
COPY orchestrator/ orchestrator/
COPY services/ services/
# Fails the build if anything pulled torch in after all.
RUN --mount=type=bind,from=pip-sources,target=/run/pip-sources \
    pip install --no-deps -c requirements/constraints.txt . \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="flywheel-orchestrator" \
      org.opencontainers.image.description="Data flywheel REST API and Celery beat (no torch)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 flywheel \
    && useradd --system --uid 10001 --gid flywheel --create-home --home-dir /home/flywheel \
        --shell /usr/sbin/nologin flywheel \
    && mkdir -p /etc/flywheel /var/lib/flywheel/artifacts /var/lib/flywheel/models /var/lib/flywheel/state \
        /var/lib/flywheel/mlflow \
    && chown -R flywheel:flywheel /var/lib/flywheel
COPY --from=builder /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/lib/flywheel/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLYWHEEL_CONFIG=/etc/flywheel/config.yaml
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# GET /api/health on api.port (8000). Beat serves no HTTP: compose gives it its own check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/flywheel/healthcheck.py", "api"]
ENTRYPOINT ["flywheel"]
CMD ["serve", "api"]
