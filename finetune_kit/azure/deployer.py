"""Deploy a fine-tuned model on Azure OpenAI through the ARM management REST API.

On Azure a fine-tuned model answers only once it is deployed, and deploying goes through the
Azure Resource Manager control plane, not the data-plane ``openai`` client::

    PUT {management_url}/subscriptions/{sub}/resourceGroups/{rg}/providers/
        Microsoft.CognitiveServices/accounts/{resource}/deployments/{name}?api-version=2024-10-21
    Authorization: Bearer <ARM token>
    {"sku": {"name": "standard", "capacity": 1},
     "properties": {"model": {"format": "OpenAI", "name": "<ft model id>", "version": "1"}}}

then ``GET`` on the same URL until ``properties.provisioningState`` is ``Succeeded`` (or
``Failed`` / ``Canceled``), and ``DELETE`` to remove it. :class:`AzureDeployer` does this with
``httpx``; :class:`AsyncAzureDeployer` is its async twin. Every decision (URLs, bodies, the poll
loop, when a 404 means "gone", the 202 wait, which ``nextLink`` to follow, the errors) is taken
once, by step generators in their shared base class; each twin only carries the requests and
sleeps out, with plain calls or awaited (see ``_steps.py``), as the jobs and files services do.
Every request goes through the shared retry policy (connection errors, timeouts, 408/409/429/5xx
retried, ``Retry-After`` honoured).

The ARM token is a bearer token for the scope ``https://management.azure.com/.default``: a string
(``az account get-access-token --resource https://management.azure.com --query accessToken -o
tsv``), a callable returning one, or an azure-identity credential (anything with
``get_token(scope)``). A callable or credential is asked before every request, so a token that
expires during a long wait is refreshed. azure-identity is not a dependency of finetune_kit.

Deployed fine-tuned models are billed an hourly hosting fee (Standard, Global Standard) until
deleted; the Developer tier has no hosting fee and no SLA and is removed after 24 hours; a
deployment inactive for 15 days is deleted (the model is kept).

Examples:
    >>> deployer = AzureDeployer(
    ...     "00000000-1111-2222-3333-444444444444", "rg-finetune", "my-aoai", token="not-a-token"
    ... )
    >>> deployer
    AzureDeployer(subscription_id='00000000-1111-2222-3333-444444444444', \
resource_group='rg-finetune', resource='my-aoai', management_url='https://management.azure.com', \
token=<redacted>)
    >>> deployer.close()
"""

from __future__ import annotations

import builtins
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from .._retry import DEFAULT_RETRY_POLICY, RetryPolicy
from .._steps import Sleep, arun_steps, run_steps
from .._version import __version__
from ..errors import ConfigurationError, DeploymentError, DeploymentTimeoutError
from .deployments import DEVELOPER_TIER_SKU, AzureDeployment, cost_notes
from .training import deployable_model

__all__ = [
    "ARM_MANAGEMENT_URL",
    "DEFAULT_ARM_API_VERSION",
    "DEVELOPER_TIER_API_VERSION",
    "AsyncAzureDeployer",
    "AzureDeployer",
]

logger = logging.getLogger("finetune_kit.azure")

ARM_MANAGEMENT_URL = "https://management.azure.com"
"""The Azure Resource Manager endpoint of the public cloud."""

DEFAULT_ARM_API_VERSION = "2024-10-21"
"""The management API version Microsoft's fine-tuning deployment docs use."""

DEVELOPER_TIER_API_VERSION = "2025-07-01-preview"
"""The management API version Microsoft's docs use for Developer-tier deployments."""

_FORBIDDEN_IN_NAMES = frozenset("/?#%\\")


class AccessTokenLike(Protocol):
    """What a credential's ``get_token`` returns (azure-identity's ``AccessToken``)."""

    @property
    def token(self) -> str:
        """The bearer token."""


class TokenCredentialLike(Protocol):
    """An azure-identity style credential, such as ``DefaultAzureCredential()``."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike:
        """Get a token for the scopes."""


class AsyncTokenCredentialLike(Protocol):
    """An async azure-identity style credential (``azure.identity.aio``)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike:
        """Get a token for the scopes."""


ArmToken: TypeAlias = str | Callable[[], str] | TokenCredentialLike
"""An ARM bearer token, a callable returning one, or a credential with ``get_token``."""

AsyncArmToken: TypeAlias = (
    str | Callable[[], str | Awaitable[str]] | TokenCredentialLike | AsyncTokenCredentialLike
)
"""As :data:`ArmToken`; the callable or credential may also be async."""

