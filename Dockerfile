# flux-worker's container image: `docker build -t flux-worker .`, then
# `docker run -p 127.0.0.1:8000:8000 -v flux-data:/data --stop-timeout 140 flux-worker`.
# docs/compose.md walks through compose.yaml (Redis and MinIO profiles, several replicas).
#
# BASE is any Debian-like image with python3 and its venv module, the same in both stages (the
# venv's python links to the base's). CI builds this file on a base made from Debian's packages
# (tests/e2e/test_container.py), since no registry is reachable there.
ARG BASE=python:3.13-slim

# ---- build: the runtime dependencies in a virtualenv -----------------------------------------
FROM ${BASE} AS build
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Only requirements.txt is copied first, so a code change reuses this layer.
RUN /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        -r /tmp/requirements.txt

# ---- the image: the venv and the app, nothing of the build ------------------------------------
FROM ${BASE}
# A user of its own: the service needs no privilege, and a break-in gets none.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin flux \
    && install -d -o flux -g flux -m 0750 /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app.py gunicorn.conf.py ./
COPY flux_worker ./flux_worker
# Compiled now: the app's folder belongs to root, so the service could not write __pycache__.
# ./data is the volume, so every relative default (./data/counters beside S3 storage) lands there.
RUN /opt/venv/bin/python -m compileall -q /app && ln -s /data /app/data

# 0.0.0.0: inside a container the port is reached through the container's own address; publish
# it on 127.0.0.1 (as compose.yaml does) unless API_KEY is set. A real backend without API_KEY
# is refused at start; the demo backend runs without one.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    STORAGE_URL=disk:///data
VOLUME /data
EXPOSE 8000
USER flux

# urllib, not curl: slim bases carry no curl. /healthz answers while the process serves;
# a load balancer should use /readyz, which also checks storage.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# gunicorn is PID 1 (exec form, no shell in between), so it receives the stop signal itself.
# SIGTERM is its graceful stop: no new connections, generations in flight finish within
# graceful_timeout (UPSTREAM_TIMEOUT + 10 s, 130 s by default); give the container that long
# (compose.yaml: stop_grace_period; docker run: --stop-timeout 140).
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
