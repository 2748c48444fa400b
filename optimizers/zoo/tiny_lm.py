"""``zoo:tiny-lm`` and ``zoo:tiny-lm-draft``: small Llama models trained here, on the CPU.

Nothing is downloaded. The text is the English that ships with every CPython:
the documentation topics in ``pydoc_data.topics`` (cut into paragraph chunks)
and the docstrings of the top-level standard-library modules (``Lib/*.py``,
read with ``ast.get_docstring``). Each document goes to the ``train``,
``calibration`` or ``eval`` split by the hash of its content, so the splits are
disjoint by construction and the same on every machine with the same Python.

A SentencePiece BPE tokenizer (byte fallback, vocabulary 2048) is trained on
the train split; both models share it, so the draft model can serve for
speculative decoding. Every weight row length (hidden and intermediate sizes)
is a multiple of 256, so llama.cpp's K-quants apply to every matrix without
falling back to another type.

Builds are deterministic (fixed seeds, ``torch.use_deterministic_algorithms``,
a fixed thread count) and cached under ``zoo_dir()`` in a folder named by a hash
of ``ZOO_VERSION``, the model spec and the Python version (whose standard
library is the corpus). A build is written to a temporary folder and renamed
into place, under a file lock, so concurrent callers never see half a model.

Public entry points: ``tiny_lm_folder(key, build=True, progress=None)``,
``build_tiny_lm``, ``corpus_splits``, ``SPECS``.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from optimizers.errors import RecipeError

#: Bump when the corpus, tokenizer or training procedure changes: it is part of every cache key.
ZOO_VERSION = "tiny-lm-v1"
#: Special token ids of the SentencePiece model (Llama's convention).
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
#: Threads used for training, fixed so the floating-point summation order (and so the weights) never varies.
TRAIN_THREADS = 2

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class TinyLMSpec:
    """Architecture and training schedule of one tiny model (all part of its cache key)."""

    key: str
    description: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int = 2048
    max_position_embeddings: int = 640
    train_seq_len: int = 128
    batch_size: int = 8
    steps: int = 600
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0


# Sizes: hidden and intermediate multiples of 256 (K-quant blocks). The tiny LM is the smallest
# Llama here whose weights (23 MB in F16) are large enough for llama.cpp's 4-bit types to decode
# visibly faster than F16 on a 2-core CPU, and small enough to train in minutes: 600 steps of
# 8 × 128 tokens (614K tokens, about 1.8 epochs of the train split), about 0.45 s a step on 2
# idle cores (4.5 min; a busy shared machine makes it several times slower). 200 steps left the
# evaluation perplexity near 200; more steps lower it further at ~45 s per 100 steps.
SPECS: dict[str, TinyLMSpec] = {
    "tiny-lm": TinyLMSpec(
        key="tiny-lm",
        description="Llama, hidden 512 × 4 layers (11.5M parameters), trained here on Python's documentation",
        hidden_size=512,
        intermediate_size=1024,
        num_layers=4,
        num_heads=8,
        num_kv_heads=4,
    ),
    "tiny-lm-draft": TinyLMSpec(
        key="tiny-lm-draft",
        description="draft model for zoo:tiny-lm (same tokenizer; hidden 256 × 2 layers, 2.6M parameters)",
        hidden_size=256,
        intermediate_size=768,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
    ),
}

_SPLIT_NAMES = ("train", "calibration", "eval")
_TOPIC_CHUNK_CHARS = 2000
_MIN_DOC_CHARS = 40


# --------------------------------------------------------------------------- paths and cache keys


def zoo_dir() -> Path:
    """Where built demo models are cached: ``$INFEROPT_ZOO_DIR`` or ``~/.cache/inferopt/zoo``."""
    configured = os.environ.get("INFEROPT_ZOO_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "inferopt" / "zoo"


def _python_tag() -> str:
    # The corpus is the standard library's text, so it changes with the Python version.
    return f"{platform.python_implementation()}-{platform.python_version()}"


def cache_key(spec: TinyLMSpec) -> str:
    """Hash naming the cached build of ``spec`` (version, spec, Python version)."""
    fields = {name: value for name, value in asdict(spec).items() if name != "description"}
    payload = json.dumps({"version": ZOO_VERSION, "spec": fields, "python": _python_tag()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_dir(key: str) -> Path:
    """Final folder of the cached build of zoo model ``key`` (it may not exist yet)."""
    spec = _spec(key)
    return zoo_dir() / f"{spec.key}-{cache_key(spec)}"


def _spec(key: str) -> TinyLMSpec:
    try:
        return SPECS[key]
    except KeyError:
        raise RecipeError(f"unknown tiny LM '{key}'; available: {', '.join(sorted(SPECS))}") from None


def is_built(key: str) -> bool:
    return (model_dir(key) / "model.safetensors").is_file()


def tiny_lm_folder(key: str = "tiny-lm", *, build: bool = True, progress: Progress | None = None) -> Path:
    """Folder of the built model ``key`` (``tiny-lm`` or ``tiny-lm-draft``), building it on first use.

    With ``build=False`` a missing model raises ``RecipeError`` instead of training it
    (what a web request should do). ``progress(fraction, message)`` follows a build.
    """
    folder = model_dir(key)
    if (folder / "model.safetensors").is_file():
        return folder
    if not build:
        raise RecipeError(
            f"the demo model zoo:{key} is not built yet: run `python manage.py setup_demo` "
            f"(or `python -m optimizers zoo build {key}`); it trains in a few minutes on the CPU"
        )
    return build_tiny_lm(key, progress=progress)


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    root = zoo_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final``, renamed to it on success and removed on failure."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- corpus


def _topic_documents() -> list[str]:
    from pydoc_data.topics import topics

    documents = []
    for key in sorted(topics):
        chunk: list[str] = []
        size = 0
        for paragraph in re.split(r"\n\s*\n", topics[key].strip()):
            paragraph = paragraph.rstrip()
            if not paragraph.strip():
                continue
            if chunk and size + len(paragraph) > _TOPIC_CHUNK_CHARS:
                documents.append("\n\n".join(chunk))
                chunk, size = [], 0
            chunk.append(paragraph)
            size += len(paragraph) + 2
        if chunk:
            documents.append("\n\n".join(chunk))
    return documents


def _docstring_documents() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(stdlib.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_docstring(node)
                if text:
                    documents.append(text)
    return documents


def split_of(text: str) -> str:
    """``train`` (80%), ``calibration`` (10%) or ``eval`` (10%), from the text's sha256."""
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 20
    if bucket < 2:
        return "eval"
    if bucket < 4:
        return "calibration"
    return "train"


