"""The Ray executor's settings, its data movement and its cluster check, without a cluster.

Bad settings fail when the server is made (naming the parameter, the flag or the variable, and
how to fix it), not when a job runs; inputs and outputs move through the Ray storage by path or
URI (pyarrow), checked here on a local folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_kit.errors import ConfigurationError
from tests.fixtures.cli import run
from tests.fixtures.local_backend import free_port

pytest.importorskip("pyarrow")


@pytest.mark.parametrize(
    ("options", "param", "text"),
    [
        ({"executor": "slurm"}, "executor", "use 'local' (this machine) or 'ray'"),
        ({"executor": "ray", "workers_per_job": 0}, "workers_per_job", "at least 1"),
        (
            {"executor": "ray", "resources_per_worker": {"GPU": -1}},
            "resources_per_worker",
            '{"CPU": 2} or {"GPU": 1}',
        ),
        (
            {"executor": "ray", "resources_per_worker": {"CPU": "two"}},
            "resources_per_worker",
            "'CPU': 'two'",
        ),
    ],
)
def test_bad_executor_settings_are_refused_when_the_backend_is_made(
    tmp_path: Path, options: dict[str, object], param: str, text: str
) -> None:
    from finetune_kit.local import LocalBackend

    with pytest.raises(ConfigurationError) as caught:
        LocalBackend(tmp_path, **options)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert text in str(caught.value)


def test_the_executor_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_kit.local import LocalBackend

    pytest.importorskip("ray")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_EXECUTOR", "ray")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_WORKERS_PER_JOB", "4")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_RESOURCES_PER_WORKER", '{"GPU": 1}')
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_RAY_STORAGE", "s3://bucket/runs")
    settings = LocalBackend(tmp_path).settings
    assert (settings.executor, settings.ray_address, settings.workers_per_job) == (
        "ray",
        "10.0.0.5:6379",
        4,
    )
    assert settings.resources_per_worker == {"GPU": 1}
    assert settings.ray_storage_location == "s3://bucket/runs"
    # What the worker processes get, and read back.
    from finetune_kit.local.settings import ServerSettings

    again = ServerSettings.from_worker_json(settings.worker_json())
    assert (again.executor, again.workers_per_job, again.ray_storage) == (
        "ray",
        4,
        "s3://bucket/runs",
    )
    # An argument wins over the variable.
    assert LocalBackend(tmp_path, workers_per_job=2).settings.workers_per_job == 2


def test_bad_environment_values_name_their_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_kit.local import LocalBackend

    monkeypatch.setenv("FINETUNE_KIT_LOCAL_WORKERS_PER_JOB", "two")
    with pytest.raises(ConfigurationError, match=r"\$FINETUNE_KIT_LOCAL_WORKERS_PER_JOB is 'two'"):
        LocalBackend(tmp_path)
    monkeypatch.delenv("FINETUNE_KIT_LOCAL_WORKERS_PER_JOB")
    monkeypatch.setenv("FINETUNE_KIT_LOCAL_RESOURCES_PER_WORKER", "GPU=1")
    with pytest.raises(ConfigurationError, match=r"\$FINETUNE_KIT_LOCAL_RESOURCES_PER_WORKER is"):
        LocalBackend(tmp_path)


@pytest.mark.parametrize(
    ("argv", "text"),
    [
        (["--resources-per-worker", "{CPU: 2}"], "--resources-per-worker is not JSON"),
        (["--resources-per-worker", "[1]"], "give a JSON object"),
        (["--workers-per-job", "0"], "workers_per_job is 0"),
        (["--executor", "slurm"], "invalid choice: 'slurm'"),
    ],
)
def test_local_serve_refuses_bad_ray_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], text: str
) -> None:
    pytest.importorskip("ray")
    base = ["local", "serve", "--data-dir", str(tmp_path), "--port", str(free_port())]
    try:
        code, _, err = run(capsys, *base, "--executor", "ray", *argv)
    except SystemExit as exit_:  # argparse's own refusal of a choice
        code, err = int(exit_.code or 0), capsys.readouterr().err
    assert code == 2
    assert text in err


def test_small_inputs_travel_inline_and_large_ones_through_the_storage(tmp_path: Path) -> None:
    from finetune_kit.local.worker.ray_executor.storage import (
        materialize_file,
        materialize_folder,
        pack_folder,
        stage_file,
    )

    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"messages": []}\n' * 100)
    storage = str(tmp_path / "storage")
    assert stage_file(data, storage, "job-inputs/training.jsonl") == {"bytes": data.read_bytes()}

    large = stage_file(data, storage, "job-inputs/training.jsonl", inline_max=10)
    assert large == {"uri": f"{storage}/job-inputs/training.jsonl"}
    copy = materialize_file(large, tmp_path / "worker" / "training.jsonl")
    assert copy.read_bytes() == data.read_bytes()

    adapter = tmp_path / "adapter"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (adapter / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    back = materialize_folder(pack_folder(adapter), tmp_path / "unpacked")
    assert (back / "adapter_config.json").read_text() == json.dumps({"r": 8})
    assert (back / "sub" / "weights.bin").read_bytes() == b"\x00\x01"


def test_outputs_come_back_from_the_storage_whole(tmp_path: Path) -> None:
    from finetune_kit.local.worker.ray_executor.storage import copy_back, remove_tree

    run = tmp_path / "storage" / "ftjob-1" / "checkpoint-step-3"
    run.mkdir(parents=True)
    (run / "adapter_model.safetensors").write_bytes(b"weights")
    target = tmp_path / "data" / "jobs" / "ftjob-1" / "checkpoints" / "step-3"
    target.mkdir(parents=True)
    (target / "stale").write_text("an earlier copy")

    copy_back(str(run), target)
    assert sorted(p.name for p in target.iterdir()) == ["adapter_model.safetensors"]
    assert not list(target.parent.glob(".*"))  # no staging folder left behind
    with pytest.raises(FileNotFoundError, match="not a folder in the Ray run storage"):
        copy_back(str(run.parent / "checkpoint-step-9"), target.parent / "step-9")

    remove_tree(str(tmp_path / "storage" / "ftjob-1"))
    remove_tree(str(tmp_path / "storage" / "ftjob-1"))  # already gone: fine
    assert not (tmp_path / "storage" / "ftjob-1").exists()


def test_an_unreachable_cluster_is_named_with_what_to_do() -> None:
    from finetune_kit.local.worker.ray_executor.cluster import (
        ClusterUnreachableError,
        check_reachable,
    )

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ClusterUnreachableError) as caught:
        check_reachable(address)
    message = str(caught.value)
    assert message.startswith(f"The Ray cluster at {address} cannot be reached")
    assert "ray start --head" in message
    assert "--ray-address" in message
