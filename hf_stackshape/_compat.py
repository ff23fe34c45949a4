"""Old import paths, kept working: modules that moved when the package was laid out in layers.

Saved scripts, notebooks and run folders may still say ``hf_stackshape.runs`` or ``hf_stackshape.generation``.
Each old name resolves to the *same module object* as its new home (not a copy), so ``isinstance`` checks,
``monkeypatch.setattr`` and pickles keep working. Importing an old path emits a :class:`DeprecationWarning`
naming the new one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old module -> its new home.
MOVED_MODULES = {
    "hf_stackshape._extras": "hf_stackshape.utils._extras",
    "hf_stackshape._lazy": "hf_stackshape.utils._lazy",
    "hf_stackshape.io": "hf_stackshape.utils.io",
    "hf_stackshape.runs": "hf_stackshape.utils.runs",
    "hf_stackshape.distributed": "hf_stackshape.utils.distributed",
    "hf_stackshape.sharded_output": "hf_stackshape.utils.sharded_output",
    "hf_stackshape.memory": "hf_stackshape.utils.memory",
    "hf_stackshape.sampling": "hf_stackshape.utils.sampling",
    "hf_stackshape.dialogue": "hf_stackshape.utils.dialogue",
    "hf_stackshape.portable": "hf_stackshape.utils.portable",
    "hf_stackshape.guidance._prefix_cache": "hf_stackshape.utils.kv_cache",
    "hf_stackshape.guidance._checks": "hf_stackshape.utils.checks",
    "hf_stackshape.shaping": "hf_stackshape.core.shaping",
    "hf_stackshape.presets": "hf_stackshape.core.presets",
    "hf_stackshape.defaults": "hf_stackshape.assets.defaults",
    "hf_stackshape.demo_assets": "hf_stackshape.assets.demo",
    "hf_stackshape.generation": "hf_stackshape.pipeline.generation",
    "hf_stackshape.sweep": "hf_stackshape.pipeline.sweep",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:  # the module is already executed under its new name
        # The import system has just set the alias spec (no origin) on the shared module object; give it back its
        # own, or importlib.util.find_spec(new name) (the custom_generate export, reload) stops finding its source.
        module.__spec__ = self._own_spec


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``MOVED_MODULES``' old names and hands back the module at the new name."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        warnings.warn(
            f"`{fullname}` moved to `{new}`; the old path still works but will be removed in a future release.",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Register the finder once (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
