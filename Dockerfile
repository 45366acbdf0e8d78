# syntax=docker/dockerfile:1
# Multi-stage: wheels are built in a throwaway stage, the runtime image carries no compiler.
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY models ./models
COPY migrations ./migrations
COPY frontend ./frontend
# TORCH_INDEX selects the torch build: the CPU index by default; a GPU worker image passes the CUDA one.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN python -m pip wheel --wheel-dir /wheels --extra-index-url "${TORCH_INDEX}" torch==2.13.0 . \
    && python -m pip wheel --wheel-dir /wheels --no-deps .

FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SUGGESTLAB_DATA_DIR=/data
RUN groupadd --system --gid 10001 suggestlab \
    && useradd --system --uid 10001 --gid suggestlab --home-dir /home/suggestlab --create-home suggestlab \
    && mkdir -p /data && chown suggestlab:suggestlab /data
COPY --from=build /wheels /wheels
RUN python -m pip install --no-index --find-links /wheels suggestlab==0.1.0 && rm -rf /wheels
USER 10001:10001
WORKDIR /home/suggestlab
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["suggestlab", "serve", "--host", "0.0.0.0", "--port", "8000"]
