"""ModelServerConfig text protos: parse, validate, and diff what a reload changes.

The file is parsed with protobuf's text format into TF Serving's real
`ModelServerConfig` class, then checked and turned into plain frozen values the rest
of the server uses. Every problem is a `ConfigError` whose message names the file and
line (syntax) or the model (meaning) and says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import text_format
from tensorflow_serving.config import logging_config_pb2, model_server_config_pb2

from pyserving.adapters.loaders.platforms import KNOWN_PLATFORMS, TENSORFLOW
from pyserving.adapters.sources.version_selection import (
    AllVersions,
    LatestVersions,
    SpecificVersions,
    VersionSelection,
)
from pyserving.adapters.text_proto import parse_text_proto
from pyserving.engine.errors import ConfigurationError

ModelServerConfig = model_server_config_pb2.ModelServerConfig

DEFAULT_PLATFORM = TENSORFLOW
# The deprecated `model_type` enum: TENSORFLOW (1) means the tensorflow platform.
_MODEL_TYPE_TENSORFLOW = 1


class ConfigError(ConfigurationError):
    """The configuration cannot be used; the message says where and what to change."""


# LogCollectorConfig.type values that mean the TFRecord files pyserving writes.
LOG_COLLECTOR_TYPES = ("", "tfrecord")


@dataclass(frozen=True)
class RequestLogConfig:
    """A model's `logging_config`: the share of its requests logged, and where."""

    sampling_rate: float
    filename_prefix: str


@dataclass(frozen=True)
class ModelConfig:
    """One model as the server runs it."""

    name: str
    base_path: str
    platform: str = DEFAULT_PLATFORM
    version_selection: VersionSelection = field(default_factory=LatestVersions)
    labels: Mapping[str, int] = field(default_factory=dict)
    request_log: RequestLogConfig | None = None  # None: its requests are not logged

    def same_source(self, other: ModelConfig) -> bool:
        """True when a source built for `other` would find and pick the same versions."""
        return (self.base_path, self.platform, self.version_selection) == (
            other.base_path,
            other.platform,
            other.version_selection,
        )


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


