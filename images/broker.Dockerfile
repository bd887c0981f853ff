# magnetar-broker image, built by images/build.sh (`make images`) FROM the base that
# images/base.sh makes locally; the stripped binary is prepared on the host and
# copied in (no downloads during the build). PID 1 is tini: SIGTERM reaches the
# service, which shuts down cleanly.
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG PROFILE=release
LABEL org.opencontainers.image.title="magnetar-broker" \
      org.opencontainers.image.description="Magnetar broker (Pulsar binary protocol, admin REST v2)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Magnetar" \
      io.magnetar.build-profile="${PROFILE}"
COPY magnetar-broker /usr/local/bin/magnetar-broker
# Stateless: no volume. Configuration is flags or MAGNETAR_BROKER_* variables;
# --meta and --advertised-address (and --advertised-listeners for clients on
# other networks) are the deployment's to give. SIGTERM hands the broker's
# bundles over to the other brokers before it exits.
ENV MAGNETAR_BROKER_LISTEN=0.0.0.0:6650 \
    MAGNETAR_BROKER_HTTP=0.0.0.0:8080
EXPOSE 6650 8080
USER magnetar
WORKDIR /tmp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "MAGNETAR_BROKER_HTTP"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/magnetar-broker"]
