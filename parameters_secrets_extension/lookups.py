"""The glue between the local API and AWS: cache keys, per-service TTLs, JSON bytes, batch and
path reads, prefetch. The log lines of upstream failures and stale serves: failure_log.py."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence

from cache import Cache

from . import batches, services
from .errors import (
    ExtensionError,
    PathTooLarge,
    RequestError,
    error_type_of,
    is_not_there,
    is_transient,
)
from .failure_log import MAX_TRACKED_FAILURES, FailureLog, is_client_mistake, printable
from .logs import log
from .metrics import Metrics
from .parameter_names import ParameterName, parameter_name
from .services import SECRETS_MANAGER, SERVICES, SSM, Service

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from typing import Protocol, TypeVar

    # The calls Lookups makes are AwsClient's own methods, typed once, where they are written.
    from .aws.operations import AwsClient as Upstream
    from .revalidation import Revalidation

    R = TypeVar("R")

    class Client(Protocol):
        """An AwsClient, or a LazyClient that makes one on first use."""

        def deadline(self, service: Service) -> float: ...

        def get(self) -> Upstream: ...


# Each group of a prefetch is one batch call, of at most what the batch APIs take.
PREFETCH_GROUP = {service.name: service.max_batch_ids for service in SERVICES}
_PATH_SELECTORS = ("recursive", "withDecryption")
# The single answer's last member; a batch item is the single answer without it.
_METADATA_TAIL = b',"ResultMetadata":{}}'
_PARAMETER_HEAD = b'{"Parameter":'
ROLE_KEY = "roleArn"  # tags the role member of a cache key (see in_role)


def in_role(key: tuple[object, ...], role: str | None) -> tuple[object, ...]:
    """`key` in the cache namespace of `role`: a read made with an assumed role's
    credentials is cached apart from the function's own and from every other role's.

    The role goes last, as a tagged pair no other key member can equal, so that key[:2]
    (the service and the id, which log lines name) stays the same.
    """
    return key if role is None else (*key, (ROLE_KEY, role))


def encode(result: object) -> bytes:
    """`result` as the cache holds it (and local_api/sdk_protocol.py reads it)."""
    # Compact and ASCII-only, like Go's encoder minus its HTML escaping: the bytes are
    # cached as they are sent, so a hit costs no serialization at all.
    return json.dumps(result, separators=(",", ":")).encode("ascii")


class Lookups:
    """Answers secret and parameter requests as response-ready JSON bytes, through the cache."""

    def __init__(
        self,
        client: Client,
        cache: Cache,
        *,
        secrets_manager_ttl: float,
        ssm_ttl: float,
        cache_until_invoked: bool = False,
        failures: FailureLog | None = None,
        metrics: Metrics | None = None,
        max_path_parameters: int = 500,
        negative_ttl: float = 0,
        revalidate: bool = True,
    ) -> None:
        """With `cache_until_invoked` (SnapStart), nothing is cached until start_caching().

        `negative_ttl`: how long a not-found or access-denied answer (errors.is_not_there)
        is remembered per key, at most the service's TTL (0: never). `revalidate`: renew an
        expired secret read by stage through DescribeSecret (revalidation.py).
        """
        self._client = client
        self._max_path_parameters = max_path_parameters
        self._too_large = _TooLarge()
        self._cache = cache
        self._ttl = {SECRETS_MANAGER: secrets_manager_ttl, SSM: ssm_ttl}
        # Service name -> what one prefetch group of it fetches (its ids, in one role).
        self._prefetchers: dict[
            str, Callable[[list[str], str | None], list[bytes | ExtensionError]]
        ] = {
            SECRETS_MANAGER.name: self._prefetch_secrets,
            SSM.name: self._prefetch_parameters,
        }
        self._caching = not cache_until_invoked
        self._failures = failures if failures is not None else FailureLog()
        self.metrics = metrics if metrics is not None else Metrics()
        self._revalidate = revalidate
        # Made by _revalidator() when a secret read by stage first expires.
        self._revalidation: Revalidation | None = None
        self._revalidation_lock = threading.Lock()
        # Service -> the cache's `remember`: how long an error of one of its keys is kept.
        self._remember = {
            service: _remembering(min(negative_ttl, ttl)) for service, ttl in self._ttl.items()
        }

    def start_caching(self) -> None:
        """Begin caching (under SnapStart, called on the first invoke: nothing from the
        snapshot's init may be served after a restore)."""
        self._caching = True

    def _ttl_now(self, service: Service) -> float:
        """How long an answer of `service` fetched now is cached: its TTL, or 0 until
        start_caching() (under SnapStart)."""
        return self._ttl[service] if self._caching else 0

    def _revalidator(self) -> Revalidation:
        """The one Revalidation (it remembers denials across reads), made on first use: only
        an expired secret needs it (the lock is taken then, never on a hit)."""
        with self._revalidation_lock:
            if self._revalidation is None:
                # Imported here: no start needs it, so it is not loaded before `next`.
                from .revalidation import Revalidation  # noqa: PLC0415

                self._revalidation = Revalidation(self.metrics)
            return self._revalidation

    def counters(self) -> dict[str, object]:
        """The cache's counters and the upstream and local ones, as GET /metrics answers."""
        return self.metrics.counters(self._cache.info())

    def _upstream(self, role: str | None) -> Upstream:
        """The client, acting as `role` when one is given."""
        client = self._client.get()
        return client if role is None else client.as_role(role)

    def _counted(self, call: Callable[[], R]) -> R:
        """call(), counted as one upstream call (failed or not) for GET /metrics.

        A request refused here (an ARN of the wrong kind) reached no AWS at all; a path
        over its limit is one that AWS answered well: neither is an upstream error.
        """
        try:
            result = call()
        except PathTooLarge:
            self.metrics.upstream_call(None)
            raise
        except RequestError:
            raise
        except Exception as exc:
            self.metrics.upstream_call(error_type_of(exc))
            raise
        self.metrics.upstream_call(None)
        return result

    def _logged(
        self,
        key: tuple[object, ...],
        fetch: Callable[[], bytes],
        operation: str | None = None,
        selectors: tuple[str, ...] | None = None,
    ) -> Callable[[], bytes]:
        """fetch, with a log line when it fails; the caller counts the upstream calls."""

        def logged() -> bytes:
            started = time.monotonic()
            try:
                return fetch()
            except ExtensionError as exc:
                # The cache shares one fetch among concurrent misses: one record per fetch.
                seconds = time.monotonic() - started
                self._failures.record(
                    key, exc, exc.attempts, seconds, operation=operation, selectors=selectors
                )
                raise

        return logged

    def _get(
        self,
        service: Service,
        key: tuple[object, ...],
        call: Callable[[float], Mapping[str, object]],
        refresh: bool,
        renewer: Callable[[float], Callable[[bytes], bool]] | None = None,
    ) -> tuple[bytes, str]:
        # One deadline for the local request: its call, retries and any wait on another's.
        deadline = self._client.deadline(service)
        fetch = self._logged(key, lambda: encode(self._counted(lambda: call(deadline))))
        renew = None if renewer is None else renewer(deadline)
        ttl = self._ttl_now(service)
        return self._cached(
            service, key, ttl, fetch, refresh=refresh, deadline=deadline, renew=renew
        )

    def _cached(
        self,
        service: Service,
        key: Hashable,
        ttl: float,
        fetch: Callable[[], bytes],
        *,
        refresh: bool,
        deadline: float,
        renew: Callable[[bytes], bool] | None = None,
    ) -> tuple[bytes, str]:
        """`key` through the cache, as every read goes: stale-if-error with its log line,
        the service's not-found answers remembered, within the local request's deadline."""
        return self._cache.get_or_fetch(
            key,
            ttl,
            fetch,
            refresh=refresh,
            on_stale=self._failures.stale,
            deadline=deadline,
            renew=renew,
            remember=self._remember[service],
        )

    def _many(
        self,
        service: Service,
        keys: list[tuple[object, ...]],
        fetch_many: Callable[[list[int], float], dict[int, bytes | ExtensionError]],
        fetch_one: Callable[[int, float], bytes],
        refresh: bool,
        *,
        log_failures: bool,
    ) -> tuple[list[bytes | ExtensionError], ExtensionError | None]:
        """Each key through the cache as a single read goes, the misses in one batch call
        (with `refresh`, every key, as refreshNow asks of a single read), all within one
        deadline: the calls and the waits on other requests' flights. Without
        `log_failures`, a failure gets no line of the failure log: the caller writes its own."""
        ttl = self._ttl_now(service)
        operation = service.batch_operation
        deadline = self._client.deadline(service)

        def get(key: Hashable, fetch: Callable[[], bytes]) -> bytes:
            if log_failures:
                fetch = self._logged(key, fetch, operation)  # type: ignore[arg-type]
            return self._cached(service, key, ttl, fetch, refresh=refresh, deadline=deadline)[0]

        # Counted here, per call AWS receives, not per key: one batch call serves many keys.
        return batches.resolve(
            get,
            keys,
            lambda indices: self._counted(lambda: fetch_many(indices, deadline)),
            lambda index: self._counted(lambda: fetch_one(index, deadline)),
        )

    def secret(
        self,
        secret_id: str,
        version_id: str | None = None,
        version_stage: str | None = None,
        *,
        refresh: bool = False,
        role: str | None = None,
    ) -> tuple[bytes, str]:
        """GetSecretValue as JSON bytes, and the cache outcome (hit, miss, stale, ...);
        with `role`, read with that role's credentials and cached in its namespace."""
        key = in_role((SECRETS_MANAGER.name, secret_id, version_id, version_stage), role)

        def call(deadline: float) -> Mapping[str, object]:
            return self._upstream(role).get_secret_value(
                secret_id, version_id=version_id, version_stage=version_stage, deadline=deadline
            )

        if not self._revalidate or version_id is not None:  # a version id never moves
            return self._get(SECRETS_MANAGER, key, call, refresh)

        def renewer(deadline: float) -> Callable[[bytes], bool]:
            def renew(held: bytes) -> bool:  # asked only once the entry has expired
                # As the role the value is read as: its own permissions, its own denial.
                return self._revalidator().renewer(
                    lambda: self._counted(
                        lambda: self._upstream(role).describe_secret(secret_id, deadline=deadline)
                    ),
                    version_stage,
                    principal=role,
                )(held)

            return renew

        return self._get(SECRETS_MANAGER, key, call, refresh, renewer)

    def parameter(
        self,
        name: str,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
        *,
        refresh: bool = False,
        role: str | None = None,
    ) -> tuple[bytes, str]:
        """GetParameter as JSON bytes, and the cache outcome (hit, miss, stale, ...); with
        `role`, as secret() does."""
        key = in_role((SSM.name, name, version, label, with_decryption), role)

        def call(deadline: float) -> Mapping[str, object]:
            return self._upstream(role).get_parameter(
                name,
                version=version,
                label=label,
                with_decryption=with_decryption,
                deadline=deadline,
            )

        return self._get(SSM, key, call, refresh)

    def secrets(
        self,
        secret_ids: Sequence[str],
        *,
        refresh: bool = False,
        role: str | None = None,
        log_failures: bool = True,
    ) -> list[bytes | ExtensionError]:
        """Each id's GetSecretValue answer (as the single read caches it) or its error;
        the ids not cached are fetched in one BatchGetSecretValue call.

        A failure of that call as a whole raises, unless every key it failed has a stale
        value to serve. `log_failures`: as in _many.
        """
        keys: list[tuple[object, ...]] = [
            in_role((SECRETS_MANAGER.name, ident, None, None), role) for ident in secret_ids
        ]

        def fetch_many(indices: list[int], deadline: float) -> dict[int, bytes | ExtensionError]:
            wanted = [secret_ids[i] for i in indices]
            found, failed = self._upstream(role).batch_get_secret_value(wanted, deadline=deadline)
            return _by_index(indices, wanted, found, failed)

        answers, failed = self._many(
            SECRETS_MANAGER,
            keys,
            fetch_many,
            lambda i, deadline: encode(
                self._upstream(role).get_secret_value(secret_ids[i], deadline=deadline)
            ),
            refresh,
            log_failures=log_failures,
        )
        if failed is not None:
            raise failed
        return answers

    def parameters(
        self,
        names: Sequence[ParameterName],
        with_decryption: bool,
        *,
        refresh: bool = False,
        role: str | None = None,
        log_failures: bool = True,
    ) -> list[bytes | ExtensionError]:
        """Each ParameterName's GetParameter answer (as the single read of its name with
        that version or label caches it) or its error; the names not cached
        are fetched in one GetParameters call. A whole-call failure raises, and
        `log_failures` acts, as in secrets().
        """
        keys: list[tuple[object, ...]] = [
            in_role((SSM.name, entry.name, entry.version, entry.label, with_decryption), role)
            for entry in names
        ]

        def fetch_many(indices: list[int], deadline: float) -> dict[int, bytes | ExtensionError]:
            wanted = [names[i] for i in indices]
            found, failed = self._upstream(role).get_parameters(
                wanted, with_decryption, deadline=deadline
            )
            return _by_index(indices, [entry.requested for entry in wanted], found, failed)

        def fetch_one(index: int, deadline: float) -> bytes:
            entry = names[index]
            return encode(
                self._upstream(role).get_parameter(
                    entry.name,
                    version=entry.version,
                    label=entry.label,
                    with_decryption=with_decryption,
                    deadline=deadline,
                )
            )

        answers, failed = self._many(
            SSM, keys, fetch_many, fetch_one, refresh, log_failures=log_failures
        )
        if failed is not None:
            raise failed
        return answers

    def secret_batch(
        self, secret_ids: Sequence[str], *, refresh: bool = False, role: str | None = None
    ) -> tuple[bytes, str]:
        """The BatchGetSecretValueOutput answer of the batch endpoint, as JSON bytes."""
        values: list[bytes] = []
        errors: list[dict[str, object]] = []
        answers = self.secrets(secret_ids, refresh=refresh, role=role)
        for ident, answer in zip(secret_ids, answers, strict=True):
            if isinstance(answer, ExtensionError):
                error = {"ErrorCode": answer.error_type, "ErrorMessage": answer.message}
                errors.append({**error, "SecretId": ident})
            else:
                values.append(batch_item(answer, SECRETS_MANAGER))
        body = b'{"Errors":%s,"NextToken":null,"SecretValues":[%s],"ResultMetadata":{}}' % (
            encode(errors),
            b",".join(values),
        )
        return body, "batch"

    def parameter_batch(
        self,
        names: Sequence[ParameterName],
        with_decryption: bool,
        *,
        refresh: bool = False,
        role: str | None = None,
    ) -> tuple[bytes, str]:
        """The GetParametersOutput answer of the batch endpoint, as JSON bytes.

        A name AWS does not have (or not in that version or label) is listed in
        InvalidParameters; any other failure of one name fails the request, since the
        answer has no place for it.
        """
        values: list[bytes] = []
        invalid: list[str] = []
        answers = self.parameters(names, with_decryption, refresh=refresh, role=role)
        for entry, answer in zip(names, answers, strict=True):
            if isinstance(answer, ExtensionError):
                if not is_client_mistake(answer):
                    raise answer
                invalid.append(entry.requested)
            else:
                values.append(batch_item(answer, SSM))
        body = b'{"InvalidParameters":%s,"Parameters":[%s],"ResultMetadata":{}}' % (
            encode(invalid),
            b",".join(values),
        )
        return body, "batch"

    def parameters_by_path(
        self,
        path: str,
        recursive: bool = False,
        with_decryption: bool = False,
        *,
        refresh: bool = False,
        role: str | None = None,
    ) -> tuple[bytes, str]:
        """GetParametersByPath, every page, as one GetParametersByPathOutput; cached as one
        entry with the SSM TTL (its key never equals a single read's)."""
        key = in_role((SSM.name, path, recursive, with_decryption), role)
        deadline = self._client.deadline(SSM)  # every page shares it
        ttl = self._ttl_now(SSM)
        if not refresh:
            self._too_large.check(key)

        def fetch() -> bytes:
            try:
                found = self._counted(
                    lambda: self._upstream(role).get_parameters_by_path(
                        path,
                        recursive=recursive,
                        with_decryption=with_decryption,
                        limit=self._max_path_parameters,
                        deadline=deadline,
                    )
                )
            except PathTooLarge as exc:
                self._too_large.add(key, exc, ttl)
                raise
            self._too_large.discard(key)  # a refreshNow found it within the limit again
            return encode({"NextToken": None, "Parameters": found, "ResultMetadata": {}})

        logged = self._logged(key, fetch, SSM.path_operation, _PATH_SELECTORS)
        return self._cached(SSM, key, ttl, logged, refresh=refresh, deadline=deadline)

    def prefetch(self, entries: Sequence[tuple[str, ...]]) -> None:
        """Warm the cache for ("secretsmanager", id) / ("ssm", name) entries, or
        (service, id, role ARN) for one read as that role: one batch call per group
        (PREFETCH_GROUP ids of one service in one role), all groups in parallel; a group of
        one id is its single read.

        Each entry warms the key a request without optional query parameters uses (for
        SSM that is withDecryption=false; `name:3` is the key of name with version=3). A
        failure is logged and skipped. Nothing is fetched while caching is deferred or for
        a service whose TTL is 0.
        """
        if not self._caching:
            log.info("prefetch skipped: caching starts at the first invoke (SnapStart)")
            return
        groups: list[tuple[str, list[str], str | None]] = []
        for service in services.SERVICES:
            if not self._ttl[service]:
                continue
            # Unique and in order: a batch must not list an id twice.
            wanted = dict.fromkeys(
                (entry[1], entry[2] if len(entry) > 2 else None)
                for entry in entries
                if entry[0] == service.name
            )
            for role in dict.fromkeys(role for _, role in wanted):
                idents = [ident for ident, its_role in wanted if its_role == role]
                size = PREFETCH_GROUP[service.name]
                groups += [
                    (service.name, idents[at : at + size], role)
                    for at in range(0, len(idents), size)
                ]
        threads = [
            threading.Thread(target=self._prefetch_group, args=group, name="prefetch", daemon=True)
            for group in groups
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _prefetch_group(self, service: str, idents: list[str], role: str | None) -> None:
        answers: list[bytes | ExtensionError]
        try:
            if len(idents) == 1:
                # One item: its single read is one call too, needs only the permission a
                # function already has for it, and skips the batch call a role so often
                # refuses (two calls and an error before `next`, in front of the first answer).
                answers = self._prefetch_singly(service, idents, role)
            else:
                answers = self._prefetchers[service](idents, role)
        except ExtensionError as exc:  # the batch call failed as a whole
            answers = [exc] * len(idents)
            if not is_transient(exc):
                # A role allowed only the single-read calls (as the AWS extension needs)
                # still gets its prefetch: one call per item, all at once, as before.
                log.info(
                    "prefetch: %s refused (%s); fetching its %d items one by one",
                    services.named(service).batch_operation,
                    exc.error_type,
                    len(idents),
                )
                answers = self._prefetch_singly(service, idents, role)
        except Exception as exc:  # a bug costs this group, never the others or the start
            log.traceback(exc)
            answers = [ExtensionError(str(exc), error_type=type(exc).__name__)] * len(idents)
        as_role = f" as {role}" if role else ""  # a checked role ARN: printable as it is
        for ident, answer in zip(idents, answers, strict=True):
            if isinstance(answer, ExtensionError):
                log.warning(
                    "prefetch of %s %s%s failed: %s",
                    service,
                    printable(ident),
                    as_role,
                    error_type_of(answer),
                )
            else:
                log.debug("prefetched %s %s%s", service, printable(ident), as_role)

    def _prefetch_singly(
        self, service: str, idents: list[str], role: str | None
    ) -> list[bytes | ExtensionError]:
        answers: list[bytes | ExtensionError] = [b""] * len(idents)

        def one(index: int) -> None:
            ident = idents[index]
            try:
                if service == SECRETS_MANAGER.name:
                    answers[index] = self.secret(ident, role=role)[0]
                elif service == SSM.name:
                    wanted = parameter_name(ident)
                    answers[index] = self.parameter(
                        wanted.name, wanted.version, wanted.label, role=role
                    )[0]
                else:
                    raise ValueError(f"no service named {service!r}")
            except ExtensionError as exc:
                answers[index] = exc
            except Exception as exc:  # a bug costs this item, never the others
                log.traceback(exc)
                answers[index] = ExtensionError(str(exc), error_type=type(exc).__name__)

        if len(idents) == 1:  # no thread to wait for
            one(0)
            return answers
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(idents))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers

    # A prefetch's batch writes no failure-log lines: a batch a role refuses is tried again
    # item by item (whose failures are logged then), and _prefetch_group names every item
    # that still failed. The refusal alone would be an ERROR line per item at every start.
    def _prefetch_secrets(
        self, idents: list[str], role: str | None
    ) -> list[bytes | ExtensionError]:
        return self.secrets(idents, role=role, log_failures=False)

    def _prefetch_parameters(
        self, idents: list[str], role: str | None
    ) -> list[bytes | ExtensionError]:
        names: list[ParameterName] = []
        answers: dict[int, bytes | ExtensionError] = {}
        # Items that name one cache key (`/p:1` and `/p:01`) share one place in the batch:
        # a key listed twice would wait on its own flight.
        places: dict[tuple[object, ...], int] = {}
        place_of: dict[int, int] = {}
        for index, ident in enumerate(idents):
            try:
                entry = parameter_name(ident)
            except ExtensionError as exc:
                answers[index] = exc
                continue
            key = (entry.name, entry.version, entry.label)
            if key not in places:
                places[key] = len(names)
                names.append(entry)
            place_of[index] = places[key]
        fetched = self.parameters(names, False, role=role, log_failures=False) if names else []
        return [answers[i] if i in answers else fetched[place_of[i]] for i in range(len(idents))]


class _TooLarge:
    """Paths found over the limit, refused again until the SSM TTL passes without a call:
    telling takes limit/10+1 GetParametersByPath calls, an API with a low rate limit.
    Bounded: MAX_TRACKED_FAILURES paths, the least recently found forgotten first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._paths: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()

    def add(self, key: Hashable, exc: PathTooLarge, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._paths[key] = (self._clock() + ttl, exc.message)
            self._paths.move_to_end(key)
            while len(self._paths) > MAX_TRACKED_FAILURES:
                self._paths.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._paths.pop(key, None)

    def check(self, key: Hashable) -> None:
        """Raise PathTooLarge again for a path found over the limit within its TTL."""
        with self._lock:
            found = self._paths.get(key)
            if found is None:
                return
            if self._clock() >= found[0]:
                del self._paths[key]
                return
        raise PathTooLarge(found[1])


def _remembering(seconds: float) -> Callable[[BaseException], float]:
    """The cache's `remember`: `seconds` for a not-found or denied answer, else 0."""
    return lambda exc: seconds if seconds > 0 and is_not_there(exc) else 0.0


def _by_index(
    indices: list[int],
    requested: list[str],
    found: Mapping[str, Mapping[str, object]],
    failed: Mapping[str, ExtensionError],
) -> dict[int, bytes | ExtensionError]:
    """A batch call's answers by key index; an id it neither found nor failed is an error."""
    out: dict[int, bytes | ExtensionError] = {}
    for index, ident in zip(indices, requested, strict=True):
        if ident in found:
            out[index] = encode(found[ident])
        else:
            out[index] = failed.get(ident) or ExtensionError(f"no answer for {ident}")
    return out


def batch_item(body: bytes, service: Service) -> bytes:
    """A single read's cached answer as a batch item: without ResultMetadata, and for SSM
    the Parameter object alone."""
    if body.endswith(_METADATA_TAIL):
        if service is SSM and body.startswith(_PARAMETER_HEAD):
            return body[len(_PARAMETER_HEAD) : -len(_METADATA_TAIL)]
        if service is SECRETS_MANAGER:
            return body[: -len(_METADATA_TAIL)] + b"}"
    data = json.loads(body)  # not our encoder's layout (a test double's): take the long way
    data.pop("ResultMetadata", None)
    return encode(data["Parameter"] if service is SSM else data)
