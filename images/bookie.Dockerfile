# magnetar-bookie image, built by images/build.sh (`make images`) FROM the base that
# images/base.sh makes locally; the stripped binary is prepared on the host and
# copied in (no downloads during the build). PID 1 is tini: SIGTERM reaches the
# service, which shuts down cleanly.
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG PROFILE=release
LABEL org.opencontainers.image.title="magnetar-bookie" \
      org.opencontainers.image.description="Magnetar ledger service (bookie)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Magnetar" \
      io.magnetar.build-profile="${PROFILE}"
COPY magnetar-bookie /usr/local/bin/magnetar-bookie
# Configuration is flags or MAGNETAR_BOOKIE_* variables; --id and --meta are
# the deployment's to give (set --advertise to a name others can resolve).
ENV MAGNETAR_BOOKIE_LISTEN=0.0.0.0:3181 \
    MAGNETAR_BOOKIE_HTTP=0.0.0.0:3280 \
    MAGNETAR_BOOKIE_JOURNAL_DIR=/data/journal \
    MAGNETAR_BOOKIE_LEDGER_DIR=/data/ledgers
VOLUME /data
EXPOSE 3181 3280
USER magnetar
WORKDIR /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "MAGNETAR_BOOKIE_HTTP"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/magnetar-bookie"]
