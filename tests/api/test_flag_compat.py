"""Every flag of TF Serving's tensorflow_model_server is recognised: implemented, accepted
with a reason, or refused at start-up by name. None is silently ignored."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from pyserving.api import flag_compat
from pyserving.api.cli import build_parser, main, tensorflow_model_server_main
from pyserving.api.flag_compat import (
    IMPLEMENTED,
    REFUSED,
    TF_SERVING_FLAGS,
    FlagError,
    grpc_channel_arguments,
    refused_flags,
    tensorflow_threads,
)
from tests.util.processes import refused_start

# tensorflow_serving/model_servers/main.cc (recent), plus enable_grpc_healthcheck_service
# and use_tflite_model from older releases: the flags TF Serving documents.
TF_SERVING_MAIN_CC_FLAGS = """
port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms
rest_api_enable_cors_support enable_batching allow_version_labels_for_unavailable_models
batching_parameters_file enable_per_model_batching_parameters model_config_file
model_config_file_poll_wait_seconds model_name model_base_path num_load_threads
num_unload_threads max_num_load_retries load_retry_interval_micros
file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism
tensorflow_session_config_file tensorflow_intra_op_parallelism
tensorflow_inter_op_parallelism use_alts_credentials ssl_config_file platform_config_file
per_process_gpu_memory_fraction saved_model_tags grpc_channel_arguments grpc_max_threads
enable_model_warmup num_request_iterations_for_warmup version monitoring_config_file
remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
num_tflite_interpreters_per_pool enable_signature_method_name_check
xla_cpu_compilation_enabled xla_gpu_compilation_enabled enable_profiler
thread_pool_factory_config_file enable_grpc_healthcheck_service use_tflite_model
mixed_precision skip_initialize_tpu enable_serialization_as_tensor_content
""".split()  # noqa: SIM905 - the list as main.cc reads


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["serve"]


def serve_flags() -> set[str]:
    return {
        option[2:]
        for action in serve_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    }


def test_the_table_lists_exactly_tf_servings_flags() -> None:
    assert sorted(TF_SERVING_FLAGS) == sorted(TF_SERVING_MAIN_CC_FLAGS)


def test_every_flag_is_on_the_parser() -> None:
    registered = serve_flags()
    assert [f for f in TF_SERVING_FLAGS if f not in registered] == []


def test_every_flag_parses_with_tf_servings_default_values() -> None:
    args = serve_parser().parse_args(
        [
            "--rest_api_timeout_in_ms=30000",
            "--rest_api_enable_cors_support=false",
            "--enable_grpc_healthcheck_service=true",
            "--flush_filesystem_caches=true",
            "--remove_unused_fields_from_bundle_metagraph=true",
            "--use_alts_credentials=false",
            "--enable_profiler=false",
            "--per_process_gpu_memory_fraction=0",
            "--num_tflite_pools=4",
            "--tensorflow_intra_op_parallelism=0",
            "--grpc_max_threads=0",
        ]
    )
    assert refused_flags(args) == []
    assert args.rest_api_timeout_in_ms == 30000 and args.rest_api_num_threads >= 4


REFUSING_VALUES = {
    "thread_pool_factory_config_file": "/etc/pools.pbtxt",
}


def test_refused_flags_name_themselves() -> None:
    refused = {name for name, s in TF_SERVING_FLAGS.items() if s.status == REFUSED}
    assert refused == set(REFUSING_VALUES)
    for name, value in REFUSING_VALUES.items():
        args = serve_parser().parse_args([f"--{name}={value}"])
        messages = refused_flags(args)
        assert len(messages) == 1 and messages[0].startswith(f"--{name}=")
        assert "is not supported by pyserving" in messages[0]


def test_a_refused_flag_stops_the_server_with_exit_2(tmp_path) -> None:
    stderr = refused_start(
        f"--model_base_path={tmp_path}",
        "--model_name=m",
        "--thread_pool_factory_config_file=/etc/pools.pbtxt",
    )
    assert "--thread_pool_factory_config_file=/etc/pools.pbtxt is not supported" in stderr


def test_version_prints_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert tensorflow_model_server_main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pyserving: ") and "TensorFlow Library: " in out
    assert main(["serve", "--version=true"]) == 0
    assert capsys.readouterr().out.startswith("pyserving: ")


def test_tensorflow_threads_combine_as_tf_serving() -> None:
    def threads(session: int, intra: int, inter: int) -> tuple[int, int]:
        return tensorflow_threads(
            argparse.Namespace(
                tensorflow_session_parallelism=session,
                tensorflow_intra_op_parallelism=intra,
                tensorflow_inter_op_parallelism=inter,
            )
        )

    assert threads(0, 0, 0) == (0, 0)
    assert threads(3, 0, 0) == (3, 3)
    assert threads(3, 2, 0) == (2, 0)
    with pytest.raises(FlagError, match="You cannot configure all"):
        threads(1, 2, 3)
    # inter-op -1 runs every op in the caller's thread, reached as TF Serving reaches it
    assert threads(0, 1, -1) == (1, -1)
    assert threads(0, 0, -1) == (0, 0)  # TF Serving ignores it unless one flag is > 0
    for refused in [(-1, 0, 0), (0, -1, 2)]:  # TensorFlow would abort the process
        with pytest.raises(FlagError, match="must be 0 or more"):
            threads(*refused)


def test_tensorflow_threads_reach_each_session(tmp_path: Path) -> None:
    """TF Serving puts the parallelism flags in the SessionBundleConfig's ConfigProto."""
    from pyserving.adapters.loaders.platforms import PlatformOptions, make_loader
    from tests.example_models import export_tf2_model

    options = serve_parser().parse_args(
        [
            "--model_base_path=/m",
            "--tensorflow_intra_op_parallelism=3",
            "--tensorflow_inter_op_parallelism=2",
        ]
    )
    intra, inter = tensorflow_threads(options)
    loader = make_loader(
        "tensorflow", PlatformOptions(intra_op_threads=intra, inter_op_threads=inter)
    )
    servable = loader.load(str(export_tf2_model(tmp_path / "m" / "1")))
    # ignored below: the loaded Session's private config
    config = servable._session._config  # type: ignore[attr-defined]
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (3, 2)
    servable.unload()


