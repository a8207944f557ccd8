"""The server itself: API key, size limits, unknown routes, data folder lock, serve()."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.routing import APIRoute

from finetune_kit.errors import LocalBackendError
from finetune_kit.local import LocalBackend, RemoteFaults, RequestLimits

SECRET = "sk-local-test-secret-value"


@pytest.fixture(scope="module")
def keyed_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    data_dir = tmp_path_factory.mktemp("keyed")
    limits = RequestLimits(max_file_bytes=1000, max_json_bytes=2000, max_part_bytes=500)
    with LocalBackend(
        data_dir,
        api_key=SECRET,
        default_model="tiny-random",
        max_concurrent_jobs=0,
        limits=limits,
        log_level="debug",
    ) as backend:
        yield backend


def test_the_api_key_is_enforced(keyed_backend: LocalBackend) -> None:
    with keyed_backend.client() as good:
        assert good.models.list().data
    with (
        keyed_backend.client(api_key="sk-wrong") as bad,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        bad.models.list()
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert SECRET not in info.value.message
    assert "sk-wrong" not in info.value.message
    missing = httpx.get(keyed_backend.base_url + "/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(keyed_backend.base_url.removesuffix("/v1") + "/health").status_code == 200


def test_the_key_is_never_shown(
    keyed_backend: LocalBackend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), keyed_backend.client() as good:
        good.files.list()
    assert SECRET not in caplog.text
    assert SECRET not in repr(keyed_backend)
    assert SECRET not in repr(keyed_backend.settings)


def test_bodies_over_the_limits_get_a_413(keyed_backend: LocalBackend) -> None:
    with keyed_backend.client() as client:
        with pytest.raises(openai.APIStatusError) as info:
            client.files.create(file=("big.jsonl", b"x" * 5000), purpose="fine-tune")
        assert info.value.status_code == 413
        assert info.value.code == "request_too_large"
        assert "1000" in info.value.message or "limit" in info.value.message
        # Just over the file limit, within the multipart overhead: the file itself is checked.
        with pytest.raises(openai.APIStatusError) as info:
            client.files.create(file=("big.jsonl", b"x" * 1001), purpose="fine-tune")
        assert info.value.status_code == 413
        assert client.files.create(file=("ok.jsonl", b"x" * 1000), purpose="fine-tune")
        with pytest.raises(openai.APIStatusError) as info:
            client.fine_tuning.jobs.create(
                model="gpt-4o-mini", training_file="file-x", metadata={"k": "v" * 3000}
            )
        assert info.value.status_code == 413
    # A streamed body without Content-Length is cut off as it grows.
    response = httpx.post(
        keyed_backend.base_url + "/fine_tuning/jobs",
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        content=iter([b'{"model": "', b"x" * 3000, b'"}']),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_answer_in_openais_shape(keyed_backend: LocalBackend) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    response = httpx.get(keyed_backend.base_url + "/nothing/here", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (GET /v1/nothing/here)"
    response = httpx.put(keyed_backend.base_url + "/files", headers=headers)
    assert response.status_code == 405
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = httpx.post(
        keyed_backend.base_url + "/fine_tuning/jobs", headers=headers, content=b"{nope"
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_two_servers_cannot_share_a_data_folder(keyed_backend: LocalBackend) -> None:
    with pytest.raises(LocalBackendError, match="Another local backend server"):
        LocalBackend(keyed_backend.data_dir, default_model="tiny-random").start()


def test_a_temporary_data_folder_is_removed() -> None:
    backend = LocalBackend(default_model="tiny-random", max_concurrent_jobs=0)
    with backend:
        folder = backend.data_dir
        assert (folder / "local.sqlite3").exists()
        assert backend.base_url.startswith("http://127.0.0.1:")
        assert backend.base_url.endswith("/v1")
    assert not folder.exists()
    with pytest.raises(LocalBackendError):
        _ = backend.base_url


def test_files_survive_a_restart(tmp_path: Path) -> None:
    with LocalBackend(tmp_path, default_model="tiny-random", max_concurrent_jobs=0) as first:
        created = first.client().files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    with LocalBackend(tmp_path, default_model="tiny-random", max_concurrent_jobs=0) as second:
        client = second.client()
        assert client.files.retrieve(created.id) == created
        assert client.files.content(created.id).read() == b"{}\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    port = _free_port()
    code = (
        "from finetune_kit.local.server import serve; "
        f"serve(port={port}, data_dir={str(tmp_path)!r}, default_model='tiny-random', "
        "faults=True, max_concurrent_jobs=0, log_level='warning')"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "serve() exited early"
            assert time.monotonic() < deadline, "serve() did not answer /health"
            time.sleep(0.1)
        remote = RemoteFaults(base + "/v1")
        remote.script("GET", "/v1/models", ["503"])
        with openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as client:
            with pytest.raises(openai.InternalServerError):
                client.models.list()
            assert client.models.list().data
        assert remote.count("GET", "/v1/models") == 2
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    # The stopped server let go of its data folder.
    with LocalBackend(tmp_path, default_model="tiny-random", max_concurrent_jobs=0):
        pass


_JSON_ROUTES = (
    "/chat/completions",
    "/fine_tuning/jobs",
    "/uploads",
    "/uploads/upload_abc/complete",
)


@pytest.mark.parametrize("route", _JSON_ROUTES)
def test_deeply_nested_json_is_a_400_naming_the_parameter(
    local_backend: LocalBackend, route: str
) -> None:
    deep = "[" * 2000 + "]" * 2000  # past the JSON decoder's recursion limit
    fair = '{"a":' * 100 + "1" + "}" * 100  # decodes, but nests past the server's limit
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=local_backend.base_url, headers=headers) as http:
        for body, param in (
            (deep, None),
            ('{"metadata": ' + deep + "}", "metadata"),
            ('{"metadata": {"k": "v"}, "tools": [{"a": ' + deep + "}]}", "tools"),
            ('{"metadata": ' + fair + "}", "metadata"),
        ):
            response = http.post(route, content=body)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["param"] == param
            assert "nest" in error["message"]
            assert "64" in error["message"]


def test_a_500_leaves_the_keep_alive_connection_usable(tmp_path: Path) -> None:
    def broken() -> None:
        raise RuntimeError("a bug in a route")

    with LocalBackend(tmp_path, default_model="tiny-random", max_concurrent_jobs=0) as backend:
        # A route with a bug, added to the real application: every 500 the server answers for
        # an unexpected exception takes this path.
        assert backend._app is not None
        backend._app.fastapi.add_api_route("/v1/broken", broken, methods=["GET"])
        # One connection at most: every request must travel on the first one.
        with httpx.Client(
            base_url=backend.base_url, limits=httpx.Limits(max_connections=1)
        ) as http:
            ports = set()
            for _ in range(10):
                for path, status in (("/broken", 500), ("/models", 200)):
                    response = http.get(path)
                    assert response.status_code == status
                    assert response.headers.get("connection") != "close"
                    stream = response.extensions["network_stream"]
                    ports.add(stream.get_extra_info("client_addr")[1])
            failed = http.get("/broken").json()["error"]
    assert len(ports) == 1, "the server closed the connection after a 500"
    assert failed["type"] == "server_error"
    assert "RuntimeError" in failed["message"]


def test_405_names_the_allowed_methods(local_backend: LocalBackend) -> None:
    base = local_backend.base_url
    for method, path, allowed in (
        ("PUT", "/files", {"GET", "POST"}),
        ("PATCH", "/files/file-x", {"GET", "DELETE"}),
        ("GET", "/chat/completions", {"POST"}),
        ("DELETE", "/fine_tuning/jobs/ftjob-x/cancel", {"POST"}),
    ):
        response = httpx.request(method, base + path)
        assert response.status_code == 405
        assert set(response.headers["allow"].split(", ")) == allowed
        assert response.json()["error"]["message"].startswith(f"Method {method} is not allowed")


def test_the_openapi_schema_declares_every_route_and_body(local_backend: LocalBackend) -> None:
    response = httpx.get(local_backend.base_url.removesuffix("/v1") + "/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    components = schema["components"]["schemas"]
    declared = {f"{method.upper()} {path}" for path, item in paths.items() for method in item}
    assert declared == {
        "GET /health",
        "POST /v1/files",
        "GET /v1/files",
        "GET /v1/files/{file_id}",
        "DELETE /v1/files/{file_id}",
        "GET /v1/files/{file_id}/content",
        "POST /v1/uploads",
        "POST /v1/uploads/{upload_id}/parts",
        "POST /v1/uploads/{upload_id}/complete",
        "POST /v1/uploads/{upload_id}/cancel",
        "POST /v1/fine_tuning/jobs",
        "GET /v1/fine_tuning/jobs",
        "GET /v1/fine_tuning/jobs/{job_id}",
        "POST /v1/fine_tuning/jobs/{job_id}/cancel",
        "POST /v1/fine_tuning/jobs/{job_id}/pause",
        "POST /v1/fine_tuning/jobs/{job_id}/resume",
        "GET /v1/fine_tuning/jobs/{job_id}/events",
        "GET /v1/fine_tuning/jobs/{job_id}/checkpoints",
        "GET /v1/models",
        "GET /v1/models/{model}",
        "DELETE /v1/models/{model}",
        # Extensions of the local backend: a tuned model's weights, token counts.
        "GET /v1/models/{model}/weights",
        "GET /v1/models/{model}/weights/{format}",
        "POST /v1/tokenize",
        "POST /v1/chat/completions",
        "POST /v1/fine_tuning/alpha/graders/run",
        "POST /v1/fine_tuning/alpha/graders/validate",
        # The fixture's backend injects faults: their admin routes are served, and declared.
        "POST /_faults/script",
        "POST /_faults/probability",
        "POST /_faults/latency",
        "POST /_faults/clear",
        "GET /_faults/requests",
    }
    # Every route the server serves is declared, but for the copy of /v1/tokenize at vLLM's
    # path (left out of the schema on purpose: one operation, one entry).
    assert local_backend._app is not None
    served = {
        f"{method} {route.path.replace(':path}', '}')}"
        for router in local_backend._app.fastapi.state.routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served - declared == {"POST /tokenize"}
    # /health answers 503 when degraded (a load balancer's signal): declared with its report.
    health = paths["/health"]["get"]["responses"]
    assert {"200", "503"} <= set(health)
    assert health["503"]["content"]["application/json"]["schema"]["properties"]["status"] == {
        "type": "string",
        "enum": ["ok", "degraded"],
    }

    def body_schema(method: str, path: str, media: str) -> dict[str, Any]:
        body: dict[str, Any] = paths[path][method]["requestBody"]["content"][media]["schema"]
        return body

    # Every JSON body is declared by its request model, with the model's constraints.
    for path, model in (
        ("/v1/chat/completions", "ChatCompletionBody"),
        ("/v1/fine_tuning/jobs", "JobCreateBody"),
        ("/v1/uploads", "UploadCreateBody"),
        ("/v1/uploads/{upload_id}/complete", "UploadCompleteBody"),
        ("/v1/tokenize", "TokenizeBody"),
        ("/v1/fine_tuning/alpha/graders/run", "GraderRunBody"),
        ("/v1/fine_tuning/alpha/graders/validate", "GraderValidateBody"),
    ):
        assert body_schema("post", path, "application/json") == {
            "$ref": f"#/components/schemas/{model}"
        }
        assert components[model]["additionalProperties"] is False
    seed = components["ChatCompletionBody"]["properties"]["seed"]["anyOf"][0]
    assert (seed["minimum"], seed["maximum"]) == (-(2**63), 2**63 - 1)
    upload = body_schema("post", "/v1/files", "multipart/form-data")
    assert set(upload["required"]) == {"file", "purpose"}
    assert upload["properties"]["file"]["format"] == "binary"
    part = body_schema("post", "/v1/uploads/{upload_id}/parts", "multipart/form-data")
    assert part["required"] == ["data"]
    # Query parameters and answers are declared too.
    listing = paths["/v1/files"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"purpose", "limit", "order", "after"}
    ok = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/FileList"}
    error = listing["responses"]["4XX"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorResponse"}
    bodiless = {"/cancel", "/pause", "/resume", "/_faults/clear"}
    for path, item in paths.items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (method, path)
            assert "4XX" in operation["responses"], (method, path)
            if method == "post" and not path.endswith(tuple(bodiless)):
                # A route reading a body declares it (json_body / multipart_body).
                assert "requestBody" in operation, (method, path)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_key_in_a_query_string_is_refused_and_never_logged(
    keyed_backend: LocalBackend,
) -> None:
    # uvicorn's access log does not propagate to the root logger (caplog): listen on it. Its
    # level is process-wide: the last server started set it (warning, for most tests).
    access = logging.getLogger("uvicorn.access")
    records = _Records()
    access.addHandler(records)
    level = access.level
    access.setLevel(logging.INFO)
    other = "sk-someone-elses-key"
    try:
        base = keyed_backend.base_url
        for query in (
            f"api_key={SECRET}",
            f"limit=2&key={SECRET}&after=x",
            f"access_token={other}",
            f"X-Api-Key={other}",
            f"whatever={SECRET}",
            "token=" + SECRET.replace("-", "%2D"),
        ):
            response = httpx.get(f"{base}/files?{query}")
            assert response.status_code == 401
            assert SECRET not in response.text
        # Sent the right way, and in the query too: served, and the query still redacted.
        headers = {"Authorization": f"Bearer {SECRET}"}
        assert httpx.get(f"{base}/models?key={other}", headers=headers).status_code == 200
        # Where a confused client puts it in the path.
        httpx.get(f"{base}/models/{SECRET}", headers=headers)
    finally:
        access.removeHandler(records)
        access.setLevel(level)
    logged = "\n".join(records.lines)
    assert len(records.lines) >= 8, logged
    assert SECRET not in logged
    assert other not in logged
    assert "2D" not in logged  # the percent-encoded key neither
    assert "api_key=***" in logged
    assert "limit=2&key=***&after=x" in logged


def test_connections_of_the_in_process_server_turn_nagle_off(local_backend: LocalBackend) -> None:
    # asyncio sets TCP_NODELAY on an accepted connection only when the listening socket says
    # IPPROTO_TCP; a socket made with proto 0 left Nagle on, and every answer waited ~40 ms for
    # the client's delayed ACK between its headers and its body (about 20 requests a second).
    server = local_backend._server
    assert server is not None
    listening = [sock for s in server.servers for sock in s.sockets]
    assert listening
    assert all(sock.proto == socket.IPPROTO_TCP for sock in listening)