@dataclass(frozen=True)
class ConfigDiff:
    """What applying `new` over `old` changes, by model name."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # base path, platform or version selection: a new source
    relabelled: tuple[str, ...] = ()  # version labels only
    relogged: tuple[str, ...] = ()  # logging_config only

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.relabelled or self.relogged)


def single_model(name: str, base_path: str, platform: str = DEFAULT_PLATFORM) -> ServerConfig:
    """The config that --model_name/--model_base_path (and --model_platform) stand for."""
    return ServerConfig((ModelConfig(name=name, base_path=base_path, platform=platform),))


PARSE_ERROR_PREFIX = "Error parsing text-format tensorflow.serving.ModelServerConfig: "


def parse_model_server_config(text: str, origin: str = "model config") -> ServerConfig:
    """Parse and validate a ModelServerConfig in protobuf text format."""
    try:
        proto = parse_text_proto(ModelServerConfig, text)
    except text_format.ParseError as exc:
        detail = str(exc)
        line, column = exc.GetLine(), exc.GetColumn()
        prefix = f"{line}:{column} : "
        if detail.startswith(prefix):
            detail = detail[len(prefix) :]
        raise ConfigError(  # TF Serving's (protobuf's) wording, which scripts grep for
            f"{PARSE_ERROR_PREFIX}{origin}:{line}:{column}: {detail} (the file must be a "
            "ModelServerConfig text proto: model_config_list { config { name: ... "
            "base_path: ... } })"
        ) from None
    return from_proto(proto, origin)


def read_file(path: str) -> ServerConfig:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read --model_config_file={path}: {exc}; give the path of a "
            "ModelServerConfig text proto"
        ) from None
    return parse_model_server_config(text, origin=path)


def from_proto(proto: model_server_config_pb2.ModelServerConfig, origin: str) -> ServerConfig:
    """Check a ModelServerConfig and turn it into a ServerConfig."""
    if proto.WhichOneof("config") == "custom_model_config":
        raise ConfigError(
            f"{origin}: custom_model_config is not supported; list the models in "
            "model_config_list { config { ... } }"
        )
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(proto.model_config_list.config, start=1):
        where = f"{origin}: model #{index}" + (f" ({entry.name!r})" if entry.name else "")
        if not entry.name:
            raise ConfigError(f"{where}: name is empty; every model needs a name clients use")
        if entry.name in seen:
            raise ConfigError(f"{where}: the name {entry.name!r} is used twice; names are unique")
        seen.add(entry.name)
        if not entry.base_path:
            raise ConfigError(
                f"{where}: base_path is empty; set it to the folder of numbered versions"
            )
        policy = _version_selection(entry, where)
        labels = dict(entry.version_labels)
        for label, version in sorted(labels.items()):
            if not label or label != label.strip():
                raise ConfigError(f"{where}: version label {label!r} is empty or padded")
            if version < 0:
                raise ConfigError(f"{where}: label {label!r} points at negative version {version}")
            if isinstance(policy, SpecificVersions) and version not in policy.versions:
                raise ConfigError(
                    f"{where}: label {label!r} points at version {version}, which its "
                    f"specific policy {list(policy.versions)} never serves; add it there"
                )
        models.append(
            ModelConfig(
                name=entry.name,
                base_path=entry.base_path,
                platform=_platform(entry, where),
                version_selection=policy,
                labels=labels,
                request_log=_request_log(entry, where),
            )
        )
    return ServerConfig(tuple(models))


def _request_log(entry: model_server_config_pb2.ModelConfig, where: str) -> RequestLogConfig | None:
    """TF Serving's LoggingConfig, as far as pyserving writes it: a sampling rate and the
    prefix of TFRecord files (see adapters/request_log)."""
    if not entry.HasField("logging_config"):
        return None
    config: logging_config_pb2.LoggingConfig = entry.logging_config
    where = f"{where}: logging_config"
    if config.HasField("custom_logging_config"):
        raise ConfigError(
            f"{where}: custom_logging_config is not supported; use log_collector_config "
            '{ filename_prefix: "/path/prefix" } and sampling_config { sampling_rate: R }'
        )
    sampling = config.sampling_config
    if sampling.per_task_sampling_configs or sampling.attributes:
        raise ConfigError(
            f"{where}: sampling_config supports only sampling_rate; remove "
            "per_task_sampling_configs and attributes"
        )
    rate = sampling.sampling_rate
    if not 0.0 <= rate <= 1.0:  # NaN fails too
        raise ConfigError(
            f"{where}: sampling_rate {rate} is outside [0, 1]; give the share of requests "
            "to log (0.01 logs one in a hundred)"
        )
    collector = config.log_collector_config
    if collector.type not in LOG_COLLECTOR_TYPES:
        raise ConfigError(
            f"{where}: log_collector_config type {collector.type!r} is not supported; "
            'leave type out or write type: "tfrecord" (TFRecord files of PredictionLog '
            "at filename_prefix)"
        )
    if rate == 0.0:
        return None
    if not collector.filename_prefix:
        raise ConfigError(
            f"{where}: log_collector_config filename_prefix is empty; give where the "
            'files go, e.g. filename_prefix: "/var/log/pyserving/requests"'
        )
    return RequestLogConfig(rate, collector.filename_prefix)


def _platform(entry: model_server_config_pb2.ModelConfig, where: str) -> str:
    platform = entry.model_platform
    if entry.model_type and entry.model_type != _MODEL_TYPE_TENSORFLOW:
        raise ConfigError(f"{where}: model_type is deprecated; set model_platform instead")
    if not platform:
        return DEFAULT_PLATFORM
    if platform not in KNOWN_PLATFORMS:
        raise ConfigError(
            f"{where}: unknown model_platform {platform!r}; known platforms: "
            f"{', '.join(sorted(KNOWN_PLATFORMS))}"
        )
    return platform


def _version_selection(entry: model_server_config_pb2.ModelConfig, where: str) -> VersionSelection:
    policy = entry.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice is None:
        return LatestVersions(1)
    if choice == "latest":
        return LatestVersions(max(1, policy.latest.num_versions))  # TF Serving: at least 1
    if choice == "all":
        return AllVersions()
    versions = tuple(sorted(set(policy.specific.versions)))
    if not versions:
        raise ConfigError(f"{where}: model_version_policy specific {{}} lists no versions")
    if versions[0] < 0:
        raise ConfigError(f"{where}: specific policy lists negative version {versions[0]}")
    return SpecificVersions(versions)


def diff(old: ServerConfig, new: ServerConfig) -> ConfigDiff:
    old_by_name = {m.name: m for m in old.models}
    new_by_name = {m.name: m for m in new.models}
    both = [name for name in new_by_name if name in old_by_name]
    return ConfigDiff(
        added=tuple(n for n in new_by_name if n not in old_by_name),
        removed=tuple(n for n in old_by_name if n not in new_by_name),
        changed=tuple(n for n in both if not new_by_name[n].same_source(old_by_name[n])),
        relabelled=tuple(
            n for n in both if dict(new_by_name[n].labels) != dict(old_by_name[n].labels)
        ),
        relogged=tuple(n for n in both if new_by_name[n].request_log != old_by_name[n].request_log),
    )
