# syntax=docker/dockerfile:1
# VitalWatch container image: the one `vitalwatch` binary (embedded MQTT broker, API,
# dashboard) on a minimal base, as a non-root user, with the data on a volume.
#
# Checked statically in CI (hadolint; the flags in every deployment file are checked against
# `vitalwatch serve --help`). No container engine runs on the CI machines, so this image has
# not been built there: see the README's "Deploy" section.
#
#   docker build -t vitalwatch:0.1.0 .
#   docker run --read-only -v vitalwatch-data:/var/lib/vitalwatch \
#     -p 8883:8883 -p 5000:5000 -p 8501:8501 vitalwatch:0.1.0

# The dashboard's assets (web/dist), built from the lock file.
FROM node:20.20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
RUN node build.mjs

# The binary, with the pinned toolchain; a release build embeds web/dist.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /src/web/dist web/dist
RUN cargo build --release --locked -p vitalwatch \
    && install -D -m 0755 target/release/vitalwatch /out/usr/local/bin/vitalwatch \
    && install -d -m 0700 /out/var/lib/vitalwatch

# Runtime: glibc and CA roots only, no shell, no package manager; uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="VitalWatch" \
      org.opencontainers.image.description="Secure, fast healthcare IoT monitoring: MQTT over TLS, rules, anomaly model, alerts, REST API and live dashboard" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/usr/local/bin/vitalwatch /usr/local/bin/vitalwatch
COPY --from=build --chown=65532:65532 /out/var/lib/vitalwatch /var/lib/vitalwatch
USER 65532:65532
ENV VITALWATCH_DATA_DIR=/var/lib/vitalwatch \
    VITALWATCH_LOG_FORMAT=json
VOLUME ["/var/lib/vitalwatch"]
# MQTT over TLS (devices), REST API (HTTPS), dashboard (HTTPS): the seed's ports.
EXPOSE 8883 5000 8501
# /health over HTTPS, trusting only the server's own CA (<data-dir>/certs/ca.crt).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/vitalwatch", "probe"]
ENTRYPOINT ["/usr/local/bin/vitalwatch"]
CMD ["serve"]
