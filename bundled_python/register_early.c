/* The layer's interpreter listens and registers with Lambda before Python starts.
 *
 * Why: Lambda starts the function's runtime only once every extension has registered, so
 * all that comes before `register` delays the function's own init. Through Python, register
 * reached Lambda 12.1 ms after exec, 9.8 ms of it the interpreter's own start (BENCHMARKS.md):
 * a Node.js function's first answer paid 20-24 ms for the extension. Here the same request
 * leaves before that start, which then runs while Lambda starts the function's runtime
 * (BENCHMARKS.md, "Registering before Python starts": the figures).
 *
 * What: only when the launcher asks (EARLY_NAME_VARIABLE, the extension's name; unset here)
 * and only in the plain case, listen on the local port as boot.listen() does, connect to
 * AWS_LAMBDA_RUNTIME_API and send the bytes lifecycle.ExtensionsApi.register sends, then
 * hand the sockets to Python in EARLY_SOCKETS_VARIABLE: "<register> <127.0.0.1>[ <::1>]",
 * file descriptors. boot.py adopts them and reads Lambda's answer with the extension's one
 * response reader: this file never parses HTTP and never reports an error. Anything out of
 * the plain case (a host name, an odd port value, a port taken, no connection within
 * EARLY_TIMEOUT seconds) closes what it opened and sets nothing: Python then does all of it,
 * with its own rules, warnings and reports to Lambda, exactly as without this file.
 * Never exits, never prints. No secret is involved: not even the identifier is known here.
 *
 * build.py puts this file into CPython's Programs/python.c, after `#define`s of the names
 * and numbers below (written once, in the Python modules that own them), and calls
 * register_early() from main() before Py_BytesMain. tests/test_any_runtime.py checks that
 * the request leaves before Python's first import, that it is the small layer's byte for
 * byte, and that every case left to Python goes exactly as in the small layer.
 *
 * Defined by build.py: EARLY_NAME_VARIABLE (bundled_python/launch.py), EARLY_SOCKETS_VARIABLE
 * and BACKLOG (lambda_api/boot.py), PORT_VARIABLE, DEFAULT_PORT, REGISTER_PATH and
 * EARLY_TIMEOUT (lambda_api/lifecycle.py).
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define EARLY_MAX_NAME 255 /* a file name's longest */

/* 1..65535 written in 1 to 5 ASCII digits and nothing else; else 0. lifecycle.http_port
 * reads every such value the same way (and more: blanks, 6+ digits, which stay Python's). */
static int early_port(const char *text)
{
    size_t length = strlen(text);
    long port = 0;
    if (length < 1 || length > 5 || strspn(text, "0123456789") != length) {
        return 0;
    }
    for (size_t i = 0; i < length; i++) {
        port = port * 10 + (text[i] - '0');
    }
    return port >= 1 && port <= 65535 ? (int)port : 0;
}

