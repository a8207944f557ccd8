"""GGUF files for llama.cpp: LoRA adapters, base models made from folders, merged models.

Everything here is written with the ``gguf`` package alone (no llama.cpp checkout, no
``convert_hf_to_gguf.py``), for the Llama architecture, which llama.cpp and transformers lay out
the same way but for one thing: llama.cpp stores the rows of ``q_proj`` and ``k_proj`` in
another order (its RoPE pairs neighbouring rows, transformers' pairs the two halves).
transformers' GGUF loader undoes that order when it dequantizes a GGUF file for training; so
whatever goes back to llama.cpp must be put in its order again:

- ``write_adapter_gguf``: a peft LoRA adapter as a GGUF LoRA adapter (``general.type`` =
  ``adapter``, ``adapter.lora.alpha``; ``<base tensor>.lora_a`` / ``.lora_b`` per adapted
  projection). A LoRA update ``B @ A`` acts on output rows, so only ``lora_b`` of ``q``/``k`` is
  permuted. Checked against transformers + peft on an F32 base: the same greedy tokens.
- ``hf_folder_to_gguf``: a Llama-architecture Hugging Face folder (byte-level BPE tokenizer,
  safetensors) as a GGUF base, with its tokenizer, chat template and weights in their own
  precision (float32 stays F32, bfloat16 BF16, float16 F16), so llama.cpp serves the very
  weights training used. Other architectures need llama.cpp's ``convert_hf_to_gguf.py`` (not on
  PyPI as a module): they are served by the torch generator (``unsupported_reason`` says why).
- ``merge_adapter_gguf``: base + adapter as one GGUF (each adapted tensor dequantized, the
  update added, written as F32, F16, Q8_0 or the base's own type); every other tensor and every
  key (tokenizer, chat template) copied as it is. ``requantize_gguf`` rewrites a base's
  quantized tensors in another type (the Q8_0 copy llama.cpp batches faster).
- ``ollama_modelfile``: the Modelfile Ollama builds a model from (merged, or base + ``ADAPTER``).

Files are written under a temporary name and renamed, so a reader never sees half a file.

Example:
    >>> import numpy as np
    >>> llama_permute(np.arange(8).reshape(8, 1), n_head=1, n_head_kv=1).ravel().tolist()
    [0, 4, 1, 5, 2, 6, 3, 7]
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ADAPTER_GGUF",
    "GGUF_TYPES",
    "BaseLayout",
    "GgufHeader",
    "UnsupportedModelError",
    "adapter_gguf_path",
    "adapter_unsupported_reason",
    "gguf_architecture",
    "hf_folder_to_gguf",
    "llama_permute",
    "merge_adapter_gguf",
    "ollama_modelfile",
    "requantize_gguf",
    "unsupported_reason",
    "write_adapter_gguf",
    "write_merged_gguf",
]

logger = logging.getLogger("finetune_kit.local.gguf")

ADAPTER_GGUF = "adapter.gguf"
"""The GGUF LoRA adapter's name inside an adapter folder (deleted with the folder)."""

GGUF_TYPES = ("auto", "F32", "F16", "BF16", "Q8_0", "Q4_1", "same")
"""Tensor types a merged or requantized GGUF can be written in: ``same`` is the base's own;
``auto`` keeps a float base's precision (F32, F16, BF16) and writes a quantized one's as Q8_0."""

# peft module path -> llama.cpp tensor name, for the seven projections LoRA adapts.
_PROJECTIONS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_PEFT_KEY = re.compile(
    r"^(?:base_model\.model\.)?model\.layers\.(\d+)\."
    r"(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])(?:\.default)?\.weight$"
)
# Hugging Face Llama tensor name -> llama.cpp's, for a whole model.
_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")
_HF_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    **_PROJECTIONS,
}
_HF_TOP_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LLAMA_CLASSES = ("LlamaForCausalLM",)

