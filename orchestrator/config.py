"""rig.yaml -> typed, validated objects.

Every error names the file, the key path, the value found and what was
expected; unknown keys are errors. Paths in rig.yaml are relative to the
directory that holds it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from orchestrator import validate
from orchestrator.errors import BadInput
from orchestrator.suites import SuiteConfig, registry
from orchestrator.targets import kinds

DEFAULT_CONFIG = "rig.yaml"
# A rig description is a few KB; anything this big is a mistake (or an attack).
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_ALIASES = 64
MAX_SMP = 512  # QEMU virt's hart limit
TCG_THREADS = ("single", "multi")
MEMORY_MB = (128, 64 * 1024)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MEMORY = re.compile(r"(\d{1,9}(?:\.\d{1,9})?)([MGTmgt]?)")  # matched whole (fullmatch)
MAX_YAML_DEPTH = 32  # rig.yaml nests 4 levels; the loader recurses per level
MAX_SECONDS = 7 * 24 * 3600  # a timeout beyond a week is a typo (and overflows select())
# what QEMU options and LAVA's device template take as one word: -machine, -cpu, -icount
QEMU_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9,=._+-]*")
# rig.yaml, images/ and guest-tests/: shipped inside the package when installed
# (setup.py copies them to orchestrator/_data), beside it in a clone.
PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
DATA_ROOT = PACKAGE_DATA if PACKAGE_DATA.is_dir() else Path(__file__).resolve().parent.parent


def default_config_path() -> Path:
    """./rig.yaml if there is one, else the rig's embedded default."""
    local = Path(DEFAULT_CONFIG)
    return local if local.is_file() else DATA_ROOT / DEFAULT_CONFIG


@dataclass(frozen=True)
class QemuConfig:
    binary: str = "qemu-system-riscv64"
    machine: str = "virt"
    cpu: str = "rv64,h=true,sscofpmf=true"
    smp: int = 1
    memory: str = "512M"
    # e.g. "shift=0,sleep=off" for deterministic instruction counting
    icount: str | None = None
    # TCG threading (QEMU's -accel tcg,thread=): "multi" runs each vCPU on its own host
    # thread, "single" runs them all on one; None: QEMU's default (multi)
    tcg_thread: str | None = None
    # appended to the kernel command line the rig builds
    append: str = ""

    @property
    def memory_mb(self) -> int:
        """-m in MiB (QEMU's suffixes M, G, T; no suffix is MiB)."""
        number, unit = _MEMORY.fullmatch(self.memory).groups()
        return int(float(number) * {"": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[unit.upper()])


@dataclass(frozen=True)
class TimeoutsConfig:
    """Seconds per step; `job` (optional) caps the whole run (orchestrator.budget)."""

    build: float = 3600.0
    boot: float = 120.0
    command: float = 300.0
    job: float | None = None


# What may turn `orchestrator nightly` red (exit 1), compared with the previous run.
NIGHTLY_CHECKS = ("new-failures", "slower", "gone-cases")


@dataclass(frozen=True)
class NightlyConfig:
    """`orchestrator nightly` (orchestrator/nightly.py)."""

    fail_on: tuple[str, ...] = NIGHTLY_CHECKS
    trend_runs: int = 10  # runs per trend line in report.md, trend.png and `trend`


@dataclass(frozen=True)
class DebianSource:
    """A kernel tarball shipped by a Debian package (e.g. linux-source-7.3), from
    whichever Debian suite carries it (orchestrator.debian.kernel_source). The
    package name and `version` may be shell patterns: the newest match is taken."""

    name: str
    debian_package: str
    version: str | None = None


@dataclass(frozen=True)
class GitSource:
    """A local kernel git tree and the ref to build."""

    name: str
    git: Path
    ref: str


Source = DebianSource | GitSource


@dataclass(frozen=True)
class KernelSpec:
    name: str
    source: Source
    patches: tuple[Path, ...]
    config: tuple[Path, ...]


GUEST_CONFIG = DATA_ROOT / "images" / "config" / "kvm-guest.config"


@dataclass(frozen=True)
class GuestSpec:
    """The Linux guest's kernel (suite linux-guest): by default each host's own
    source, no patches, and the host's fragments plus the guest fragment (so the
    guest shares the host's build objects: in a cold run it costs a relink and
    the files the host's patches touch, not a second full build). One build
    serves every host whose guest inputs are the same."""

    source: Source | None = None  # None: the host kernel's source
    patches: tuple[Path, ...] = ()
    config: tuple[Path, ...] | None = None  # None: the host's fragments + GUEST_CONFIG

    def kernel_for(self, host: KernelSpec) -> KernelSpec:
        config = self.config if self.config is not None else (*host.config, GUEST_CONFIG)
        return KernelSpec(name="guest", source=self.source or host.source,
                          patches=self.patches, config=tuple(dict.fromkeys(config)))


QEMU_TARGET = "qemu"  # the default target: the rig builds and boots its kernels


@dataclass(frozen=True)
class RigConfig:
    path: Path
    qemu: QemuConfig
    sources: dict[str, Source]
    kernels: tuple[KernelSpec, ...]
    cache_dir: Path
    results_dir: Path
    suites: dict[str, SuiteConfig] = field(default_factory=dict)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    targets: dict[str, Any] = field(default_factory=dict)  # entries besides QEMU_TARGET
    guest: GuestSpec = field(default_factory=GuestSpec)
    build_jobs: int = field(default_factory=lambda: os.cpu_count() or 1)

    def check_directories(self) -> None:
        """cache_dir and results_dir must be directories the rig can write."""
        for key, directory in (("cache_dir", self.cache_dir), ("results_dir", self.results_dir)):
            try:
                directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=directory):
                    pass
            except OSError as exc:
                raise BadInput(f"{self.path}: {key}: {directory} is not a writable directory"
                               f" ({exc.strerror})") from None

    def kernel(self, name: str) -> KernelSpec:
        for spec in self.kernels:
            if spec.name == name:
                return spec
        known = ", ".join(k.name for k in self.kernels)
        raise BadInput(f"{self.path}: no kernel named {name!r} (kernels: {known})")

    def target(self, name: str) -> Any:
        """The entry of the target called name (orchestrator.targets); None for QEMU_TARGET."""
        if name == QEMU_TARGET:
            return None
        if name not in self.targets:
            known = ", ".join([QEMU_TARGET, *self.targets])
            raise BadInput(f"{self.path}: no target named {name!r} (targets: {known})")
        return self.targets[name]


