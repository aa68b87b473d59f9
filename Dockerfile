# One image for every service: the producer, the alerter, the stats aggregator (the command picks which).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
# The dependencies come from the lock (exact versions, every file's hash checked), in a layer of their own that
# survives code changes; the package itself adds nothing to them (--no-deps).
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producer ./producer
COPY consumers ./consumers
RUN pip install --no-deps . && useradd --system --uid 10001 liq

USER liq
EXPOSE 9100
CMD ["python", "-m", "producer"]