def corpus_splits() -> dict[str, list[str]]:
    """The corpus as ``{"train", "calibration", "eval"}`` → documents (deterministic order).

    Disjoint by content hash (duplicates removed first). Parsing the standard
    library takes seconds, so the result is cached in ``zoo_dir()`` per Python version.
    """
    cache = zoo_dir() / f"tiny-lm-corpus-{ZOO_VERSION}-{_python_tag()}.json"
    if cache.is_file():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(cache.read_text())
            if set(data) == set(_SPLIT_NAMES):
                return data
    unique: dict[str, str] = {}
    for text in _topic_documents() + _docstring_documents():
        text = text.strip()
        if len(text) >= _MIN_DOC_CHARS:
            unique.setdefault(hashlib.sha256(text.encode()).hexdigest(), text)
    splits: dict[str, list[str]] = {name: [] for name in _SPLIT_NAMES}
    for digest in sorted(unique):
        splits[split_of(unique[digest])].append(unique[digest])
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(splits))
    temporary.replace(cache)
    return splits


def corpus_sha256(splits: dict[str, list[str]]) -> str:
    return hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- tokenizer


def _tokenizer_dir() -> Path:
    payload = json.dumps({"version": ZOO_VERSION, "vocab": SPECS["tiny-lm"].vocab_size, "python": _python_tag()})
    return zoo_dir() / f"tiny-lm-tokenizer-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def _train_sentencepiece(train: list[str], vocab_size: int, destination: Path) -> None:
    import io

    import sentencepiece as spm

    # One sentence per line of text: newlines themselves are encoded by byte fallback (<0x0A>), as in Llama.
    lines = [line for document in train for line in document.splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=-1,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=1 << 16,
        minloglevel=2,
    )
    (destination / "tokenizer.model").write_bytes(model.getvalue())


