"""Azure OpenAI's v1 surface through the job manager and the session, against stand-ins.

Azure cannot be reached from here: the real ``openai`` client and the real deployer talk over
HTTP to `FakeAzureV1Server` (the data plane) and `FakeArmServer` (the control plane), which
check every request they receive (see tests/fixtures).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.azure import (
    AzureDeployer,
    azure_openai_client,
    deployable_model,
    training_type_body,
)
from finetune_kit.errors import ConfigurationError
from finetune_kit.jobs import AsyncJobManager, JobManager
from finetune_kit.session import FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.fake_arm import FakeArmServer
from tests.fixtures.fake_azure_v1 import FakeAzureV1Server

KEY = "azure-key-1"
BASE = "gpt-4.1-mini-2025-04-14"
ASSISTANT = {"role": "assistant", "content": "Hello"}


@pytest.fixture
def arm() -> Iterator[FakeArmServer]:
    with FakeArmServer(tokens={"arm-token-1"}, polls_to_succeed=1) as server:
        yield server


@pytest.fixture
def aoai(arm: FakeArmServer) -> Iterator[FakeAzureV1Server]:
    with FakeAzureV1Server(api_key=KEY, arm=arm) as server:
        yield server


def quick() -> RetryPolicy:
    return RetryPolicy(max_attempts=2, initial_delay=0.0, max_delay=0.0, sleep=lambda _: None)


def deployer(arm: FakeArmServer) -> AzureDeployer:
    return AzureDeployer(
        arm.subscription,
        arm.resource_group,
        arm.account,
        token="arm-token-1",
        management_url=arm.url,
        policy=quick(),
        poll_interval=0.01,
    )


def session(aoai: FakeAzureV1Server, state_path: Path) -> FineTuneSession:
    made = FineTuneSession(
        "azure", base_url=aoai.base_url, api_key=KEY, model=BASE, state_path=state_path
    )
    made.state.training_file_id = "file-0123"  # what upload() leaves (the stand-in stores none)
    return made


# ---------------------------------------------------------------- the training tier


def test_the_job_manager_sends_the_tier_as_azures_v1_api_takes_it(
    aoai: FakeAzureV1Server,
) -> None:
    client = azure_openai_client(base_url=aoai.base_url, api_key=KEY)
    # On 127.0.0.1 the provider is not guessed from the host (*.openai.azure.com): named here.
    jobs = JobManager(client, policy=quick(), provider="azure")
    for tier, sent in (
        ("GlobalStandard", "GlobalStandard"),
        ("Standard", "Standard"),
        ("Developer", "developerTier"),
    ):
        job = jobs.create(model=BASE, training_file="file-0123", training_type=tier)
        assert job.status == "pending"
        assert aoai.created_bodies()[-1]["trainingType"] == sent
    jobs.create(model=BASE, training_file="file-0123")
    assert "trainingType" not in aoai.created_bodies()[-1]
    assert aoai.violations == []


def test_the_developer_spelling_can_be_overridden(arm: FakeArmServer) -> None:
    # A resource that takes only "Developer", as one page of Microsoft's docs spells it.
    with FakeAzureV1Server(api_key=KEY, arm=arm, training_types=frozenset({"Developer"})) as aoai:
        client = azure_openai_client(base_url=aoai.base_url, api_key=KEY)
        jobs = JobManager(client, policy=quick(), provider="azure")
        with pytest.raises(openai.BadRequestError):
            jobs.create(model=BASE, training_file="file-0123", training_type="Developer")
        jobs.create(
            model=BASE,
            training_file="file-0123",
            training_type="Developer",
            training_type_wire="Developer",
        )
        assert aoai.created_bodies()[-1]["trainingType"] == "Developer"


def test_the_async_job_manager_sends_it_too(aoai: FakeAzureV1Server) -> None:
    import asyncio

    async def create() -> str:
        client = azure_openai_client(base_url=aoai.base_url, api_key=KEY, async_=True)
        async with client:
            job = await AsyncJobManager(client, policy=quick(), provider="azure").create(
                model=BASE, training_file="file-0123", training_type="GlobalStandard"
            )
            return job.id

    job_id = asyncio.run(create())
    assert job_id in aoai.jobs
    assert aoai.created_bodies()[-1]["trainingType"] == "GlobalStandard"


def test_a_tier_that_is_not_one_is_refused_before_any_request(
    aoai: FakeAzureV1Server,
) -> None:
    client = azure_openai_client(base_url=aoai.base_url, api_key=KEY)
    jobs = JobManager(client, policy=quick(), provider="azure")
    with pytest.raises(ConfigurationError, match="did you mean 'GlobalStandard'") as caught:
        jobs.create(model=BASE, training_file="f", training_type="globalstandard")
    assert caught.value.param == "training_type"
    with pytest.raises(ConfigurationError) as caught:
        jobs.create(
            model=BASE, training_file="f", training_type="Developer", training_type_wire=" "
        )
    assert caught.value.param == "training_type_wire"
    with pytest.raises(ConfigurationError) as caught:
        jobs.create(model=BASE, training_file="f", training_type_wire="developerTier")
    assert caught.value.param == "training_type"
    assert aoai.created_bodies() == []
    # OpenAI and the local backend have no such field: refused there, naming it.
    local = JobManager(openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigurationError, match="the local backend has no such option"):
        local.create(model=BASE, training_file="f", training_type="Standard")
    assert training_type_body("Standard") == {"trainingType": "Standard"}


def test_the_session_trains_on_a_tier_and_remembers_it(
    aoai: FakeAzureV1Server, tmp_path: Path
) -> None:
    state_path = tmp_path / "run.json"
    azure = session(aoai, state_path)
    job = azure.train(training_type="Developer", follow=False)
    assert aoai.created_bodies()[-1]["trainingType"] == "developerTier"
    assert SessionState.load(state_path).job_parameters == {
        "training_type": "Developer",
        "method": "supervised",
    }
    # Training again carries on with that job; asking another tier of it is refused.
    assert azure.train(training_type="Developer", follow=False).id == job.id
    with pytest.raises(ConfigurationError, match="training_type: the job has 'Developer'") as e:
        azure.train(training_type="Standard", follow=False)
    assert e.value.param == "training_type"
    assert len(aoai.created_bodies()) == 1
    assert aoai.violations == []


# ---------------------------------------------------------------- model ids and deploying


def test_deploying_a_checkpoint_by_step_deploys_its_ftchkpt_id(
    aoai: FakeAzureV1Server, arm: FakeArmServer, tmp_path: Path
) -> None:
    azure = session(aoai, tmp_path / "run.json")
    job = azure.train(follow=False)
    finished = aoai.succeed(job.id, steps=(10, 20))
    azure.status()
    azure.checkpoints()
    [latest, first] = aoai.checkpoints[job.id]
    # Azure's checkpoints share the job's .ft- id: only their ftchkpt- id tells them apart.
    assert latest["fine_tuned_model_checkpoint"] == first["fine_tuned_model_checkpoint"]
    with deployer(arm) as arm_client:
        deployment = azure.deploy(arm_client, "step-10", checkpoint=10)
    put = next(r for r in arm.requests if r.method == "PUT")
    assert put.body["properties"]["model"]["name"] == first["id"]
    assert deployment.model_name == first["id"]
    assert finished["fine_tuned_model"] != first["id"]
    assert arm.violations == []


def test_chat_on_azure_takes_a_deployed_models_id_and_says_what_to_do_with_another(
    aoai: FakeAzureV1Server, arm: FakeArmServer, tmp_path: Path
) -> None:
    state_path = tmp_path / "run.json"
    azure = session(aoai, state_path)
    job = azure.train(follow=False)
    tuned = aoai.succeed(job.id)["fine_tuned_model"]
    azure.status()
    azure.checkpoints()
    checkpoint_id = aoai.checkpoints[job.id][-1]["id"]
    # Not deployed: refused before any request, saying how to deploy it.
    with pytest.raises(ConfigurationError, match="deploy it first") as caught:
        azure.chat("Hi", model=tuned)
    assert caught.value.param == "model"
    with pytest.raises(ConfigurationError, match="deploy it first"):
        azure.chat("Hi", checkpoint=10)
    assert not [r for r in aoai.requests if r.path.endswith("/chat/completions")]

    with deployer(arm) as arm_client:
        azure.deploy(arm_client, "bot-ckpt", checkpoint=checkpoint_id)
    # The deployed checkpoint answers, by its id, its step or as the session's tuned model.
    for asked in ({"model": checkpoint_id}, {"checkpoint": 10}, {}):
        reply = azure.chat("Hi", **asked)
        assert reply.text == "bot-ckpt answers"
        assert reply.model == checkpoint_id
    # The final model is not deployed: still refused, naming the deployment there is.
    with pytest.raises(ConfigurationError, match="'bot-ckpt' holds"):
        azure.chat("Hi", model=tuned)
    # A resumed session knows which model its deployment holds.
    resumed = FineTuneSession.resume(state_path, api_key=KEY)
    assert resumed.chat("Hi", model=checkpoint_id).text == "bot-ckpt answers"
    assert aoai.violations == []


def test_an_openai_model_id_is_refused_by_the_deployer(arm: FakeArmServer) -> None:
    with (
        deployer(arm) as arm_client,
        pytest.raises(ConfigurationError, match="is an OpenAI model id") as caught,
    ):
        arm_client.deploy("ft:gpt-4o-mini-2024-07-18:org::abc123", "bot")
    assert caught.value.param == "model"
    assert arm.requests == []


def test_the_deployer_takes_a_job_and_a_checkpoint_object(aoai: FakeAzureV1Server) -> None:
    client = azure_openai_client(base_url=aoai.base_url, api_key=KEY)
    jobs = JobManager(client, policy=quick())
    job = jobs.create(model=BASE, training_file="file-0123")
    with pytest.raises(ConfigurationError, match="has no fine-tuned model yet"):
        deployable_model(job)
    aoai.succeed(job.id)
    done = jobs.retrieve(job.id)
    assert deployable_model(done) == done.fine_tuned_model
    [latest, _] = jobs.checkpoints(job.id)
    assert deployable_model(latest) == latest.id
    assert latest.id.startswith("ftchkpt-")


def test_deploying_says_what_it_costs_in_the_log_and_the_answer(
    arm: FakeArmServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = f"{BASE}.ft-0123456789abcdef0123456789abcdef"
    with deployer(arm) as arm_client, caplog.at_level(logging.INFO, "finetune_kit.azure"):
        standard = arm_client.deploy(model, "bot")
        developer = arm_client.deploy(model, "bot-dev", sku="developertier")
    assert any("hourly hosting fee" in n for n in standard.cost_notes)
    assert any("15 days" in n for n in standard.cost_notes)
    assert any("24 hours" in n for n in developer.cost_notes)
    said = [r.getMessage() for r in caplog.records]
    assert any("hourly hosting fee" in m and "15 days" in m for m in said)
    assert any("24 hours" in m for m in said)


def test_preflight_on_an_azure_session_uses_azures_file_rules(
    aoai: FakeAzureV1Server, tmp_path: Path
) -> None:
    path = tmp_path / "train.jsonl"
    rows = [
        json.dumps({"messages": [{"role": "user", "content": f"Hi {i}"}, ASSISTANT]})
        for i in range(12)
    ]
    path.write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    report = session(aoai, tmp_path / "run.json").preflight(path)
    codes = {issue.code for issue in report.issues}
    assert "azure_resource_file_limits" in codes
    assert "byte_order_mark" not in codes


def test_the_cli_trains_on_a_tier(
    aoai: FakeAzureV1Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from finetune_kit.cli import EXIT_CODES
    from tests.fixtures.cli import run, run_json

    monkeypatch.setenv("AOAI_KEY", KEY)
    state = tmp_path / "run.json"
    session(aoai, state).save()  # a session whose training file is uploaded
    common = ["--state", str(state), "--api-key-env", "AOAI_KEY"]
    code, job = run_json(capsys, *common, "train", "--training-type", "Developer")
    assert code == EXIT_CODES["ok"]
    assert job["id"] in aoai.jobs
    assert aoai.created_bodies()[-1]["trainingType"] == "developerTier"
    code, again = run_json(
        capsys,
        *common,
        "train",
        "--restart",
        "--training-type",
        "Developer",
        "--training-type-wire",
        "Developer",
    )
    assert again["id"] != job["id"]
    assert aoai.created_bodies()[-1]["trainingType"] == "Developer"
    code, _, err = run(capsys, *common, "train", "--training-type", "Standard")
    assert code == EXIT_CODES["usage"]
    assert "--training-type: the job has 'Developer', this call asks 'Standard'" in err
    assert aoai.violations == []
