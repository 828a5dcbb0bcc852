"""ModelServerConfig text protos: parsed with the real proto class, checked, and diffed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyserving.adapters.model_config import (
    KNOWN_PLATFORMS,
    PARSE_ERROR_PREFIX,
    ConfigDiff,
    ConfigError,
    ModelConfig,
    ServerConfig,
    diff,
    parse_model_server_config,
    read_file,
)
from pyserving.adapters.sources.version_selection import (
    AllVersions,
    LatestVersions,
    SpecificVersions,
)

TWO_MODELS = """
model_config_list {
  config {
    name: "mnist"
    base_path: "/models/mnist"
    model_platform: "tensorflow"
    model_version_policy { latest { num_versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "digits"
    base_path: "/models/digits"
    model_version_policy { specific { versions: 3 versions: 1 } }
  }
  config { name: "all" base_path: "/models/all" model_version_policy { all {} } }
  config { name: "plain" base_path: "/models/plain" }
}
"""


def test_parses_models_policies_platforms_and_labels() -> None:
    config = parse_model_server_config(TWO_MODELS)
    assert config.names == ["mnist", "digits", "all", "plain"]
    mnist = config.get("mnist")
    assert mnist == ModelConfig(
        "mnist", "/models/mnist", "tensorflow", LatestVersions(2), {"stable": 1, "canary": 2}
    )
    assert config.get("digits").version_selection == SpecificVersions((1, 3))
    assert config.get("all").version_selection == AllVersions()
    plain = config.get("plain")
    assert plain.version_selection == LatestVersions(1) and plain.platform == "tensorflow"
    assert config.get("nope") is None


def test_latest_zero_means_one_as_in_tf_serving() -> None:
    text = 'model_config_list { config { name: "m" base_path: "/m" '
    text += "model_version_policy { latest {} } } }"
    assert parse_model_server_config(text).get("m").version_selection == LatestVersions(1)


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text('model_config_list {\n  config {\n    nmae: "mnist"\n  }\n}\n')
    with pytest.raises(ConfigError) as info:
        read_file(str(path))
    message = str(info.value)
    assert message.startswith(f"{PARSE_ERROR_PREFIX}{path}:3:")
    assert 'no field named "nmae"' in message


def test_unreadable_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read --model_config_file="):
        read_file(str(tmp_path / "missing.config"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('config { name: "m" base_path: "/m" model_platform: "pytorch" }',
         "unknown model_platform 'pytorch'; known platforms: python, tensorflow"),
        ('config { base_path: "/m" }', "model #1: name is empty"),
        ('config { name: "m" }', "model #1 ('m'): base_path is empty"),
        ('config { name: "m" base_path: "/a" } config { name: "m" base_path: "/b" }',
         "model #2 ('m'): the name 'm' is used twice"),
        ('config { name: "m" base_path: "/m" model_version_policy { specific {} } }',
         "specific {} lists no versions"),
        ('config { name: "m" base_path: "/m" '
         'model_version_policy { specific { versions: 1 } } '
         'version_labels { key: "canary" value: 2 } }',
         "label 'canary' points at version 2, which its specific policy [1] never serves"),
        ('config { name: "m" base_path: "/m" version_labels { key: "" value: 2 } }',
         "version label '' is empty"),
        ('config { name: "m" base_path: "/m" model_type: OTHER }',
         "model_type is deprecated; set model_platform"),
    ],
)  # fmt: skip
def test_meaningless_configs_are_refused(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_server_config(f"model_config_list {{ {body} }}", origin="x.config")
    assert message in str(info.value)
    assert str(info.value).startswith("x.config: ")


def test_custom_model_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="custom_model_config is not supported"):
        parse_model_server_config('custom_model_config { type_url: "x" }')


def test_known_platforms_is_one_extendable_constant() -> None:
    from pyserving.adapters.loaders.platforms import PLATFORMS

    # The config accepts exactly the platforms a loader exists for.
    assert set(KNOWN_PLATFORMS) == set(PLATFORMS) and "tensorflow" in KNOWN_PLATFORMS


def test_diff() -> None:
    old = ServerConfig(
        (
            ModelConfig("a", "/a", labels={"stable": 1}),
            ModelConfig("b", "/b"),
            ModelConfig("c", "/c"),
        )
    )
    new = ServerConfig(
        (
            ModelConfig("a", "/a", labels={"stable": 2}),  # labels only
            ModelConfig("b", "/b", version_selection=AllVersions()),  # new policy: new source
            ModelConfig("d", "/d"),
        )
    )
    assert diff(old, new) == ConfigDiff(
        added=("d",), removed=("c",), changed=("b",), relabelled=("a",)
    )
    assert diff(new, new).empty


def test_config_digest_tells_configs_apart() -> None:
    from pyserving.api.server import config_digest

    one = parse_model_server_config('model_config_list { config { name: "a" base_path: "/a" } }')
    same = parse_model_server_config(
        'model_config_list {\n  config { name: "a"  base_path: "/a" }\n}'
    )
    other = parse_model_server_config('model_config_list { config { name: "a" base_path: "/b" } }')
    assert config_digest(one) == config_digest(same) != config_digest(other)
