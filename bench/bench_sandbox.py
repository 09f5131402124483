"""A Lambda sandbox emulator: the cold start of a Python function, with and without the extension.

Usage: python -m bench.bench_sandbox [--rounds N] [--warm N] [--variants NAME,...] [--python PATH]
                                     [--base REV] [--tls]

Follows Lambda's init order: start every external extension from the built layer (the
executable itself, as Lambda starts it), wait until each has registered, only then start the
runtime (`python -m awslambdaric app.handler`, as the managed Python runtime does), and
invoke only once the runtime and every extension have called `next`. One HTTP server plays
both the Extensions API and the Runtime API at AWS_LAMBDA_RUNTIME_API. Upstream is moto.

Times are milliseconds from the Popen of the first process of the sandbox: register (the
extension's `register` arrived), init (the last first `next`), first answer (the runtime
posted the first invoke's response), and warm p50 (invoke to response, later invokes).
Beside them, the extension's CPU time (user + system, from exec to exit, warm invokes and
SHUTDOWN included; the kernel's account through os.wait4), which load bends less than
wall-clock times, and the part of it up to the first answer (its process CPU clock read once
the first answer is in): on one CPU, each ms of that delays the first answer.
Variants take turns within each round (in reverse order every other round), each round is
run with the sandbox's processes on all CPUs and pinned to one (taskset -c 0), and the
medians over rounds are printed. Each first-answer goal's ratio (of the medians) comes with
the median of the per-round ratios (a round's first answer over zero-cost's in that round)
and a bootstrap 90% interval of that median: how far the machine's drift moves the figure.
Each round also times one upstream call: GetSecretValue of the secret to moto on a new
connection, by the extension's own AWS client, made beforehand in this process (unpinned, as
moto is): the floor of what the first miss adds to the first answer, beside the zero-cost
floor.
Variants:
  constant       the handler returns a constant; no extension (the function's own floor)
  zero-cost      urllib handler against a server that was already running (no init cost)
  ext            urllib handler against the extension, no prefetch
  ext-prefetch   the same with the secret prefetched
  ext-init       the function's init code fetches through the extension, the handler returns it
  ext-unused     the extension beside the constant handler, which never calls it: what
                 the extension's init and warm-up cost a function that does not use it yet
  boto3          the handler calls Secrets Manager with boto3 (client made at init); no extension
  minimal-ext    a minimal Python extension (http.server + threading imported, register,
                 next) beside the constant handler: the floor for the extension's own init
  bare-ext       the least a Python extension can be (`python3 -I -S`, built-in modules only:
                 listen, register, `next`; the zero-cost server's answer to every request)
                 beside the urllib handler: the floor of any Python extension here, whose
                 register, like ours, holds back the runtime's start by an interpreter's start
With `--tls`, upstream is moto behind a TLS proxy, as AWS is https on Lambda.
With `--base REV`, each variant with the extension also runs as `<variant>@base` with the layer
that REV's own build_layer.py builds, in the same rounds: an A/B of a change in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH = Path(__file__).resolve().parent
EXT_BASE = "/2020-01-01/extension"
RUNTIME_BASE = "/2018-06-01/runtime"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
SECRET_ID = "bench/sandbox"
SECRET_VALUE = '{"username":"svc","password":"sandbox-VALUE"}'
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"
VARIANTS = (
    "constant",
    "zero-cost",
    "ext",
    "ext-prefetch",
    "ext-init",
    "ext-unused",
    "boto3",
    "minimal-ext",
    "bare-ext",
)
WITH_EXTENSION = {"ext", "ext-prefetch", "ext-init", "ext-unused"}
RESAMPLES = 2000  # bootstrap resamples of the rounds
SEED = 17  # the bootstrap's: the same rounds print the same interval

_FETCH = f"""\
import json, os, urllib.request

