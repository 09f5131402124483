"""What the layer's launcher, its interpreter's main() and the extension's boot agree on: names.

The launcher of the layer built --with-python (build_layer.py, OWN_HANDOVER) sets them in the
interpreter's environment; the interpreter's main() (build.py patches CPython's
Programs/python.c) reads and removes them before Python starts:
- BLOCK_STOP_SIGNALS: main() blocks SIGTERM and SIGINT. A stop signal stays pending until
  the extension's boot takes it, as GNU env's --block-signal keeps it for the runtime's
  python3, without the probe of env and its exec: 1-2 ms of every start, which the function
  waits for (BENCHMARKS.md).
- REGISTER_EARLY: the extension's name, set when it starts with no arguments. main() listens
  on the local port and sends `register` itself (register_early.c says why and when), then
  names the sockets in boot.EARLY_SOCKETS, which boot.py reads and removes.
build.py's cache key covers this file: a new name is a new interpreter.
"""

from __future__ import annotations

BLOCK_STOP_SIGNALS = "PARAMETERS_SECRETS_EXTENSION_BLOCK_STOP_SIGNALS"
REGISTER_EARLY = "PARAMETERS_SECRETS_EXTENSION_REGISTER_EARLY"
