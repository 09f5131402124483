"""A stub GetParametersByPath upstream that answers any path with pages of large values,
without the cost of creating them in moto: for memory tests and the memory soak."""

from __future__ import annotations

import http.server
import json
import threading


class PathPages:
    """A stub GetParametersByPath upstream on loopback (`.port`): every path has `pages`
    pages of 10 parameters of `value_chars` characters each, linked by NextToken."""

    def __init__(self, *, pages: int, value_chars: int) -> None:
        self.pages = pages
        self.value_chars = value_chars
        self.requests = 0
        pages_of = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                page = int(request.get("NextToken") or 0)
                pages_of.requests += 1
                body = pages_of.page(request["Path"], page)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def page(self, path: str, page: int) -> bytes:
        params = [
            {
                "Name": f"{path.rstrip('/')}/p{page}-{index}",
                "Type": "String",
                "Value": "v" * self.value_chars,
                "Version": 1,
                "LastModifiedDate": 1700000000.0,
                "ARN": f"arn:aws:ssm:us-east-1:123456789012:parameter{path}/p{page}-{index}",
                "DataType": "text",
            }
            for index in range(10)
        ]
        answer: dict[str, object] = {"Parameters": params}
        if page + 1 < self.pages:
            answer["NextToken"] = str(page + 1)
        return json.dumps(answer).encode()

    def __enter__(self) -> PathPages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
