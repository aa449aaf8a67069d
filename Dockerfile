# syntax=docker/dockerfile:1
# One Dockerfile, one image per role: `api` (`bilevel serve`, `bilevel migrate`: no torch),
# `worker` (`bilevel worker`: torch), and `runtime`, the all-in-one default whose CMD is the
# embedded mode (API and in-process executor in one container).
#   docker build --target api -t bilevel-api .
#   docker build --target worker -t bilevel-worker .                  # CPU torch
#   docker build --target worker -t bilevel-worker:gpu --build-arg TORCH_SPEC="torch==2.13.0" \
#       --build-arg PIP_EXTRA_INDEX_URL=<your CUDA wheel index> .     # GPU workers
#   docker build -t bilevel .                                         # all-in-one (runtime)
# Problem plugins (trusted packages adding `problem.kind`s, entry-point group bilevel.problems)
# go into the API's image and the workers' alike: PLUGINS is a pip argument list, e.g.
#   docker build --target api --build-arg PLUGINS="./examples/plugins/bilevel_digits_mlp" .
#   docker build --target worker --build-arg PLUGINS="./examples/plugins/bilevel_digits_mlp" .
# (a directory under examples/plugins/ of this context, or a requirement such as
# "acme-bilevel-models==1.4" from PIP_EXTRA_INDEX_URL).

ARG PYTHON_IMAGE=python:3.11-slim
ARG PLUGINS=""

# -- build stages: one virtual environment per role under /opt/venv ------------------------
FROM ${PYTHON_IMAGE} AS venv
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

FROM venv AS build-api
COPY pyproject.toml README.md* ./
COPY core ./core
COPY cli ./cli
COPY experiments ./experiments
COPY jobs ./jobs
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
COPY examples/plugins ./examples/plugins
ARG PLUGINS
# the API's image must start without torch, its plugins' options modules loaded (importing
# jobs.spec discovers them): the import check fails the build if torch comes back
RUN pip install ".[api]" ${PLUGINS} \
    && python -c "import sys, api, cli.main, migrations, jobs.spec; assert 'torch' not in sys.modules" \
    && ! python -c "import torch" 2>/dev/null

FROM venv AS build-worker
ARG TORCH_SPEC="torch==2.13.0"
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
COPY examples/plugins ./examples/plugins
ARG PLUGINS
RUN pip install ".[worker]" ${PLUGINS} && python -c "import worker.runner, migrations"

FROM build-worker AS build-all
RUN pip install ".[api,worker]" && python -c "import api, worker.runner, migrations"

# -- runtime stages ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
RUN useradd --create-home --uid 10001 bilevel
COPY alembic.ini /app/alembic.ini
COPY migrations /app/migrations
COPY examples /app/examples
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 BILEVEL_STATE_DIR=/data
WORKDIR /app
RUN mkdir -p /data && chown bilevel /data
USER bilevel

FROM base AS worker
COPY --from=build-worker /opt/venv /opt/venv
CMD ["bilevel", "worker"]

FROM base AS api
COPY --from=build-api /opt/venv /opt/venv
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["bilevel", "serve", "--host", "0.0.0.0", "--port", "8000"]

# the default target (last): with no DATABASE_URL/BROKER_URL this is the embedded mode,
# state under /data
FROM base AS runtime
COPY --from=build-all /opt/venv /opt/venv
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["bilevel", "serve", "--host", "0.0.0.0", "--port", "8000"]
