# The one image every service runs from (the Deployment picks the service by its args).
FROM python:3.11-slim
RUN useradd --uid 10001 --create-home pathways
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir .
USER 10001
