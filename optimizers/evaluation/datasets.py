"""Evaluation and calibration text, built in or uploaded as JSONL.

The built-in ``zoo:pydoc-retrieval`` set is made of (query, passage) pairs cut
from the English documentation in ``pydoc_data.topics``: the first sentence of
a paragraph is the query, the rest of the paragraph its passage. Each pair is
assigned to a split by the hash of its content, so splits are disjoint by
construction and stable across machines; ``check_disjoint`` verifies it for
any two sets (calibration must never overlap evaluation).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from optimizers.errors import RecipeError

Split = Literal["train", "calibration", "eval"]
BUILTIN_RETRIEVAL = "zoo:pydoc-retrieval"
_MAX_JSONL_BYTES = 200 * 1024 * 1024
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")


@dataclass(frozen=True)
class TextPair:
    query: str
    passage: str

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.query}\0{self.passage}".encode()).hexdigest()


@dataclass
class TextDataset:
    """Texts to embed and, optionally, retrieval pairs over them."""

    name: str
    texts: list[str]
    pairs: list[TextPair] = field(default_factory=list)

    def content_hashes(self) -> set[str]:
        return {hashlib.sha256(text.encode()).hexdigest() for text in self.texts}


def _split_of(content_hash: str) -> Split:
    bucket = int(content_hash[:8], 16) % 10
    if bucket < 4:
        return "eval"
    if bucket < 6:
        return "calibration"
    return "train"


def _pydoc_pairs() -> list[TextPair]:
    from pydoc_data.topics import topics

    pairs: dict[str, TextPair] = {}
    seen_texts: set[str] = set()  # a text in two pairs could land in two splits
    for key in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[key]):
            if any(line.startswith("   ") for line in block.splitlines()):
                continue  # indented blocks are code samples or grammar, not prose
            text = " ".join(block.split())
            sentences = _SENTENCE_END.split(text)
            if len(text) < 160 or len(sentences) < 2:
                continue
            query, passage = sentences[0], " ".join(sentences[1:])
            if len(query) < 30 or len(passage) < 60:
                continue
            if query in seen_texts or passage in seen_texts:
                continue
            seen_texts.update((query, passage))
            pair = TextPair(query=query, passage=passage)
            pairs[pair.content_hash] = pair
    return [pairs[key] for key in sorted(pairs)]


def pydoc_retrieval(split: Split = "eval", max_samples: int | None = None) -> TextDataset:
    """The built-in retrieval set restricted to one split (deterministic order)."""
    selected = [pair for pair in _pydoc_pairs() if _split_of(pair.content_hash) == split]
    if max_samples is not None:
        selected = selected[:max_samples]
    texts = [pair.query for pair in selected] + [pair.passage for pair in selected]
    return TextDataset(name=f"{BUILTIN_RETRIEVAL}/{split}", texts=texts, pairs=selected)


def load_jsonl(path: Path, max_samples: int | None = None) -> TextDataset:
    """Read a JSONL text set: lines ``{"text": ...}`` or ``{"query": ..., "passage": ...}``.

    Raises ``RecipeError`` naming the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"dataset file not found: {path}")
    if path.stat().st_size > _MAX_JSONL_BYTES:
        raise RecipeError(f"dataset {path.name} is larger than {_MAX_JSONL_BYTES // (1024 * 1024)} MB")
    texts: list[str] = []
    pairs: list[TextPair] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecipeError(f"{path.name} line {number} is not valid JSON: {error.msg}") from None
            if isinstance(row, dict) and isinstance(row.get("query"), str) and isinstance(row.get("passage"), str):
                pairs.append(TextPair(query=row["query"], passage=row["passage"]))
            elif isinstance(row, dict) and isinstance(row.get("text"), str):
                texts.append(row["text"])
            else:
                raise RecipeError(f"{path.name} line {number} needs a string 'text', or 'query' and 'passage'")
            if max_samples is not None and len(texts) + len(pairs) >= max_samples:
                break
    texts.extend(pair.query for pair in pairs)
    texts.extend(pair.passage for pair in pairs)
    if not texts:
        raise RecipeError(f"dataset {path.name} has no rows")
    return TextDataset(name=path.name, texts=texts, pairs=pairs)


def load_text_dataset(reference: str | None, *, split: Split = "eval", max_samples: int | None = None) -> TextDataset:
    """Resolve a recipe's ``dataset`` (``None`` → the built-in set) for ``split``."""
    if reference is None or reference == BUILTIN_RETRIEVAL:
        return pydoc_retrieval(split, max_samples)
    if reference.startswith("zoo:"):
        raise RecipeError(f"unknown demo dataset '{reference}'; available: {BUILTIN_RETRIEVAL}")
    return load_jsonl(Path(reference), max_samples)


def check_disjoint(calibration: TextDataset, evaluation: TextDataset) -> None:
    """Refuse calibration data that overlaps the evaluation data (by content hash)."""
    if not calibration.texts:
        raise RecipeError(f"calibration set {calibration.name} is empty")
    overlap = calibration.content_hashes() & evaluation.content_hashes()
    if overlap:
        raise RecipeError(
            f"calibration set {calibration.name} shares {len(overlap)} texts with evaluation set "
            f"{evaluation.name}; evaluation must be held out"
        )
