"""Model cards: what a variant is, how it was made, how good and fast it is, and what it costs.

A card is built as data (``ModelCard``: sections of facts, paragraphs, one
table and an optional code block) from a report, then rendered: Markdown here
(``ModelCard.to_markdown``), HTML by the dashboard's templates from the same
structure (so HTML escaping stays the template engine's job).

Two cards exist for every packaged variant:

- the *snapshot* in the zip (``MODEL_CARD.md``, from ``packaged_card``): written
  when the job packages its variants, so it cannot know the zip's own sha256
  or approvals given later; its cost table uses the seed price list;
- the *live* card on the dashboard (``/jobs/<id>/artifacts/<id>/card.md``): the
  same sections plus the zip's sha256, approvals and the team's prices.

Text cells are escaped for Markdown (``|``, ``<``, ``*``, … cannot break a
table or inject HTML); identifiers and hashes go in ``Code`` cells, shown
verbatim in code spans.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from optimizers import cost as costs
from optimizers.gates import LOWER_IS_BETTER
from optimizers.report import Report, VariantReport

MODEL_CARD_NAME = "MODEL_CARD.md"


# --- structure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """Verbatim text (an identifier, a hash, a version) shown in a code span."""

    text: str
    is_code: ClassVar[bool] = True

    def __str__(self) -> str:
        return self.text


Cell = str | Code | None


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


@dataclass
class Section:
    """A heading with, in this order: facts (label: value), paragraphs, a table, a code block."""

    title: str
    facts: list[tuple[str, Cell]] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    table: Table | None = None
    code: str | None = None
    code_language: str = ""
    anchor: str = ""


@dataclass
class ModelCard:
    title: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """The section called ``title`` (``KeyError`` if there is none)."""
        for section in self.sections:
            if section.title == title:
                return section
        raise KeyError(title)

    def to_markdown(self) -> str:
        """CommonMark/GFM text; the same card always gives the same text."""
        lines = [f"# {escape_markdown(self.title)}", ""]
        for section in self.sections:
            lines += [f"## {escape_markdown(section.title)}", ""]
            if section.facts:
                lines += [
                    f"- **{escape_markdown(label)}**: {_md_cell(value, in_table=False)}"
                    for label, value in section.facts
                ]
                lines.append("")
            for paragraph in section.paragraphs:
                lines += [escape_markdown(paragraph, line_start=True), ""]
            if section.table is not None:
                lines.append("| " + " | ".join(escape_markdown(h) for h in section.table.headers) + " |")
                lines.append("|" + "---|" * len(section.table.headers))
                lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in section.table.rows]
                lines.append("")
            if section.code is not None:
                fence = "`" * max(3, _longest_run(section.code, "`") + 1)
                lines += [f"{fence}{section.code_language}", section.code, fence, ""]
        return "\n".join(lines).rstrip("\n") + "\n"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
_BLOCK_START = re.compile(r"^(\d+)([.)])|^([#+=-])")


def escape_markdown(text: str, *, line_start: bool = False) -> str:
    """Plain text as inline Markdown: newlines folded, markup characters backslash-escaped.

    Emphasis, links, code, HTML tags and entities and table pipes come out as
    literal text; with ``line_start`` (a paragraph), so do block markers such
    as ``#``, ``-`` or ``1.`` at the beginning.
    """
    line = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    if line_start:
        line = _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", line)
    return line


def _longest_run(text: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)


def _md_code(text: str, in_table: bool) -> str:
    text = " ".join(text.split())
    if in_table:
        text = text.replace("|", "\\|")  # GFM: a bare pipe ends the cell even inside a code span
    ticks = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _md_cell(cell: Cell, in_table: bool = True) -> str:
    if cell is None or cell == "":
        return "—"
    if isinstance(cell, Code):
        return _md_code(cell.text, in_table)
    return escape_markdown(cell)


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """The held-out data a variant was judged on: a name and content fingerprints."""

    name: str
    file_sha256: str | None = None
    #: sha256 over the sorted sha256 of every evaluated text: same texts, same fingerprint.
    eval_fingerprint: str | None = None
    texts: int | None = None
    pairs: int | None = None
    note: str = ""


@dataclass(frozen=True)
class ApprovalInfo:
    reviewer: str
    decision: str
    at: str
    comment: str = ""


@dataclass(frozen=True)
class CostLine:
    """A cost figure for the card: value, formula, the inputs substituted, any hardware warning."""

    label: str
    value: str
    formula: str
    inputs: str
    #: Why the figure rests on other hardware; "" when it does not; None when hardware does not enter it.
    warning: str | None = ""


def evaluation_data_info(
    recipe: Mapping[str, Any], *, display_name: str | None = None, task: str = "feature-extraction"
) -> DatasetInfo:
    """Name and fingerprints of the evaluation data a recipe used (``recipe["dataset"]``, None = built-in).

    For ``feature-extraction`` it loads the evaluation split the way the
    evaluator does (same ``max_samples``) and fingerprints the texts; for any
    task it hashes an uploaded file. Never raises: a dataset that cannot be
    read any more gives a ``DatasetInfo`` with a ``note`` and no hashes.
    """
    from optimizers.errors import InferOptError
    from optimizers.evaluation.datasets import BUILTIN_RETRIEVAL, load_text_dataset
    from optimizers.hashing import sha256_file
    from optimizers.recipe import EvaluationSettings

    reference = recipe.get("dataset")
    evaluation = recipe.get("evaluation")
    default = EvaluationSettings().max_samples
    max_samples = evaluation.get("max_samples", default) if isinstance(evaluation, Mapping) else default
    name = display_name or reference or BUILTIN_RETRIEVAL
    if task != "feature-extraction":
        try:
            file_sha256 = sha256_file(Path(reference)) if reference and not reference.startswith("zoo:") else None
        except OSError as error:
            return DatasetInfo(name=str(display_name or reference), note=f"could not hash the dataset: {error}")
        return DatasetInfo(
            name=str(display_name or reference or f"built-in {task} evaluation set"), file_sha256=file_sha256
        )
    try:
        dataset = load_text_dataset(reference, split="eval", max_samples=max_samples)
        file_sha256 = sha256_file(Path(reference)) if reference and not reference.startswith("zoo:") else None
    except (InferOptError, OSError) as error:
        return DatasetInfo(name=str(name), note=f"could not read the dataset to fingerprint it: {error}")
    fingerprint = hashlib.sha256("\n".join(sorted(dataset.content_hashes())).encode()).hexdigest()
    return DatasetInfo(
        name=str(name) if display_name or reference else dataset.name,
        file_sha256=file_sha256,
        eval_fingerprint=fingerprint,
        texts=len(dataset.texts),
        pairs=len(dataset.pairs),
    )


# --- building ---------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _find(report: Report, variant_name: str | int) -> tuple[int, VariantReport]:
    if isinstance(variant_name, int):
        if not 0 <= variant_name < len(report.variants):
            raise KeyError(f"no variant #{variant_name} in the report")
        return variant_name, report.variants[variant_name]
    for index, variant in enumerate(report.variants):
        if variant.name == variant_name:
            return index, variant
    raise KeyError(f"no variant {variant_name!r} in the report")


def _summary(report: Report, index: int, variant: VariantReport, job: str | None, artifact_sha256: str | None):
    gate = variant.gate.outcome if variant.gate else ("baseline (not judged)" if index == 0 else "not judged")
    facts: list[tuple[str, Cell]] = [
        ("Base model", Code(report.model)),
        ("Task", Code(report.task)),
        ("Variant", Code(variant.name)),
        ("Format", Code(variant.format)),
        ("Produced by", Code(variant.produced_by) if variant.produced_by else "the baseline itself"),
        ("Size", _mib(variant.size_bytes)),
        ("Content sha256", Code(variant.sha256)),
        ("Parent sha256", Code(variant.parent_sha256) if variant.parent_sha256 else None),
        ("Gate outcome", gate.replace("_", " ")),
    ]
    if job:
        facts.insert(0, ("Job", job))
    if artifact_sha256:
        facts.append(("Download (zip) sha256", Code(artifact_sha256)))
    return Section("Summary", facts=facts, anchor="summary")


def _recipe(report: Report, index: int) -> Section:
    steps = report.recipe.get("steps") or []
    if len(report.variants) - 1 == len(steps):
        made_by = steps[:index]  # a recipe run: variant i is the output of the first i steps
    else:
        made_by = steps if index == len(report.variants) - 1 and index > 0 else []  # e.g. one search candidate
    rows: list[list[Cell]] = []
    for number, step in enumerate(made_by, start=1):
        config = {key: value for key, value in step.items() if key != "pass"} if isinstance(step, dict) else {}
        rows.append([str(number), Code(str(step.get("pass", "?")) if isinstance(step, dict) else str(step)),
                     Code(json.dumps(config, sort_keys=True)) if config else "defaults"])  # fmt: skip
    section = Section(
        "Recipe",
        paragraphs=["The steps that made this variant, in order (each takes the previous step's output)."]
        if rows
        else ["The baseline: the model as given, no optimization step."],
        table=Table(["Step", "Pass", "Config"], rows) if rows else None,
        code=json.dumps(report.recipe, indent=2, sort_keys=True, default=str),
        code_language="json",
        anchor="recipe",
    )
    return section


def _data(report: Report, dataset: DatasetInfo | None) -> Section:
    facts: list[tuple[str, Cell]] = [("Base model content sha256", Code(report.baseline.sha256))]
    if dataset is not None:
        facts.append(("Evaluation data", Code(dataset.name)))
        if dataset.file_sha256:
            facts.append(("Dataset file sha256", Code(dataset.file_sha256)))
        if dataset.eval_fingerprint:
            facts.append(("Evaluated texts fingerprint (sha256)", Code(dataset.eval_fingerprint)))
        if dataset.texts is not None:
            facts.append(("Evaluated", f"{dataset.texts} texts, {dataset.pairs or 0} retrieval pairs"))
    else:
        facts.append(("Evaluation data", Code(str(report.recipe.get("dataset") or "zoo:pydoc-retrieval"))))
    paragraphs = [dataset.note] if dataset is not None and dataset.note else []
    return Section("Data", facts=facts, paragraphs=paragraphs, anchor="data")


def _metrics(report: Report, variant: VariantReport) -> Section:
    baseline = report.baseline.metrics
    rows: list[list[Cell]] = []
    for name, value in variant.metrics.items():
        if name.endswith(("_ci_low", "_ci_high")) and name.rsplit("_ci_", 1)[0] in variant.metrics:
            continue
        low, high = variant.metrics.get(f"{name}_ci_low"), variant.metrics.get(f"{name}_ci_high")
        ci = f"[{_num(low)}, {_num(high)}]" if low is not None and high is not None else None
        base = baseline.get(name)
        delta = None if base is None else f"{value - base:+.3g}"
        rows.append([Code(name), _num(value), ci, _num(base), delta])
    return Section(
        "Quality",
        paragraphs=[
            "Measured on the held-out evaluation data; delta is this variant minus the baseline. Higher is better "
            "except for " + ", ".join(sorted(LOWER_IS_BETTER)) + "."
        ],
        table=Table(["Metric", "This variant", "95% CI", "Baseline", "Delta"], rows),
        anchor="quality",
    )


def _gate(variant: VariantReport, index: int) -> Section:
    if variant.gate is None:
        text = "The baseline is what candidates are judged against." if index == 0 else "No gate was evaluated."
        return Section("Quality gate", paragraphs=[text], anchor="gate")
    rows: list[list[Cell]] = [
        [
            Code(rule.metric),
            rule.kind.replace("_", " "),
            _num(rule.threshold),
            _num(rule.baseline),
            _num(rule.candidate),
            "yes" if rule.passed else "no",
            rule.detail or None,
        ]
        for rule in variant.gate.rules
    ]
    return Section(
        "Quality gate",
        facts=[("Outcome", variant.gate.outcome.replace("_", " "))],
        paragraphs=list(variant.gate.reasons),
        table=Table(["Metric", "Rule", "Threshold", "Baseline", "Candidate", "Passed", "Detail"], rows),
        anchor="gate",
    )


def _benchmark(report: Report, variant: VariantReport) -> Section:
    info = variant.benchmark_info
    facts: list[tuple[str, Cell]] = []
    if info is not None:
        facts = [
            ("Hardware", info.device),
            ("Runtime", Code(info.runtime)),
            ("Threads", Code(json.dumps(info.threads, sort_keys=True)) if info.threads else None),
            ("Isolated process", "yes" if info.isolated_process else "no"),
            ("Peak RSS", f"{info.peak_rss_mb:.0f} MB" if info.peak_rss_mb is not None else None),
        ]
    baseline = report.baseline.benchmark
    rows: list[list[Cell]] = []
    for key in sorted(variant.benchmark, key=int):
        stats = variant.benchmark[key]
        base = baseline.get(key)
        speedup = f"{base.p50_ms / stats.p50_ms:.2f}×" if base is not None and stats.p50_ms > 0 else None
        rows.append([
            key, str(stats.seq_len), _num(stats.p50_ms), _num(stats.p95_ms), _num(stats.p99_ms),
            _num(stats.throughput_per_s), speedup, str(stats.iterations), "yes" if stats.stable else "no",
        ])  # fmt: skip
    return Section(
        "Benchmark",
        facts=facts,
        paragraphs=[
            "Latency in milliseconds per batch; throughput in items per second; speedup is baseline p50 ÷ "
            "this variant's p50 at the same batch size."
        ],  # fmt: skip
        table=Table(
            ["Batch", "Seq len", "p50 ms", "p95 ms", "p99 ms", "Throughput /s", "Speedup", "Iterations", "Stable"],
            rows,
        ),
        anchor="benchmark",
    )


def _hardware_cell(warning: str | None) -> str | None:
    if warning is None:
        return None
    return warning or "same hardware as the benchmark"


def _cost(lines: Sequence[CostLine] | None, note: str) -> Section:
    if not lines:
        return Section("Cost", paragraphs=[note or "No cost was computed."], anchor="cost")
    rows: list[list[Cell]] = [
        [line.label, line.value, f"{line.formula}: {line.inputs}", _hardware_cell(line.warning)] for line in lines
    ]
    return Section(
        "Cost",
        paragraphs=[note] if note else [],
        table=Table(["Figure", "Value", "Formula and inputs", "Hardware"], rows),
        anchor="cost",
    )


def _versions(report: Report) -> Section:
    env = report.environment
    versions = env.get("library_versions") or {}
    facts: list[tuple[str, Cell]] = [
        ("Python", Code(str(env["python"])) if env.get("python") else None),
        ("Platform", Code(str(env["platform"])) if env.get("platform") else None),
        ("Quick benchmark", "yes" if env.get("quick_benchmark") else "no"),
    ]
    return Section(
        "Library versions",
        facts=facts,
        table=Table(["Library", "Version"], [[Code(name), Code(str(versions[name]))] for name in sorted(versions)]),
        anchor="versions",
    )


def _approvals(approvals: Sequence[ApprovalInfo] | None, note: str) -> Section:
    if approvals is None:
        return Section("Approvals", paragraphs=[note or "Approvals are not part of this card."], anchor="approvals")
    if not approvals:
        return Section("Approvals", paragraphs=[note or "No approval recorded."], anchor="approvals")
    rows: list[list[Cell]] = [[a.reviewer, a.decision, a.at, a.comment or None] for a in approvals]
    return Section(
        "Approvals",
        paragraphs=[note] if note else [],
        table=Table(["Reviewer", "Decision", "When", "Comment"], rows),
        anchor="approvals",
    )


def build_model_card(
    report: Report,
    variant_name: str | int,
    *,
    job: str | None = None,
    artifact_sha256: str | None = None,
    dataset: DatasetInfo | None = None,
    cost_lines: Sequence[CostLine] | None = None,
    cost_note: str = "",
    approvals: Sequence[ApprovalInfo] | None = None,
    approvals_note: str = "",
) -> ModelCard:
    """The card of ``variant_name`` (or the variant at that index) in ``report``; ``KeyError`` if there is none.

    ``approvals`` None means "not known here" (the note says where to look);
    an empty list means none were given.
    """
    index, variant = _find(report, variant_name)
    return ModelCard(
        title=f"Model card: {variant.name} of {report.model}",
        sections=[
            _summary(report, index, variant, job, artifact_sha256),
            _recipe(report, index),
            _data(report, dataset),
            _metrics(report, variant),
            _gate(variant, index),
            _benchmark(report, variant),
            _cost(cost_lines, cost_note),
            _versions(report),
            _approvals(approvals, approvals_note),
        ],
    )


def cost_lines(breakdown: costs.CostBreakdown, variant: str | int) -> list[CostLine]:
    """The figures of one variant (by name or index) in ``breakdown``, plus the job's own cost, as card lines."""
    lines: list[CostLine] = []
    if isinstance(variant, int):
        row = breakdown.variants[variant] if 0 <= variant < len(breakdown.variants) else None
    else:
        row = next((row for row in breakdown.variants if row.variant == variant), None)
    warning = "" if row is None or row.hardware.matches else row.hardware.reason
    where = f"on {breakdown.instance.name}, batch {breakdown.batch_size}"
    if row is not None and row.cost_per_million is None:
        lines.append(CostLine(f"cost per 1M {breakdown.unit} {where}", "—", "not computed", row.note, warning))
    if row is not None:
        for figure in (row.cost_per_million, row.monthly, row.monthly_saving, row.break_even):
            if figure is not None:
                label = figure.label if figure is not row.cost_per_million else f"{figure.label} {where}"
                lines.append(CostLine(label, figure.display, figure.formula, figure.inputs, warning))
    if breakdown.optimization is not None:
        figure = breakdown.optimization
        lines.append(CostLine(figure.label, figure.display, figure.formula, figure.inputs, warning=None))
    return lines


