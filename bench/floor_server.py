"""The floor for the local API: stdlib http.server answering a constant body to every GET.

Usage: python3 -I -S bench/floor_server.py BODY_FILE CONTENT_TYPE
Prints the port it listens on (127.0.0.1, picked by the kernel), then serves until stdin
closes. HTTP/1.1 keep-alive, TCP_NODELAY, one write per response (head and body), request
logging off; otherwise the plain BaseHTTPRequestHandler idiom, so it is what any stdlib server
must at least spend.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    with open(sys.argv[1], "rb") as source:
        body = source.read()
    content_type = sys.argv[2]
    length = str(len(body))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        # Buffered: end_headers and write(body) fill the buffer, and handle_one_request's
        # flush sends head and body in one write, as the extension does. Unbuffered (the
        # default) they go out as two.
        wbufsize = 1 << 16

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", length)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet, like the extension at its default log level."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            """Quiet: wrk resets its connections when a run ends."""

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