# The text llama.cpp's converter tokenizes to tell pre-tokenizers apart (convert_hf_to_gguf.py,
# get_vocab_base_pre), and the hashes of the tokenizations of the families it knows that have a
# Llama architecture; any other byte-level BPE gets "default" (the server is sent token ids, so
# this only matters to whoever feeds an exported file text).
_CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d"
    "\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 "
    "33333 333333 3333333 33333333 3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796"
    "\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c"
    "1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b"
    "\u0433\u0430\u0440\u0441\u043a\u0438 ''''''```````\"\"\"\"......!!!!!!?????? I've been "
    "'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_KNOWN_PRE = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
}


class UnsupportedModelError(ValueError):
    """A model or adapter llama.cpp cannot be given by this module (the message says why)."""


def llama_permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """Reorder the rows of a ``q_proj``/``k_proj`` weight (or LoRA ``B``) as llama.cpp wants.

    The same as ``LlamaModel.permute`` in llama.cpp's ``convert_hf_to_gguf.py``.

    Args:
        weights: ``[out, ...]`` rows in Hugging Face order.
        n_head: Attention heads.
        n_head_kv: Key/value heads (for ``k_proj``); ``None`` or ``n_head`` for ``q_proj``.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    permuted: np.ndarray = (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )
    return permuted


def _field_value(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS.update({11: "<q", 12: "<d"})


@dataclass(frozen=True)
class GgufHeader:
    """The scalar metadata and tensor shapes of a GGUF file, read without its arrays.

    ``gguf.GGUFReader`` turns every entry of the vocabulary into numpy arrays: seconds for a
    50,000-token model on a busy machine, where this reads what serving needs in milliseconds.

    Attributes:
        metadata: Scalar and string keys (arrays are left out).
        shapes: ``{tensor name: shape}`` in GGUF's order (``[in, out]`` for a matrix).
    """

    metadata: Mapping[str, Any]
    shapes: Mapping[str, tuple[int, ...]]

    @classmethod
    def read(cls, path: Path) -> GgufHeader:
        """Read a GGUF file's header.

        Raises:
            ValueError: The file is not GGUF.
        """
        import struct

        with open(path, "rb") as stream:

            def take(fmt: str) -> Any:
                size = struct.calcsize(fmt)
                return struct.unpack(fmt, stream.read(size))[0]

            def text() -> str:
                return stream.read(take("<Q")).decode("utf-8", errors="replace")

            def value(kind: int) -> Any:
                if kind == 8:
                    return text()
                if kind == 9:
                    item, count = take("<I"), take("<Q")
                    if item == 8:
                        for _ in range(count):
                            stream.seek(take("<Q"), 1)
                    elif item in _SCALARS:
                        stream.seek(count * struct.calcsize(_SCALARS[item]), 1)
                    else:
                        for _ in range(count):
                            value(item)
                    return None
                if kind not in _SCALARS:
                    raise ValueError(f"{path} has a metadata value of unknown type {kind}")
                return take(_SCALARS[kind])

            if stream.read(4) != b"GGUF":
                raise ValueError(f"{path} is not a GGUF file")
            take("<I")  # version
            n_tensors, n_keys = take("<Q"), take("<Q")
            metadata: dict[str, Any] = {}
            for _ in range(n_keys):
                key = text()
                found = value(take("<I"))
                if found is not None:
                    metadata[key] = found
            shapes: dict[str, tuple[int, ...]] = {}
            for _ in range(n_tensors):
                name = text()
                dims = take("<I")
                shapes[name] = tuple(take("<Q") for _ in range(dims))
                take("<I")  # type
                take("<Q")  # offset
        return cls(metadata, shapes)


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file (``llama``, ``qwen2``...)."""
    return str(GgufHeader.read(path).metadata.get("general.architecture"))


