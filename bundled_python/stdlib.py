"""The standard-library modules the --with-python layer carries, frozen into its interpreter.

A module missing here is an ImportError in production, so the list errs on the side of
completeness. It is what the extension imports (every route exercised, under the bundled
interpreter) with everything those modules import in turn, plus what is only imported at
run time: the codecs a str.encode or a locale can ask for, traceback's printing of an
uncaught exception.
tests/test_stdlib_modules.py fails when the extension comes to import a module not listed.
The C modules (_ssl, _json, unicodedata, ...) are built into the binary: see build.py.
build.py freezes these modules as CPython freezes os and codecs: their bytecode is part of
the executable, read from its memory at import rather than found and read in a zip.
"""

from __future__ import annotations

MODULES = (
    "__future__",
    "_collections_abc",
    "_colorize",
    "_weakrefset",
    "abc",
    "ast",
    "base64",
    "bisect",
    "codecs",
    "collections",
    "contextlib",
    "copy",
    "copyreg",
    "datetime",
    "enum",
    "functools",
    "genericpath",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "html.entities",
    "http",
    "io",
    "ipaddress",
    "keyword",
    "linecache",
    "operator",
    "os",
    "posixpath",
    "random",
    "re",
    "re._casefix",
    "re._compiler",
    "re._constants",
    "re._parser",
    "reprlib",
    "selectors",
    "signal",
    "socket",
    "socketserver",
    "ssl",
    "stat",
    "stringprep",
    "struct",
    "textwrap",
    "threading",
    "token",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "urllib",
    "urllib.parse",
    "warnings",
    "weakref",
    "zipimport",
    # json
    "json",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    # Codecs: the interpreter's own (utf-8), ssl's host names (idna, punycode), and the
    # stdio encodings a C or Latin-1 locale gives.
    "encodings",
    "encodings.aliases",
    "encodings.ascii",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.punycode",
    "encodings.utf_8",
    # importlib; CPython itself freezes its _bootstrap modules (listed all the same: the
    # list names every module the extension needs, frozen by whom it may be).
    "importlib",
    "importlib._bootstrap",
    "importlib._bootstrap_external",
)