_DeployerT = TypeVar("_DeployerT", bound="_DeployerBase")


def _check_path_part(value: str, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{param} is empty; pass the Azure {param}", param=param)
    if _FORBIDDEN_IN_NAMES & set(value) or value != value.strip():
        raise ConfigurationError(
            f"{param}={value!r} cannot be part of an ARM resource path (no '/', '?', '#', '%', "
            "'\\' or surrounding spaces)",
            param=param,
        )
    return value


def build_deployment_body(
    model: str, *, sku: str = "standard", capacity: int = 1
) -> dict[str, Any]:
    """The JSON body of the ARM PUT that deploys a model.

    Args:
        model: The fine-tuned model id (``{base}.ft-{32 hex}``) or checkpoint id
            (``ftchkpt-{32 hex}``).
        sku: The deployment type: ``standard``, ``globalstandard``, ``developertier``...
        capacity: Capacity units, at least 1.

    Returns:
        ``{"sku": {"name", "capacity"}, "properties": {"model": {"format", "name", "version"}}}``.

    Raises:
        ConfigurationError: A parameter is empty or out of range.

    Examples:
        >>> build_deployment_body("gpt-35-turbo-0125.ft-0123", capacity=2)["sku"]
        {'name': 'standard', 'capacity': 2}
    """
    if not isinstance(model, str) or not model.strip() or model != model.strip():
        raise ConfigurationError(
            f"model={model!r} is not a model id; pass the job's fine_tuned_model, such as "
            "'gpt-4.1-mini-2025-04-14.ft-<32 hex>', or a checkpoint id 'ftchkpt-<32 hex>'",
            param="model",
        )
    if not isinstance(sku, str) or not sku.strip():
        raise ConfigurationError(
            "sku is empty; pass 'standard', 'globalstandard' or 'developertier'", param="sku"
        )
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigurationError(
            f"capacity must be a whole number of units, at least 1; got {capacity!r}",
            param="capacity",
        )
    return {
        "sku": {"name": sku, "capacity": capacity},
        "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}},
    }


def _arm_error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:500]} if response.text else {}
    if isinstance(body, dict):
        error = body.get("error")
        return error if isinstance(error, dict) else body
    return {"message": str(body)[:500]}


_STATUS_HINTS = {
    400: "check the model id (a fine-tuned model such as 'gpt-4.1-mini-2025-04-14.ft-<32 hex>' "
    "or a checkpoint 'ftchkpt-<32 hex>'), the sku and the capacity",
    401: "the ARM token was refused: pass a current token for the scope {scope} (for example from "
    "`az account get-access-token --resource https://management.azure.com`), or a callable or "
    "credential that refreshes it",
    403: "the identity needs Microsoft.CognitiveServices/accounts/deployments/write (and /read, "
    "/delete) on the resource; ask for a role that grants it",
    404: "check subscription_id, resource_group and resource: {url}",
    409: "another operation on this deployment is still running; wait for it and try again",
    429: "Azure kept throttling the management API; try again later",
}


