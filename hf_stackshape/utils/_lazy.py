"""Lazy exports for the package's ``__init__`` modules: a name is imported from its submodule on first access
(PEP 562), so ``import hf_stackshape`` does not pull in every heavy dependency."""

import importlib
import sys
from typing import Callable, Dict


def lazy_getattr(package: str, exports: Dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule path relative to the
    package) on first access and keeps the value in the package's namespace."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(f".{exports[name]}", package)
        except ModuleNotFoundError as err:
            from ._extras import missing_extra_message

            install = missing_extra_message(err)
            if install is None:
                raise
            raise ImportError(f"{package}.{name}: {install}") from err
        value = getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