/* A listening socket as boot._listener makes one; -1 on any failure. */
static int early_listener(int family, const struct sockaddr *address, socklen_t length)
{
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(fd, address, length) != 0 || listen(fd, BACKLOG) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The register request's socket, its request sent and its answer unread; -1 on failure. */
static int early_register_sent(const struct sockaddr_in *api, const char *request, size_t size)
{
    /* Blocking, with SO_SNDTIMEO as the bound of connect() and of each send (Linux). */
    struct timeval timeout = {EARLY_TIMEOUT, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0
        || connect(fd, (const struct sockaddr *)api, sizeof *api) != 0) {
        close(fd);
        return -1;
    }
    while (size > 0) {
        /* MSG_NOSIGNAL: a peer gone must not kill the process with SIGPIPE. */
        ssize_t sent = send(fd, request, size, MSG_NOSIGNAL);
        if (sent <= 0) {
            close(fd);
            return -1;
        }
        request += sent;
        size -= (size_t)sent;
    }
    return fd;
}

static void register_early(void)
{
    char name[EARLY_MAX_NAME + 1];
    char host[INET_ADDRSTRLEN];
    char request[1024];
    char handover[64];
    struct sockaddr_in api, local4;
    struct sockaddr_in6 local6;
    const char *value, *runtime_api, *colon, *events;
    int port, api_port, listen4, listen6, sent;
    size_t length;

    /* Whoever set it (a function's own environment, too), Python never sees this one but
     * from here: without it boot.py does everything itself. */
    unsetenv(EARLY_SOCKETS_VARIABLE);
    value = getenv(EARLY_NAME_VARIABLE);
    if (value == NULL) {
        return;
    }
    /* Lambda insists that Lambda-Extension-Name equals the executable's file name: the
     * launcher's basename of $0, what boot.py takes from argv. A header value: printable ASCII. */
    length = strlen(value);
    if (length < 1 || length > EARLY_MAX_NAME) {
        unsetenv(EARLY_NAME_VARIABLE);
        return;
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)value[i];
        if (byte < 0x20 || byte > 0x7e) {
            unsetenv(EARLY_NAME_VARIABLE);
            return;
        }
    }
    memcpy(name, value, length + 1);
    unsetenv(EARLY_NAME_VARIABLE);

    /* AWS_LAMBDA_RUNTIME_API: an IPv4 address and a port, as Lambda sets it; a host name
     * (a resolver's work) or anything else is Python's. */
    runtime_api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (runtime_api == NULL || (colon = strrchr(runtime_api, ':')) == NULL) {
        return;
    }
    length = (size_t)(colon - runtime_api);
    if (length < 1 || length >= sizeof host) {
        return;
    }
    memcpy(host, runtime_api, length);
    host[length] = '\0';
    memset(&api, 0, sizeof api);
    api.sin_family = AF_INET;
    api_port = early_port(colon + 1);
    if (api_port == 0 || inet_pton(AF_INET, host, &api.sin_addr) != 1) {
        return;
    }
    api.sin_port = htons((unsigned short)api_port);

    /* The local port: unset is the default; set, only a value Python reads the same way. */
    value = getenv(PORT_VARIABLE);
    port = value == NULL ? DEFAULT_PORT : early_port(value);
    if (port == 0) {
        return;
    }

    /* lifecycle.ExtensionsApi.register's request, byte for byte: its headers in its order
     * (tests/test_any_runtime.py compares the two). Under SnapStart the extension also
     * takes INVOKE, as boot.py asks. */
    value = getenv("AWS_LAMBDA_INITIALIZATION_TYPE");
    events = value != NULL && strcmp(value, "snap-start") == 0
        ? "{\"events\": [\"INVOKE\", \"SHUTDOWN\"]}"
        : "{\"events\": [\"SHUTDOWN\"]}";
    sent = snprintf(
        request,
        sizeof request,
        "POST %s HTTP/1.1\r\n"
        "Host: %s\r\n"
        "Lambda-Extension-Name: %s\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: %zu\r\n"
        "Connection: close\r\n"
        "\r\n"
        "%s",
        REGISTER_PATH, runtime_api, name, strlen(events), events);
    if (sent < 0 || (size_t)sent >= sizeof request) {
        return;
    }

    /* Listen first, as boot.py does: a connection the function makes once it has started
     * waits in the backlog until the server accepts it. */
    memset(&local4, 0, sizeof local4);
    local4.sin_family = AF_INET;
    local4.sin_port = htons((unsigned short)port);
    local4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listen4 = early_listener(AF_INET, (const struct sockaddr *)&local4, sizeof local4);
    if (listen4 < 0) {
        return; /* a port taken: Python reports Extension.PortUnavailable */
    }
    memset(&local6, 0, sizeof local6);
    local6.sin6_family = AF_INET6;
    local6.sin6_port = htons((unsigned short)port);
    local6.sin6_addr = in6addr_loopback;
    /* Best effort: without IPv6 loopback, 127.0.0.1 alone serves "localhost". */
    listen6 = early_listener(AF_INET6, (const struct sockaddr *)&local6, sizeof local6);

    sent = early_register_sent(&api, request, (size_t)sent);
    if (sent >= 0) {
        if (listen6 >= 0) {
            snprintf(handover, sizeof handover, "%d %d %d", sent, listen4, listen6);
        } else {
            snprintf(handover, sizeof handover, "%d %d", sent, listen4);
        }
        if (setenv(EARLY_SOCKETS_VARIABLE, handover, 1) == 0) {
            return;
        }
        close(sent);
    }
    close(listen4);
    if (listen6 >= 0) {
        close(listen6);
    }
}