def _not_found(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404


@dataclass(frozen=True)
class _Request:
    """The action of the deployers' step generators: one ARM request under the retry policy.

    The response is sent back; an ``httpx.HTTPError`` that remains after the retries is thrown
    into the generator, which decides what it means.

    Attributes:
        method: The HTTP method.
        url: The URL, without the ``api-version`` query (a ``nextLink`` carries its own).
        api_version: The ``api-version`` to send, or ``None``.
        json: The JSON body.
        gone_after_retry: A 404 after an attempt that failed on the way back means that attempt
            worked (a DELETE): ``None`` is sent back instead of the 404.
    """

    method: str
    url: str
    api_version: str | None
    json: Any = None
    gone_after_retry: bool = False

    def settled_by(self, exc: httpx.HTTPStatusError, attempt: int) -> bool:
        """Whether a refused attempt (the ``attempt``-th) means the request is done after all."""
        return self.gone_after_retry and attempt > 1 and exc.response.status_code == 404

    def params(self) -> dict[str, str] | None:
        """The query to send."""
        return {"api-version": self.api_version} if self.api_version is not None else None


class _DeployerBase:
    """Configuration and every decision shared by the sync and async deployers (no I/O here).

    The ``_..._steps`` generators yield :class:`_Request` and :class:`Sleep` actions; the twins
    carry them out (``run_steps`` / ``arun_steps``).
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        resource: str,
        *,
        token: Any,
        management_url: str = ARM_MANAGEMENT_URL,
        api_version: str = DEFAULT_ARM_API_VERSION,
        scope: str | None = None,
        policy: RetryPolicy | None = None,
        poll_interval: float = 10.0,
    ) -> None:
        self.subscription_id = _check_path_part(subscription_id, "subscription_id")
        self.resource_group = _check_path_part(resource_group, "resource_group")
        self.resource = _check_path_part(resource, "resource")
        parts = urlsplit(management_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigurationError(
                f"management_url={management_url!r} is not an http(s) base URL such as "
                f"{ARM_MANAGEMENT_URL!r}",
                param="management_url",
            )
        self.management_url = management_url.rstrip("/")
        self.api_version = _check_path_part(api_version, "api_version")
        # A sovereign cloud's management endpoint is also its token audience.
        self.scope = scope or f"{self.management_url}/.default"
        if isinstance(token, str):
            if not token.strip():
                raise ConfigurationError("token is empty; pass an ARM bearer token", param="token")
        elif not callable(token) and not callable(getattr(token, "get_token", None)):
            raise ConfigurationError(
                "token must be an ARM bearer token string, a callable returning one, or a "
                f"credential with get_token(scope); got {type(token).__name__}",
                param="token",
            )
        self._token_source = token
        if poll_interval <= 0:
            raise ConfigurationError(
                f"poll_interval must be positive seconds, got {poll_interval}",
                param="poll_interval",
            )
        self.poll_interval = poll_interval
        # The shared policy judges httpx errors by the same rules as openai's.
        self.policy = policy if policy is not None else DEFAULT_RETRY_POLICY

    @classmethod
    def from_resource_id(cls: type[_DeployerT], resource_id: str, **kwargs: Any) -> _DeployerT:
        """Build a deployer from the resource's ARM id (the portal's "JSON View" shows it).

        Args:
            resource_id: ``/subscriptions/{sub}/resourceGroups/{rg}/providers/
                Microsoft.CognitiveServices/accounts/{resource}``.
            **kwargs: The other constructor arguments (``token=`` is required).

        Returns:
            The deployer.

        Raises:
            ConfigurationError: The id does not have that form.
        """
        segments = [s for s in resource_id.strip().split("/") if s]
        expected = ["subscriptions", "resourcegroups", "providers", "accounts"]
        if (
            len(segments) != 8
            or [segments[i].lower() for i in (0, 2, 4, 6)] != expected
            or segments[5].lower() != "microsoft.cognitiveservices"
        ):
            raise ConfigurationError(
                f"resource_id={resource_id!r} is not an Azure OpenAI resource id of the form "
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                "Microsoft.CognitiveServices/accounts/{resource}",
                param="resource_id",
            )
        return cls(segments[1], segments[3], segments[7], **kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(subscription_id={self.subscription_id!r}, "
            f"resource_group={self.resource_group!r}, resource={self.resource!r}, "
            f"management_url={self.management_url!r}, token=<redacted>)"
        )

    @property
    def deployments_url(self) -> str:
        """The URL of the resource's deployments collection (no query)."""
        return (
            f"{self.management_url}/subscriptions/{quote(self.subscription_id, safe='')}"
            f"/resourceGroups/{quote(self.resource_group, safe='')}"
            f"/providers/Microsoft.CognitiveServices/accounts/{quote(self.resource, safe='')}"
            "/deployments"
        )

    def deployment_url(self, name: str) -> str:
        """The URL of one deployment (no query).

        Args:
            name: The deployment's name.

        Returns:
            ``{deployments_url}/{name}``.
        """
        return f"{self.deployments_url}/{quote(_check_path_part(name, 'deployment_name'), safe='')}"

    def _version_for(self, sku: str | None, api_version: str | None) -> str:
        if api_version is not None:
            return _check_path_part(api_version, "api_version")
        if (
            sku is not None
            and sku.lower() == DEVELOPER_TIER_SKU
            and self.api_version == DEFAULT_ARM_API_VERSION
        ):
            logger.debug("Developer tier: using api-version %s", DEVELOPER_TIER_API_VERSION)
            return DEVELOPER_TIER_API_VERSION
        return self.api_version

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": f"finetune-kit/{__version__}",
        }

    def _same_origin(self, url: str) -> bool:
        # The bearer token is only ever sent to the configured management endpoint.
        mine, theirs = urlsplit(self.management_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)

    @staticmethod
    def _checked_token(token: object) -> str:
        if not isinstance(token, str) or not token.strip():
            raise ConfigurationError(
                "the token callable or credential did not return a non-empty string",
                param="token",
            )
        return token

    def _sync_token(self) -> str:
        source = self._token_source
        if isinstance(source, str):
            return source
        result = source.get_token(self.scope) if hasattr(source, "get_token") else source()
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ConfigurationError(
                "the token callable or credential is async; use AsyncAzureDeployer with it",
                param="token",
            )
        return self._checked_token(getattr(result, "token", result))

    @staticmethod
    def _log_costs(deployment_name: str, sku: str) -> None:
        # Said before the PUT: the hosting fee starts with the deployment.
        notes = "; ".join(cost_notes(sku))
        if sku.lower() == DEVELOPER_TIER_SKU:
            logger.info("deployment %r: %s", deployment_name, notes)
        else:
            logger.warning(
                "deployment %r (sku %s): %s; delete it when done (delete(%r))",
                deployment_name,
                sku,
                notes,
                deployment_name,
            )

    def _refused(
        self, exc: httpx.HTTPStatusError, name: str, action: str, *, state: str | None = None
    ) -> DeploymentError:
        response = exc.response
        status = response.status_code
        error = _arm_error_of(response)
        code = error.get("code")
        message = error.get("message")
        detail = ": ".join(str(x) for x in (code, message) if x) or response.reason_phrase
        hint = _STATUS_HINTS.get(status, "the Azure management API failed; try again later")
        hint = hint.format(scope=self.scope, url=self.deployment_url(name))
        return DeploymentError(
            f"{action} deployment {name!r} on resource {self.resource!r} was refused with "
            f"HTTP {status} ({detail}); {hint}",
            deployment=name,
            state=state,
            error=error or None,
            status_code=status,
            request_id=response.headers.get("x-ms-request-id")
            or response.headers.get("x-ms-correlation-request-id"),
        )

    def _failure(self, exc: httpx.HTTPError, name: str, action: str) -> DeploymentError:
        """The error for a request that failed after the policy's retries."""
        if isinstance(exc, httpx.HTTPStatusError):
            return self._refused(exc, name, action)
        return self._unreachable(exc, name, action)

    def _unreachable(self, exc: httpx.HTTPError, name: str, action: str) -> DeploymentError:
        return DeploymentError(
            f"{action} deployment {name!r}: the Azure management API at {self.management_url} "
            f"could not be reached ({type(exc).__name__}: {exc}); check the network and "
            "management_url, then try again",
            deployment=name,
        )

    @staticmethod
    def _finished(deployment: AzureDeployment, name: str) -> bool:
        """True when the deployment succeeded; raises when it failed; False while pending."""
        if deployment.succeeded:
            logger.debug("deployment %r succeeded", name)
            return True
        if deployment.failed:
            error = deployment.properties.error
            if not isinstance(error, dict):
                error = deployment.raw or None
            detail = ""
            if isinstance(error, dict) and (error.get("code") or error.get("message")):
                detail = ": " + ": ".join(
                    str(x) for x in (error.get("code"), error.get("message")) if x
                )
            raise DeploymentError(
                f"deployment {name!r} of model {deployment.model_name!r} ended in "
                f"{deployment.state}{detail}; see .error for Azure's details, fix the cause, "
                "then deploy again",
                deployment=name,
                state=deployment.state,
                error=error,
            )
        logger.debug("deployment %r is %s", name, deployment.state)
        return False

    def _timed_out(
        self, name: str, last: AzureDeployment, timeout: float
    ) -> DeploymentTimeoutError:
        return DeploymentTimeoutError(
            f"deployment {name!r} was still {last.state} after {timeout:g} s; Azure carries on: "
            f"call wait({name!r}) again, or get({name!r}) later",
            deployment=name,
            state=last.state,
        )

    @staticmethod
    def _gone_while_waiting(name: str) -> DeploymentError:
        return DeploymentError(
            f"deployment {name!r} does not exist (it was never created, or was deleted while "
            "waiting); deploy it first",
            deployment=name,
        )

    @staticmethod
    def _missing(name: str, resource: str) -> DeploymentError:
        return DeploymentError(
            f"there is no deployment {name!r} on resource {resource!r}; check the name, or pass "
            "missing_ok=True to ignore a missing deployment",
            deployment=name,
            status_code=404,
        )

    @staticmethod
    def _page(body: Any) -> tuple[builtins.list[AzureDeployment], str | None]:
        if not isinstance(body, Mapping):
            return [], None
        values = body.get("value")
        items = [AzureDeployment.from_arm(v) for v in values or [] if isinstance(v, Mapping)]
        next_link = body.get("nextLink")
        return items, next_link if isinstance(next_link, str) and next_link else None

    # ---------------------------------------------------------------- decisions, as steps

    def _deploy_steps(
        self,
        model: Any,
        deployment_name: str,
        *,
        sku: str,
        capacity: int,
        api_version: str | None,
        wait: bool,
        timeout: float,
    ) -> Generator[_Request | Sleep, Any, AzureDeployment]:
        model = deployable_model(model)
        body = build_deployment_body(model, sku=sku, capacity=capacity)
        url = self.deployment_url(deployment_name)
        version = self._version_for(sku, api_version)
        self._log_costs(deployment_name, sku)
        logger.debug("PUT deployment %r of model %r (sku %s)", deployment_name, model, sku)
        try:
            response = yield _Request("PUT", url, version, body)
        except httpx.HTTPError as exc:
            raise self._failure(exc, deployment_name, "creating") from exc
        created = AzureDeployment.from_arm(response.json() if response.content else {})
        if not wait or self._finished(created, deployment_name):
            return created
        return (
            yield from self._poll_steps(
                deployment_name, timeout=timeout, api_version=version, pending=created
            )
        )

    def _poll_steps(
        self, name: str, *, timeout: float, api_version: str | None, pending: AzureDeployment | None
    ) -> Generator[_Request | Sleep, Any, AzureDeployment]:
        start = self.policy.clock()
        while True:
            if pending is not None:
                if self.policy.clock() - start + self.poll_interval > timeout:
                    raise self._timed_out(name, pending, timeout)
                yield Sleep(self.poll_interval)
            deployment = yield from self._get_steps(name, api_version)
            if deployment is None:
                raise self._gone_while_waiting(name)
            if self._finished(deployment, name):
                return deployment
            pending = deployment

    def _get_steps(
        self, name: str, api_version: str | None
    ) -> Generator[_Request | Sleep, Any, AzureDeployment | None]:
        url = self.deployment_url(name)
        try:
            response = yield _Request("GET", url, api_version or self.api_version)
        except httpx.HTTPError as exc:
            if _not_found(exc):
                return None
            raise self._failure(exc, name, "reading") from exc
        return AzureDeployment.from_arm(response.json())

    def _delete_steps(
        self, name: str, *, missing_ok: bool, wait: bool, timeout: float, api_version: str | None
    ) -> Generator[_Request | Sleep, Any, bool]:
        url = self.deployment_url(name)
        version = api_version or self.api_version
        try:
            response = yield _Request("DELETE", url, version, gone_after_retry=True)
        except httpx.HTTPError as exc:
            if _not_found(exc):
                if missing_ok:
                    return False
                raise self._missing(name, self.resource) from exc
            raise self._failure(exc, name, "deleting") from exc
        if response is None or response.status_code != 202 or not wait:
            return True
        # 202: Azure deletes it later; it is gone when a GET answers 404.
        start = self.policy.clock()
        while True:
            last = yield from self._get_steps(name, version)
            if last is None:
                return True
            if self.policy.clock() - start + self.poll_interval > timeout:
                raise self._timed_out(name, last, timeout)
            yield Sleep(self.poll_interval)

    def _list_steps(
        self, api_version: str | None
    ) -> Generator[_Request | Sleep, Any, builtins.list[AzureDeployment]]:
        deployments: builtins.list[AzureDeployment] = []
        url: str | None = self.deployments_url
        version: str | None = api_version or self.api_version
        while url is not None:
            try:
                response = yield _Request("GET", url, version)
            except httpx.HTTPError as exc:
                raise self._failure(exc, "*", "listing") from exc
            items, url = self._page(response.json())
            deployments.extend(items)
            if url is not None and not self._same_origin(url):
                logger.debug("not following a nextLink to another host")
                break
            # A nextLink carries its own query (api-version included).
            version = None
        return deployments


