"""Finding plug-ins: the classes of one kind (suites, target kinds) in the modules and
packages of one of the rig's packages, and of the directories an environment variable
names (for plug-ins kept outside the rig)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")


def _modules(package: str, path: list[str], env: str, prefix: str) -> Iterator[ModuleType]:
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{package}.{info.name}")
    for directory in filter(None, os.environ.get(env, "").split(os.pathsep)):
        # a module, or a package (a directory with __init__.py) like the rig's own
        found = {path.stem: path for path in Path(directory).glob("*.py")}
        found.update({path.parent.name: path for path in Path(directory).glob("*/__init__.py")})
        for stem, file in sorted(found.items()):
            name = f"{prefix}{stem}"
            spec = importlib.util.spec_from_file_location(
                name, file, submodule_search_locations=[str(file.parent)]
                if file.name == "__init__.py" else None)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            yield module


def find(base: type[T], package: str, path: list[str], env: str, prefix: str
         ) -> list[type[T]]:
    """Every subclass of base defined at the top of a module (or package) of package
    (its __path__) or of a directory in $env (imported as prefix + its name)."""
    return [cls for module in _modules(package, path, env, prefix)
            for _, cls in inspect.getmembers(module)
            if inspect.isclass(cls) and issubclass(cls, base) and cls is not base
            and cls.__module__ == module.__name__]
