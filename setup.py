"""Ships rig.yaml, images/ and guest-tests/ inside the package as orchestrator/_data,
so an installed rig (pip install .) runs its embedded default from any directory.
In a clone (or an editable install) orchestrator.config.DATA_ROOT finds them beside
the package instead. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("rig.yaml", "images", "guest-tests")
IGNORED = shutil.ignore_patterns("build", "__pycache__", "*.o", "*.elf", "*.bin")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "orchestrator" / "_data"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in DATA:
            source = Path(__file__).resolve().parent / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=IGNORED)
            else:
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithData})
