"""Hardening: a seeded fuzzer sends 100k+ malformed requests to the real extension process."""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests import malformed_requests
from tests.conftest import SECRET_STRING_V2, Moto
from tests.extension_process import ExtensionProcess
from tests.hardening_support import exchange, half_close, parse_responses, read_to_eof, secret_path

SEED = 20_240_611
TOTAL_REQUESTS = 100_000
CLIENT_THREADS = 4
SLOWLORIS_THREADS = 3
SLOWLORIS_GAP_SECONDS = 0.01
# Trickled one byte at a time: a request line the server must refuse once it has it all.
SLOWLORIS_REQUEST = b"GET /ping HTTP/9.9\r\nHost: localhost\r\nX-Slow: " + b"z" * 20 + b"\r\n\r\n"
# Only to end a hung run; the fuzz normally takes well under a minute.
RUN_TIMEOUT_SECONDS = 240.0
MAX_REPORTED_FAILURES = 20


@dataclass
class Tally:
    """What the client threads saw, merged under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    answers: int = 0
    silent_closes: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        with self.lock:
            if len(self.failures) < MAX_REPORTED_FAILURES:
                self.failures.append(message)


def _check_batch(port: int, token: bytes, index: int, tally: Tally) -> int:
    """Send batch `index` on one connection; return how many requests it held."""
    batch = malformed_requests.batch(SEED, index, token)
    raw = exchange(port, batch.data)
    try:
        parsed = parse_responses(raw, bodyless_last=batch.bodyless_last)
    except AssertionError as exc:
        tally.fail(f"batch {index}: {exc}")
        return batch.requests
    allowed = {
        "yes": (batch.keep_alive + 1,),
        "no": (batch.keep_alive,),
        "maybe": (batch.keep_alive, batch.keep_alive + 1),
    }[batch.terminal_answer]
    answered = len(parsed.statuses)
    if answered not in allowed or parsed.leftover:
        tally.fail(
            f"batch {index} ({batch.terminal}): {answered} answers to {batch.keep_alive} keep-alive"
            f" requests + 1, leftover {parsed.leftover[:80]!r}"
        )
    low = [status for status in parsed.statuses if status < 400]
    if low:
        tally.fail(f"batch {index} ({batch.terminal}): statuses below 400: {low}")
    with tally.lock:
        tally.requests += batch.requests
        tally.answers += answered
        tally.silent_closes += batch.requests - answered
        tally.statuses.update(parsed.statuses)
        tally.kinds[batch.terminal] += 1
    return batch.requests


def _client(port: int, token: bytes, indices: Iterator[int], tally: Tally) -> None:
    try:
        while True:
            with tally.lock:
                if tally.requests >= TOTAL_REQUESTS:
                    return
                index = next(indices)
            _check_batch(port, token, index, tally)
    except Exception as exc:  # reported by the test, not lost in a thread
        tally.fail(f"client thread died: {exc!r}")


def _slowloris(port: int, done: threading.Event, tally: Tally) -> None:
    """Trickle malformed requests byte by byte until the fuzz is over; each must be refused."""
    try:
        while not done.is_set():
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    for byte in SLOWLORIS_REQUEST:
                        sock.sendall(bytes([byte]))
                        time.sleep(SLOWLORIS_GAP_SECONDS)
                    half_close(sock)
                parsed = parse_responses(read_to_eof(sock))
            if any(status < 400 for status in parsed.statuses) or len(parsed.statuses) > 1:
                tally.fail(f"slowloris answered {parsed.statuses}")
            with tally.lock:
                tally.requests += 1
                tally.answers += len(parsed.statuses)
                tally.silent_closes += 1 - len(parsed.statuses)
                tally.statuses.update(parsed.statuses)
                tally.kinds["slowloris"] += 1
    except Exception as exc:
        tally.fail(f"slowloris thread died: {exc!r}")


def test_batches_are_deterministic_and_never_a_valid_request() -> None:
    first = malformed_requests.batch(SEED, 7, b"token-fixture")
    assert first == malformed_requests.batch(SEED, 7, b"token-fixture")
    assert first != malformed_requests.batch(SEED, 8, b"token-fixture")
    assert first.requests == first.keep_alive + 1
    assert len(malformed_requests.one_mb_query(b"t")) > 1_000_000


def test_fuzzed_malformed_requests_are_refused_and_the_server_survives(
    extension: ExtensionProcess, moto: Moto
) -> None:
    assert extension.token is not None
    token = extension.token.encode()
    tally = Tally()
    indices = itertools.count()
    done = threading.Event()
    slow = [
        threading.Thread(target=_slowloris, args=(extension.port, done, tally), daemon=True)
        for _ in range(SLOWLORIS_THREADS)
    ]
    clients = [
        threading.Thread(target=_client, args=(extension.port, token, indices, tally), daemon=True)
        for _ in range(CLIENT_THREADS)
    ]
    started = time.monotonic()
    for thread in slow + clients:
        thread.start()
    deadline = started + RUN_TIMEOUT_SECONDS
    for thread in clients:
        thread.join(max(0.0, deadline - time.monotonic()))
    done.set()
    for thread in slow:
        thread.join(max(0.0, deadline + 30 - time.monotonic()))
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz: {tally.requests} requests in {elapsed:.1f} s ({tally.requests / elapsed:.0f}/s),"
        f" {tally.answers} answered, {tally.silent_closes} closed silently;"
        f" statuses {dict(sorted(tally.statuses.items()))}; terminal kinds {dict(tally.kinds)}"
    )

    assert not any(thread.is_alive() for thread in clients + slow), "the fuzz did not finish"
    assert tally.failures == []
    assert tally.requests >= TOTAL_REQUESTS
    assert tally.kinds["1 MB query"] >= 1 and tally.kinds["slowloris"] >= SLOWLORIS_THREADS
    assert extension.proc.poll() is None, extension.output()
    assert extension.get("/ping", token=None)[0] == 200
    status, body = extension.get_json(secret_path(moto.secret_name))
    assert status == 200 and body["SecretString"] == SECRET_STRING_V2
    extension.proc.send_signal(signal.SIGTERM)
    assert extension.proc.wait(timeout=10) == 0
    assert "Traceback" not in extension.output()