def _write_hf_tokenizer_files(folder: Path, max_length: int) -> None:
    """``tokenizer_config.json`` + ``tokenizer.json`` beside ``tokenizer.model`` (transformers reads them)."""
    from transformers import AutoTokenizer

    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.save_pretrained(folder)


def ensure_tokenizer(splits: dict[str, list[str]] | None = None) -> Path:
    """Folder holding the shared tokenizer (``tokenizer.model`` + HF files), trained once."""
    folder = _tokenizer_dir()
    if (folder / "tokenizer.model").is_file():
        return folder
    with _lock("tiny-lm-tokenizer"):
        if (folder / "tokenizer.model").is_file():
            return folder
        splits = splits or corpus_splits()
        spec = SPECS["tiny-lm"]
        with _staging(folder) as staging:
            _train_sentencepiece(splits["train"], spec.vocab_size, staging)
            _write_hf_tokenizer_files(staging, spec.max_position_embeddings)
            _check_tokenizer_agrees(staging)
    return folder


def _check_tokenizer_agrees(folder: Path) -> None:
    """The HF tokenizer must give SentencePiece's ids: llama.cpp reads ``tokenizer.model`` itself."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    processor = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    sample = "The quick  brown fox\n    def f(x):\n        return x ** 2  # 1234 über ✓\n\nDone."
    expected = [BOS_ID, *processor.encode(sample)]
    got = tokenizer(sample)["input_ids"]
    if got != expected:
        raise RuntimeError(f"HF tokenizer ids differ from SentencePiece's: {got[:20]} vs {expected[:20]}")


def encode_documents(tokenizer, documents: list[str]) -> list[int]:
    """One token stream: each document as BOS + its tokens + EOS, in order."""
    stream: list[int] = []
    for document in documents:
        ids = tokenizer(document, add_special_tokens=False, verbose=False)["input_ids"]
        stream.extend([BOS_ID, *ids, EOS_ID])
    return stream


# --------------------------------------------------------------------------- model


def llama_config(spec: TinyLMSpec):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        attention_bias=False,
        mlp_bias=False,
    )


def _learning_rate(spec: TinyLMSpec, step: int) -> float:
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _train(spec: TinyLMSpec, stream: list[int], progress: Progress) -> tuple[object, list[float]]:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(llama_config(spec))
    model.train()
    seq = spec.train_seq_len
    count = len(stream) // seq
    if count < spec.batch_size:
        raise RecipeError(f"the training text has {len(stream)} tokens, too few for batches of {spec.batch_size}")
    chunks = torch.tensor(stream[: count * seq], dtype=torch.long).view(count, seq)
    generator = torch.Generator().manual_seed(spec.seed)
    decay = [p for name, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for name, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.learning_rate,
        betas=(0.9, 0.95),
    )
    order = torch.randperm(count, generator=generator)
    position = 0
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(spec.steps):
        if position + spec.batch_size > count:
            order, position = torch.randperm(count, generator=generator), 0
        batch = chunks[order[position : position + spec.batch_size]]
        position += spec.batch_size
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(spec, step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 10 == 9 or step == spec.steps - 1:
            elapsed = time.perf_counter() - started
            remaining = elapsed / (step + 1) * (spec.steps - step - 1)
            progress(
                (step + 1) / spec.steps,
                f"step {step + 1}/{spec.steps}: loss {sum(losses[-10:]) / len(losses[-10:]):.3f} "
                f"({elapsed:.0f} s, ~{remaining:.0f} s left)",
            )
    model.eval()
    return model, losses


def _eval_loss(model, stream: list[int], seq: int, max_windows: int = 32) -> float:
    import torch

    count = min(len(stream) // seq, max_windows)
    if count == 0:
        return float("nan")
    chunks = torch.tensor(stream[: count * seq], dtype=torch.long).view(count, seq)
    with torch.inference_mode():
        return float(model(input_ids=chunks, labels=chunks).loss)


def build_tiny_lm(key: str = "tiny-lm", *, progress: Progress | None = None) -> Path:
    """Train (or reuse) zoo model ``key`` and return its folder (see the module docstring).

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``
    (float32), the tokenizer (``tokenizer.model``, ``tokenizer.json``,
    ``tokenizer_config.json``) and ``tiny_lm.json`` (spec, corpus hash, split
    sizes, losses). ``progress(fraction, message)`` gets 0..1.
    """
    spec = _spec(key)
    report = progress or (lambda fraction, message: None)
    final = model_dir(key)
    if (final / "model.safetensors").is_file():
        return final
    with _lock(final.name):
        if (final / "model.safetensors").is_file():
            return final
        for stale in final.parent.glob(f".{final.name}.*"):  # a build killed before it could clean up
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        report(0.0, f"zoo:{key}: preparing the corpus (Python documentation and standard-library docstrings)")
        splits = corpus_splits()
        report(0.02, "training the SentencePiece tokenizer (BPE, byte fallback)")
        tokenizer_folder = ensure_tokenizer(splits)
        from transformers import AutoTokenizer

        from optimizers.models.training import deterministic_threads

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
        train_stream = encode_documents(tokenizer, splits["train"])
        eval_stream = encode_documents(tokenizer, splits["eval"])
        report(0.05, f"training {spec.key}: {spec.steps} steps on {len(train_stream)} tokens")
        started = time.perf_counter()
        with deterministic_threads(TRAIN_THREADS):
            model, losses = _train(spec, train_stream, lambda fraction, message: report(0.05 + 0.9 * fraction, message))
            eval_loss = _eval_loss(model, eval_stream, spec.train_seq_len)
        seconds = time.perf_counter() - started
        with _staging(final) as staging:
            model.save_pretrained(staging)
            for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
                shutil.copy2(tokenizer_folder / name, staging / name)
            for extra in sorted(tokenizer_folder.glob("special_tokens_map.json")):
                shutil.copy2(extra, staging / extra.name)
            record = {
                "zoo_version": ZOO_VERSION,
                "spec": asdict(spec),
                "python": _python_tag(),
                "corpus_sha256": corpus_sha256(splits),
                "split_documents": {name: len(texts) for name, texts in splits.items()},
                "train_tokens": len(train_stream),
                "eval_tokens": len(eval_stream),
                "final_train_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
                "eval_loss": round(eval_loss, 4),
                "parameters": sum(p.numel() for p in model.parameters()),
                "train_threads": TRAIN_THREADS,
            }
            (staging / "tiny_lm.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        # Timing is not part of the folder (it would change the folder's hash): keep it beside it.
        (final.parent / f"{final.name}.build.json").write_text(json.dumps({"train_seconds": round(seconds, 1)}))
        report(
            1.0, f"zoo:{key} ready: eval loss {eval_loss:.3f} (perplexity {math.exp(eval_loss):.1f}), {seconds:.0f} s"
        )
    return final


def build_record(key: str) -> dict:
    """The ``tiny_lm.json`` of a built model (spec, corpus hash, losses)."""
    return json.loads((tiny_lm_folder(key, build=False) / "tiny_lm.json").read_text())


__all__ = [
    "SPECS",
    "TinyLMSpec",
    "build_record",
    "build_tiny_lm",
    "cache_key",
    "corpus_splits",
    "encode_documents",
    "ensure_tokenizer",
    "is_built",
    "model_dir",
    "split_of",
    "tiny_lm_folder",
    "zoo_dir",
]