@dataclass(frozen=True)
class BaseLayout:
    """What adapter conversion needs to know of a base model.

    Attributes:
        architecture: llama.cpp's architecture name.
        n_head: Attention heads.
        n_head_kv: Key/value heads.
        shapes: ``{tensor name: (in, out)}`` of the 2-D tensors (GGUF's order), to check the
            adapter against; empty when the base is known only by its config.
    """

    architecture: str
    n_head: int
    n_head_kv: int
    shapes: Mapping[str, tuple[int, ...]]

    @classmethod
    def from_gguf(cls, path: Path) -> BaseLayout:
        """Read the layout of a GGUF base model."""
        return cls.from_header(GgufHeader.read(path))

    @classmethod
    def from_header(cls, header: GgufHeader) -> BaseLayout:
        """The layout of a GGUF base model whose header is read."""
        arch = str(header.metadata.get("general.architecture"))
        n_head = int(header.metadata[f"{arch}.attention.head_count"])
        n_head_kv = header.metadata.get(f"{arch}.attention.head_count_kv")
        return cls(arch, n_head, int(n_head_kv or n_head), header.shapes)

    @classmethod
    def from_config(cls, folder: Path) -> BaseLayout:
        """Read the layout of a Hugging Face folder from its ``config.json``."""
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        n_head = int(config["num_attention_heads"])
        return cls("llama", n_head, int(config.get("num_key_value_heads") or n_head), {})


def adapter_gguf_path(adapter_dir: Path) -> Path:
    """Where an adapter folder's GGUF adapter is (or will be) written."""
    return Path(adapter_dir) / ADAPTER_GGUF


def _adapter_config(adapter_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"no readable adapter_config.json in {adapter_dir}") from exc
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"adapter_config.json in {adapter_dir} is not an object")
    return config


def adapter_unsupported_reason(adapter_dir: Path) -> str | None:
    """Why a peft adapter cannot become a GGUF LoRA adapter, or ``None`` when it can.

    Reads only ``adapter_config.json`` (cheap enough for every request).
    """
    try:
        config = _adapter_config(Path(adapter_dir))
    except UnsupportedModelError as exc:
        return str(exc)
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        return f"a {config.get('peft_type')} adapter is not a LoRA adapter"
    if config.get("use_dora"):
        return "a DoRA adapter has no GGUF form"
    if config.get("modules_to_save"):
        return "the adapter trains whole modules (modules_to_save), which a GGUF LoRA cannot hold"
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        return "the adapter has per-module ranks (rank_pattern / alpha_pattern)"
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        return "the adapter's target_modules is a pattern, not a list of projections"
    unknown = sorted({str(t) for t in targets} - {p.split(".")[1] for p in _PROJECTIONS})
    if unknown:
        return f"the adapter adapts {', '.join(unknown)}, which llama.cpp's LoRA cannot"
    return None