RESULTS_ENV = "RIG_RESULTS_DIR"


def default_cache_dir() -> Path:
    explicit = os.environ.get("RIG_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "riscv-kvm-rig"


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURAL_NAMES = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


class Reader:
    """Walks the parsed YAML, raising BadInput that names file and key path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, where: str, value: Any, expected: str) -> typing.NoReturn:
        where = _CONTROL.sub(lambda m: repr(m.group())[1:-1], where)  # keys are user text
        raise BadInput(f"{self.path}: {where}: got {validate.shown(value)}, expected {expected}")

    def mapping(self, where: str, value: Any, allowed: typing.Iterable[str]) -> dict:
        if not isinstance(value, dict):
            self.fail(where, value, "a mapping")
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                shown = key if validate.is_name(key) else validate.shown(key)
                raise BadInput(
                    f"{self.path}: {where}.{shown}: unknown key"
                    f" (expected one of: {', '.join(allowed)})"
                )
        return value

    def scalar(self, where: str, value: Any, kind: type) -> Any:
        # bool is an int in Python; never accept it where a number is meant
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(where, value, _TYPE_NAMES.get(kind, kind.__name__))
        return value

    def dataclass(self, where: str, value: Any, cls: type) -> Any:
        """Fill a dataclass of scalar fields, keeping defaults for absent keys."""
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        raw = self.mapping(where, value or {}, fields)
        kwargs = {}
        for key, item in raw.items():
            hint = hints[key]
            optional = (typing.get_origin(hint) in (Union, types.UnionType)
                        and type(None) in typing.get_args(hint))
            if optional and item is None:
                kwargs[key] = None
                continue
            kind = typing.get_args(hint)[0] if optional else hint
            if typing.get_origin(kind) is tuple:
                kwargs[key] = self.scalar_list(f"{where}.{key}", item, typing.get_args(kind)[0])
            else:
                kwargs[key] = self.scalar(f"{where}.{key}", item, kind)
        return cls(**kwargs)

    def scalar_list(self, where: str, value: Any, kind: type) -> tuple:
        if not isinstance(value, list) or not value:
            self.fail(where, value, f"a non-empty list of {_PLURAL_NAMES[kind]}")
        return tuple(self.scalar(f"{where}[{i}]", item, kind) for i, item in enumerate(value))

    def existing_file(self, where: str, value: Any) -> Path:
        text = self.scalar(where, value, str)
        resolved = (self.base / text).resolve()
        if not resolved.is_file():
            self.fail(where, value, f"an existing file (looked for {resolved})")
        return resolved

    def file_list(self, where: str, value: Any) -> tuple[Path, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(where, value, "a list of file paths")
        return tuple(self.existing_file(f"{where}[{i}]", item) for i, item in enumerate(value))

    def patch_list(self, where: str, value: Any) -> tuple[Path, ...]:
        patches = self.file_list(where, value)
        for i, patch in enumerate(patches):
            if not _looks_like_a_patch(patch):
                self.fail(f"{where}[{i}]", str(patch), "a patch (unified diff: '--- a/...',"
                                                       " '+++ b/...', '@@' hunks)")
        return patches


def _looks_like_a_patch(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"^--- \S.*\n\+\+\+ \S.*\n@@ ", text, re.MULTILINE))


def _name(reader: Reader, where: str, value: Any) -> str:
    """A name that becomes part of paths, scripts and QEMU options: the rig's one
    name rule (orchestrator.validate)."""
    text = reader.scalar(where, value, str)
    if not validate.is_name(text):
        reader.fail(where, value, validate.NAME_RULE)
    return text


# linux-source-X.Y, or a pattern of such names (linux-source-*, linux-source-7.?)
_KERNEL_SOURCE_PACKAGE = re.compile(r"linux-source-[0-9.*?\[\]]+")
_VERSION_PATTERN = re.compile(r"[0-9A-Za-z.+~:*?\[\]-]+")


def _source(reader: Reader, name: str, value: Any) -> Source:
    where = f"sources.{name}"
    raw = reader.mapping(where, value, ["debian_package", "version", "git", "ref"])
    if "debian_package" in raw and "git" not in raw and "ref" not in raw:
        package = reader.scalar(f"{where}.debian_package", raw["debian_package"], str)
        if not _KERNEL_SOURCE_PACKAGE.fullmatch(package):
            reader.fail(f"{where}.debian_package", package,
                        "a Debian kernel source package, linux-source-X.Y, or a pattern"
                        " (linux-source-*: the newest Debian offers)")
        version = raw.get("version")
        if version is not None:
            version = reader.scalar(f"{where}.version", version, str)
            if not _VERSION_PATTERN.fullmatch(version):
                reader.fail(f"{where}.version", version,
                            "a Debian version or a pattern of one (e.g. 7.3.*)")
        return DebianSource(name, package, version)
    if "git" in raw and "ref" in raw and "debian_package" not in raw:
        tree = (reader.base / reader.scalar(f"{where}.git", raw["git"], str)).resolve()
        if not (tree / ".git").exists() and not (tree / "HEAD").is_file():
            reader.fail(f"{where}.git", raw["git"], f"a git tree (no repository at {tree})")
        ref = reader.scalar(f"{where}.ref", raw["ref"], str)
        if ref.startswith("-") or _CONTROL.search(ref) or not ref:  # never a git option
            reader.fail(f"{where}.ref", ref, "a commit-ish (a branch, tag or commit)")
        return GitSource(name, tree, ref)
    reader.fail(where, value, "either 'debian_package: NAME' (and optionally 'version:')"
                " or both 'git: PATH' and 'ref: REF'")


def _kernel(reader: Reader, index: int, value: Any, sources: dict[str, Source]) -> KernelSpec:
    where = f"kernels[{index}]"
    raw = reader.mapping(where, value, ["name", "source", "patches", "config"])
    for key in ("name", "source"):
        if key not in raw:
            reader.fail(f"{where}.{key}", None, "a value (the key is required)")
    source_name = reader.scalar(f"{where}.source", raw["source"], str)
    if source_name not in sources:
        reader.fail(f"{where}.source", source_name, f"one of the sources: {', '.join(sources)}")
    return KernelSpec(
        name=_name(reader, f"{where}.name", raw["name"]),
        source=sources[source_name],
        patches=reader.patch_list(f"{where}.patches", raw.get("patches")),
        config=reader.file_list(f"{where}.config", raw.get("config")),
    )


def _guest(reader: Reader, value: Any, sources: dict[str, Source]) -> GuestSpec:
    if value is None:
        return GuestSpec()
    raw = reader.mapping("guest", value, ["source", "patches", "config"])
    source = None
    if raw.get("source") is not None:
        name = reader.scalar("guest.source", raw["source"], str)
        if name not in sources:
            reader.fail("guest.source", name, f"one of the sources: {', '.join(sources)}")
        source = sources[name]
    if "config" in raw and raw["config"] is None:  # would build the guest with no fragment
        reader.fail("guest.config", None, "a list of config fragment files (leave the key"
                                          " out for the host's fragments + the guest's)")
    config = reader.file_list("guest.config", raw["config"]) if "config" in raw else None
    return GuestSpec(source=source, patches=reader.patch_list("guest.patches", raw.get("patches")),
                     config=config)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML forbids it;
    PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The parsed document, or BadInput naming the file (and line) for anything
    that is not a small, well-formed YAML text."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise BadInput(f"{path}: larger than {MAX_CONFIG_BYTES >> 10} KiB; not a rig"
                       " description")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        # Aliases can expand exponentially ("billion laughs") and the loader recurses
        # per nesting level: count both in the event stream (no recursion) first.
        aliases = depth = 0
        for event in yaml.parse(text, yaml.SafeLoader):
            aliases += isinstance(event, yaml.AliasEvent)
            depth += isinstance(event, yaml.CollectionStartEvent)
            depth -= isinstance(event, yaml.CollectionEndEvent)
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1
                raise BadInput(f"{path}: line {line}: nested deeper than {MAX_YAML_DEPTH}"
                               " levels; not a rig description")
        if aliases > MAX_YAML_ALIASES:
            raise BadInput(f"{path}: {aliases} YAML aliases; at most {MAX_YAML_ALIASES}")
        return yaml.load(text, _StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{path}: {line}invalid YAML: {problem}") from None


def _suite_config(reader: Reader, name: str, value: Any) -> SuiteConfig:
    cls = registry()[name]
    where = f"suites.{name}"
    cfg = reader.dataclass(where, value, cls.Config)

    def fail(key: str, found: Any, expected: str) -> typing.NoReturn:
        reader.fail(f"{where}.{key}", found, expected)

    cls.validate(cfg, fail)
    return cfg


def _suites(reader: Reader, value: Any) -> dict[str, SuiteConfig]:
    suites = registry()
    raw = reader.mapping("suites", value or {}, suites)
    return {name: _suite_config(reader, name, raw.get(name)) for name in suites}


def saved_suite_config(path: Path, name: str, saved: Any) -> SuiteConfig:
    """A suite's configuration as a run or an export saved it (manifest.json,
    plan.json: foreign input), checked by the rules rig.yaml's is checked by.
    Keys this rig does not know (a run of another version) are left out."""
    if name not in registry():
        raise BadInput(f"{path}: suites: no suite {validate.shown(name)} in this rig")
    if isinstance(saved, dict):
        known = {f.name for f in dataclasses.fields(registry()[name].Config)}
        saved = {k: v for k, v in saved.items() if k in known}
    return _suite_config(Reader(path), name, saved)


def _targets(reader: Reader, value: Any) -> dict[str, Any]:
    """`targets:` name -> entry, parsed by the kind its `type` names (orchestrator.targets);
    `qemu: {type: qemu}` names the default."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        reader.fail("targets", value, "a mapping of target names to entries")
    targets = {}
    standing = {type_: kind for type_, kind in kinds().items() if kind.standing}
    for name, entry in value.items():
        where = f"targets.{_name(reader, 'targets', name)}"
        kind = entry.get("type") if isinstance(entry, dict) else None
        if name == QEMU_TARGET:  # the rig's own: named only to say it is the default
            kinds()[QEMU_TARGET].entry(reader, name, entry)
        elif kind in standing:
            targets[name] = standing[kind].entry(reader, name, entry)
        else:
            reader.fail(f"{where}.type", kind, " or ".join(standing))
    return targets


