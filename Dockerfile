# First version; the deployment issue completes it (HEALTHCHECK, slim runtime layer).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
RUN pip install --no-cache-dir .
COPY templates ./templates
COPY config ./config
RUN useradd --system --home /app dispatcher && mkdir -p var && chown dispatcher var
USER dispatcher
ENTRYPOINT ["dispatcher"]
CMD ["validate"]
