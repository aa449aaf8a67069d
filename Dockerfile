# syntax=docker/dockerfile:1
# Multi-stage image for every service: api (`bilevel serve`), workers (`bilevel worker`),
# migrations (`bilevel migrate`) - the commands the README uses.
#   docker build -t bilevel .                                      # CPU torch
#   docker build -t bilevel:gpu --build-arg TORCH_SPEC="torch==2.13.0" \
#       --build-arg PIP_EXTRA_INDEX_URL=<your CUDA wheel index> .  # GPU workers

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_SPEC="torch==2.13.0"
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# torch first and alone: its layer is cached across source changes
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md* ./
COPY core ./core
COPY cli ./cli
COPY experiments ./experiments
COPY jobs ./jobs
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
RUN pip install . && python -c "import api, worker.runner, migrations"

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 bilevel
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini /app/alembic.ini
COPY migrations /app/migrations
COPY examples /app/examples
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 BILEVEL_STATE_DIR=/data
WORKDIR /app
RUN mkdir -p /data && chown bilevel /data
USER bilevel
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
# with no DATABASE_URL/BROKER_URL this is the embedded mode, state under /data
CMD ["bilevel", "serve", "--host", "0.0.0.0", "--port", "8000"]