def _qemu(reader: Reader, where: str, value: Any) -> QemuConfig:
    qemu = reader.dataclass(where, value, QemuConfig)
    if not 1 <= qemu.smp <= MAX_SMP:
        reader.fail(f"{where}.smp", qemu.smp, f"an integer from 1 to {MAX_SMP}")
    if qemu.tcg_thread not in (None, *TCG_THREADS):
        reader.fail(f"{where}.tcg_thread", qemu.tcg_thread, " or ".join(TCG_THREADS))
    for key in ("machine", "cpu", "icount"):
        if getattr(qemu, key) is not None and not QEMU_WORD.fullmatch(getattr(qemu, key)):
            reader.fail(f"{where}.{key}", getattr(qemu, key),
                        "one word of letters, digits and ',=._+-' (a QEMU option value)")
    for key in ("binary", "append"):
        if _CONTROL.search(getattr(qemu, key)):
            reader.fail(f"{where}.{key}", getattr(qemu, key), "one line of text")
    if not _MEMORY.fullmatch(qemu.memory) or not (
            MEMORY_MB[0] <= qemu.memory_mb <= MEMORY_MB[1]):
        reader.fail(f"{where}.memory", qemu.memory,
                    f"a size such as 512M or 2G, from {MEMORY_MB[0]}M to {MEMORY_MB[1] // 1024}G")
    return qemu