def test_grpc_channel_arguments_as_tf_serving_parses_them() -> None:
    assert grpc_channel_arguments("") == []
    assert grpc_channel_arguments("grpc.max_connection_age_ms=1000,grpc.lb_policy_name=rr") == [
        ("grpc.max_connection_age_ms", 1000),
        ("grpc.lb_policy_name", "rr"),
    ]
    assert grpc_channel_arguments("a=99999999999") == [("a", "99999999999")]  # not int32
    with pytest.raises(FlagError, match="is not key=value"):
        grpc_channel_arguments("grpc.keepalive_time_ms")


def test_help_groups_the_flags() -> None:
    text = serve_parser().format_help()
    for group in (
        "REST API (on --rest_api_port)",
        "TLS, sockets and limits",
        "TensorFlow threads",
        "TF Serving compatibility",
    ):
        assert group in text
    assert flag_compat.version_text().startswith("pyserving: ")


def test_tflite_flags_and_the_profiler_are_implemented_with_tf_servings_defaults() -> None:
    for name in (
        "prefer_tflite_model",
        "use_tflite_model",
        "num_tflite_pools",
        "num_tflite_interpreters_per_pool",
        "enable_profiler",
    ):
        assert TF_SERVING_FLAGS[name].status == IMPLEMENTED, name
    args = serve_parser().parse_args([])
    # server.h: prefer_tflite_model false, num_tflite_pools NumSchedulableCPUs,
    # num_tflite_interpreters_per_pool 1, enable_profiler true (main.cc).
    assert args.prefer_tflite_model is False and args.use_tflite_model is False
    assert args.num_tflite_pools == (os.cpu_count() or 1)
    assert args.num_tflite_interpreters_per_pool == 1
    assert args.enable_profiler is True
    asked = serve_parser().parse_args(["--prefer_tflite_model", "--enable_profiler=false"])
    assert asked.prefer_tflite_model is True and asked.enable_profiler is False
    assert refused_flags(asked) == []
