"""End to end: crafted ARNs and endpoint settings never steer the real extension to a host.

The extension runs from the built layer without an endpoint override, so a region field
pasted into the host name would turn `https://secretsmanager.x@127.a.b.c#.amazonaws.com`
into a TLS connection to 127.a.b.c:443. A counting listener waits there, on a random
loopback address so parallel runs do not collide: every crafted id must be a 400 before
any connection, and the listener must count none.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import free_port
from tests.extension_process import ExtensionProcess
from tests.hardening_support import PARAM_PATH, SECRET_PATH
from tests.stub_upstream import StubUpstream

TOKEN = "ssrf-test-session-token"
PASSWORD = "hunter2-endpoint-password"
ACCOUNT = "123456789012"
HOST = "LISTENER_ADDRESS"  # survives quoting; replaced by the listener address at run time
SM, SSM = "secretsmanager", "ssm"

# Region fields that, pasted into a host name, point somewhere else or break the URL.
CRAFTED_REGIONS = [
    f"x@{HOST}#",
    f"x@{HOST}/",
    f"x@{HOST}?",
    f"x@{HOST}\\",
    f"x@{HOST}%2F",
    f"{HOST}#",
    f"\u0445@{HOST}#",
    "us-east-1.evil.example",
    "us-east-1.evil.example#",
    "[::1]",
    "x@[::1]#",
    " us-east-1",
    "us-east-1 ",
    "us-east-1\t",
    "us-\r\neast-1",
    "us-east-1\x00",
    "US-EAST-1",
    "us-\u00e9ast-1",
    "us-east-\uff11",
    "a" * 298 + "-1",
    f"x@{HOST}#" + "a" * 300,
]


def _arn(service: str, region: str, partition: str = "aws") -> str:
    resource = "secret:x-AbCdEf" if service == SM else "parameter/x"
    return f"arn:{partition}:{service}:{region}:{ACCOUNT}:{resource}"


def _path(service: str, resource_id: str) -> str:
    return (SECRET_PATH if service == SM else PARAM_PATH) + quote(resource_id, safe="")


def _crafted_paths(service: str) -> list[str]:
    start = SECRET_PATH if service == SM else PARAM_PATH
    resource = "secret:x" if service == SM else "parameter/x"
    other = SSM if service == SM else SM
    return [
        *(_path(service, _arn(service, region)) for region in CRAFTED_REGIONS),
        # Percent-escapes the local server decodes into '#', '/' and '?'.
        f"{start}arn:aws:{service}:x@{HOST}%23:{ACCOUNT}:{resource}",
        f"{start}arn:aws:{service}:x@{HOST}%2F:{ACCOUNT}:{resource}",
        f"{start}arn:aws:{service}:x@{HOST}%3F:{ACCOUNT}:{resource}",
        # Unknown partitions, which used to fall back to amazonaws.com.
        _path(service, _arn(service, f"x@{HOST}#", partition="evil")),
        _path(service, _arn(service, "us-east-1", partition="aws-evil")),
        # Real regions of another partition.
        _path(service, _arn(service, "cn-north-1")),
        _path(service, _arn(service, "us-gov-west-1")),
        _path(service, _arn(service, "us-east-1", partition="aws-cn")),
        _path(service, _arn(service, f"x@{HOST}#", partition="aws-cn")),
        # A well-formed ARN of the other service.
        _path(service, _arn(other, "us-east-1")),
    ]


def _env(**extra: str) -> dict[str, str]:
    """A Lambda-like environment with static credentials and no endpoint override."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDSSRFTEST",
        "AWS_SECRET_ACCESS_KEY": "ssrf-test-secret-key",
        "AWS_SESSION_TOKEN": TOKEN,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(free_port()),
        "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL": "debug",
        # Were a crafted host ever reached, each attempt would end quickly.
        "SECRETS_MANAGER_TIMEOUT_MILLIS": "2000",
        "SSM_PARAMETER_STORE_TIMEOUT_MILLIS": "2000",
    }
    env.update(extra)
    return {name: value for name, value in env.items() if value}


