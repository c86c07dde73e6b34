# One image for every process: web (gunicorn), worker, gpu-worker, beat and flower.
# Dependencies come from requirements.lock (exact versions, hashes checked), the same set that CI
# tests. torch is locked as the 2.13.0 CPU build, found on PyTorch's CPU index (TORCH_CPU_INDEX_URL);
# GPU nodes run the same image with the NVIDIA runtime, built with TORCH_INDEX_URL naming a CUDA index:
# torch 2.13.0 (and its CUDA libraries) then replace the CPU build, the one part not hash-checked.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ARG TORCH_CPU_INDEX_URL="https://download.pytorch.org/whl/cpu"
ARG TORCH_INDEX_URL=""
COPY requirements.lock ./
# install the dependencies first so code changes don't invalidate this layer
RUN pip install --require-hashes --extra-index-url "$TORCH_CPU_INDEX_URL" -r requirements.lock \
    && if [ -n "$TORCH_INDEX_URL" ]; then \
         pip uninstall -y torch && pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0"; \
       fi
COPY . .
RUN pip install --no-deps --no-build-isolation -e .
RUN DJANGO_SECRET_KEY=build-only-collectstatic python manage.py collectstatic --noinput -v 0 \
    && useradd --create-home --uid 1000 rlhf && mkdir -p /data && chown rlhf /data

USER rlhf
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4"]
