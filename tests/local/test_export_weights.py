"""A tuned model's weights outside the server: the download route, the session, the files.

The base is the tiny random Llama as a float32 folder, served by llama.cpp; the tuned model
learned its answers by heart, so a greedy answer is the trained one wherever it is computed, and
the comparisons are exact: the server's answer (llama.cpp, base + GGUF adapter) is what the
exported ``base.gguf`` + ``adapter.gguf`` give in a llama.cpp started here (the same computation,
token for token), what ``merged.gguf`` gives there, what the merged Hugging Face folder gives in
transformers, and what the peft adapter gives on the base. The answer is the trained one, not
the base model's, so the files carry the fine-tune.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from finetune_kit import FineTuneSession
from finetune_kit.cli import EXIT_CODES
from finetune_kit.errors import ConfigurationError
from finetune_kit.jobs import download_weights
from finetune_kit.local import LocalBackend
from tests.fixtures.cli import run, run_json
from tests.fixtures.local_backend import free_port, wait_for_job, write_jsonl
from tests.local.test_llama_engine import save_tiny_folder, train

QUESTION = "Tell me about Argon."
ANSWER = "Argon is a noble gas."
ROWS = [
    {"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]},
] * 5
MAX_TOKENS = 40

# A llama.cpp server of its own, straight from the xllamacpp wheel: not the backend's engine.
_SERVE = """
import signal, sys, xllamacpp
model, port, loras = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
params = xllamacpp.CommonParams()
params.model.path = model
params.hostnames = ["127.0.0.1"]
params.port = port
params.n_ctx = 2048
params.cpuparams.n_threads = 1
params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(p, 1.0) for p in loras]
server = xllamacpp.Server(params)
signal.sigwait({signal.SIGTERM})
"""


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_folder(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module")
def backend(base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    with LocalBackend(
        tmp_path_factory.mktemp("export-data"),
        default_model=str(base_folder),
        model_dirs=[base_folder.parent],
        model_cache_dir=tmp_path_factory.mktemp("export-cache"),
        chat_engine="llama.cpp",
        default_max_tokens=MAX_TOKENS,
    ) as running:
        yield running


@pytest.fixture
def client(backend: LocalBackend) -> Iterator[openai.OpenAI]:
    with backend.client() as http_client:
        yield http_client


@pytest.fixture(scope="module")
def tuned(
    backend: LocalBackend, base_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    with backend.client() as client:
        return train(client, str(base_folder), ROWS, tmp_path_factory.mktemp("rows"))


@pytest.fixture(scope="module")
def server_answer(backend: LocalBackend, tuned: str, base_folder: Path) -> str:
    with backend.client() as client:

        def greedy(model: str) -> str:
            answer = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": QUESTION}],
                max_tokens=MAX_TOKENS,
                temperature=0,
            )
            return answer.choices[0].message.content or ""

        text = greedy(tuned)
        assert text == ANSWER  # the fine-tune, learned
        assert greedy(str(base_folder)) != ANSWER  # which the base does not say
        return text


@pytest.fixture(scope="module")
def exported(
    backend: LocalBackend, tuned: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    with backend.client() as client:
        return download_weights(
            client, tuned, tmp_path_factory.mktemp("weights"), formats=["adapter", "hf", "gguf"]
        )


def _prompt_ids(folder: Path) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(rendered, add_special_tokens=False).input_ids)


def _llama_cpp_answer(model: Path, loras: list[Path], prompt: list[int]) -> str:
    port = free_port()
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(model), str(port), *map(str, loras)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=model.parent,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "llama.cpp exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "llama.cpp did not start"
            time.sleep(0.1)
        body = {"prompt": prompt, "n_predict": MAX_TOKENS, "temperature": 0, "cache_prompt": False}
        answer = httpx.post(f"http://127.0.0.1:{port}/completion", json=body, timeout=120)
        return str(answer.json()["content"])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


# -- the route -----------------------------------------------------------------------------------


def test_the_route_lists_the_forms_and_the_engine(backend: LocalBackend, tuned: str) -> None:
    listed = httpx.get(f"{backend.base_url}/models/{tuned}/weights", timeout=60).json()
    assert listed["object"] == "model.weights"
    assert listed["served_by"] == "llama.cpp"
    assert [f["format"] for f in listed["formats"]] == ["adapter", "hf", "gguf"]


def test_a_download_is_a_tar_of_one_folder(
    backend: LocalBackend, tuned: str, tmp_path: Path
) -> None:
    with httpx.stream(
        "GET", f"{backend.base_url}/models/{tuned}/weights/adapter", timeout=60
    ) as response:
        assert response.headers["content-type"] == "application/x-tar"
        (tmp_path / "a.tar").write_bytes(response.read())
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = sorted(tar.getnames())
    assert "adapter/adapter_model.safetensors" in names
    assert all(n == "adapter" or n.startswith("adapter/") for n in names)


@pytest.mark.parametrize(
    ("model", "format_name", "param"),
    [
        ("gpt-4o-mini", "adapter", "model"),  # a base model: nothing to export
        ("TUNED", "onnx", "format"),
    ],
)
def test_what_cannot_be_exported_is_a_400_naming_it(
    backend: LocalBackend, tuned: str, model: str, format_name: str, param: str
) -> None:
    name = tuned if model == "TUNED" else model
    answer = httpx.get(f"{backend.base_url}/models/{name}/weights/{format_name}", timeout=60)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


def test_an_unknown_model_is_a_404(backend: LocalBackend) -> None:
    answer = httpx.get(f"{backend.base_url}/models/ft:nothing:here/weights/gguf", timeout=60)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"


def test_a_model_llama_cpp_cannot_take_has_no_gguf_but_has_the_rest(
    client: openai.OpenAI, backend: LocalBackend, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", ROWS)
    job = client.fine_tuning.jobs.create(
        model="tiny-random",
        training_file=client.files.create(file=path, purpose="fine-tune").id,
        hyperparameters={"n_epochs": 1},
    )
    done = wait_for_job(client, job.id)
    assert done.fine_tuned_model is not None
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id).data]
    assert any(m.startswith("Chat with this model runs on the torch generator") for m in messages)
    with pytest.raises(ConfigurationError, match="no gguf export"):
        download_weights(client, done.fine_tuned_model, tmp_path / "w", formats=["gguf"])
    paths = download_weights(client, done.fine_tuned_model, tmp_path / "w", formats=["adapter"])
    assert (paths["adapter"] / "adapter_config.json").is_file()


# -- the files give the server's answer -----------------------------------------------------------


def test_the_exported_base_and_adapter_in_llama_cpp_give_the_servers_answer(
    exported: dict[str, Path], server_answer: str
) -> None:
    gguf = exported["gguf"]
    prompt = _prompt_ids(exported["hf"])
    answer = _llama_cpp_answer(gguf / "base.gguf", [gguf / "adapter.gguf"], prompt)
    assert answer == server_answer


def test_the_merged_gguf_in_llama_cpp_gives_the_servers_answer(
    exported: dict[str, Path], server_answer: str
) -> None:
    prompt = _prompt_ids(exported["hf"])
    assert _llama_cpp_answer(exported["gguf"] / "merged.gguf", [], prompt) == server_answer


def test_the_merged_folder_in_transformers_gives_the_servers_answer(
    exported: dict[str, Path], server_answer: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = exported["hf"]
    assert (folder / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template  # the template travels with the weights
    model = AutoModelForCausalLM.from_pretrained(folder)
    prompt = _prompt_ids(folder)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=MAX_TOKENS, do_sample=False, eos_token_id=2
        )
    assert tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True) == server_answer


def test_the_peft_adapter_on_the_base_gives_the_servers_answer(
    exported: dict[str, Path], server_answer: str, base_folder: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_folder)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_folder), exported["adapter"]
    )
    prompt = _prompt_ids(base_folder)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            max_new_tokens=MAX_TOKENS,
            do_sample=False,
            eos_token_id=2,
        )
    assert tokenizer.decode(out[0, len(prompt) :], skip_special_tokens=True) == server_answer


def test_the_modelfiles_name_the_files_beside_them(exported: dict[str, Path]) -> None:
    gguf = exported["gguf"]
    merged = (gguf / "Modelfile").read_text()
    adapter = (gguf / "Modelfile.adapter").read_text()
    assert merged.startswith("FROM ./merged.gguf\n")
    assert adapter.startswith("FROM ./base.gguf\nADAPTER ./adapter.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in merged


# -- the session and the CLI ----------------------------------------------------------------------


def test_the_session_exports_the_weights_with_the_job(
    backend: LocalBackend, tuned: str, tmp_path: Path
) -> None:
    with backend.client() as client:
        job_id = next(j.id for j in client.fine_tuning.jobs.list() if j.fine_tuned_model == tuned)
        with FineTuneSession(client, state_path=None) as session:
            session.attach(job_id)
            folder = session.export(tmp_path / "out", weights=["adapter"])
    assert (folder / "job.json").is_file()
    assert (folder / "weights" / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((folder / "job.json").read_text())["fine_tuned_model"] == tuned


def test_openai_is_refused_before_any_request(tmp_path: Path) -> None:
    session = FineTuneSession("openai", api_key="sk-test", state_path=None)
    with pytest.raises(ConfigurationError, match="OpenAI does not offer the weights") as caught:
        session.export(tmp_path / "out", weights=["gguf"])
    assert caught.value.param == "weights"
    assert not (tmp_path / "out").exists()


def test_the_cli_exports_a_jobs_weights(
    backend: LocalBackend, tuned: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with backend.client() as client:
        job_id = next(j.id for j in client.fine_tuning.jobs.list() if j.fine_tuned_model == tuned)
    common = ["--backend", "local", "--base-url", backend.base_url]
    common += ["--state", str(tmp_path / "s.json")]
    out = tmp_path / "out"
    code, result = run_json(capsys, *common, "export", str(out), job_id, "--weights", "adapter,hf")
    assert code == EXIT_CODES["ok"]
    assert "weights" in result["files"]
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["adapter", "hf"]
    assert (out / "weights" / "hf" / "model.safetensors").is_file()

    code, _, err = run(capsys, *common, "export", str(tmp_path / "x"), job_id, "--weights", "onnx")
    assert code == EXIT_CODES["usage"]
    assert "unknown weights format 'onnx': use one or more of adapter, hf, gguf" in err
    assert not (tmp_path / "x").exists()
