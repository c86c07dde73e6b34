# One image for every process: web (gunicorn), worker, gpu-worker, beat and flower.
# GPU nodes run the same image with the NVIDIA runtime; torch is the CPU build pinned in
# pyproject unless TORCH_INDEX_URL points pip at a CUDA build when the image is built.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ARG TORCH_INDEX_URL=""
COPY pyproject.toml ./
# install the dependencies first so code changes don't invalidate this layer
RUN mkdir -p config annotation ranking training \
    && pip install ${TORCH_INDEX_URL:+--extra-index-url $TORCH_INDEX_URL} -e . \
    && rm -rf config annotation ranking training
COPY . .
RUN DJANGO_SECRET_KEY=build-only-collectstatic python manage.py collectstatic --noinput -v 0 \
    && useradd --create-home --uid 1000 rlhf && mkdir -p /data && chown rlhf /data

USER rlhf
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4"]
