# One image for every storelens process: API, ingest worker, edge agent, provisioning.
# The command picks the role (see docker-compose.yml).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STORELENS_CACHE=/var/cache/storelens

# libglib2.0-0 and libgomp1: runtime libraries of opencv-python-headless and onnxruntime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libglib2.0-0 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY storelens ./storelens
COPY edge ./edge
COPY cloud ./cloud
COPY models ./models
COPY tools ./tools
RUN pip install ".[edge,cloud]"

# Unprivileged at run time; volumes the processes write to are made writable for it.
RUN useradd --system --uid 10001 --home /var/lib/storelens storelens \
 && mkdir -p /var/lib/storelens /var/cache/storelens \
 && chown storelens /var/lib/storelens /var/cache/storelens
USER storelens
WORKDIR /var/lib/storelens

ENTRYPOINT ["storelens"]
CMD ["--help"]
