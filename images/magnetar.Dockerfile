# magnetar image, built by images/build.sh (`make images`) FROM the base that
# images/base.sh makes locally; the stripped binary is prepared on the host and
# copied in (no downloads during the build). PID 1 is tini: SIGTERM reaches the
# service, which shuts down cleanly.
ARG BASE
FROM ${BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG PROFILE=release
LABEL org.opencontainers.image.title="magnetar" \
      org.opencontainers.image.description="Magnetar standalone (metadata, bookie and broker in one process) and CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.vendor="Magnetar" \
      io.magnetar.build-profile="${PROFILE}"
COPY magnetar /usr/local/bin/magnetar
# `docker run -p 6650:6650 -p 8080:8080 magnetar:dev` runs standalone with its
# data in the /data volume; any other arguments run the CLI instead
# (e.g. `admin tenants list --url http://broker:8080`). The broker advertises
# "localhost", right for published ports on this host; set
# MAGNETAR_STANDALONE_ADVERTISED_ADDRESS otherwise.
ENV MAGNETAR_STANDALONE_BROKER_LISTEN=0.0.0.0:6650 \
    MAGNETAR_STANDALONE_HTTP=0.0.0.0:8080 \
    MAGNETAR_STANDALONE_ADVERTISED_ADDRESS=localhost \
    MAGNETAR_STANDALONE_DATA_DIR=/data
VOLUME /data
EXPOSE 6650 8080
USER magnetar
WORKDIR /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "MAGNETAR_STANDALONE_HTTP"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/magnetar"]
CMD ["standalone"]
