"""FineTuneSession on Azure: the deployment step, against fake Azure servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.azure.deployer import AzureDeployer
from finetune_kit.errors import ConfigurationError, SessionError
from finetune_kit.session import FineTuneSession
from finetune_kit.session.state import SessionState
from tests.fixtures.fake_arm import FakeArmServer, FakeAzureOpenAIServer

FT_MODEL = "gpt-4.1-mini-2025-04-14.ft-0123456789abcdef0123456789abcdef"
KEY = "azure-key-1"


@pytest.fixture
def arm() -> Iterator[FakeArmServer]:
    with FakeArmServer(tokens={"arm-token-1"}, polls_to_succeed=1) as server:
        yield server


@pytest.fixture
def aoai() -> Iterator[FakeAzureOpenAIServer]:
    with FakeAzureOpenAIServer(api_key=KEY) as server:
        yield server


def test_deploy_saves_the_deployment_and_inference_addresses_it(
    arm: FakeArmServer, aoai: FakeAzureOpenAIServer, tmp_path: Path
) -> None:
    state_path = tmp_path / "run.json"
    session = FineTuneSession(
        "azure",
        azure_endpoint=aoai.url,
        api_version="2024-10-21",
        api_key=KEY,
        model="gpt-4.1-mini-2025-04-14",
        state_path=state_path,
    )
    with _deployer(arm) as deployer:
        with pytest.raises(SessionError, match="train"):
            session.deploy(deployer, "limericks")
        # What a succeeded Azure job leaves in the state (the fake data plane cannot train).
        session.state.fine_tuned_model = FT_MODEL
        deployment = session.deploy(deployer, "limericks", sku="developertier")
    assert deployment.succeeded
    assert deployment.model_name == FT_MODEL
    assert arm.violations == []
    put = next(r for r in arm.requests if r.method == "PUT")
    assert put.body["sku"] == {"name": "developertier", "capacity": 1}
    assert put.body["properties"]["model"]["name"] == FT_MODEL

    saved = SessionState.load(state_path)
    assert saved.deployment == "limericks"
    assert saved.azure_endpoint == aoai.url
    assert KEY not in state_path.read_text()
    resumed = FineTuneSession.resume(state_path, api_key=KEY)
    assert resumed.state.deployment == "limericks"
    assert list(resumed.client.files.list()) == []  # the resumed client reaches the resource
    assert aoai.violations == []


def test_a_v1_session_resumes_on_its_base_url_whatever_the_environment_says(
    aoai: FakeAzureOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A classic endpoint and version in the environment (another resource, say) are not what
    # a v1 session used: they must not be saved, nor preferred on resume.
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    state_path = tmp_path / "run.json"
    base_url = aoai.url + "/openai/v1/"
    session = FineTuneSession(
        "azure", base_url=base_url, api_key=KEY, model="my-base", state_path=state_path
    )
    session.save()
    saved = SessionState.load(state_path)
    assert saved.base_url == base_url
    assert saved.azure_endpoint is None
    assert saved.azure_api_version is None

    resumed = FineTuneSession.resume(state_path, api_key=KEY)
    assert str(resumed.client.base_url) == base_url
    assert list(resumed.client.files.list()) == []  # reached over the v1 routes
    assert aoai.violations == []


def test_a_classic_session_saves_the_endpoint_and_version_it_used(
    aoai: FakeAzureOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", aoai.url)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    state_path = tmp_path / "run.json"
    FineTuneSession("azure", api_key=KEY, model="my-base", state_path=state_path).save()
    saved = SessionState.load(state_path)
    assert (saved.azure_endpoint, saved.azure_api_version, saved.base_url) == (
        aoai.url,
        "2024-10-21",
        None,
    )
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    monkeypatch.delenv("OPENAI_API_VERSION")
    resumed = FineTuneSession.resume(state_path, api_key=KEY)
    assert list(resumed.client.files.list()) == []
    assert aoai.violations == []


def test_deploy_is_refused_off_azure(tmp_path: Path) -> None:
    session = FineTuneSession(
        "http://127.0.0.1:9/v1", api_key="k", model="m", state_path=tmp_path / "s.json"
    )
    session.state.fine_tuned_model = "ft:m:org::abc"
    with (
        FakeArmServer() as arm,
        _deployer(arm) as deployer,
        pytest.raises(ConfigurationError, match="Azure's step") as info,
    ):
        session.deploy(deployer, "x")
    assert info.value.param == "backend"


def _deployer(arm: FakeArmServer) -> AzureDeployer:
    return AzureDeployer(
        arm.subscription,
        arm.resource_group,
        arm.account,
        token="arm-token-1",
        management_url=arm.url,
        poll_interval=0.01,
        policy=RetryPolicy(sleep=lambda _: None),
    )
