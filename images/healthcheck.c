/*
 * healthcheck: the images' HEALTHCHECK probe (the images have no shell or curl).
 *
 *   healthcheck ADDR [PATH]     ADDR is host:port, or the name of an environment
 *                               variable that holds one (e.g. MAGNETAR_BROKER_HTTP,
 *                               the variable the service itself reads).
 *
 * GETs PATH (default /health) over HTTP/1.0 and exits 0 on a 200 answer, 1
 * otherwise (the reason and the answer's first bytes on stdout, which Docker
 * keeps in the container's health log). A wildcard host (0.0.0.0, ::, empty)
 * means this container: 127.0.0.1. Only IP literals and "localhost" are
 * accepted, so the probe stays static with no resolver. Everything is bounded
 * by a 4 s alarm.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "healthcheck: timed out\n";
    ssize_t n = write(1, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static int fail(const char *what, const char *detail) {
    printf("healthcheck: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: healthcheck HOST:PORT|ENV_VAR [PATH]\n");
        return 2;
    }
    const char *path = argc == 3 ? argv[2] : "/health";
    const char *addr = argv[1];
    if (!strchr(addr, ':')) {
        addr = getenv(argv[1]);
        if (!addr || !*addr) return fail("environment variable not set", argv[1]);
    }
    char host[128];
    const char *colon = strrchr(addr, ':');
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof host) return fail("address too long", addr);
    memcpy(host, addr, hlen);
    host[hlen] = 0;
    char *h = host;
    if (h[0] == '[') { /* [v6]:port */
        h++;
        char *end = strchr(h, ']');
        if (end) *end = 0;
    }
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535) return fail("bad port in", addr);

    signal(SIGALRM, on_alarm);
    alarm(4);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t slen;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (!*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "localhost")) h = "127.0.0.1";
    if (!strcmp(h, "::")) h = "::1";
    if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        slen = sizeof *v4;
    } else if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        slen = sizeof *v6;
    } else {
        return fail("not an IP address", h);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return fail("socket", strerror(errno));
    if (connect(fd, (struct sockaddr *)&ss, slen) != 0) return fail("connect", strerror(errno));

    char req[512];
    int rlen = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n",
                        path, addr);
    if (rlen <= 0 || (size_t)rlen >= sizeof req) return fail("path too long", path);
    for (int off = 0; off < rlen;) {
        ssize_t n = write(fd, req + off, (size_t)(rlen - off));
        if (n <= 0) return fail("write", strerror(errno));
        off += (int)n;
    }
    char buf[1024];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n < 0) return fail("read", strerror(errno));
        if (n == 0 || (got += (size_t)n) == sizeof buf - 1) break;
    }
    buf[got] = 0;
    close(fd);
    /* Status line: HTTP/1.x 200 ... */
    int ok = got >= 12 && !strncmp(buf, "HTTP/1.", 7) && !strncmp(buf + 8, " 200", 4);
    char *body = strstr(buf, "\r\n\r\n");
    char *eol = strstr(buf, "\r\n");
    if (eol) *eol = 0;
    printf("%s %s\n", buf, body ? body + 4 : "");
    return ok ? 0 : 1;
}
