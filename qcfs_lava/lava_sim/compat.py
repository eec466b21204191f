"""Make the stock lava-nc / lava-dl wheels importable on Python 3.11 and 3.12.

Two source rewrites, applied at import time (installed files are never edited).

lava-nc 0.10.0 declares ``python < 3.11``. Its only import-time breakage on newer Pythons is
``lava/magma/compiler/var_model.py``, whose dataclasses use an instance as a field default
(``x: ByteEncoder = ByteEncoder()``), which :mod:`dataclasses` rejects since Python 3.11
("mutable default ... use default_factory"). Instead of editing installed files, a
:data:`sys.meta_path` finder rewrites that one module's source before it is executed::

    x: ByteEncoder = ByteEncoder()   ->   x: ByteEncoder = field(default_factory=ByteEncoder)

The second: ``lava/magma/runtime/message_infrastructure/multiprocessing.py`` calls
``mp.set_start_method('fork')`` at import, which raises "context has already been set" once
anything (e.g. a tqdm progress bar, which creates a multiprocessing lock) has touched the
default context. Lava needs 'fork', Linux's default; the call is made only when the start
method is not already 'fork'::

    mp.set_start_method('fork')   ->   (mp.get_start_method(allow_none=True) == 'fork'
                                        or mp.set_start_method('fork', force=True))

:func:`ensure_lava` installs the finder (idempotent) and checks that lava imports.
Importing :mod:`qcfs_lava.lava_sim` calls it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
import threading

from qcfs_lava.errors import LavaUnavailableError

INSTALL_HINT = (
    "install them with: python -m pip install --no-deps --ignore-requires-python "
    "lava-nc==0.10.0 lava-dl==0.6.0 networkx'<=2.8.7' asteval'<0.10' "
    "opencv-python-headless'<4.11' (or run `make setup`)"
)

_START_METHOD = re.compile(r"^(\s*)mp\.set_start_method\('fork'\)\s*$", re.M)
_DEFAULT_INSTANCE = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*)=\s*ByteEncoder\(\)\s*$", re.M)
_lock = threading.Lock()
_checked = False


def patch_var_model_source(source: str) -> str:
    """Rewrite lava's ``var_model.py`` so its dataclasses are valid on Python >= 3.11.

    Args:
        source: the module's original source text.

    Returns:
        The source with every ``name: ByteEncoder = ByteEncoder()`` field turned into
        ``name: ByteEncoder = field(default_factory=ByteEncoder)`` and ``field`` imported.
        Source without such fields is returned unchanged.
    """
    patched, count = _DEFAULT_INSTANCE.subn(r"\1= field(default_factory=ByteEncoder)", source)
    if not count:
        return source
    # ``from __future__`` must stay first: add the import after the last top-level import
    # that precedes the first class (a plain append at the top could break that rule).
    line = "from dataclasses import field as field  # added by qcfs_lava.lava_sim.compat\n"
    match = re.search(r"^from dataclasses import .*$", patched, re.M)
    if match:
        end = match.end() + 1
        return patched[:end] + line + patched[end:]
    match = re.search(r"^from __future__ import .*$", patched, re.M)
    end = match.end() + 1 if match else 0
    return patched[:end] + line + patched[end:]


def patch_start_method_source(source: str) -> str:
    """Make lava's ``set_start_method('fork')`` a no-op when 'fork' is already in force."""
    return _START_METHOD.sub(
        r"\1(mp.get_start_method(allow_none=True) == 'fork' "
        r"or mp.set_start_method('fork', force=True))",
        source,
    )


_PATCHES = {
    "lava.magma.compiler.var_model": patch_var_model_source,
    "lava.magma.runtime.message_infrastructure.multiprocessing": patch_start_method_source,
}
_PATCHED_MODULES = tuple(_PATCHES)


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles a rewritten source (and never uses the .pyc cache)."""

    def get_code(self, fullname):  # noqa: D102 - importlib protocol
        source = self.get_data(self.path).decode("utf-8")
        patched = _PATCHES[fullname](source)
        return compile(patched, self.path, "exec", dont_inherit=True)


class LavaCompatFinder(importlib.abc.MetaPathFinder):
    """Finds the lava modules that need a source rewrite and loads them patched."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        if fullname not in _PATCHED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _PatchingLoader(fullname, spec.origin)
        return spec


def install_finder() -> bool:
    """Put :class:`LavaCompatFinder` first on :data:`sys.meta_path` (once).

    Returns:
        True if it was installed by this call, False if it already was.
    """
    with _lock:
        if any(isinstance(f, LavaCompatFinder) for f in sys.meta_path):
            return False
        sys.meta_path.insert(0, LavaCompatFinder())
        return True


def ensure_lava() -> None:
    """Make lava-nc importable on this Python and check that it imports.

    Idempotent and cheap after the first call. lava-dl is checked separately
    (:func:`ensure_lava_dl`): only the NetX bridge needs it.

    Raises:
        LavaUnavailableError: lava-nc is not installed, or fails to import.
    """
    global _checked
    install_finder()
    if _checked:
        return
    if _find("lava") is None or _find("lava.magma") is None:
        raise LavaUnavailableError(f"lava-nc is not installed; {INSTALL_HINT}")
    stale = "lava.magma.compiler.var_model" in sys.modules and not isinstance(
        getattr(sys.modules["lava.magma.compiler.var_model"], "__loader__", None),
        _PatchingLoader,
    )
    try:
        import lava.magma.compiler.var_model  # noqa: F401
        import lava.magma.core.run_configs  # noqa: F401
    except (ImportError, ValueError, TypeError) as exc:
        hint = " (lava was imported before qcfs_lava.lava_sim: import it first)" if stale else ""
        raise LavaUnavailableError(
            f"lava-nc failed to import on Python {sys.version.split()[0]}: {exc}{hint}; "
            f"{INSTALL_HINT}"
        ) from exc
    _checked = True


def ensure_lava_dl() -> None:
    """:func:`ensure_lava`, and check that lava-dl's NetX module imports.

    Raises:
        LavaUnavailableError: lava-nc or lava-dl is missing or fails to import.
    """
    ensure_lava()
    if _find("lava.lib.dl") is None:
        raise LavaUnavailableError(f"lava-dl is not installed; {INSTALL_HINT}")
    try:
        import lava.lib.dl.netx  # noqa: F401
    except ImportError as exc:
        raise LavaUnavailableError(f"lava-dl failed to import: {exc}; {INSTALL_HINT}") from exc


def _find(name: str):
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
