"""How the layer's executable imports our modules: from its own `modules` zip entry, by offset.

build_layer.py packs every runtime module into that one entry: an index, then each module's
source followed by its code for each Python it was compiled with. The executable's
__main__ reads the index, runs this module (its code for the running Python, else its
source) and calls install(): from then on importing one of our modules is one pread and one
marshal.loads. zipimport instead read the archive's whole directory before `register` (one
entry per module and per Python) and opened the file again for each module.

A finder first on sys.meta_path, it answers for our module names only, so nothing outside
the layer can stand in for one of them. It uses nothing but what the interpreter has loaded
when it starts (marshal, posix and the frozen importlib), and no `from __future__` either:
run before boot, it must import nothing (tests/test_import_order.py).
"""

import marshal
import posix
import sys
from _frozen_importlib import ModuleSpec
from _frozen_importlib_external import MAGIC_NUMBER

TYPE_CHECKING = False  # mypy takes it as True; importing typing would slow init
if TYPE_CHECKING:
    from types import ModuleType

    Span = tuple[int, int]  # (offset, length) of one part, counted from the modules' start
    # Module name -> (its path in the repository, whether it is a package, its source's span,
    # {magic number: its code's span} for each Python that compiled it).
    Index = dict[str, tuple[str, bool, Span, dict[bytes, Span]]]


class Modules:
    """A meta path finder and the loader of what it finds: the modules of an index."""

    def __init__(self, archive: str, fd: int, start: int, index: "Index") -> None:
        """`fd`: the executable (`archive`), open for the life of the process, as a later
        import reads it too; `start`: where the modules begin in it, just after the index."""
        self._archive = archive
        self._fd = fd
        self._start = start
        self._index = index

    def read(self, span: "Span") -> bytes:
        """The bytes of one source or code."""
        offset, length = span
        return posix.pread(self._fd, length, self._start + offset)

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        """A spec for one of our modules, None for any other name (the next finder's)."""
        found = self._index.get(name)
        if found is None:
            return None
        # A Loader by its methods: importlib.abc, its base class, is not loaded at start.
        return ModuleSpec(name, self, is_package=found[1])  # type: ignore[arg-type]

    def create_module(self, spec: ModuleSpec) -> None:
        """None: the import system makes the module, as for any other."""
        return None

    def exec_module(self, module: "ModuleType") -> None:
        """Run the module's code for this Python, or its source when there is none (a
        Python the build had no interpreter of, or one of another magic number)."""
        path, _, source, code = self._index[module.__name__]
        module.__file__ = f"{self._archive}/{path}"
        span = code.get(MAGIC_NUMBER)
        if span is None:
            compiled = compile(self.read(source), module.__file__, "exec", dont_inherit=True)
        else:
            compiled = marshal.loads(self.read(span))  # noqa: S302 -- the layer's own code
        exec(compiled, module.__dict__)  # noqa: S102 -- that is what a loader does

    def get_source(self, name: str) -> str:
        """The module's source: linecache asks for it, so tracebacks show each frame's line."""
        return self.read(self._index[name][2]).decode()


def install(archive: str, fd: int, start: int, index: "Index") -> None:
    """Put a finder of the modules of `index` first on sys.meta_path."""
    sys.meta_path.insert(0, Modules(archive, fd, start, index))