def _adapter_pairs(adapter_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    import numpy as np
    from safetensors import safe_open

    pairs: dict[str, dict[str, np.ndarray]] = {}
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as tensors:
        for key in tensors.keys():  # noqa: SIM118  # safe_open has keys(), not iteration
            match = _PEFT_KEY.match(key)
            if match is None:
                raise UnsupportedModelError(
                    f"the adapter has a tensor {key!r} that is no Llama projection's LoRA"
                )
            layer, module, which = match.groups()
            name = f"blk.{layer}.{_PROJECTIONS[module]}.weight"
            value = tensors.get_tensor(key).float().numpy()
            pairs.setdefault(name, {})[which] = np.ascontiguousarray(value, dtype=np.float32)
    for name, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise UnsupportedModelError(f"the adapter has only half of the LoRA pair of {name}")
    return pairs


def _oriented_b(name: str, b: np.ndarray, layout: BaseLayout) -> np.ndarray:
    if layout.architecture != "llama":
        return b
    if ".attn_q." in name:
        return llama_permute(b, layout.n_head, layout.n_head)
    if ".attn_k." in name:
        return llama_permute(b, layout.n_head, layout.n_head_kv)
    return b


def _effective_alpha(config: Mapping[str, Any]) -> float:
    alpha, rank = float(config["lora_alpha"]), float(config["r"])
    # llama.cpp scales by alpha / r; rsLoRA's alpha / sqrt(r) is the same with alpha * sqrt(r).
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def _up_to_date(target: Path, adapter_dir: Path) -> bool:
    """Whether ``target`` exists and is not older than the adapter's weights."""
    weights = adapter_dir / "adapter_model.safetensors"
    return (
        target.is_file() and weights.is_file() and target.stat().st_mtime >= weights.stat().st_mtime
    )


@contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when all went well."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield staging
        os.replace(staging, target)
    finally:
        if staging.exists():
            staging.unlink()


def write_adapter_gguf(
    adapter_dir: Path, layout: BaseLayout, out: Path | None = None, *, force: bool = False
) -> Path:
    """Write a peft LoRA adapter as a llama.cpp GGUF LoRA adapter.

    Args:
        adapter_dir: The peft folder (``adapter_config.json``, ``adapter_model.safetensors``).
        layout: The base model's layout (``BaseLayout.from_gguf`` of the served base).
        out: The file to write; default ``adapter_dir/adapter.gguf``.
        force: Write even when the file is newer than the adapter's weights.

    Returns:
        The GGUF file.

    Raises:
        UnsupportedModelError: The adapter or the base has no GGUF LoRA form here.
    """
    import gguf

    adapter_dir = Path(adapter_dir)
    target = out or adapter_gguf_path(adapter_dir)
    if not force and _up_to_date(target, adapter_dir):
        return target
    reason = adapter_unsupported_reason(adapter_dir)
    if reason is not None:
        raise UnsupportedModelError(reason)
    if layout.architecture != "llama":
        raise UnsupportedModelError(
            f"adapters are converted for Llama-architecture bases; this one is "
            f"{layout.architecture!r}"
        )
    config = _adapter_config(adapter_dir)
    pairs = _adapter_pairs(adapter_dir)
    with _atomic(target) as staging:
        writer = gguf.GGUFWriter(str(staging), layout.architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, _effective_alpha(config))
        writer.add_name(f"{adapter_dir.name} (LoRA r={config['r']})")
        for name in sorted(pairs, key=lambda n: (int(n.split(".")[1]), n)):
            a, b = pairs[name]["A"], _oriented_b(name, pairs[name]["B"], layout)
            shape = layout.shapes.get(name)
            if shape is not None and (a.shape[1] != shape[0] or b.shape[0] != shape[1]):
                raise UnsupportedModelError(
                    f"the adapter's {name} is {b.shape[0]}x{a.shape[1]}, the base's "
                    f"{shape[1]}x{shape[0]}: it was trained on another base model"
                )
            writer.add_tensor(name + ".lora_a", a)
            writer.add_tensor(name + ".lora_b", b)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    logger.debug("wrote the GGUF adapter %s (%d pairs)", target, len(pairs))
    return target


# -- Hugging Face folder -> GGUF base ---------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def unsupported_reason(folder: Path) -> str | None:
    """Why a Hugging Face folder cannot become a GGUF base here, or ``None`` when it can.

    Reads only ``config.json``, ``tokenizer.json`` and the weight file names.
    """
    folder = Path(folder)
    try:
        config = _read_json(folder / "config.json")
    except (OSError, ValueError):
        return "its config.json cannot be read"
    classes = config.get("architectures") or []
    if config.get("model_type") != "llama" or not set(classes) <= set(_LLAMA_CLASSES):
        return (
            f"its architecture is {', '.join(classes) or config.get('model_type')!s}; folders are "
            "converted for LlamaForCausalLM (others need llama.cpp's convert_hf_to_gguf.py)"
        )
    if config.get("attention_bias") or config.get("mlp_bias"):
        return "its projections have biases, which this converter does not write"
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    rope_type = str(rope.get("rope_type") or rope.get("type") or "default").lower()
    if rope_type not in ("default", "llama3"):
        return f"its RoPE scaling {rope_type!r} is not converted here"
    if not any(folder.glob("*.safetensors")):
        return "it has no .safetensors weights"
    try:
        tokenizer = _read_json(folder / "tokenizer.json")
    except (OSError, ValueError):
        return "it has no readable tokenizer.json"
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or not _byte_level(tokenizer):
        return "its tokenizer is not a byte-level BPE (a SentencePiece vocabulary is not converted)"
    return None


def _byte_level(tokenizer: Mapping[str, Any]) -> bool:
    def has(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel":
                return True
            return any(has(v) for v in node.values())
        if isinstance(node, list):
            return any(has(v) for v in node)
        return False

    return has(tokenizer.get("pre_tokenizer")) or has(tokenizer.get("decoder"))


def _weights(folder: Path) -> Iterator[tuple[str, Any]]:
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as tensors:
            for key in tensors.keys():  # noqa: SIM118  # safe_open has keys(), not iteration
                yield key, tensors.get_tensor(key)


def _gguf_name(hf_name: str) -> str | None:
    top = _HF_TOP_NAMES.get(hf_name)
    if top is not None:
        return top
    match = _HF_LAYER.match(hf_name)
    if match is None:
        return None
    layer, module = match.groups()
    mapped = _HF_LAYER_NAMES.get(module)
    return f"blk.{layer}.{mapped}.weight" if mapped else None


def _tokenizer_pre(tokenizer: Any) -> str:
    ids = tokenizer.encode(_CHECK_TEXT)
    digest = hashlib.sha256(str(ids).encode()).hexdigest()
    return _KNOWN_PRE.get(digest, "default")


def _write_vocab(writer: Any, folder: Path, vocab_size: int) -> None:
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    reverse = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        token = reverse.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            control = bool(decoder[index].special) if index in decoder else True
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_tokenizer_pre(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = _read_json(folder / "tokenizer.json").get("model", {}).get("merges") or []
    texts = [m if isinstance(m, str) else " ".join(m) for m in merges]
    # llama.cpp refuses a BPE vocabulary without merges, and the gguf package an empty list: a
    # vocabulary of bytes alone gets one merge that never applies (BPE starts from single
    # characters, and no merge makes these multi-character symbols).
    writer.add_token_merges(texts or ["<no-merges> <no-merges>"])
    special = gguf.SpecialVocab(folder, load_merges=False, n_vocab=vocab_size)
    if special.chat_template is None and isinstance(tokenizer.chat_template, str):
        special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def _rope_freqs(config: Mapping[str, Any], head_dim: int) -> np.ndarray | None:
    import numpy as np

    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if str(rope.get("rope_type") or rope.get("type") or "").lower() != "llama3":
        return None
    # convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, unchanged.
    base = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old = float(rope.get("original_max_position_embeddings", 8192))
    factors = []
    for freq in freqs:
        wavelength = 2 * math.pi / float(freq)
        if wavelength < old / high:
            factors.append(1.0)
        elif wavelength > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def hf_folder_to_gguf(folder: Path, out: Path) -> Path:
    """Write a Llama-architecture Hugging Face folder as a GGUF base model.

    Weights keep their precision (float32 -> F32, bfloat16 -> BF16, float16 -> F16; norms F32);
    ``q_proj``/``k_proj`` rows are put in llama.cpp's order; the tokenizer (byte-level BPE with
    its merges, special tokens, chat template) goes with them.

    Args:
        folder: The model folder.
        out: The GGUF file to write.

    Returns:
        ``out``.

    Raises:
        UnsupportedModelError: ``unsupported_reason`` names why.
    """
    import gguf
    import numpy as np
    import torch

    reason = unsupported_reason(folder)
    if reason is not None:
        raise UnsupportedModelError(f"{folder} cannot be converted to GGUF here: {reason}")
    config = _read_json(folder / "config.json")
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_head)
    vocab_size = int(config["vocab_size"])
    rope = config.get("rope_parameters") or {}
    with _atomic(out) as staging:
        writer = gguf.GGUFWriter(str(staging), "llama")
        writer.add_name(folder.name)
        writer.add_block_count(int(config["num_hidden_layers"]))
        writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
        writer.add_embedding_length(hidden)
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head_kv)
        writer.add_rope_freq_base(float(config.get("rope_theta", rope.get("rope_theta", 10000.0))))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
        writer.add_vocab_size(vocab_size)
        writer.add_rope_dimension_count(head_dim)
        if config.get("head_dim") is not None:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        _write_vocab(writer, folder, vocab_size)
        kinds: set[str] = set()
        for hf_name, tensor in _weights(folder):
            name = _gguf_name(hf_name)
            if name is None:
                if hf_name.endswith("rotary_emb.inv_freq"):
                    continue  # recomputed from the config by llama.cpp
                raise UnsupportedModelError(f"{folder}: no llama.cpp tensor for {hf_name!r}")
            if name == "output.weight" and config.get("tie_word_embeddings"):
                continue
            if ".attn_q." in name:
                tensor = torch.from_numpy(llama_permute(tensor.numpy(), n_head, n_head))
            elif ".attn_k." in name:
                tensor = torch.from_numpy(llama_permute(tensor.numpy(), n_head, n_head_kv))
            if tensor.ndim == 1 or tensor.dtype == torch.float32:
                writer.add_tensor(name, tensor.float().numpy())
                kinds.add("F32" if tensor.ndim > 1 else "")
            elif tensor.dtype == torch.float16:
                writer.add_tensor(name, tensor.numpy())
                kinds.add("F16")
            else:
                bits = tensor.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint8)
                writer.add_tensor(
                    name,
                    bits.reshape(*tensor.shape[:-1], tensor.shape[-1] * 2),
                    raw_dtype=gguf.GGMLQuantizationType.BF16,
                )
                kinds.add("BF16")
        factors = _rope_freqs(config, head_dim)
        if factors is not None:
            writer.add_tensor("rope_freqs.weight", factors)
        file_types = {
            "F16": gguf.LlamaFileType.MOSTLY_F16,
            "BF16": gguf.LlamaFileType.MOSTLY_BF16,
        }
        kinds.discard("")
        writer.add_file_type(
            file_types.get(next(iter(kinds)), gguf.LlamaFileType.ALL_F32)
            if len(kinds) == 1
            else gguf.LlamaFileType.ALL_F32
        )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    logger.info("converted %s to the GGUF file %s", folder, out)
    return out