class AzureDeployer(_DeployerBase):
    """Deploys, inspects and deletes model deployments of one Azure OpenAI resource.

    Args:
        subscription_id: The Azure subscription id.
        resource_group: The resource group holding the Azure OpenAI resource.
        resource: The Azure OpenAI resource's name (the ``RES`` in ``RES.openai.azure.com``).
        token: An ARM bearer token, a callable returning one (called per request), or a
            credential with ``get_token(scope)`` such as azure-identity's
            ``DefaultAzureCredential()``.
        management_url: The ARM endpoint (another cloud's, or a test server's).
        api_version: The management API version for every call (``deploy`` picks the Developer
            tier's own version when this is left at its default).
        scope: The token scope asked of a credential; ``{management_url}/.default`` by default.
        policy: The retry policy; the shared default when ``None``.
        poll_interval: Seconds between two state checks while waiting.
        http_client: An ``httpx.Client`` to use (its owner closes it); one is made otherwise.
        timeout: Per-request timeout in seconds, for the client made here.

    Examples:
        >>> from finetune_kit.azure.deployer import AzureDeployer
        >>> def arm_token() -> str:  # e.g. DefaultAzureCredential().get_token(...).token
        ...     return "token-from-your-credential"
        >>> with AzureDeployer("sub-id", "my-rg", "my-aoai", token=arm_token) as deployer:
        ...     url = deployer.deployment_url("support-bot")
        >>> url.endswith("/accounts/my-aoai/deployments/support-bot")
        True

        In real use: ``deployer.deploy(job.fine_tuned_model, "support-bot")`` then
        ``client.chat.completions.create(model="support-bot", ...)`` and, when done,
        ``deployer.delete("support-bot")``.
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        resource: str,
        *,
        token: ArmToken,
        management_url: str = ARM_MANAGEMENT_URL,
        api_version: str = DEFAULT_ARM_API_VERSION,
        scope: str | None = None,
        policy: RetryPolicy | None = None,
        poll_interval: float = 10.0,
        http_client: httpx.Client | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(
            subscription_id,
            resource_group,
            resource,
            token=token,
            management_url=management_url,
            api_version=api_version,
            scope=scope,
            policy=policy,
            poll_interval=poll_interval,
        )
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))

    def __enter__(self) -> AzureDeployer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client, if this deployer made it."""
        if self._owns_client:
            self._client.close()

    def _attempt(self, request: _Request) -> httpx.Response:
        # One request; the token is fetched anew for each, so a refreshed one is used.
        response = self._client.request(
            request.method,
            request.url,
            params=request.params(),
            json=request.json,
            headers=self._headers(self._sync_token()),
        )
        response.raise_for_status()
        return response

    def _act(self, action: _Request | Sleep) -> httpx.Response | None:
        """Carry out one action of the shared steps: sleep, or send under the retry policy."""
        if isinstance(action, Sleep):
            self.policy.sleep(action.seconds)
            return None
        attempts = itertools.count(1)

        def attempt() -> httpx.Response | None:
            number = next(attempts)
            try:
                return self._attempt(action)
            except httpx.HTTPStatusError as exc:
                if action.settled_by(exc, number):
                    return None
                raise

        return self.policy.call(attempt)

    def deploy(
        self,
        model: Any,
        deployment_name: str,
        *,
        sku: str = "standard",
        capacity: int = 1,
        api_version: str | None = None,
        wait: bool = True,
        timeout: float = 3600.0,
    ) -> AzureDeployment:
        """Deploy a fine-tuned model (create or update the deployment), and wait until it is ready.

        Args:
            model: The fine-tuned model id (``job.fine_tuned_model``, ``{base}.ft-{32 hex}``) or a
                checkpoint's ``ftchkpt-{32 hex}``; or the job itself, or one of its checkpoints
                (deployed by its ``ftchkpt-`` id). An OpenAI id (``ft:...``) is refused.
            deployment_name: The deployment's name, which inference calls pass as ``model``.
            sku: ``standard`` (regional), ``globalstandard``, ``developertier`` (no hosting fee,
                no SLA, removed after 24 h) or ``ProvisionedManaged``.
            capacity: Capacity units.
            api_version: The management API version; the deployer's (or the Developer tier's)
                by default.
            wait: Wait until the deployment succeeds (otherwise return the PUT's answer).
            timeout: Seconds to wait at most.

        Returns:
            The deployment, ``Succeeded`` when ``wait`` is true; its ``cost_notes`` say what
            it costs and when Azure removes it (also logged before the request).

        Raises:
            ConfigurationError: A parameter is unusable.
            DeploymentError: Azure refused the request, or the deployment ended in ``Failed`` or
                ``Canceled`` (``.state`` and ``.error`` say why).
            DeploymentTimeoutError: It was not ready within ``timeout``.
        """
        steps = self._deploy_steps(
            model,
            deployment_name,
            sku=sku,
            capacity=capacity,
            api_version=api_version,
            wait=wait,
            timeout=timeout,
        )
        return run_steps(steps, self._act)

    def get(
        self, deployment_name: str, *, api_version: str | None = None
    ) -> AzureDeployment | None:
        """Read a deployment.

        Args:
            deployment_name: The deployment's name.
            api_version: The management API version; the deployer's by default.

        Returns:
            The deployment, or ``None`` when there is none of that name.

        Raises:
            DeploymentError: Azure refused the request, or could not be reached.
        """
        return run_steps(self._get_steps(deployment_name, api_version), self._act)

    def wait(
        self, deployment_name: str, *, timeout: float = 3600.0, api_version: str | None = None
    ) -> AzureDeployment:
        """Poll a deployment until it succeeds, fails, or ``timeout`` seconds have passed.

        Args:
            deployment_name: The deployment's name.
            timeout: Seconds to wait at most.
            api_version: The management API version; the deployer's by default.

        Returns:
            The ``Succeeded`` deployment.

        Raises:
            DeploymentError: It ended in ``Failed``, ``Canceled`` or ``Disabled`` (``.state``,
                ``.error``), or does not exist.
            DeploymentTimeoutError: It was still provisioning after ``timeout``.
        """
        steps = self._poll_steps(
            deployment_name, timeout=timeout, api_version=api_version, pending=None
        )
        return run_steps(steps, self._act)

    def delete(
        self,
        deployment_name: str,
        *,
        missing_ok: bool = False,
        wait: bool = True,
        timeout: float = 600.0,
        api_version: str | None = None,
    ) -> bool:
        """Delete a deployment (the fine-tuned model itself is kept).

        Args:
            deployment_name: The deployment's name.
            missing_ok: Return ``False`` instead of raising when there is no such deployment.
            wait: When Azure accepts the deletion for later (HTTP 202), wait until it is gone.
            timeout: Seconds to wait at most.
            api_version: The management API version; the deployer's by default.

        Returns:
            ``True`` when the deployment was deleted, ``False`` when it did not exist.

        Raises:
            DeploymentError: There is no such deployment (unless ``missing_ok``), or Azure
                refused the request.
            DeploymentTimeoutError: It was still being deleted after ``timeout``.
        """
        steps = self._delete_steps(
            deployment_name,
            missing_ok=missing_ok,
            wait=wait,
            timeout=timeout,
            api_version=api_version,
        )
        return run_steps(steps, self._act)

    def list(self, *, api_version: str | None = None) -> builtins.list[AzureDeployment]:
        """List the resource's deployments (every page).

        Args:
            api_version: The management API version; the deployer's by default.

        Returns:
            The deployments.

        Raises:
            DeploymentError: Azure refused the request, or could not be reached.
        """
        return run_steps(self._list_steps(api_version), self._act)