def seed_cost_lines(report: Report, variant_name: str) -> tuple[list[CostLine], str]:
    """Cost per 1M on each seed-catalogue instance at the largest measured batch size, and a note."""
    batches = costs.measured_batch_sizes(report)
    if not batches:
        return [], "No benchmark was recorded, so no cost can be computed."
    batch = batches[-1]
    lines: list[CostLine] = []
    for instance in costs.SEED_CATALOGUE:
        breakdown = costs.cost_breakdown(report, instance, batch_size=batch)
        lines += [line for line in cost_lines(breakdown, variant_name) if line.label.startswith("cost per 1M")]
    note = (
        f"Serving cost at batch {batch} from the measured throughput, at approximate list prices as of "
        f"{costs.PRICE_DATE:%B %Y} (on-demand; check your provider). Figures flagged in the Hardware column rest on "
        "a benchmark from other hardware than the instance. The dashboard recomputes them with your team's prices, "
        "traffic and batch size."
    )
    return lines, note


def packaged_card(report: Report, variant_name: str, *, job: str, dataset: DatasetInfo | None, live_url: str) -> str:
    """``MODEL_CARD.md`` for the zip of ``variant_name``: a deterministic snapshot at packaging time."""
    lines, note = seed_cost_lines(report, variant_name)
    card = build_model_card(
        report,
        variant_name,
        job=job,
        dataset=dataset,
        cost_lines=lines,
        cost_note=note,
        approvals=None,
        approvals_note=(
            f"This card was written when the variant was packaged, before any review. Approvals, the zip's own "
            f"sha256 and costs at your prices are on the live card: {live_url}"
        ),
    )
    return card.to_markdown()


def card_file_name(folder: Path) -> str:
    """``MODEL_CARD.md``, or ``INFEROPT_MODEL_CARD.md`` when the artifact folder already has one."""
    return MODEL_CARD_NAME if not (Path(folder) / MODEL_CARD_NAME).exists() else f"INFEROPT_{MODEL_CARD_NAME}"


def data_manifest(report: Report, dataset: DatasetInfo | None) -> dict[str, Any]:
    """The data hashes for ``manifest.json``: base model content hash and the evaluation data's."""
    data: dict[str, Any] = {
        "model": report.model,
        "baseline_sha256": report.baseline.sha256 if report.variants else None,
    }
    if dataset is not None:
        data.update(
            dataset=dataset.name,
            dataset_file_sha256=dataset.file_sha256,
            eval_fingerprint_sha256=dataset.eval_fingerprint,
            eval_texts=dataset.texts,
            eval_pairs=dataset.pairs,
        )
    return data