@pytest.fixture(scope="module")
def listener() -> Iterator[StubUpstream | None]:
    """A counter on a random 127.x.y.z:443, or None where port 443 is not ours to bind."""
    rng = random.Random()  # only spreads parallel runs over loopback addresses
    address = f"127.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(2, 254)}"
    try:
        counter = StubUpstream(address, 443, serve=False)
    except PermissionError:
        yield None  # the 400s are still checked; the connection count cannot be
        return
    with counter:
        yield counter


@pytest.fixture(scope="module")
def extension(
    extension_executable: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExtensionProcess]:
    log = tmp_path_factory.mktemp("ssrf") / "extension.log"
    with ExtensionProcess(extension_executable, _env(), log) as ext:
        ext.wait_listening()
        yield ext


def _quiet(ext: ExtensionProcess) -> None:
    """The process is alive and logged no error or traceback."""
    output = ext.output()
    assert " ERROR " not in output and "Traceback" not in output, output[-3000:]
    assert ext.proc.poll() is None


@pytest.mark.parametrize("path", _crafted_paths(SM) + _crafted_paths(SSM))
def test_crafted_arn_is_a_400_and_connects_nowhere(
    extension: ExtensionProcess, listener: StubUpstream | None, path: str
) -> None:
    target = path.replace(HOST, listener.address if listener else "127.0.0.1")
    status, body = extension.get_json(target)
    connections = listener.accepted if listener else 0
    assert (status, body["__type"], connections) == (400, "InvalidParameterException", 0), body
    _quiet(extension)


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_crafted_configured_region_is_a_clear_error_and_connects_nowhere(
    extension_executable: Path,
    tmp_path: Path,
    listener: StubUpstream | None,
    variable: str,
) -> None:
    region = f"x@{listener.address if listener else '127.0.0.1'}#"
    env = _env(**{"AWS_REGION": "", variable: region})
    with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
        ext.wait_listening()
        for path in (_path(SM, "app/db"), _path(SSM, "/app/x")):
            status, body = ext.get_json(path)
            assert body["__type"] == "InvalidRegionException", body
            assert status == 500
            assert "AWS_REGION" in str(body["message"])
        assert ext.proc.poll() is None
    if listener is not None:
        assert listener.accepted == 0


@pytest.fixture
def upstream_with_password(
    extension_executable: Path, tmp_path: Path
) -> Iterator[tuple[ExtensionProcess, StubUpstream]]:
    """The extension pointed at a stub upstream through endpoint URLs with userinfo."""
    with StubUpstream() as upstream:
        origin = f"127.0.0.1:{upstream.port}"
        env = _env(
            AWS_ENDPOINT_URL=f"http://admin:{PASSWORD}@{origin}",
            AWS_ENDPOINT_URL_SECRETS_MANAGER=f"http://sm:{PASSWORD}@{origin}/",
        )
        with ExtensionProcess(extension_executable, env, tmp_path / "extension.log") as ext:
            ext.wait_listening()
            yield ext, upstream


def test_endpoint_userinfo_never_reaches_the_upstream(
    upstream_with_password: tuple[ExtensionProcess, StubUpstream],
) -> None:
    ext, upstream = upstream_with_password
    for path in (_path(SM, "app/db"), _path(SSM, "/app/x")):
        status, body = ext.get_json(path)
        assert (status, body["__type"]) == (400, "AccessDeniedException")
    assert upstream.header_values("host") == [f"127.0.0.1:{upstream.port}"] * 2
    assert not any(PASSWORD.encode() in head or b"@" in head for head in upstream.heads)


def test_endpoint_password_is_in_no_log_line(
    upstream_with_password: tuple[ExtensionProcess, StubUpstream],
) -> None:
    ext, _ = upstream_with_password
    for path in (_path(SM, "app/db"), _path(SSM, "/app/x")):
        assert ext.get_json(path)[0] == 400
    output = ext.output()
    assert " DEBUG " in output  # the debug configuration line was written
    assert PASSWORD not in output
