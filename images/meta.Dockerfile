# magnetar-meta image, built by images/build.sh (`make images`) FROM the base that
# images/base.sh makes locally; the stripped binary is prepared on the host and
# copied in (no downloads during the build). PID 1 is tini: SIGTERM reaches the
# service, which shuts down cleanly.
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG PROFILE=release
LABEL org.opencontainers.image.title="magnetar-meta" \
      org.opencontainers.image.description="Magnetar metadata service (Raft + RocksDB)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Magnetar" \
      io.magnetar.build-profile="${PROFILE}"
COPY magnetar-meta /usr/local/bin/magnetar-meta
# Configuration is flags or MAGNETAR_META_* variables; --id and --peers (or
# MAGNETAR_META_ID / MAGNETAR_META_PEERS) are the deployment's to give.
ENV MAGNETAR_META_LISTEN=0.0.0.0:7001 \
    MAGNETAR_META_HTTP=0.0.0.0:7100 \
    MAGNETAR_META_DATA_DIR=/data/meta
VOLUME /data
EXPOSE 7001 7100
USER magnetar
WORKDIR /data
STOPSIGNAL SIGTERM
# 200 once this node knows a leader.
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "MAGNETAR_META_HTTP"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/magnetar-meta"]
