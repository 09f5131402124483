"""Many cache keys answered through the cache's single-flight, with one upstream call for the
keys nobody has.

Each key goes through `get(key, fetch)` exactly as a single read does, so a hit is served
from the cache, a key another request is already fetching is waited for, and every value
lands under the key a single read of that id uses. The keys are taken in one fixed order
and each led fetch opens the next key from inside itself: when the innermost key is
reached, this request leads a flight for every key it must fetch, and one call fetches
them all. Concurrent single reads of those keys join the flights instead of calling AWS.
The fixed order keeps two batches from each waiting on a flight the other leads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence

from .errors import ExtensionError, is_transient

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    # Index of each key fetched -> its response bytes, or the error it failed with.
    Fetched = dict[int, bytes | ExtensionError]
    Get = Callable[[Hashable, Callable[[], bytes]], bytes]


def resolve(
    get: Get,
    keys: Sequence[Hashable],
    fetch_many: Callable[[list[int]], Fetched],
    fetch_one: Callable[[int], bytes],
) -> tuple[list[bytes | ExtensionError], ExtensionError | None]:
    """The bytes or the error of every key, in the order of `keys`; and the error of the
    upstream call if it failed as a whole and some key got no stale value in its place.

    `fetch_many(indices)` fetches the keys this call leads in one upstream call.
    `fetch_one(index)` serves a fetch the cache asks for outside this call (say, a
    background refresh of a key that was a hit here).
    """
    results: list[bytes | ExtensionError | None] = [None] * len(keys)
    order = sorted(range(len(keys)), key=lambda index: repr(keys[index]))
    led: list[int] = []
    fetched: Fetched = {}
    owner = threading.get_ident()
    finished = False
    whole: list[ExtensionError] = []

    def step(position: int) -> None:
        nonlocal finished
        while position < len(order):
            index = order[position]
            entered = False

            def fetch(index: int = index, position: int = position) -> bytes:
                nonlocal entered
                if finished or entered or threading.get_ident() != owner:
                    return fetch_one(index)
                entered = True
                led.append(index)
                step(position + 1)
                outcome = fetched[index]
                if isinstance(outcome, ExtensionError):
                    raise outcome
                return outcome

            try:
                results[index] = get(keys[index], fetch)
            except ExtensionError as exc:
                results[index] = exc
            if entered:
                return  # the keys after this one were resolved inside its fetch
            position += 1
        finished = True
        if led:
            try:
                fetched.update(fetch_many(led))
            except ExtensionError as exc:
                # Each led key fails with this very error; the cache may still serve some
                # of them stale, as it would a single read. A refusal (not an outage) is
                # about the call, not about any one key: a single read that joined one of
                # these flights makes its own call instead of failing with it.
                exc.of_many_keys = not is_transient(exc)
                whole.append(exc)
                fetched.update(dict.fromkeys(led, exc))

    step(0)
    answers: list[bytes | ExtensionError] = []
    for index, result in enumerate(results):
        if result is None:  # every key gets an answer above; this is a bug
            raise RuntimeError(f"batch key {index} was not resolved")
        answers.append(result)
    failed = next((a for a in answers if whole and a is whole[0]), None)
    return answers, failed if isinstance(failed, ExtensionError) else None
