"""The Session ConfigProto and the rest of the tensorflow platform's settings, from the
flags or --platform_config_file, as TF Serving's server.cc builds them; read back from the
Session a loaded version runs in."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from tensorflow.core.protobuf import config_pb2

from pyserving.adapters.loaders.platforms import PlatformOptions, make_loader
from pyserving.api.cli import build_parser
from pyserving.api.tensorflow_settings import SettingsError, settings_from_flags
from pyserving.engine.errors import ConfigurationError
from tests.example_models import export_half_plus_two_tf1


def serve_options(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "--model_base_path=/m", *flags])


def config_of(*flags: str) -> config_pb2.ConfigProto:
    return config_pb2.ConfigProto.FromString(
        settings_from_flags(serve_options(*flags)).session_config
    )


def test_the_file_then_the_gpu_fraction_then_the_threads(tmp_path: Path) -> None:
    file = tmp_path / "session.pbtxt"
    file.write_text(
        "intra_op_parallelism_threads: 7 inter_op_parallelism_threads: 5 "
        "allow_soft_placement: true gpu_options { allow_growth: true }"
    )
    config = config_of(f"--tensorflow_session_config_file={file}")
    # server.cc always sets both thread counts from the flags: 0 replaces the file's 7 and 5
    assert config.intra_op_parallelism_threads == 0 and config.inter_op_parallelism_threads == 0
    assert config.allow_soft_placement and config.gpu_options.allow_growth
    config = config_of(
        f"--tensorflow_session_config_file={file}",
        "--tensorflow_session_parallelism=2",
        "--per_process_gpu_memory_fraction=0.4",
    )
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (2, 2)
    assert config.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.4)
    assert config.gpu_options.allow_growth


@pytest.mark.parametrize("fraction", ["-0.1", "1.5"])
def test_a_gpu_fraction_outside_0_1_is_refused(fraction: str) -> None:
    with pytest.raises(SettingsError, match="per_process_gpu_memory_fraction"):
        settings_from_flags(serve_options(f"--per_process_gpu_memory_fraction={fraction}"))


def test_the_session_a_version_runs_in_has_that_config(tmp_path: Path) -> None:
    """What --per_process_gpu_memory_fraction does, read back on a machine without a GPU."""
    settings = settings_from_flags(
        serve_options(
            "--per_process_gpu_memory_fraction=0.3", "--tensorflow_intra_op_parallelism=2"
        )
    )
    model = export_half_plus_two_tf1(tmp_path / "1")
    loader = make_loader("tensorflow", PlatformOptions(session_config=settings.session_config))
    servable = loader.load(str(model))
    try:
        session_config = servable._session._config  # the ConfigProto the Session was made with
        assert session_config.gpu_options.per_process_gpu_memory_fraction == pytest.approx(0.3)
        assert session_config.intra_op_parallelism_threads == 2
    finally:
        servable.unload()


def test_platform_config_defaults_are_tf_servings(tmp_path: Path) -> None:
    file = tmp_path / "platform.pbtxt"
    file.write_text(
        'platform_configs { key: "tensorflow" value { source_adapter_config { '
        "[type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] { "
        "legacy_config { session_config { intra_op_parallelism_threads: 3 } "
        "enable_per_model_batching_params: true } } } } }"
    )
    settings = settings_from_flags(
        serve_options(
            f"--platform_config_file={file}",
            "--enable_batching",
            "--tensorflow_session_parallelism=9",
        )
    )
    config = config_pb2.ConfigProto.FromString(settings.session_config)
    assert config.intra_op_parallelism_threads == 3 and config.inter_op_parallelism_threads == 0
    assert settings.batching is None  # no batching_parameters: --enable_batching is ignored
    assert settings.per_model_batching is False  # it needs batching_parameters
    assert settings.saved_model_tags == ("serve",)  # the bundle factory's default
    assert settings.enable_model_warmup is False  # proto3's default, as in TF Serving


@pytest.mark.parametrize(
    ("text", "wording"),
    [
        ('platform_configs { key: "tensorflow" value { } }', "holds nothing, not"),
        ('platform_configs { key: "python" value { } }', "configures platform(s) ['python']"),
        ("platform_configs { key: 1 }", "is not a tensorflow.serving.PlatformConfigMap"),
    ],
)
def test_bad_platform_config_files_are_refused(tmp_path: Path, text: str, wording: str) -> None:
    file = tmp_path / "platform.pbtxt"
    file.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        settings_from_flags(serve_options(f"--platform_config_file={file}"))
    assert wording in str(caught.value)


def test_mixed_precision_bfloat16_turns_the_rewrite_on(tmp_path: Path) -> None:
    from tensorflow.core.protobuf import rewriter_config_pb2

    on = rewriter_config_pb2.RewriterConfig.ON
    config = config_of("--mixed_precision=bfloat16")
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == on
    other = config_of("--mixed_precision=fp16")  # logged and ignored, as in TF Serving
    assert not other.graph_options.HasField("rewrite_options")
    file = tmp_path / "platform.pbtxt"
    file.write_text(
        'platform_configs { key: "tensorflow" value { source_adapter_config { '
        "[type.googleapis.com/tensorflow.serving.SavedModelBundleSourceAdapterConfig] { "
        'legacy_config { mixed_precision: "bfloat16" } } } } }'
    )
    settings = settings_from_flags(serve_options(f"--platform_config_file={file}"))
    config = config_pb2.ConfigProto.FromString(settings.session_config)
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == on
