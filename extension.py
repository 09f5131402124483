"""Entry point: register with Lambda, serve the local API, prefetch, then wait for SHUTDOWN."""

from __future__ import annotations

import os
import signal
import sys

import config
from aws_client import VERSION, AwsClient
from cache import Cache
from errors import ConfigError
from lifecycle import ExtensionsApi
from local_server import start
from logs import log, setup
from lookups import Lookups


class Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to unwind a blocking `next` or pause."""


def _on_signal(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def main() -> int:
    """Run the extension until SHUTDOWN or a signal; return the process exit code."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    # Lambda insists that Lambda-Extension-Name equals the executable's file name.
    name = os.path.basename(sys.argv[0])
    runtime_api = config.runtime_api(os.environ)
    api = ExtensionsApi(runtime_api) if runtime_api else None
    try:
        settings = config.load(os.environ)
    except ConfigError as exc:
        setup("info", json_format=False)
        return _fail(api, name, "Extension.InvalidConfiguration", str(exc))
    setup(settings.log_level, json_format=settings.log_json)
    for warning in settings.warnings:
        log.warning(warning)
    try:
        if api is not None:
            api.register(name, ["INVOKE", "SHUTDOWN"] if settings.snapstart else ["SHUTDOWN"])
        return _serve(settings, api, name)
    except Stop as stop:
        log.info(f"stopping on {stop}")
        return 0
    except Exception as exc:  # a bug: tell Lambda rather than vanish without a word
        return _fail(api, name, "Extension.Crash", f"unexpected {type(exc).__name__}")


def _serve(settings: config.Config, api: ExtensionsApi | None, name: str) -> int:
    log.debug(f"configuration: {settings.describe()}")
    client = AwsClient(
        settings.aws,
        max_connections=settings.max_connections,
        secrets_manager_timeout_ms=settings.secrets_manager_timeout_ms,
        ssm_timeout_ms=settings.ssm_timeout_ms,
    )
    lookups = Lookups(
        client,
        Cache(settings.effective_cache_size, stale_if_error=settings.stale_if_error_seconds),
        secrets_manager_ttl=settings.secrets_manager_ttl,
        ssm_ttl=settings.ssm_ttl,
        cache_until_invoked=settings.snapstart,
    )
    try:
        servers = start(
            lookups,
            port=settings.http_port,
            token=settings.auth_token,
            max_connections=settings.max_client_connections,
            idle_timeout=settings.idle_timeout_seconds,
        )
    except OSError as exc:
        message = f"cannot listen on port {settings.http_port}: {exc.strerror or exc}"
        return _fail(api, name, "Extension.PortUnavailable", message)
    log.info(f"parameters-secrets-extension {VERSION} listening on port {servers.port}")
    try:
        if not settings.snapstart:
            # Under SnapStart nothing may be fetched before the first invoke (SPEC 5.5).
            lookups.prefetch(settings.prefetch)
        if api is None:
            while True:
                signal.pause()
        return _wait_for_shutdown(api, lookups)
    finally:
        servers.shutdown()
        client.close()


def _wait_for_shutdown(api: ExtensionsApi, lookups: Lookups) -> int:
    while True:
        try:
            event = api.next_event()
        except (OSError, RuntimeError) as exc:
            log.error(f"lost the Extensions API: {exc}")
            return 1
        if event.get("eventType") == "SHUTDOWN":
            log.info(f"shutting down: {event.get('shutdownReason', 'unknown')}")
            return 0
        lookups.start_caching()


def _fail(api: ExtensionsApi | None, name: str, error_type: str, message: str) -> int:
    """Log a fatal failure and report it to Lambda (registering first if need be)."""
    log.error(message)
    if api is not None:
        try:
            if not api.identifier:
                api.register(name, ["SHUTDOWN"])
            api.report_error(error_type, message)
        except (OSError, RuntimeError) as exc:
            log.error(f"could not report {error_type} to the Extensions API: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
