"""AsyncAzureDeployer against the fake ARM control plane: the same behaviour, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.azure.deployer import AsyncAzureDeployer, AzureDeployer
from finetune_kit.errors import ConfigurationError, DeploymentError, DeploymentTimeoutError
from tests.fixtures.clock import FakeClock
from tests.fixtures.fake_arm import FakeArmServer

FT_MODEL = "gpt-35-turbo-0125.ft-fedcba9876543210fedcba9876543210"
CHECKPOINT = "ftchkpt-0123456789abcdef0123456789abcdef"
TOKEN = "arm-token-1"


@pytest.fixture
def arm() -> Iterator[FakeArmServer]:
    with FakeArmServer(tokens={TOKEN, "arm-token-2"}) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_deployer(arm: FakeArmServer, clock: FakeClock, **kwargs: Any) -> AsyncAzureDeployer:
    kwargs.setdefault("token", TOKEN)
    policy = RetryPolicy(sleep=clock.sleep, async_sleep=clock.asleep, clock=clock, rng=lambda: 0.0)
    return AsyncAzureDeployer(
        arm.subscription,
        arm.resource_group,
        arm.account,
        management_url=arm.url,
        policy=policy,
        poll_interval=5.0,
        **kwargs,
    )


def test_async_deploy_get_list_delete(arm: FakeArmServer, clock: FakeClock) -> None:
    async def run() -> None:
        async with make_deployer(arm, clock) as deployer:
            deployment = await deployer.deploy(CHECKPOINT, "from-checkpoint", capacity=2)
            assert deployment.succeeded
            assert deployment.model_name == CHECKPOINT
            found = await deployer.get("from-checkpoint")
            assert found is not None
            assert found.state == "Succeeded"
            assert [d.name for d in await deployer.list()] == ["from-checkpoint"]
            assert await deployer.delete("from-checkpoint") is True
            assert await deployer.get("from-checkpoint") is None
            assert await deployer.delete("from-checkpoint", missing_ok=True) is False

    asyncio.run(run())

    assert arm.requests[0].body == {
        "sku": {"name": "standard", "capacity": 2},
        "properties": {"model": {"format": "OpenAI", "name": CHECKPOINT, "version": "1"}},
    }
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in arm.requests)
    assert all(r.query["api-version"] == ["2024-10-21"] for r in arm.requests)
    assert arm.violations == []


def test_async_token_provider_and_async_credential(arm: FakeArmServer, clock: FakeClock) -> None:
    issued = iter(["arm-token-1", "arm-token-2"])

    async def provider() -> str:
        return next(issued)

    class AccessToken:
        token = "arm-token-2"

    class AsyncCredential:  # the shape of azure.identity.aio.DefaultAzureCredential
        def __init__(self) -> None:
            self.scopes: list[str] = []

        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            self.scopes.extend(scopes)
            return AccessToken()

    credential = AsyncCredential()

    async def run() -> None:
        async with make_deployer(arm, clock, token=provider) as deployer:
            assert await deployer.get("a") is None
            assert await deployer.get("b") is None
        async with make_deployer(arm, clock, token=credential) as deployer:
            assert await deployer.get("c") is None

    asyncio.run(run())

    assert [r.headers["authorization"] for r in arm.requests] == [
        "Bearer arm-token-1",
        "Bearer arm-token-2",
        "Bearer arm-token-2",
    ]
    assert credential.scopes == [f"{arm.url}/.default"]


def test_async_failed_throttled_and_timed_out(arm: FakeArmServer, clock: FakeClock) -> None:
    arm.fail_model(FT_MODEL, {"code": "InternalError", "message": "no capacity"})
    arm.throttle(1, retry_after="2")

    async def failed() -> None:
        async with make_deployer(arm, clock) as deployer:
            await deployer.deploy(FT_MODEL, "bot")

    with pytest.raises(DeploymentError) as info:
        asyncio.run(failed())
    assert info.value.state == "Failed"
    assert info.value.error == {"code": "InternalError", "message": "no capacity"}
    assert clock.slept[0] == 2.0

    arm.polls_to_succeed = 100

    async def slow() -> None:
        async with make_deployer(arm, clock) as deployer:
            await deployer.deploy("other-model.ft-1", "slow", timeout=7)

    with pytest.raises(DeploymentTimeoutError) as timeout:
        asyncio.run(slow())
    assert timeout.value.state == "Creating"
    assert arm.violations == []


def test_async_refused_and_unreachable(arm: FakeArmServer, clock: FakeClock) -> None:
    async def refused() -> None:
        async with make_deployer(arm, clock, token="not-accepted") as deployer:
            await deployer.delete("bot")

    with pytest.raises(DeploymentError) as info:
        asyncio.run(refused())
    assert info.value.status_code == 401
    assert "not-accepted" not in str(info.value)

    arm.fail_next(500, 10)

    async def failing() -> None:
        policy = RetryPolicy(max_attempts=2, async_sleep=clock.asleep, clock=clock)
        async with AsyncAzureDeployer(
            arm.subscription,
            arm.resource_group,
            arm.account,
            token=TOKEN,
            management_url=arm.url,
            policy=policy,
        ) as deployer:
            await deployer.get("bot")

    with pytest.raises(DeploymentError) as server_error:
        asyncio.run(failing())
    assert server_error.value.status_code == 500
    assert isinstance(server_error.value.__cause__, httpx.HTTPStatusError)


def test_sync_deployer_refuses_an_async_token_source(arm: FakeArmServer) -> None:
    async def provider() -> str:
        return TOKEN

    deployer = AzureDeployer("s", "r", "a", token=provider, management_url=arm.url)  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match="AsyncAzureDeployer"):
        deployer.get("bot")
    deployer.close()
    assert arm.requests == []
