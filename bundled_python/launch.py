"""What the layer's launcher and its interpreter's main() agree on: one variable's name.

The launcher of the layer built --with-python (build_layer.py, CHOOSE_BUNDLED) sets it in the
interpreter's environment; the interpreter's main() (build.py patches CPython's
Programs/python.c) then blocks SIGTERM and SIGINT, removes the variable, and only then starts
Python. A stop signal stays pending until the extension's boot takes it, as GNU env's
--block-signal keeps it for the runtime's python3, without the probe of env and its exec:
1-2 ms of every start, which the function waits for (BENCHMARKS.md).
build.py's cache key covers this file: a new name is a new interpreter.
"""

from __future__ import annotations

BLOCK_STOP_SIGNALS = "PARAMETERS_SECRETS_EXTENSION_BLOCK_STOP_SIGNALS"