# -- merged and requantized files ------------------------------------------------------------


def _qtype(name: str, base: Any) -> Any:
    import gguf

    if name == "same":
        return base
    if name == "auto":
        floats = (
            gguf.GGMLQuantizationType.F32,
            gguf.GGMLQuantizationType.F16,
            gguf.GGMLQuantizationType.BF16,
        )
        return base if base in floats else gguf.GGMLQuantizationType.Q8_0
    try:
        return gguf.GGMLQuantizationType[name]
    except KeyError:
        raise ValueError(f"type {name!r}; use one of {', '.join(GGUF_TYPES)}") from None


def _tensor_array(weights: np.ndarray, qtype: Any) -> tuple[np.ndarray, Any]:
    """The data to write for float32 ``weights`` in ``qtype`` (and the raw type, if any)."""
    import gguf
    import numpy as np
    from gguf.quants import quantize

    if qtype == gguf.GGMLQuantizationType.F32:
        return weights.astype(np.float32), None
    if qtype == gguf.GGMLQuantizationType.F16:
        return weights.astype(np.float16), None
    return quantize(weights.astype(np.float32), qtype), qtype


def _rewrite(
    base_gguf: Path,
    out: Path,
    name: str,
    change: Callable[[Any], np.ndarray | None],
    qtype_name: str,
) -> int:
    """Copy a GGUF file, replacing the tensors ``change`` returns new float32 data for."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = str(_field_value(reader, "general.architecture"))
    changed = 0
    with _atomic(out) as staging:
        writer = gguf.GGUFWriter(str(staging), arch)
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name in (
                gguf.Keys.General.ARCHITECTURE,
                gguf.Keys.General.NAME,
                gguf.Keys.General.FILE_TYPE,
            ):
                continue
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
        writer.add_name(name)
        for tensor in reader.tensors:
            data = change(tensor)
            if data is None:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
                continue
            qtype = _qtype(qtype_name, tensor.tensor_type)
            array, raw = _tensor_array(data, qtype)
            if raw is None:
                writer.add_tensor(tensor.name, array)
            else:
                writer.add_tensor(tensor.name, array, raw_dtype=raw)
            changed += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return changed


def _dequantized(tensor: Any) -> np.ndarray:
    import numpy as np
    from gguf.quants import dequantize

    shape = tuple(int(x) for x in reversed(tensor.shape))  # GGUF [in, out] -> numpy [out, in]
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(shape)


def merge_adapter_gguf(
    adapter_dir: Path, base_gguf: Path, out: Path, *, type_name: str = "auto", name: str = ""
) -> Path:
    """Write base + adapter as one GGUF model.

    Args:
        adapter_dir: The peft adapter folder.
        base_gguf: The GGUF base it was trained on.
        out: The file to write.
        type_name: The adapted tensors' type: ``auto`` (the default: a float base's own
            precision, Q8_0 for a quantized base, within 8-bit rounding of base + adapter),
            ``F32`` (the closest to base + adapter), ``F16``, ``Q8_0``, or ``same`` (the base's
            type; a second 4-bit rounding of a Q4 base loses much of a fine-tune).
        name: ``general.name`` of the merged model.

    Raises:
        UnsupportedModelError: The adapter has no GGUF form (see ``adapter_unsupported_reason``).
    """
    adapter_dir = Path(adapter_dir)
    reason = adapter_unsupported_reason(adapter_dir)
    if reason is not None:
        raise UnsupportedModelError(reason)
    layout = BaseLayout.from_gguf(base_gguf)
    if layout.architecture != "llama":
        raise UnsupportedModelError(
            f"merging is done for Llama-architecture bases; this one is {layout.architecture!r}"
        )
    config = _adapter_config(adapter_dir)
    scale = _effective_alpha(config) / float(config["r"])
    pairs = _adapter_pairs(adapter_dir)
    deltas = {n: scale * (_oriented_b(n, p["B"], layout) @ p["A"]) for n, p in pairs.items()}

    def change(tensor: Any) -> np.ndarray | None:
        delta = deltas.get(tensor.name)
        return None if delta is None else _dequantized(tensor) + delta

    merged = _rewrite(base_gguf, out, name or adapter_dir.name, change, type_name)
    if merged != len(deltas):
        raise UnsupportedModelError(
            f"the base {base_gguf.name} lacks {len(deltas) - merged} of the adapter's tensors"
        )
    return out


def write_merged_gguf(adapter_dir: Path, base_gguf: Path) -> Path:
    """Write ``adapter_dir/merged.gguf``, base + adapter (``merge_adapter_gguf``).

    Written again only when it is missing or older than the adapter's weights (as
    ``write_adapter_gguf``).

    Raises:
        UnsupportedModelError: The adapter does not fit the base.
    """
    adapter_dir = Path(adapter_dir)
    target = adapter_dir / "merged.gguf"
    if not _up_to_date(target, adapter_dir):
        logger.info("merging %s into %s for llama.cpp (once)", adapter_dir, base_gguf.name)
        merge_adapter_gguf(adapter_dir, base_gguf, target, name=adapter_dir.parent.name)
    return target


def requantize_gguf(base_gguf: Path, out: Path, *, type_name: str = "Q8_0") -> Path:
    """Rewrite a GGUF model with every quantized 2-D tensor in another type.

    Used for the Q8_0 copy of a Q4_1 base (llama.cpp batches Q8_0 faster); the weights then
    differ from the base's by Q8_0's rounding of the dequantized values.
    """
    import gguf

    def change(tensor: Any) -> np.ndarray | None:
        keep = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
        if len(tensor.shape) < 2 or tensor.tensor_type in keep:
            return None
        return _dequantized(tensor)

    _rewrite(base_gguf, out, f"{base_gguf.stem} ({type_name})", change, type_name)
    return out


# -- Ollama ----------------------------------------------------------------------------------

_CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)


def ollama_modelfile(
    model_file: str, *, adapter_file: str | None = None, chat_template: str | None = None
) -> str:
    """The text of an Ollama ``Modelfile``.

    Args:
        model_file: The GGUF model, relative to the Modelfile (``./merged.gguf``).
        adapter_file: A GGUF LoRA adapter to apply on it (``ADAPTER``), or ``None``.
        chat_template: The model's Jinja chat template: a ChatML one gets the equivalent Go
            ``TEMPLATE`` and its end-of-turn stop; any other is left to Ollama's detection.

    Example:
        >>> print(ollama_modelfile("./m.gguf").splitlines()[0])
        FROM ./m.gguf
    """
    lines = [f"FROM {model_file}"]
    if adapter_file:
        lines.append(f"ADAPTER {adapter_file}")
    if chat_template is None or "<|im_start|>" in chat_template:
        # Ollama's templates are Go templates, not the GGUF's Jinja one.
        lines.append(f'TEMPLATE """{_CHATML_GO_TEMPLATE}"""')
        lines.append('PARAMETER stop "<|im_end|>"')
    return "\n".join(lines) + "\n"