class AsyncAzureDeployer(_DeployerBase):
    """The async twin of :class:`AzureDeployer`: the same methods, awaited.

    Args:
        subscription_id: The Azure subscription id.
        resource_group: The resource group holding the Azure OpenAI resource.
        resource: The Azure OpenAI resource's name.
        token: An ARM bearer token, a callable returning one or an awaitable of one (called per
            request), or a credential with ``get_token(scope)``, sync or async (such as
            ``azure.identity.aio.DefaultAzureCredential()``).
        management_url: The ARM endpoint.
        api_version: The management API version for every call.
        scope: The token scope asked of a credential; ``{management_url}/.default`` by default.
        policy: The retry policy; the shared default when ``None``.
        poll_interval: Seconds between two state checks while waiting.
        http_client: An ``httpx.AsyncClient`` to use (its owner closes it); one is made otherwise.
        timeout: Per-request timeout in seconds, for the client made here.

    Examples:
        >>> import asyncio
        >>> async def main() -> str:
        ...     async with AsyncAzureDeployer("sub-id", "my-rg", "my-aoai", token="t") as deployer:
        ...         return deployer.deployment_url("bot")
        >>> asyncio.run(main()).endswith("/deployments/bot")
        True
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        resource: str,
        *,
        token: AsyncArmToken,
        management_url: str = ARM_MANAGEMENT_URL,
        api_version: str = DEFAULT_ARM_API_VERSION,
        scope: str | None = None,
        policy: RetryPolicy | None = None,
        poll_interval: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(
            subscription_id,
            resource_group,
            resource,
            token=token,
            management_url=management_url,
            api_version=api_version,
            scope=scope,
            policy=policy,
            poll_interval=poll_interval,
        )
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0))

    async def __aenter__(self) -> AsyncAzureDeployer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, if this deployer made it."""
        if self._owns_client:
            await self._client.aclose()

    async def _token(self) -> str:
        source = self._token_source
        if isinstance(source, str):
            return source
        result = source.get_token(self.scope) if hasattr(source, "get_token") else source()
        if inspect.isawaitable(result):
            result = await result
        return self._checked_token(getattr(result, "token", result))

    async def _attempt(self, request: _Request) -> httpx.Response:
        headers = self._headers(await self._token())
        response = await self._client.request(
            request.method, request.url, params=request.params(), json=request.json, headers=headers
        )
        response.raise_for_status()
        return response

    async def _act(self, action: _Request | Sleep) -> httpx.Response | None:
        """Carry out one action of the shared steps: sleep, or send under the retry policy."""
        if isinstance(action, Sleep):
            await self.policy.asleep(action.seconds)
            return None
        attempts = itertools.count(1)

        async def attempt() -> httpx.Response | None:
            number = next(attempts)
            try:
                return await self._attempt(action)
            except httpx.HTTPStatusError as exc:
                if action.settled_by(exc, number):
                    return None
                raise

        return await self.policy.acall(attempt)

    async def deploy(
        self,
        model: Any,
        deployment_name: str,
        *,
        sku: str = "standard",
        capacity: int = 1,
        api_version: str | None = None,
        wait: bool = True,
        timeout: float = 3600.0,
    ) -> AzureDeployment:
        """Deploy a fine-tuned model, and wait until it is ready (see :meth:`AzureDeployer.deploy`).

        Args:
            model: The fine-tuned model id or a checkpoint's ``ftchkpt-`` id, or the job or a
                checkpoint.
            deployment_name: The deployment's name.
            sku: The deployment type.
            capacity: Capacity units.
            api_version: The management API version.
            wait: Wait until the deployment succeeds.
            timeout: Seconds to wait at most.

        Returns:
            The deployment.
        """
        steps = self._deploy_steps(
            model,
            deployment_name,
            sku=sku,
            capacity=capacity,
            api_version=api_version,
            wait=wait,
            timeout=timeout,
        )
        return await arun_steps(steps, self._act)

    async def get(
        self, deployment_name: str, *, api_version: str | None = None
    ) -> AzureDeployment | None:
        """Read a deployment (see :meth:`AzureDeployer.get`).

        Args:
            deployment_name: The deployment's name.
            api_version: The management API version.

        Returns:
            The deployment, or ``None`` when there is none of that name.
        """
        return await arun_steps(self._get_steps(deployment_name, api_version), self._act)

    async def wait(
        self, deployment_name: str, *, timeout: float = 3600.0, api_version: str | None = None
    ) -> AzureDeployment:
        """Poll a deployment until it succeeds or fails (see :meth:`AzureDeployer.wait`).

        Args:
            deployment_name: The deployment's name.
            timeout: Seconds to wait at most.
            api_version: The management API version.

        Returns:
            The ``Succeeded`` deployment.
        """
        steps = self._poll_steps(
            deployment_name, timeout=timeout, api_version=api_version, pending=None
        )
        return await arun_steps(steps, self._act)

    async def delete(
        self,
        deployment_name: str,
        *,
        missing_ok: bool = False,
        wait: bool = True,
        timeout: float = 600.0,
        api_version: str | None = None,
    ) -> bool:
        """Delete a deployment (see :meth:`AzureDeployer.delete`).

        Args:
            deployment_name: The deployment's name.
            missing_ok: Return ``False`` instead of raising when there is no such deployment.
            wait: When Azure accepts the deletion for later (HTTP 202), wait until it is gone.
            timeout: Seconds to wait at most.
            api_version: The management API version.

        Returns:
            ``True`` when the deployment was deleted, ``False`` when it did not exist.
        """
        steps = self._delete_steps(
            deployment_name,
            missing_ok=missing_ok,
            wait=wait,
            timeout=timeout,
            api_version=api_version,
        )
        return await arun_steps(steps, self._act)

    async def list(self, *, api_version: str | None = None) -> builtins.list[AzureDeployment]:
        """List the resource's deployments (see :meth:`AzureDeployer.list`).

        Args:
            api_version: The management API version.

        Returns:
            The deployments.
        """
        return await arun_steps(self._list_steps(api_version), self._act)
