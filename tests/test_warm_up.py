"""The AWS client's warm-up steps aside for the first request instead of holding it up.

The warm-up runs niced, on a CPU it may share with the function's runtime: a request that
waited for it would wait for a thread that barely runs. Here the warm-up is held in one of its
steps (an import that lasts until the test ends it) while a request wants the client.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from parameters_secrets_extension import config
from parameters_secrets_extension.aws.lazy_client import CLIENT_MODULES, LazyClient
from tests.conftest import SECRET_STRING_V2, LambdaCredentials, Moto, wait_until
from tests.extension_process import lambda_env

# A module whose import lasts until the test sets RELEASE: the warm-up's first step here.
HELD_STEP = """\
import threading

ENTERED = threading.Event()
RELEASE = threading.Event()
ENTERED.set()
RELEASE.wait()
"""


def _opened_to_read(fifo: Path) -> bool:
    """Whether some process has `fifo` open to read (a write end opens only then)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:  # ENXIO: no reader
        if exc.errno != errno.ENXIO:
            raise
        return False
    return True


def test_a_request_during_the_warm_up_makes_the_client_and_the_warm_up_stops(
    tmp_path: Path,
    moto: Moto,
    lambda_credentials: LambdaCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"held_step_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(HELD_STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    # SSM over https with a FIFO for its CA bundle: the warm-up's last step (the trust store)
    # would open it to read. Secrets Manager stays plain http, to moto.
    bundle = tmp_path / "bundle.pem"
    os.mkfifo(bundle)
    env = lambda_env(
        moto,
        lambda_credentials,
        2773,
        None,
        AWS_ENDPOINT_URL_SECRETS_MANAGER=moto.endpoint,
        AWS_ENDPOINT_URL_SSM="https://127.0.0.1:9",
        AWS_CA_BUNDLE=str(bundle),
    )
    lazy = LazyClient(config.load(env), modules=(name, *CLIENT_MODULES))
    warm_up = threading.Thread(target=lazy.warm, name="warm-up", daemon=True)
    answers: list[object] = []

    def request() -> None:
        answers.append(lazy.get().get_secret_value(moto.secret_name)["SecretString"])

    try:
        warm_up.start()
        wait_until(lambda: hasattr(sys.modules.get(name), "ENTERED"), 10, "the held step")
        held: ModuleType = sys.modules[name]
        assert held.ENTERED.wait(10)
        asking = threading.Thread(target=request, daemon=True)
        asking.start()
        asking.join(20)  # a request that waited on the warm-up would still be waiting
        assert not asking.is_alive(), "the request waited for the warm-up"
        assert answers == [SECRET_STRING_V2]
        assert warm_up.is_alive()  # answered while the warm-up was still in its step
        held.RELEASE.set()
        warm_up.join(20)
        assert not warm_up.is_alive()
        # It stopped there: a warm-up that went on would have read the trust store.
        assert not _opened_to_read(bundle)
    finally:
        if name in sys.modules:
            sys.modules[name].RELEASE.set()
        _opened_to_read(bundle)  # a reader blocked on it gets end of file: it goes on
        warm_up.join(10)
        sys.modules.pop(name, None)
        lazy.close()
