"""Shared set-up for the bench scripts: moto, the built layer, the extension, floors, clients.

Everything listens on 127.0.0.1 at a port the kernel picks (the extension, whose port is an
environment variable, at a port that was free a moment before), and is stopped by the context
manager that started it. Moto runs in a process of its own so that its work never competes
for this process's GIL with the client being timed.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from build_layer import build_zipapp, native_launcher
from bundled_python.build import host_arch
from parameters_secrets_extension.version import NAME
from tests.conftest import (
    REGION,
    LambdaCredentials,
    Moto,
    _bootstrap,
    _set_auth,
    free_port,
)
from tests.extension_process import TOKEN_HEADER, ExtensionProcess, lambda_env
from tests.fake_extensions_api import IDENTIFIER, FakeExtensionsApi
from tests.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

__all__ = [
    "IDENTIFIER",
    "REGION",
    "TOKEN_HEADER",
    "FaultProxy",
    "LambdaCredentials",
    "Moto",
    "free_port",
]

# The floor for an extension's start: a Python extension that imports what a stdlib server
# needs (http.server, threading), registers, and calls `next`. Run it with `python3 -I -S`.
MINIMAL_EXTENSION = """\
import http.client, http.server, json, os, threading
api = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
api.request("POST", "/2020-01-01/extension/register", json.dumps({"events": ["SHUTDOWN"]}),
            {"Lambda-Extension-Name": "minimal-ext"})
answer = api.getresponse()
answer.read()
ident = answer.getheader("Lambda-Extension-Identifier")
api.request("GET", "/2020-01-01/extension/event/next",
            headers={"Lambda-Extension-Identifier": ident})
api.getresponse().read()
"""

SECRET_PATH = "/secretsmanager/get?secretId="
PARAM_PATH = "/systemsmanager/parameters/get?name="

_MOTO_MAIN = """\
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


_SPINNER = """\
import os
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
while True:
    pass
"""


@contextlib.contextmanager
def keep_awake(enabled: bool) -> Iterator[str]:
    """With `enabled`, one SCHED_IDLE busy loop per CPU; yields how the run was done.

    An idle vCPU of this VM takes of the order of 100 us to wake, which a loopback round trip
    pays on each side. A SCHED_IDLE task runs only when nothing else wants the CPU, so it
    keeps the vCPUs from idling without taking time from what is measured.
    """
    if not enabled:
        yield "vCPUs free to idle"
        return
    spinners = [
        subprocess.Popen([sys.executable, "-I", "-S", "-c", _SPINNER])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield "vCPUs kept awake by SCHED_IDLE spinners"
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@dataclass(frozen=True)
class Setup:
    """What every bench needs: moto with its data, Lambda-like credentials, the built layer."""

    moto: Moto
    creds: LambdaCredentials
    executable: Path
    layer_zip: Path
    python: Path
    path: str  # PATH for subprocesses: `python3` there is `python`, not a pyenv shim
    tmp: Path

    def boto3_client(self, service: str) -> object:
        """A boto3 client with the extension's own (assumed-role) credentials, to moto."""
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=REGION,
            endpoint_url=self.moto.endpoint,
            aws_access_key_id=self.creds.access_key,
            aws_secret_access_key=self.creds.secret_key,
            aws_session_token=self.creds.session_token,
        )


