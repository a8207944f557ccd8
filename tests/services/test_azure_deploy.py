"""AzureDeployer against a fake ARM control plane on 127.0.0.1 (no clock is waited on)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from finetune_kit._retry import RetryPolicy
from finetune_kit.azure.deployer import AzureDeployer, build_deployment_body
from finetune_kit.errors import ConfigurationError, DeploymentError, DeploymentTimeoutError
from tests.fixtures.clock import FakeClock
from tests.fixtures.fake_arm import FakeArmServer

FT_MODEL = "gpt-4.1-mini-2025-04-14.ft-0123456789abcdef0123456789abcdef"
TOKEN = "arm-token-1"


@pytest.fixture
def arm() -> Iterator[FakeArmServer]:
    with FakeArmServer(tokens={TOKEN, "arm-token-2", "arm-token-3"}) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


_made: list[AzureDeployer] = []


@pytest.fixture(autouse=True)
def _close_deployers() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def make_deployer(arm: FakeArmServer, clock: FakeClock, **kwargs: Any) -> AzureDeployer:
    kwargs.setdefault("token", TOKEN)
    policy = kwargs.pop("policy", None) or RetryPolicy(
        sleep=clock.sleep, async_sleep=clock.asleep, clock=clock, rng=lambda: 0.0
    )
    deployer = AzureDeployer(
        arm.subscription,
        arm.resource_group,
        arm.account,
        management_url=arm.url,
        policy=policy,
        poll_interval=5.0,
        **kwargs,
    )
    _made.append(deployer)
    return deployer


def test_deploy_puts_the_documented_body_then_polls_until_succeeded(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    with make_deployer(arm, clock) as deployer:
        deployment = deployer.deploy(FT_MODEL, "support-bot")

    assert deployment.succeeded
    assert deployment.name == "support-bot"
    assert deployment.model_name == FT_MODEL
    assert deployment.sku is not None
    assert (deployment.sku.name, deployment.sku.capacity) == ("standard", 1)
    assert deployment.raw["etag"] == '"0000-1111"'  # unknown fields are kept

    put, *polls = arm.requests
    assert put.method == "PUT"
    assert put.path == arm.prefix + "support-bot"
    assert put.query == {"api-version": ["2024-10-21"]}
    assert put.headers["authorization"] == f"Bearer {TOKEN}"
    assert put.headers["content-type"] == "application/json"
    assert put.body == {
        "sku": {"name": "standard", "capacity": 1},
        "properties": {"model": {"format": "OpenAI", "name": FT_MODEL, "version": "1"}},
    }
    # Creating for two polls, then Succeeded on the third, each poll after one interval.
    assert [(r.method, r.path) for r in polls] == [("GET", arm.prefix + "support-bot")] * 3
    assert all(r.query == {"api-version": ["2024-10-21"]} for r in polls)
    assert clock.slept == [5.0, 5.0, 5.0]
    assert arm.violations == []


def test_deploy_logs_the_hosting_fee(
    arm: FakeArmServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="finetune_kit.azure"):
        make_deployer(arm, clock).deploy(FT_MODEL, "bot", wait=False)
        make_deployer(arm, clock).deploy(FT_MODEL, "dev", sku="developertier", wait=False)

    fee, dev = (r for r in caplog.records if r.name == "finetune_kit.azure" and r.levelno >= 20)
    assert fee.levelno == logging.WARNING
    assert "hourly hosting fee" in fee.getMessage()
    assert "15 days" in fee.getMessage()
    assert "24 hours" in dev.getMessage()
    assert "no hosting fee" in dev.getMessage()


def test_developer_tier_uses_its_preview_api_version(arm: FakeArmServer, clock: FakeClock) -> None:
    deployment = make_deployer(arm, clock).deploy(FT_MODEL, "dev-bot", sku="developertier")

    assert deployment.succeeded
    assert {r.query["api-version"][0] for r in arm.requests} == {"2025-07-01-preview"}
    assert arm.requests[0].body["sku"] == {"name": "developertier", "capacity": 1}


def test_wait_false_returns_the_creating_deployment(arm: FakeArmServer, clock: FakeClock) -> None:
    deployment = make_deployer(arm, clock).deploy(FT_MODEL, "bot", capacity=3, wait=False)

    assert deployment.state == "Creating"
    assert not deployment.succeeded
    assert not deployment.failed
    assert len(arm.requests) == 1
    assert arm.requests[0].body["sku"]["capacity"] == 3


def test_failed_provisioning_raises_with_state_and_azure_error(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    error = {"code": "ResourceOperationFailure", "message": "The model could not be loaded."}
    arm.fail_model(FT_MODEL, error)

    with pytest.raises(DeploymentError) as info:
        make_deployer(arm, clock).deploy(FT_MODEL, "support-bot")

    assert info.value.state == "Failed"
    assert info.value.error == error
    assert info.value.deployment == "support-bot"
    assert "ResourceOperationFailure" in str(info.value)
    assert "Failed" in str(info.value)
    assert not isinstance(info.value, DeploymentTimeoutError)


def test_canceled_state_ends_the_wait(arm: FakeArmServer, clock: FakeClock) -> None:
    arm.seed("bot", model=FT_MODEL, state="Canceled")

    with pytest.raises(DeploymentError) as info:
        make_deployer(arm, clock).wait("bot")

    assert info.value.state == "Canceled"
    assert info.value.error is not None  # the body, when Azure attached no error object
    assert clock.slept == []


def test_throttled_put_is_retried_after_retry_after(arm: FakeArmServer, clock: FakeClock) -> None:
    arm.throttle(1, retry_after="7")

    deployment = make_deployer(arm, clock).deploy(FT_MODEL, "bot")

    assert deployment.succeeded
    assert [r.method for r in arm.requests[:2]] == ["PUT", "PUT"]
    assert clock.slept[0] == 7.0  # the server's delay, not the backoff
    assert arm.violations == []


def test_server_errors_while_polling_are_retried(arm: FakeArmServer, clock: FakeClock) -> None:
    deployer = make_deployer(arm, clock)
    deployer.deploy(FT_MODEL, "bot", wait=False)
    arm.fail_next(503, 2)

    assert deployer.wait("bot").succeeded
    assert [r.method for r in arm.requests] == ["PUT"] + ["GET"] * 5
    assert clock.slept[:2] == [0.5, 1.0]  # backoff (no jitter with rng=0), then polling


def test_a_retry_after_beyond_the_maximum_is_not_waited_for(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    arm.throttle(1, retry_after="3600")

    with pytest.raises(DeploymentError) as info:
        make_deployer(arm, clock).deploy(FT_MODEL, "bot")

    assert info.value.status_code == 429
    assert isinstance(info.value.__cause__, httpx.HTTPStatusError)
    assert len(arm.requests) == 1
    assert clock.slept == []


def test_token_callable_is_called_per_request_so_a_refreshed_token_is_used(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    issued = iter(["arm-token-1", "arm-token-2", "arm-token-3", "arm-token-3", "arm-token-3"])

    make_deployer(arm, clock, token=lambda: next(issued)).deploy(FT_MODEL, "bot")

    assert [r.headers["authorization"] for r in arm.requests] == [
        "Bearer arm-token-1",
        "Bearer arm-token-2",
        "Bearer arm-token-3",
        "Bearer arm-token-3",
    ]
    assert arm.violations == []


def test_credential_with_get_token_is_asked_for_the_management_scope(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    class AccessToken:
        def __init__(self, token: str) -> None:
            self.token = token
            self.expires_on = 0

    class Credential:  # the shape of azure-identity's DefaultAzureCredential
        def __init__(self) -> None:
            self.scopes: list[tuple[str, ...]] = []

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            self.scopes.append(scopes)
            return AccessToken("arm-token-2")

    credential = Credential()
    deployer = make_deployer(arm, clock, token=credential)

    assert deployer.get("nothing-here") is None
    assert credential.scopes == [(f"{arm.url}/.default",)]
    assert arm.requests[0].headers["authorization"] == "Bearer arm-token-2"
    default = AzureDeployer("s", "r", "a", token=credential)
    assert default.scope == "https://management.azure.com/.default"
    default.close()


def test_refused_token_is_reported_without_showing_it(arm: FakeArmServer, clock: FakeClock) -> None:
    with pytest.raises(DeploymentError) as info:
        make_deployer(arm, clock, token="expired-token").deploy(FT_MODEL, "bot")

    assert info.value.status_code == 401
    assert info.value.error == {
        "code": "InvalidAuthenticationToken",
        "message": "The access token is invalid.",
    }
    assert "az account get-access-token" in str(info.value)
    assert "expired-token" not in str(info.value)
    assert len(arm.requests) == 1  # a 401 is not retried


def test_get_returns_none_for_a_missing_deployment_and_a_view_otherwise(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    arm.seed("bot", model=FT_MODEL)
    deployer = make_deployer(arm, clock)

    assert deployer.get("missing") is None
    found = deployer.get("bot")
    assert found is not None
    assert (found.name, found.state, found.model_name) == ("bot", "Succeeded", FT_MODEL)
    assert found.id == arm.prefix + "bot"


def test_delete_waits_until_the_deployment_is_gone(arm: FakeArmServer, clock: FakeClock) -> None:
    arm.seed("bot", model=FT_MODEL)

    assert make_deployer(arm, clock).delete("bot") is True

    delete, *polls = arm.requests
    assert (delete.method, delete.path) == ("DELETE", arm.prefix + "bot")
    assert delete.query == {"api-version": ["2024-10-21"]}
    assert delete.headers["authorization"] == f"Bearer {TOKEN}"
    assert [r.method for r in polls] == ["GET", "GET"]  # Deleting, then 404
    assert "bot" not in arm.deployments
    assert arm.violations == []


def test_delete_of_a_missing_deployment(arm: FakeArmServer, clock: FakeClock) -> None:
    deployer = make_deployer(arm, clock)

    with pytest.raises(DeploymentError, match="missing_ok=True") as info:
        deployer.delete("nope")
    assert info.value.status_code == 404
    assert info.value.deployment == "nope"

    assert deployer.delete("nope", missing_ok=True) is False


def test_delete_whose_answer_was_lost_is_not_reported_missing(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    arm.polls_to_delete = 0
    arm.seed("bot", model=FT_MODEL)
    arm.fail_after_apply(500)  # the first DELETE works, but its answer is a 500

    assert make_deployer(arm, clock).delete("bot") is True
    assert [r.method for r in arm.requests] == ["DELETE", "DELETE"]


def test_wait_gives_up_after_the_timeout(arm: FakeArmServer, clock: FakeClock) -> None:
    arm.polls_to_succeed = 100

    with pytest.raises(DeploymentTimeoutError) as info:
        make_deployer(arm, clock).deploy(FT_MODEL, "bot", timeout=12)

    assert info.value.state == "Creating"
    assert "wait('bot')" in str(info.value)
    assert clock.slept == [5.0, 5.0]


def test_wait_on_a_deployment_that_does_not_exist(arm: FakeArmServer, clock: FakeClock) -> None:
    with pytest.raises(DeploymentError, match="does not exist"):
        make_deployer(arm, clock).wait("ghost")


def test_list_follows_next_links(arm: FakeArmServer, clock: FakeClock) -> None:
    for name in ("a", "b", "c"):
        arm.seed(name, model=FT_MODEL)
    arm.page_size = 2

    deployments = make_deployer(arm, clock).list()

    assert [d.name for d in deployments] == ["a", "b", "c"]
    assert [r.query.get("$skipToken") for r in arm.requests] == [None, ["2"]]
    assert arm.violations == []


def test_unreachable_management_api_is_retried_then_reported(clock: FakeClock) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep, clock=clock, rng=lambda: 0.0)
    deployer = AzureDeployer(
        "sub", "rg", "res", token=TOKEN, management_url=f"http://127.0.0.1:{port}", policy=policy
    )
    _made.append(deployer)

    with pytest.raises(DeploymentError, match="could not be reached") as info:
        deployer.get("bot")

    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert clock.slept == [0.5, 1.0]  # two retries after the first attempt


def test_repr_redacts_the_token() -> None:
    deployer = AzureDeployer("sub", "rg", "res", token="super-secret-token")

    assert "super-secret-token" not in repr(deployer)
    assert "token=<redacted>" in repr(deployer)
    deployer.close()


def test_from_resource_id() -> None:
    resource_id = (
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.CognitiveServices"
        "/accounts/my-aoai"
    )
    deployer = AzureDeployer.from_resource_id(resource_id, token=TOKEN)

    assert (deployer.subscription_id, deployer.resource_group, deployer.resource) == (
        "sub-1",
        "rg-1",
        "my-aoai",
    )
    assert deployer.deployment_url("x") == (
        "https://management.azure.com" + resource_id + "/deployments/x"
    )
    deployer.close()
    with pytest.raises(ConfigurationError) as info:
        AzureDeployer.from_resource_id("/subscriptions/sub-1/resourceGroups/rg-1", token=TOKEN)
    assert info.value.param == "resource_id"


def closed(deployer: AzureDeployer) -> AzureDeployer:
    deployer.close()
    return deployer


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: build_deployment_body(""), "model"),
        (lambda: build_deployment_body(FT_MODEL, capacity=0), "capacity"),
        (lambda: build_deployment_body(FT_MODEL, capacity=True), "capacity"),
        (lambda: build_deployment_body(FT_MODEL, sku=""), "sku"),
        (lambda: AzureDeployer("", "rg", "res", token=TOKEN), "subscription_id"),
        (lambda: AzureDeployer("sub", "rg/x", "res", token=TOKEN), "resource_group"),
        (lambda: AzureDeployer("sub", "rg", "res", token=""), "token"),
        (lambda: AzureDeployer("sub", "rg", "res", token=42), "token"),  # type: ignore[arg-type]
        (
            lambda: AzureDeployer("sub", "rg", "res", token=TOKEN, management_url="mgmt"),
            "management_url",
        ),
        (
            lambda: closed(AzureDeployer("sub", "rg", "res", token=TOKEN)).deployment_url("a/b"),
            "deployment_name",
        ),
    ],
)
def test_bad_parameters_are_named(call: Any, param: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        call()
    assert info.value.param == param


def test_token_callable_returning_nothing_is_a_clear_error(
    arm: FakeArmServer, clock: FakeClock
) -> None:
    with pytest.raises(ConfigurationError, match="non-empty string") as info:
        make_deployer(arm, clock, token=lambda: "").get("bot")
    assert info.value.param == "token"
    assert arm.requests == []