def saved_qemu_config(path: Path, where: str, saved: Any) -> QemuConfig:
    """A machine as an export saved it (plan.json: foreign input), checked by the
    rules of rig.yaml's qemu:."""
    return _qemu(Reader(path), where, saved)


def _timeouts(reader: Reader, value: Any) -> TimeoutsConfig:
    timeouts = reader.dataclass("timeouts", value, TimeoutsConfig)
    for key in ("build", "boot", "command", "job"):
        seconds = getattr(timeouts, key)
        if seconds is not None and not 0 < seconds <= MAX_SECONDS:
            reader.fail(f"timeouts.{key}", seconds, f"a number of seconds > 0 and at most"
                                                     f" {MAX_SECONDS} (a week)")
    return timeouts


def _nightly(reader: Reader, value: Any) -> NightlyConfig:
    nightly = reader.dataclass("nightly", value, NightlyConfig)
    for i, check in enumerate(nightly.fail_on):
        if check not in NIGHTLY_CHECKS:
            reader.fail(f"nightly.fail_on[{i}]", check, " or ".join(NIGHTLY_CHECKS))
    if not 2 <= nightly.trend_runs <= 1000:
        reader.fail("nightly.trend_runs", nightly.trend_runs, "an integer from 2 to 1000")
    return nightly