def python_version(python: Path) -> str:
    """X.Y.Z, asking only sys: the layer's own interpreter carries few modules."""
    done = subprocess.run(
        [str(python), "-I", "-S", "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def load_averages() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def machine() -> str:
    """One line naming the machine, as the tables' headers show it."""
    return f"{os.cpu_count()} cores, {platform.machine()}, load {os.getloadavg()[0]:.2f}"


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """A ThreadedMotoServer in a subprocess on 127.0.0.1:0; yields its endpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO_MAIN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def build_layer(python: Path, out_dir: Path) -> tuple[Path, Path]:
    """Build the layer with build_layer.py and unpack it like /opt; (zip, executable)."""
    layer_zip = out_dir / "layer.zip"
    command = [str(python), str(ROOT / "build_layer.py"), "--arch", "x86_64"]
    done = subprocess.run(
        [*command, "--output", str(layer_zip)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"build_layer.py failed:\n{done.stderr}")
    return layer_zip, unpack_layer(layer_zip.read_bytes(), out_dir / "opt")


def unpack_layer(layer: bytes, opt: Path) -> Path:
    """Unpack a layer zip into `opt` as Lambda does, modes included; return the executable."""
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        for info in archive.infolist():
            target = opt / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod(stat.S_IMODE(info.external_attr >> 16))
    return opt / "extensions" / NAME


def source_only(out: Path) -> Path:
    """This tree's executable built without bytecode: every import compiles its source."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(build_zipapp(ROOT, native_launcher(host_arch()), pythons={}))
    out.chmod(0o755)
    return out


def no_launcher(main: str) -> bytes:
    """build_zipapp's launcher for a zipapp that python3 runs itself: none."""
    return b""


def launcher_program(executable: Path) -> str:
    """The -c program the launcher passes to python3: the zip's __main__.py (an older build's
    sh launcher holds it between main=' and the closing quote)."""
    data = executable.read_bytes()
    if data.startswith(b"#!/bin/sh\n") and b"main='" in data[: data.index(b"PK\x03\x04")]:
        script = data[: data.index(b"PK\x03\x04")].decode()
        return script.split("main='", 1)[1].split("'\n", 1)[0]
    with zipfile.ZipFile(executable) as archive:
        return archive.read("__main__.py").decode()


def importing(executable: Path, statement: str) -> str:
    """The launcher's -c program with `statement` in place of starting boot: run as
    `python3 -I -S -c <it> <executable>`, it imports from the executable as the extension
    does (whatever the layout: an older build's program sets up its own)."""
    main = launcher_program(executable)
    start = main.rindex("\n", 0, main.index("import boot\n")) + 1  # that line's start
    return main[:start] + statement + "\n"


def interpreter_path(python: Path, tmp: Path) -> str:
    """A PATH whose `python3` is the real interpreter, as /var/lang/bin/python3 is on Lambda.

    A pyenv shim is a bash script that costs tens of milliseconds per start.
    """
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python.resolve())
    return f"{bin_dir}:/usr/bin:/bin"


@contextlib.contextmanager
def setup(python: str | None = None) -> Iterator[Setup]:
    """Moto (bootstrapped, signatures checked), assume-role credentials and the built layer."""
    interpreter = Path(python or sys.executable).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name, moto_process() as endpoint:
        tmp = Path(tmp_name)
        layer_zip, executable = build_layer(interpreter, tmp)
        _set_auth(endpoint, b"inf")
        moto = _bootstrap(endpoint)
        _set_auth(endpoint, b"0")
        sts = moto.boto3_client("sts")
        got = sts.assume_role(RoleArn=moto.role_arn, RoleSessionName="bench")  # type: ignore[attr-defined]
        c = got["Credentials"]
        creds = LambdaCredentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
        try:
            yield Setup(
                moto,
                creds,
                executable,
                layer_zip,
                interpreter,
                interpreter_path(interpreter, tmp),
                tmp,
            )
        finally:
            _set_auth(endpoint, b"inf")


@dataclass
class Running:
    """A started extension: its process, its fake Extensions API and its local port."""

    ext: ExtensionProcess
    fake: FakeExtensionsApi
    port: int
    token: str
    started: float  # perf_counter just before Popen
    first_next: float  # perf_counter when the fake received the first `next`

    @property
    def pid(self) -> int:
        return self.ext.proc.pid

    def shutdown(self) -> float:
        """Send SHUTDOWN and wait for the exit; seconds from the send to the reaped exit."""
        sent = time.perf_counter()
        self.fake.shutdown_extension()
        code = wait_exit(self.ext.proc, 10)
        elapsed = time.perf_counter() - sent
        if code != 0:
            raise RuntimeError(f"extension exited {code}:\n{self.ext.output()[-2000:]}")
        return elapsed


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Block in waitpid (Popen.wait with a timeout polls, adding up to 50 ms); kill if late."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        return proc.wait()
    finally:
        watchdog.cancel()


@contextlib.contextmanager
def extension(
    s: Setup,
    name: str = "extension",
    env: dict[str, str] | None = None,
    executable: Path | None = None,
) -> Iterator[Running]:
    """Start the layer's executable (or `executable`) as Lambda would; wait for the first next."""
    fake = FakeExtensionsApi()
    marks: list[float] = []
    fake.on_first_next = lambda: marks.append(time.perf_counter())
    port = free_port()
    environ = lambda_env(s.moto, s.creds, port, fake.address, **(env or {}))
    environ["PATH"] = s.path
    try:
        started = time.perf_counter()
        ext = ExtensionProcess(executable or s.executable, environ, s.tmp / f"{name}.log")
        with ext:
            if not fake.first_next.wait(30):
                raise RuntimeError(f"no first next from {name}:\n{ext.output()[-2000:]}")
            yield Running(ext, fake, port, s.creds.session_token, started, marks[0])
            if ext.proc.poll() is None:
                fake.shutdown_extension()
                wait_exit(ext.proc, 10)
    finally:
        fake.stop()


@contextlib.contextmanager
def port_of(command: list[str]) -> Iterator[int]:
    """A server in a subprocess that prints its port on a line and stops when its stdin
    closes (floor_server.py and its kind); yields the port, and stops it after."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def floor_server(
    python: Path, body: bytes, content_type: str = "application/json"
) -> Iterator[int]:
    """bench/floor_server.py in a subprocess, answering `body` to every GET; yields its port."""
    body_file = tempfile.NamedTemporaryFile(prefix="floor-body-", delete=False)  # noqa: SIM115
    with body_file:
        body_file.write(body)
    command = [str(python), "-I", "-S", str(BENCH / "floor_server.py"), body_file.name]
    try:
        with port_of([*command, content_type]) as port:
            yield port
    finally:
        os.unlink(body_file.name)


class KeepAlive:
    """One keep-alive HTTP/1.1 connection on a raw socket: the thinnest client there is."""

    def __init__(self, port: int, path: str, token: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        token_line = f"{TOKEN_HEADER}: {token}\r\n" if token else ""
        self._headers = f"Host: localhost\r\n{token_line}\r\n".encode()
        self.request = self._build(path)

    def _build(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\n".encode() + self._headers

    def get(self, path: str | None = None) -> tuple[int, bytes]:
        """Send the request (for `path`, else the one given at creation); (status, body)."""
        sock = self.sock
        sock.sendall(self.request if path is None else self._build(path))
        data = sock.recv(65536)
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("closed mid-response")
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        length = int(found.group(1)) if found else 0
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError("closed mid-body")
            body += more
        return int(head[9:12]), body

    def close(self) -> None:
        self.sock.close()


def percentile(samples: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of samples."""
    ordered = sorted(samples)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def rss_kb(pid: int) -> int:
    """VmRSS of a process, in KiB, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(found.group(1))


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of a process so far, in clock ticks, from /proc."""
    # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def idle_rss_kb(pid: int, quiet: float = 0.1, limit: float = 5.0) -> int:
    """VmRSS once the process has used no CPU for `quiet` seconds (its start-up work, such as
    a warm-up thread, done), in KiB; RuntimeError if it is still busy after `limit` seconds."""
    deadline = time.monotonic() + limit
    ticks = cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_ticks(pid)
        if now == ticks:
            return rss_kb(pid)
        ticks = now
    raise RuntimeError(f"pid {pid} still used CPU after {limit} s: not idle")


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, ready to paste into BENCHMARKS.md."""
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def need(tool: str, install: str) -> str:
    """The path of a command-line tool, or exit saying how to install it."""
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(f"{tool} not found; install it with: {install}")
    return found
