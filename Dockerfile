# The lineage worker: docker build -t privacy-lineage . && docker run privacy-lineage worker --help

# The wheel, its judging core compiled by mypyc (setup.py) with the compiler this stage has.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY lineage ./lineage
COPY streams ./streams
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# The wheel file itself, not the name: a package of that name on the index must not win.
RUN pip install --no-cache-dir "$(echo /wheels/privacy_lineage-*.whl)[worker]" \
 && rm -rf /wheels \
 && useradd --system --create-home --home-dir /var/lib/lineage lineage
USER lineage
WORKDIR /var/lib/lineage
# The state folder: mount a volume at /var/lib/lineage, one per worker, to keep it across
# restarts (with LINEAGE_STORE=rocksdb:// the tables live there; docker-compose.yml does).
ENV LINEAGE_STATE_DIR=/var/lib/lineage/state
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=4)"
ENTRYPOINT ["lineage"]
CMD ["worker"]