def fetch():
    port = os.environ["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]
    url = f"http://localhost:{{port}}/secretsmanager/get?secretId={{os.environ['SECRET_ID']}}"
    request = urllib.request.Request(url)
    request.add_header("{TOKEN_HEADER}", os.environ.get("AWS_SESSION_TOKEN"))
    return json.loads(urllib.request.urlopen(request).read())["SecretString"]
"""
HANDLERS = {
    "constant": 'def handler(event, context):\n    return {"value": "constant"}\n',
    "zero-cost": _FETCH + '\ndef handler(event, context):\n    return {"value": fetch()}\n',
    "ext": _FETCH + '\ndef handler(event, context):\n    return {"value": fetch()}\n',
    "ext-prefetch": _FETCH + '\ndef handler(event, context):\n    return {"value": fetch()}\n',
    "ext-init": _FETCH
    + '\nVALUE = fetch()\n\ndef handler(event, context):\n    return {"value": VALUE}\n',
    "boto3": """\
import os
import boto3

client = boto3.client("secretsmanager")

def handler(event, context):
    return {"value": client.get_secret_value(SecretId=os.environ["SECRET_ID"])["SecretString"]}
""",
    "ext-unused": 'def handler(event, context):\n    return {"value": "constant"}\n',
    "minimal-ext": 'def handler(event, context):\n    return {"value": "constant"}\n',
    "bare-ext": _FETCH + '\ndef handler(event, context):\n    return {"value": fetch()}\n',
}

# bare-ext: run as `python3 -I -S bare-ext BODY_FILE`. Only built-in modules (and _socket), no
# parsing: it listens, registers, then answers every request on every connection with BODY_FILE
# (what the zero-cost server answers, one write) while the main thread waits on `next`.
BARE_EXTENSION = """\
import _socket, _thread, posix, sys

def call(request):
    host, _, port = posix.environ[b"AWS_LAMBDA_RUNTIME_API"].partition(b":")
    api = _socket.socket()
    api.connect((host.decode(), int(port)))
    api.sendall(request)
    answer = b""
    while chunk := api.recv(65536):
        answer += chunk
    api.close()
    return answer

def serve(connection):
    while True:
        request = b""
        while b"\\r\\n\\r\\n" not in request:
            chunk = connection.recv(65536)
            if not chunk:
                return connection.close()
            request += chunk
        connection.sendall(reply)

def accept(listener):
    while True:
        fd, _ = listener._accept()  # _socket's own: socket.py's accept() wraps it
        connection = _socket.socket(fileno=fd)
        connection.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        _thread.start_new_thread(serve, (connection,))

with open(sys.argv[1], "rb") as file:
    body = file.read()
reply = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
reply += b"Content-Length: %d\\r\\n\\r\\n%b" % (len(body), body)
listener = _socket.socket()
listener.bind(("127.0.0.1", int(posix.environ[b"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"])))
listener.listen(64)
body_of = b'{"events": ["SHUTDOWN"]}'
answer = call(b"POST /2020-01-01/extension/register HTTP/1.1\\r\\nHost: api\\r\\n"
              b"Connection: close\\r\\nLambda-Extension-Name: bare-ext\\r\\n"
              b"Content-Length: %d\\r\\n\\r\\n%b" % (len(body_of), body_of))
head = answer.partition(b"\\r\\n\\r\\n")[0]
field = head.lower().find(b"\\r\\nlambda-extension-identifier:") + 30
ident = head[field:].partition(b"\\r\\n")[0].strip()
_thread.start_new_thread(accept, (listener,))
while b"SHUTDOWN" not in call(b"GET /2020-01-01/extension/event/next HTTP/1.1\\r\\n"
                              b"Host: api\\r\\nConnection: close\\r\\n"
                              b"Lambda-Extension-Identifier: %b\\r\\n\\r\\n" % ident):
    pass
"""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a killed runtime leaves its `next` connection broken, as on Lambda."""


class Emulator:
    """The Extensions API and the Runtime API of one sandbox, on 127.0.0.1 at a kernel port."""

    def __init__(self) -> None:
        self.start = 0.0  # perf_counter at the sandbox's first Popen
        self.marks: dict[str, float] = {}  # "register:<id>", "next:<id>", "runtime-next"
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._extension_events: dict[str, queue.Queue[dict[str, object]]] = {}
        self._invocations: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._responses: dict[str, tuple[float, bytes]] = {}
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def _mark(self, name: str, at: float | None = None) -> None:
        """Record `name` at perf_counter `at` (default: now), relative to the start."""
        with self._changed:
            self.marks.setdefault(name, (at or time.perf_counter()) - self.start)
            self._changed.notify_all()

    def wait(self, ready: str, count: int, timeout: float) -> float:
        """Wait until `count` marks start with `ready`; return the latest of them (seconds)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [t for name, t in self.marks.items() if name.startswith(ready)]
                if len(found) >= count:
                    return max(found, default=0.0)
                if self.errors or not self._changed.wait(deadline - time.monotonic()):
                    raise RuntimeError(f"waiting for {count} x {ready}: {self.errors}")

    def invoke(self, request_id: str, timeout: float = 60) -> tuple[float, bytes]:
        """Hand the runtime one event; return (seconds since start at the response, body)."""
        self._invocations.put((request_id, json.dumps({"n": request_id}).encode()))
        deadline = time.monotonic() + timeout
        with self._changed:
            while request_id not in self._responses:
                if self.errors or not self._changed.wait(deadline - time.monotonic()):
                    raise RuntimeError(f"no response to {request_id}: {self.errors}")
            return self._responses[request_id]

    def shutdown_extensions(self) -> None:
        for events in self._extension_events.values():
            events.put({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0})

    def close(self) -> None:
        self.shutdown_extensions()
        self._invocations.put(None)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path
                if path == EXT_BASE + "/register":
                    # "register reaches Lambda": the arrival, not the moment after answering,
                    # which a pinned extension woken by the answer can delay by a time slice.
                    arrived = time.perf_counter()
                    ident = f"ext-{len(emulator._extension_events)}"
                    emulator._extension_events[ident] = queue.Queue()
                    info = {"functionName": "fn", "functionVersion": "$LATEST", "handler": "h"}
                    headers = {"Lambda-Extension-Identifier": ident}
                    self._reply(200, json.dumps(info).encode(), headers)
                    emulator._mark(f"register:{ident}", arrived)
                    return
                if path.startswith(RUNTIME_BASE + "/invocation/") and path.endswith("/response"):
                    request_id = path.split("/")[-2]
                    self._reply(202, b"{}", {})
                    with emulator._changed:
                        emulator._responses[request_id] = (
                            time.perf_counter() - emulator.start,
                            body,
                        )
                        emulator._changed.notify_all()
                    return
                # init/error, exit/error, invocation error: the run failed
                self._reply(202, b"{}", {})
                with emulator._changed:
                    emulator.errors.append(f"{path}: {body[:300]!r}")
                    emulator._changed.notify_all()

            def do_GET(self) -> None:
                if self.path == EXT_BASE + "/event/next":
                    ident = self.headers.get("Lambda-Extension-Identifier", "")
                    events = emulator._extension_events.get(ident)
                    if events is None:
                        self._reply(403, b'{"errorType":"Extension.Unknown"}', {})
                        return
                    emulator._mark(f"next:{ident}")
                    self._reply(200, json.dumps(events.get()).encode(), {})
                elif self.path == RUNTIME_BASE + "/invocation/next":
                    emulator._mark("runtime-next")
                    item = emulator._invocations.get()
                    if item is None:
                        self._reply(500, b"{}", {})
                        return
                    request_id, event = item
                    deadline = str(int(time.time() * 1000) + 60_000)
                    headers = {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": deadline,
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                        "Content-Type": "application/json",
                    }
                    self._reply(200, event, headers)
                else:
                    self._reply(404, b"{}", {})

        return Handler


class Context:
    """What every cold start needs: executables, interpreters, upstream and credentials."""

    def __init__(
        self,
        *,
        extension: Path,
        python: Path,
        runtime_python: Path,
        env: dict[str, str],
        tmp: Path,
        zero_cost_port: int,
        base_extension: Path | None = None,
    ) -> None:
        self.extension = extension
        self.base_extension = base_extension  # `--base`'s layer, for the `@base` variants
        self.python = python  # the `python3` Lambda would run the extension with
        self.runtime_python = runtime_python  # has awslambdaric (and boto3) installed
        self.env = env  # credentials, region, AWS_ENDPOINT_URL, PATH
        self.tmp = tmp
        self.zero_cost_port = zero_cost_port


class Result:
    """Seconds since the sandbox's first Popen, and the answers' JSON."""

    __slots__ = (
        "answers",
        "cpu",
        "cpu_to_first",
        "exit_codes",
        "ext_next",
        "first_answer",
        "init",
        "register",
        "warm",
    )

    def __init__(  # noqa: PLR0917 -- one field each
        self,
        register: float | None,
        ext_next: float | None,
        init: float,
        first_answer: float,
        warm: list[float],
        answers: list[object],
    ) -> None:
        self.register = register
        self.ext_next = ext_next
        self.init = init
        self.first_answer = first_answer
        self.warm = warm
        self.answers = answers
        self.exit_codes: list[int] = []  # the extensions', in start order
        self.cpu = 0.0  # the extensions' CPU seconds, exec to exit, together
        self.cpu_to_first = 0.0  # the same from exec to the first answer


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768 up), which the kernel never hands
    an outgoing connection meanwhile (the TLS proxy opens one per upstream call)."""
    import random
    import socket

    while True:
        port = random.randrange(20000, 32768)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def cold_start(variant: str, ctx: Context, *, warm: int = 0, pin: bool = False) -> Result:
    """One sandbox from nothing to `1 + warm` answered invokes, then its shutdown."""
    task = ctx.tmp / f"task-{variant}"
    task.mkdir(exist_ok=True)
    variant, base, _ = variant.partition("@")
    (task / "app.py").write_text(HANDLERS[variant])
    extensions: list[list[str]] = []
    port = free_port()
    if variant in WITH_EXTENSION:
        executable = ctx.base_extension if base else ctx.extension
        assert executable is not None, "an @base variant needs --base"
        extensions.append([str(executable)])
    elif variant == "minimal-ext":
        script = task / "minimal-ext"
        from bench import harness  # main() loaded it already: only the name is bound here

        script.write_text(harness.MINIMAL_EXTENSION)
        extensions.append([str(ctx.python), "-I", "-S", str(script)])
    elif variant == "bare-ext":
        script = task / "bare-ext"
        script.write_text(BARE_EXTENSION)
        body = task / "bare-ext.json"
        body.write_bytes(zero_cost_body())
        extensions.append([str(ctx.python), "-I", "-S", str(script), str(body)])
    if variant == "zero-cost":
        port = ctx.zero_cost_port
    env = {
        **ctx.env,
        "SECRET_ID": SECRET_ID,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(port),
    }
    if variant == "ext-prefetch":
        env["PARAMETERS_SECRETS_EXTENSION_PREFETCH"] = f"secretsmanager:{SECRET_ID}"
    runtime = Runtime(
        command=[str(ctx.runtime_python), "-m", "awslambdaric", "app.handler"],
        env={"PYTHONPATH": str(task)},
        task=task,
    )
    return run_sandbox(extensions, runtime, env, ctx.tmp / f"{variant}.log", warm=warm, pin=pin)


class Runtime:
    """How to start a runtime: its command, what it adds to the environment, its task root."""

    def __init__(self, command: list[str], env: dict[str, str], task: Path) -> None:
        self.command = command
        self.env = env
        self.task = task


def run_sandbox(
    extensions: list[list[str]],
    runtime: Runtime,
    env: dict[str, str],
    log: Path,
    *,
    warm: int = 0,
    pin: bool = False,
) -> Result:
    """Lambda's init order for any runtime: extensions, their registration, the runtime, the
    invokes, SHUTDOWN to the extensions and SIGKILL to the runtime.

    `env` is what every process gets (Lambda gives extensions the function's environment);
    the runtime gets the function's variables and `runtime.env` on top. The extensions' exit
    codes are in the result, in order.
    """
    prefix = ["taskset", "-c", "0"] if pin else []
    emulator = Emulator()
    env = {**env, "AWS_LAMBDA_RUNTIME_API": emulator.address}
    runtime_env = {
        **env,
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": str(runtime.task),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
        **runtime.env,
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = log.open("wb")
    try:
        emulator.start = time.perf_counter()
        for command in extensions:
            processes.append(
                subprocess.Popen([*prefix, *command], env=env, stdout=logs, stderr=logs)
            )
        register = emulator.wait("register:", len(extensions), 30) if extensions else None
        started = subprocess.Popen(
            [*prefix, *runtime.command],
            env=runtime_env,
            cwd=runtime.task,
            stdout=logs,
            stderr=logs,
        )
        processes.append(started)
        ext_next = emulator.wait("next:", len(extensions), 60) if extensions else None
        init = max(emulator.wait("runtime-next", 1, 60), ext_next or 0.0)
        answers = []
        first_answer = 0.0
        cpu_to_first = 0.0
        warm_times = []
        for n in range(1 + warm):
            sent = time.perf_counter() - emulator.start
            at, body = emulator.invoke(f"req-{n}")
            answers.append(json.loads(body))
            if n == 0:
                first_answer = at
                cpu_to_first = sum(process_cpu(proc.pid) for proc in processes[:-1])
            else:
                warm_times.append(at - sent)
        emulator.shutdown_extensions()
        started.kill()  # Lambda ends the runtime with SIGKILL
        ended = [exit_and_cpu(proc, 10) for proc in processes[:-1]]
        started.wait(10)
        result = Result(register, ext_next, init, first_answer, warm_times, answers)
        result.exit_codes = [code for code, _ in ended]
        result.cpu = sum(cpu for _, cpu in ended)
        result.cpu_to_first = cpu_to_first
        return result
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        emulator.close()
        logs.close()


def paired_ratios(runs: list[Result], floors: list[Result]) -> list[float]:
    """Each round's first answer over the floor's in the same round: the variants take turns
    within a round, so a slow stretch of the machine lands on both sides of a ratio."""
    return [run.first_answer / floor.first_answer for run, floor in zip(runs, floors, strict=True)]


def bootstrap_median(samples: list[float], rng: random.Random) -> tuple[float, float]:
    """The 5th and 95th percentiles of the median over RESAMPLES resamples of the rounds."""
    n = len(samples)
    medians = sorted(statistics.median(rng.choices(samples, k=n)) for _ in range(RESAMPLES))
    return medians[int(0.05 * RESAMPLES)], medians[int(0.95 * RESAMPLES) - 1]


def process_cpu(pid: int) -> float:
    """The CPU seconds process `pid` has used so far, all its threads (the ended ones too)
    from its exec on, to the nanosecond: its CPU clock, as clock_getcpuclockid(3) names it
    ((~pid << 3) | CPUCLOCK_SCHED), which Linux lets another process read."""
    return time.clock_gettime((~pid << 3) | 2)


def exit_and_cpu(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait up to `timeout` s for `proc` to exit: its exit code, and the CPU seconds (user +
    system) that it and the children it waited for used (os.wait4: taskset and the layer's sh
    launcher exec, so the pid is the extension's own)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.005)


def zero_cost_body() -> bytes:
    """What the zero-cost server and bare-ext answer: the secret, as the extension gives it."""
    return json.dumps({"Name": SECRET_ID, "SecretString": SECRET_VALUE}).encode()


@contextlib.contextmanager
def zero_cost_server(python: Path) -> Iterator[int]:
    """bench/floor_server.py answering what the extension answers for the secret; its port."""
    body = zero_cost_body()
    with tempfile.NamedTemporaryFile(prefix="zero-cost-", suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        command = [str(python), "-I", "-S", str(BENCH / "floor_server.py"), body_file.name]
        proc = subprocess.Popen(
            [*command, "application/json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            yield int(proc.stdout.readline())
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)


def tls_upstream(host: str, port: int, tmp: Path, stack: contextlib.ExitStack) -> dict[str, str]:
    """Moto behind a TLS proxy with a test CA's certificate; the variables that point at it.

    As on Lambda, the first call then loads the trust store and shakes hands: AWS_CA_BUNDLE
    adds the test CA to the system's certificates, which are loaded as well."""
    from tests.fault_proxy import FaultProxy  # only with --tls; tls_certs needs cryptography
    from tests.tls_certs import make_pki

    pki = make_pki(tmp, "bench")
    proxy = stack.enter_context(FaultProxy(host, port, ssl_context=pki.server_context()))
    return {
        "AWS_ENDPOINT_URL": f"https://127.0.0.1:{proxy.port}",
        "AWS_CA_BUNDLE": str(pki.ca_file),
    }


def upstream_call(env: dict[str, str]) -> float:
    """Seconds for one GetSecretValue of the secret to upstream on a new connection, by the
    extension's AWS client made (and its trust store loaded) beforehand."""
    from parameters_secrets_extension import config  # the tree's own client, made here
    from parameters_secrets_extension.aws.lazy_client import LazyClient

    client = LazyClient(config.load(env)).get()
    client.warm()
    try:
        started = time.perf_counter()
        client.get_secret_value(SECRET_ID)
        return time.perf_counter() - started
    finally:
        client.close()


def bare_python(python: Path, pin: bool) -> float:
    """Seconds from Popen to exit of `python3 -I -S -c pass`."""
    prefix = ["taskset", "-c", "0"] if pin else []
    started = time.perf_counter()
    subprocess.run([*prefix, str(python), "-I", "-S", "-c", "pass"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="cold starts per variant and mode")
    parser.add_argument("--warm", type=int, default=20, help="warm invokes after each cold one")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--python", help="the extension's python3 (default: this one)")
    parser.add_argument("--base", help="also run the extension's variants with REV's layer")
    parser.add_argument(
        "--tls", action="store_true", help="upstream over https, as on Lambda (a test CA)"
    )
    args = parser.parse_args()
    variants = [name for name in args.variants.split(",") if name]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if args.base:
        variants += [f"{name}@base" for name in variants if name in WITH_EXTENSION]
    if shutil.which("taskset") is None:
        raise SystemExit("needs taskset (util-linux)")
    from bench import harness  # moto and the layer build: only once there is work to do

    with harness.setup(args.python) as s, contextlib.ExitStack() as stack:
        sm = s.moto.boto3_client("secretsmanager")  # admin: the role may only read
        sm.create_secret(Name=SECRET_ID, SecretString=SECRET_VALUE)  # type: ignore[attr-defined]
        env = {
            "PATH": s.path,
            "AWS_REGION": harness.REGION,
            "AWS_DEFAULT_REGION": harness.REGION,
            "AWS_ACCESS_KEY_ID": s.creds.access_key,
            "AWS_SECRET_ACCESS_KEY": s.creds.secret_key,
            "AWS_SESSION_TOKEN": s.creds.session_token,
            "AWS_ENDPOINT_URL": s.moto.endpoint,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",  # as Lambda sets it
        }
        if args.tls:
            env.update(tls_upstream(s.moto.host, s.moto.port, s.tmp, stack))
        base = None
        if args.base:
            from bench.bench_compare import base_layer  # only with --base

            base = base_layer(args.base, s.python, s.tmp)
        with zero_cost_server(s.python) as zero_port:
            ctx = Context(
                extension=s.executable,
                python=s.python,
                runtime_python=Path(sys.executable),
                env=env,
                tmp=s.tmp,
                zero_cost_port=zero_port,
                base_extension=base,
            )
            print(
                f"# bench_sandbox: {harness.machine()}, python {harness.python_version(s.python)}"
            )
            print(f"# {args.rounds} rounds, {args.warm} warm invokes each; medians in ms\n")
            for pin in (False, True):
                run_mode(ctx, variants, args.rounds, args.warm, pin)


def run_mode(ctx: Context, variants: list[str], rounds: int, warm: int, pin: bool) -> None:
    results: dict[str, list[Result]] = {name: [] for name in variants}
    bare: list[float] = []
    upstream: list[float] = []
    for round_number in range(rounds):
        bare.append(bare_python(ctx.python, pin))
        upstream.append(upstream_call(ctx.env))
        # Forward, then backward: no variant always runs right after the same neighbour
        # (an @base variant would otherwise always come last).
        for name in variants if round_number % 2 == 0 else variants[::-1]:
            results[name].append(cold_start(name, ctx, warm=warm, pin=pin))
    mode = "pinned to one CPU (taskset -c 0)" if pin else f"all {os.cpu_count()} CPUs"
    print(f"## {mode}\n")
    print(
        "| variant | register | extension's next | init end | first answer | warm p50 "
        "| extension CPU | to first answer |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    med: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        registers = [r.register for r in runs if r.register is not None]
        med[name] = {
            "register": statistics.median(registers) * 1e3 if registers else 0.0,
            "init": statistics.median(r.init for r in runs) * 1e3,
            "next": statistics.median(r.ext_next or 0.0 for r in runs) * 1e3,
            "first": statistics.median(r.first_answer for r in runs) * 1e3,
            "warm": statistics.median(t for r in runs for t in r.warm) * 1e3 if warm else 0.0,
            "cpu": statistics.median(r.cpu for r in runs) * 1e3,
            "cpu_to_first": statistics.median(r.cpu_to_first for r in runs) * 1e3,
        }
        m = med[name]
        register = f"{m['register']:.1f}" if registers else "-"
        ext_next = f"{m['next']:.1f}" if registers else "-"
        cpu = f"{m['cpu']:.1f} | {m['cpu_to_first']:.1f}" if m["cpu"] else "- | -"
        print(
            f"| {name} | {register} | {ext_next} | {m['init']:.1f} | {m['first']:.1f} "
            f"| {m['warm']:.2f} | {cpu} |"
        )
    bare_ms = statistics.median(bare) * 1e3
    print(f"| bare `python3 -I -S -c pass` (Popen to exit) | {bare_ms:.1f} | | | | | | |")
    upstream_ms = statistics.median(upstream) * 1e3
    print(
        f"| one upstream call (GetSecretValue, new connection) | | | | {upstream_ms:.1f} | | | |\n"
    )
    goals = []
    # Issue 18's goals; pinned to one CPU the first answer may take up to 1.75x.
    answer_goals = (1.75, 1.75) if pin else (1.25, 1.4)
    rng = random.Random(SEED)
    for suffix in ("", "@base"):
        for name, goal in zip(("ext-prefetch", "ext"), answer_goals, strict=True):
            if {name + suffix, "zero-cost"} <= med.keys():
                ratio = med[name + suffix]["first"] / med["zero-cost"]["first"]
                per_round = paired_ratios(results[name + suffix], results["zero-cost"])
                low, high = bootstrap_median(per_round, rng)
                goals.append(
                    f"first answer, {name}{suffix} / zero-cost: {ratio:.2f} (goal <= {goal});"
                    f" per round {statistics.median(per_round):.3f}"
                    f" (90%: {low:.3f}..{high:.3f})"
                )
        if {f"ext{suffix}", "zero-cost"} <= med.keys():
            # No goal: the same against a floor that makes the one upstream call too.
            ratio = med[f"ext{suffix}"]["first"] / (med["zero-cost"]["first"] + upstream_ms)
            goals.append(
                f"first answer, ext{suffix} / (zero-cost + one upstream call): {ratio:.2f}"
            )
    if {"bare-ext", "zero-cost"} <= med.keys():
        # No goal: the floor of any Python extension in this sandbox, and where ours stands
        # above it (prefetched, both answer the first request from memory).
        ratio = med["bare-ext"]["first"] / med["zero-cost"]["first"]
        goals.append(f"first answer, bare-ext / zero-cost: {ratio:.2f} (any Python extension)")
        for name in ("ext-prefetch", "ext"):
            if name in med:
                ratio = med[name]["first"] / med["bare-ext"]["first"]
                goals.append(f"first answer, {name} / bare-ext: {ratio:.2f}")
    if "ext" in med:
        ratio = med["ext"]["register"] / bare_ms
        goals.append(f"exec->register, ext / bare python: {ratio:.2f} (goal <= 1.5)")
    if {"ext", "minimal-ext"} <= med.keys():
        ratio = med["ext"]["next"] / med["minimal-ext"]["next"]
        goals.append(f"exec->first next, ext / minimal-ext: {ratio:.2f} (goal <= 1.0)")
    if {"ext-unused", "minimal-ext"} <= med.keys():
        # No goal: the same handler beside each, so the end of Lambda's init compares what
        # the two extensions cost the function, wherever each places its `register` (on one
        # CPU the runtime shares it with whatever an extension does after registering).
        ratio = med["ext-unused"]["init"] / med["minimal-ext"]["init"]
        goals.append(f"init end, ext-unused / minimal-ext: {ratio:.2f}")
    for name in [name for name in med if name.startswith("ext")]:
        if "minimal-ext" in med:  # no goal: what the extension's own work costs in CPU
            ratio = med[name]["cpu"] / med["minimal-ext"]["cpu"]
            to_first = med[name]["cpu_to_first"] / med["minimal-ext"]["cpu_to_first"]
            goals.append(
                f"extension CPU, {name} / minimal-ext: {ratio:.2f}"
                f" (to the first answer: {to_first:.2f})"
            )
    for line in goals:
        print(f"- {line}")
    print()


if __name__ == "__main__":
    main()
