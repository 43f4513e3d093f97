# ablate: sweep workers (and the MLflow / optuna-dashboard servers of docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
# PyTorch first (its own layer): PyPI's x86_64 wheel carries CUDA for the GPU workers.
RUN pip install --no-cache-dir "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY ablate ablate
COPY conf conf
COPY studies studies
RUN pip install --no-cache-dir -e . "mlflow[auth]"
ENV ABLATE_CACHE=/app/.cache/ablate
ENTRYPOINT ["ablate"]
CMD ["sweep", "study=quickstart"]
