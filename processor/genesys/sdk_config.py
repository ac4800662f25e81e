"""Importing the Genesys SDK without its config-file watcher.

`import PureCloudPlatformClientV2` creates the SDK's `Configuration`
singleton, which reads `~/.genesyscloudpython/config` and, unless that file
says `live_reload_config = false`, starts a watchdog observer on the file's
directory, *recursively*. When that directory does not exist it walks up to
the first parent that does: the whole home directory. Measured here: every
process that imported the SDK put 17,758 inotify watches on /root (one per
directory, its walk costing CPU at each cold start), so 16 worker processes
would need more watches than the kernel allows. On Lambda the home directory
need not exist, and the walk starts from whatever parent does.

ratebridge configures the SDK in code and never reads that file. `install()`
puts a one-shot import hook in front of the SDK: while the SDK's package
runs its `__init__` (where the singleton is made), HOME points at
`sdk_home/`, whose config turns live reload off and sets nothing else. No
thread, no watch; HOME is restored as soon as the package is imported.
`processor` (and `ratebridge_tools`) call `install()` when imported, before
anything of theirs imports the SDK. It imports nothing itself: the SDK stays
off paths that do not need it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

SDK_PACKAGE = "PureCloudPlatformClientV2"
SDK_HOME = Path(__file__).resolve().with_name("sdk_home")

_lock = threading.Lock()


class _QuietLoader(importlib.abc.Loader):
    """The SDK package's own loader, run with HOME pointing at SDK_HOME."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        saved = os.environ.get("HOME")
        os.environ["HOME"] = str(SDK_HOME)
        try:
            self._loader.exec_module(module)
        finally:
            if saved is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = saved


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds the SDK package the usual way, once, and wraps its loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != SDK_PACKAGE:
            return None
        uninstall()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec: importlib.machinery.ModuleSpec | None = (
                find(fullname, path, target) if find is not None else None
            )
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


_finder = _QuietFinder()


def install() -> None:
    """Quiet the SDK's import, unless it has been imported already (then it is too late)."""
    with _lock:
        if SDK_PACKAGE not in sys.modules and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    with _lock:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