def _sources(reader: Reader, value: Any) -> dict[str, Source]:
    if not isinstance(value, dict) or not value:
        reader.fail("sources", value, "a mapping of source names to kernel sources")
    return {_name(reader, f"sources.{name}", name): _source(reader, name, item)
            for name, item in value.items()}


def _kernels(reader: Reader, value: Any, sources: dict[str, Source]) -> tuple[KernelSpec, ...]:
    if not isinstance(value, list) or not value:
        reader.fail("kernels", value, "a non-empty list of kernels")
    kernels = tuple(_kernel(reader, i, item, sources) for i, item in enumerate(value))
    seen: set[str] = set()
    for i, spec in enumerate(kernels):
        if spec.name in seen:
            reader.fail(f"kernels[{i}].name", spec.name, "a name not used by another kernel")
        seen.add(spec.name)
    return kernels


def load(path: Path | str | None = None, results_dir: Path | None = None) -> RigConfig:
    """Load rig.yaml (default: ./rig.yaml, else the embedded one); results go to
    its `results_dir`, else results_dir, else $RIG_RESULTS_DIR, else ./results
    (as the cache goes to `cache_dir`, else $RIG_CACHE_DIR)."""
    path = Path(path or default_config_path()).resolve()
    doc = read_yaml(path)
    reader = Reader(path)
    top = reader.mapping("(top level)", doc,
                         ["qemu", "sources", "kernels", "guest", "suites", "timeouts", "nightly",
                          "targets", "cache_dir", "results_dir"])
    qemu = _qemu(reader, "qemu", top.get("qemu"))
    timeouts = _timeouts(reader, top.get("timeouts"))
    nightly = _nightly(reader, top.get("nightly"))
    sources = _sources(reader, top.get("sources"))
    kernels = _kernels(reader, top.get("kernels"), sources)
    suites = _suites(reader, top.get("suites"))
    for name, cfg in suites.items():
        wanted = registry()[name](cfg).needs().min_cpus
        if cfg.enabled and wanted > qemu.smp:
            reader.fail("qemu.smp", qemu.smp, f">= {wanted} for suite {name}")

    def directory(key: str, default: Path) -> Path:
        if top.get(key) is None:
            return default
        return (reader.base / reader.scalar(key, top[key], str)).resolve()

    return RigConfig(
        path=path,
        qemu=qemu,
        sources=sources,
        kernels=kernels,
        cache_dir=directory("cache_dir", default_cache_dir()),
        results_dir=directory("results_dir", (results_dir or Path(
            os.environ.get(RESULTS_ENV) or "results")).resolve()),
        suites=suites,
        timeouts=timeouts,
        nightly=nightly,
        targets=_targets(reader, top.get("targets")),
        guest=_guest(reader, top.get("guest"), sources),
    )
