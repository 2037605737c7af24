# qmigrate with every source's extra. Two stages: the builder makes the wheel (build tools
# stay there); the final slim image installs qmigrate[all] from it and runs as a non-root user.
#   docker build -t qmigrate .
#   docker run --rm -v "$PWD:/work" -e QDRANT_URL -e QDRANT_API_KEY qmigrate plan jobs/

FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runner ./runner
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=builder /dist /tmp/dist
# One layer: the wheel is removed in the same step, so it does not weigh on the image.
# DL3013 (pin versions): the package is this build's own wheel; its dependencies' ranges
# are pyproject.toml's.
# hadolint ignore=DL3013
RUN wheel="$(ls /tmp/dist/qmigrate-*.whl)" \
    && pip install --no-cache-dir "${wheel}[all]" \
    && rm -rf /tmp/dist \
    && useradd --create-home --uid 10001 qmigrate
USER 10001
WORKDIR /work
# The smoke test: the build fails if the installed CLI cannot start. No HEALTHCHECK: the
# container runs one command and exits; there is no long-running service to probe.
RUN qmigrate --version
ENTRYPOINT ["qmigrate"]
CMD ["--help"]
