"""The CPython that `build_layer.py --with-python` puts in the layer. Build code: never shipped.

pins.py: the source and tool versions with their hashes; stdlib.py: the standard-library
modules the layer carries; build.py: fetch, verify, compile, cache; launch.py: the variable
by which the launcher asks the interpreter to start with the stop signals blocked.
"""
