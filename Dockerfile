# Somo central server image.
#   docker build -t somo .
#   docker run --rm -p 8080:8080 -e SOMO_... somo            # somo serve --host 0.0.0.0 --port 8080
#   docker run --rm -e SOMO_... somo somo migrate             # any other `somo` subcommand

# --- builder: install the project and its dependencies into /opt/venv -----------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
# The whole context, trimmed by .dockerignore (no tests, docs, .git, .venv, var, .env).
# Copying `.` rather than each package keeps the build working while a package dir is empty
# (git does not track empty directories). Nothing from /src reaches the runtime stage.
COPY . .

# Build a wheel, then install it (not editable) so the runtime needs no source tree.
RUN pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && pip install /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels

# --- runtime ----------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 somo \
    && useradd --system --uid 10001 --gid somo --home-dir /app --no-create-home --shell /usr/sbin/nologin somo

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# var/ holds the SQLite file when no SOMO_DATABASE__URL is given (development only).
# /data/edge: an edge node's volume starts owned by somo (docker copies the image's folder).
RUN mkdir -p /app/var /data/edge && chown -R somo:somo /app /data

USER somo

EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

CMD ["somo", "serve", "--host", "0.0.0.0", "--port", "8080"]
