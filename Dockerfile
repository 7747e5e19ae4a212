# qss-exporter: Zoom QSS webhooks -> Prometheus /metrics (and OTLP).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY qss_exporter ./qss_exporter
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
LABEL org.opencontainers.image.title="qss-exporter" \
      org.opencontainers.image.description="Zoom Quality of Service Subscription data as Prometheus and OpenTelemetry metrics" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /install /usr/local
# /var/lib/qss-exporter: the REST poller's default state_dir (mount a volume there to keep it).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin qss \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/qss-exporter
USER 10001
ENV PYTHONUNBUFFERED=1 \
    QSS_EXPORTER_HEALTH_URL=http://127.0.0.1:9877/healthz
# 8080: Zoom-facing webhook listener; 9877: /metrics, /healthz, /readyz.
EXPOSE 8080 9877
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['QSS_EXPORTER_HEALTH_URL'], timeout=3)"]
ENTRYPOINT ["qss-exporter"]
CMD ["run", "--config", "/etc/qss-exporter/config.yaml"]
