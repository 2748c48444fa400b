"""The new-job form, generated from the pass registry's config JSON schemas.

Each pass gets an "enabled" checkbox, an "order" number and one field per config
property (boolean → checkbox, integer/number → number input with min/max,
enum → select, string → text, list → comma-separated text). The form only
converts values; ``Recipe.parse`` is the single validator, and its
``RecipeError`` message is shown on the form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django import forms

from optimizers.serving.continuous import ContinuousBatchingOptions
from optimizers.serving.kv_quant import SUPPORTED_BITS, KVQuantOptions
from optimizers.serving.speculative import SpeculativeOptions
from webapp.accounts.services import teams_of
from webapp.catalog.models import Dataset, ModelEntry

#: Default step order: the usual chain first, other passes after them by name.
DEFAULT_STEP_ORDER = ["onnx_export", "ort_optimize", "ort_quantize_dynamic", "torch_quantize_dynamic"]


@dataclass
class ConfigField:
    """One config property of a pass, as the form shows it."""

    key: str
    kind: str  # bool, int, float, choice, multi, text, list, json
    title: str
    description: str = ""
    default: Any = None
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: list[Any] = field(default_factory=list)
    item_kind: str = "text"


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Inline ``$ref``/``allOf`` and unwrap ``anyOf [X, null]``; return (schema, nullable)."""
    schema = dict(schema)
    nullable = False
    if "$ref" in schema:
        target = defs.get(schema.pop("$ref").rsplit("/", 1)[-1], {})
        schema = {**target, **schema}
    if "allOf" in schema and len(schema["allOf"]) == 1:
        inner, _ = _resolve(schema.pop("allOf")[0], defs)
        schema = {**inner, **schema}
    if "anyOf" in schema:
        options = schema.pop("anyOf")
        non_null = [option for option in options if option.get("type") != "null"]
        nullable = len(non_null) < len(options)
        if len(non_null) == 1:
            inner, _ = _resolve(non_null[0], defs)
            schema = {**inner, **schema}
    return schema, nullable


def config_fields(config_schema: dict[str, Any]) -> list[ConfigField]:
    """Form field specs for a pass's ``config_schema`` (pydantic JSON schema)."""
    defs = config_schema.get("$defs", {})
    specs = []
    for key, raw in config_schema.get("properties", {}).items():
        schema, nullable = _resolve(raw, defs)
        spec = ConfigField(
            key=key,
            kind="json",
            title=schema.get("title") or key.replace("_", " "),
            description=schema.get("description", ""),
            default=schema.get("default"),
            nullable=nullable,
        )
        kind = schema.get("type")
        if "enum" in schema or "const" in schema:
            spec.kind = "choice"
            spec.choices = list(schema.get("enum", [schema.get("const")]))
        elif kind == "boolean":
            spec.kind = "bool"
        elif kind in ("integer", "number"):
            spec.kind = "int" if kind == "integer" else "float"
            spec.minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
            spec.maximum = schema.get("maximum", schema.get("exclusiveMaximum"))
        elif kind == "string":
            spec.kind = "text"
        elif kind == "array" and isinstance(schema.get("items"), dict):
            items, _ = _resolve(schema["items"], defs)
            if "enum" in items:
                spec.kind = "multi"
                spec.choices = list(items["enum"])
            elif items.get("type") in ("string", "integer", "number"):
                spec.kind = "list"
                spec.item_kind = {"string": "text", "integer": "int", "number": "float"}[items["type"]]
        specs.append(spec)
    return specs


def _django_field(spec: ConfigField) -> forms.Field:
    common = {"required": False, "label": spec.title, "help_text": spec.description}
    if spec.kind == "bool":
        return forms.BooleanField(initial=bool(spec.default), **common)
    if spec.kind in ("int", "float"):
        attrs = {"step": "1" if spec.kind == "int" else "any"}
        if spec.minimum is not None:
            attrs["min"] = spec.minimum
        if spec.maximum is not None:
            attrs["max"] = spec.maximum
        field_class = forms.IntegerField if spec.kind == "int" else forms.FloatField
        return field_class(initial=spec.default, widget=forms.NumberInput(attrs=attrs), **common)
    if spec.kind == "choice":
        choices = [(json.dumps(value), str(value)) for value in spec.choices]
        if spec.nullable:
            choices.insert(0, ("", "— default —"))
        initial = json.dumps(spec.default) if spec.default is not None else ""
        return forms.ChoiceField(choices=choices, initial=initial, **common)
    if spec.kind == "multi":
        return forms.MultipleChoiceField(
            choices=[(json.dumps(value), str(value)) for value in spec.choices],
            initial=[json.dumps(value) for value in spec.default or []],
            widget=forms.CheckboxSelectMultiple,
            **common,
        )
    if spec.kind == "list":
        initial = ", ".join(str(value) for value in spec.default) if isinstance(spec.default, list) else ""
        return forms.CharField(initial=initial, **common)
    if spec.kind == "json":
        initial = json.dumps(spec.default) if spec.default is not None else ""
        return forms.CharField(initial=initial, widget=forms.Textarea(attrs={"rows": 2}), **common)
    return forms.CharField(initial=spec.default if spec.default is not None else "", **common)


def _convert(spec: ConfigField, value: Any) -> Any:
    """Form value → config value; ``None`` means "leave the pass's default"."""
    if spec.kind == "bool":
        return bool(value)
    if value is None or value == "" or value == []:
        return None
    if spec.kind == "multi":
        return [json.loads(item) for item in value]
    if spec.kind == "choice":
        return json.loads(value)
    if spec.kind == "list":
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        caster = {"int": int, "float": float}.get(spec.item_kind, str)
        try:
            return [caster(item) for item in items]
        except ValueError:
            raise forms.ValidationError(f"{spec.title}: expected a comma-separated list of numbers") from None
    if spec.kind == "json":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise forms.ValidationError(f"{spec.title}: not valid JSON") from None
    return value


@dataclass
class PassGroup:
    """Everything the template needs to draw one technique."""

    info: dict[str, Any]
    enabled: forms.BoundField
    order: forms.BoundField
    fields: list[forms.BoundField]


def _default_orders(pass_names: list[str]) -> dict[str, int]:
    ranked = [name for name in DEFAULT_STEP_ORDER if name in pass_names]
    ranked += sorted(name for name in pass_names if name not in DEFAULT_STEP_ORDER)
    return {name: (index + 1) * 10 for index, name in enumerate(ranked)}


def parse_int_list(text: str, what: str, example: str) -> list[int]:
    """Comma-separated integers → a list (empty for blank text); a ``ValidationError`` naming ``what`` otherwise."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise forms.ValidationError(f"{what} must be integers separated by commas, e.g. {example}") from None


def parse_batch_sizes(text: str) -> list[int]:
    sizes = parse_int_list(text, "batch sizes", "1,8")
    if not sizes:
        raise forms.ValidationError("give at least one batch size")
    return sizes


def parse_gate(text: str) -> list[dict[str, Any]] | None:
    """Lines ``metric kind threshold`` → gate rules (None when empty: the pipeline's default gate)."""
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise forms.ValidationError(f"gate line {number}: expected 'metric kind threshold'")
        try:
            threshold = float(parts[2])
        except ValueError:
            raise forms.ValidationError(f"gate line {number}: threshold must be a number") from None
        rules.append({"metric": parts[0], "kind": parts[1], "threshold": threshold})
    return rules or None


#: ``benchmark.variants`` the new-job form offers (see ``optimizers.benchmark.variants``).
BENCHMARK_VARIANT_CHOICES = [
    ("fp16", "FP16 on the GPU"),
    ("bf16", "BF16 on the GPU"),
    ("eager_attention", "eager attention"),
    ("sdpa", "SDPA attention"),
    ("fp16+flash_attention", "flash attention 2 (FP16, GPU)"),
    ("torch_compile", "torch.compile"),
    ("fp16+torch_compile", "FP16 + torch.compile (GPU)"),
]


class NewJobForm(forms.Form):
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    model = forms.ModelChoiceField(queryset=None, empty_label=None)
    dataset = forms.ModelChoiceField(
        queryset=None, required=False, empty_label="— built-in evaluation set —", label="Evaluation dataset"
    )
    name = forms.CharField(max_length=200, required=False, help_text="Optional; generated from the steps if empty.")
    batch_sizes = forms.CharField(initial="1,8", label="Benchmark batch sizes", help_text="Comma-separated.")
    seq_len = forms.IntegerField(initial=128, label="Sequence length", widget=forms.NumberInput(attrs={"min": 1}))
    benchmark_variants = forms.MultipleChoiceField(
        required=False,
        label="Runtime variants of the baseline",
        choices=BENCHMARK_VARIANT_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text="Extra benchmark rows for the PyTorch baseline (same model, other runtime settings). "
        "FP16, BF16 and flash attention need a GPU worker (the job prefers one) and are reported as "
        "skipped elsewhere; SDPA vs eager attention and torch.compile also run on a CPU.",
    )
    evaluation_samples = forms.IntegerField(
        required=False,
        initial=256,
        min_value=1,
        max_value=100_000,
        label="Evaluation samples",
        help_text="Held-out rows (retrieval pairs) to evaluate on.",
        widget=forms.NumberInput(attrs={"min": 1}),
    )
    profile = forms.BooleanField(
        initial=True,
        required=False,
        label="Profile the baseline first",
        help_text="Pre/model/post time split and top operators. Measure before optimizing.",
    )
    gate = forms.CharField(
        required=False,
        label="Gate rules",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "cosine absolute_drop 0.01\np50_ms min_speedup 1.2"}),
        help_text="One rule per line: metric kind threshold. Kinds: absolute_drop, relative_drop, "
        "recovery_ratio, min_speedup, max_size_ratio. Empty: the default gate.",
    )

    def __init__(self, *args, user, passes: list[dict[str, Any]], unavailable: dict[str, str] | None = None, **kwargs):
        """``unavailable``: pass name → why no live worker can run it; those checkboxes are disabled."""
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams_of(user)
        self.fields["model"].queryset = ModelEntry.objects.visible_to(user)
        self.fields["dataset"].queryset = Dataset.objects.visible_to(user)
        unavailable = unavailable or {}
        passes = [{**info, "unavailable": unavailable.get(info["name"], "")} for info in passes]
        self.passes = passes
        self.config_specs: dict[str, list[ConfigField]] = {}
        orders = _default_orders([info["name"] for info in passes])
        for info in passes:
            name = info["name"]
            # A disabled field ignores what is posted: a technique no live worker can run is never submitted here.
            self.fields[f"p__{name}__enabled"] = forms.BooleanField(
                required=False, label=info["title"], disabled=bool(info["unavailable"])
            )
            self.fields[f"p__{name}__order"] = forms.IntegerField(
                required=False, initial=orders[name], label="Order", widget=forms.NumberInput(attrs={"step": 1})
            )
            self.config_specs[name] = config_fields(info.get("config_schema", {}))
            for spec in self.config_specs[name]:
                self.fields[f"p__{name}__cfg__{spec.key}"] = _django_field(spec)

    def pass_groups(self) -> list[PassGroup]:
        groups = []
        for info in self.passes:
            name = info["name"]
            groups.append(
                PassGroup(
                    info=info,
                    enabled=self[f"p__{name}__enabled"],
                    order=self[f"p__{name}__order"],
                    fields=[self[f"p__{name}__cfg__{spec.key}"] for spec in self.config_specs[name]],
                )
            )
        return groups

    def clean_batch_sizes(self) -> list[int]:
        return parse_batch_sizes(self.cleaned_data["batch_sizes"])

    def clean_gate(self) -> list[dict[str, Any]] | None:
        return parse_gate(self.cleaned_data.get("gate") or "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            cleaned["recipe"] = self.recipe_mapping()  # ValidationError → a form-wide error
        return cleaned

    def steps(self) -> list[dict[str, Any]]:
        """The enabled passes as recipe steps, by their order number (ties: form order)."""
        data = self.cleaned_data
        chosen = []
        for position, info in enumerate(self.passes):
            name = info["name"]
            if not data.get(f"p__{name}__enabled"):
                continue
            config = {}
            for spec in self.config_specs[name]:
                value = _convert(spec, data.get(f"p__{name}__cfg__{spec.key}"))
                if value is not None:
                    config[spec.key] = value
            order = data.get(f"p__{name}__order")
            chosen.append((order if order is not None else 0, position, {"pass": name, **config}))
        return [step for _, _, step in sorted(chosen, key=lambda item: item[:2])]

    def recipe_mapping(self) -> dict[str, Any]:
        """The recipe the form describes (``model``/``dataset`` are filled in by ``submit_job``)."""
        data = self.cleaned_data
        recipe: dict[str, Any] = {
            "model": data["model"].reference,
            "steps": self.steps(),
            "benchmark": {"batch_sizes": data["batch_sizes"], "seq_len": data["seq_len"]},
            "evaluation": {"max_samples": data.get("evaluation_samples") or 256},
            "profile": bool(data.get("profile")),
        }
        if data.get("benchmark_variants"):
            recipe["benchmark"]["variants"] = list(data["benchmark_variants"])
        if data.get("gate"):
            recipe["gate"] = data["gate"]
        return recipe


DEFAULT_SEARCH_AXES = """\
- [none, {pass: torch_quantize_dynamic}]
- [none, {pass: onnx_export}]
- [none, {pass: ort_quantize_dynamic, per_channel: true}, {pass: ort_quantize_dynamic, per_channel: false}]
"""


def axis_pass_names(axes: list[Any]) -> list[str]:
    """Every pass name the search axes mention (options: ``none``, a step, or a list of steps)."""
    names = []
    for axis in axes:
        for option in axis if isinstance(axis, list) else []:
            for step in option if isinstance(option, list) else [option]:
                if isinstance(step, dict) and isinstance(step.get("pass"), str):
                    names.append(step["pass"])
                elif isinstance(step, str) and step.lower() != "none":
                    names.append(step)
    return names


class SearchJobForm(forms.Form):
    """A ``mode: search`` job: axes of options (YAML) and a time budget; ``search_space`` validates."""

    prefix = "search"

    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    model = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=200, required=False, help_text="Optional.")
    axes = forms.CharField(
        initial=DEFAULT_SEARCH_AXES,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text="YAML list of axes; each axis lists options: none, one step {pass: …} or a list of steps. "
        "Every combination (one option per axis) is a candidate; impossible chains are skipped.",
    )
    budget_s = forms.FloatField(
        initial=900, min_value=1, label="Time budget (s)", help_text="Candidates not started by then are not run."
    )
    batch_sizes = forms.CharField(initial="1", label="Benchmark batch sizes", help_text="Comma-separated.")
    seq_len = forms.IntegerField(initial=128, label="Sequence length", widget=forms.NumberInput(attrs={"min": 1}))

    def __init__(
        self,
        *args,
        user,
        passes: list[dict[str, Any]] | None = None,
        unavailable: dict[str, str] | None = None,
        **kwargs,
    ):
        """``passes``: the techniques the page lists; ``unavailable``: pass name → why no live worker can run it.

        Those techniques are shown disabled, and axes that name one are refused (like the
        new-job form's disabled checkboxes), so a search never queues work nobody can run.
        """
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams_of(user)
        self.fields["model"].queryset = ModelEntry.objects.visible_to(user)
        self.unavailable = dict(unavailable or {})
        self.techniques = [{**info, "unavailable": self.unavailable.get(info["name"], "")} for info in passes or []]

    def clean_axes(self) -> list[Any]:
        import yaml

        try:
            axes = yaml.safe_load(self.cleaned_data["axes"])
        except yaml.YAMLError as error:
            raise forms.ValidationError(f"not valid YAML: {error}") from None
        if not isinstance(axes, list) or not axes or not all(isinstance(axis, list) and axis for axis in axes):
            raise forms.ValidationError("give a list of axes, each a non-empty list of options")
        refused = [name for name in dict.fromkeys(axis_pass_names(axes)) if name in self.unavailable]
        if refused:
            raise forms.ValidationError([f"{name} is not available: {self.unavailable[name]}" for name in refused])
        return axes

    def clean_batch_sizes(self) -> list[int]:
        return parse_batch_sizes(self.cleaned_data["batch_sizes"])

    def search_mapping(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "mode": "search",
            "model": data["model"].reference,
            "axes": data["axes"],
            "budget_s": data["budget_s"],
            "benchmark": {"batch_sizes": data["batch_sizes"], "seq_len": data["seq_len"]},
        }


def parse_delays(text: str) -> list[float]:
    try:
        delays = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise forms.ValidationError("queue delays must be numbers (ms) separated by commas, e.g. 0,2,10") from None
    if not delays:
        raise forms.ValidationError("give at least one queue delay")
    return delays


#: The spec's defaults for the causal-LM sections: the Serving tab's initial values.
_SPECULATIVE = SpeculativeOptions()
_KV_QUANT = KVQuantOptions()
_CONTINUOUS = ContinuousBatchingOptions()


def _comma_list(values: list[Any]) -> str:
    return ",".join(str(value) for value in values)


def _count_field(label: str, initial: int) -> forms.IntegerField:
    """An optional whole number (blank: the spec's default); ``ServingSpec.parse`` checks its range."""
    return forms.IntegerField(required=False, initial=initial, label=label, widget=forms.NumberInput(attrs={"min": 1}))


def spec_section(enabled: bool, values: dict[str, Any]) -> dict[str, Any]:
    """One optional section of a serving spec: ``{"enabled": false}`` when off, else ``enabled`` and the given values.

    Values that are ``None`` (a blank field) are left out, so the spec's default applies.
    """
    if not enabled:
        return {"enabled": False}
    return {"enabled": True, **{key: value for key, value in values.items() if value is not None}}


class ServingJobForm(forms.Form):
    """A ``mode: serving`` job: the p95 budget, a small batching grid and the causal-LM sections' main options.

    The form only converts values; ``serving_spec`` validates (its ``RecipeError`` is the page's error).
    """

    prefix = "serving"

    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    model = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(max_length=200, required=False, help_text="Optional.")
    onnx_export = forms.BooleanField(
        required=False,
        initial=True,
        label="Export to ONNX first",
        help_text="Analyse the ONNX export (needed for the Triton repository). Leave off for ONNX uploads and LLMs.",
    )
    p95_budget_ms = forms.FloatField(initial=50, min_value=0.001, label="p95 latency budget (ms)")
    max_batch_sizes = forms.CharField(initial="1,4,8,16", label="Max batch sizes", help_text="Comma-separated.")
    max_queue_delays_ms = forms.CharField(initial="0,2,10", label="Max queue delays (ms)", help_text="Comma-separated.")
    # Causal LMs only (ignored for other models): speculative:, kv_quant: and continuous_batching: of the spec.
    speculative_enabled = forms.BooleanField(required=False, initial=_SPECULATIVE.enabled, label="Speculative decoding")
    speculative_draft_model = forms.BooleanField(
        required=False, initial=_SPECULATIVE.draft_model, label="With a draft model"
    )
    speculative_draft = forms.CharField(
        required=False,
        initial=_SPECULATIVE.draft,
        max_length=500,
        label="Draft model",
        help_text="A demo model (zoo:…) with the target's tokenizer.",
    )
    speculative_prompt_lookup = forms.BooleanField(
        required=False, initial=_SPECULATIVE.prompt_lookup, label="With prompt lookup"
    )
    speculative_max_new_tokens = _count_field("New tokens per prompt", _SPECULATIVE.max_new_tokens)
    kv_quant_enabled = forms.BooleanField(required=False, initial=_KV_QUANT.enabled, label="KV-cache quantization")
    kv_quant_nbits = forms.CharField(
        required=False,
        initial=_comma_list(_KV_QUANT.nbits),
        label="KV-cache bits",
        help_text=f"Comma-separated; the {_KV_QUANT.backend} backend takes "
        f"{_comma_list(SUPPORTED_BITS[_KV_QUANT.backend])}.",
    )
    kv_quant_context_lens = forms.CharField(
        required=False,
        initial=_comma_list(_KV_QUANT.context_lens),
        label="KV-quant context lengths",
        help_text=f"Comma-separated; each above {_KV_QUANT.decode_tokens} (the decode steps).",
    )
    continuous_enabled = forms.BooleanField(
        required=False, initial=_CONTINUOUS.enabled, label="Static vs continuous batching (estimate)"
    )
    continuous_max_batch = _count_field("Max batch (continuous)", _CONTINUOUS.max_batch)
    continuous_requests = _count_field("Simulated requests", _CONTINUOUS.requests)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = teams_of(user)
        self.fields["model"].queryset = ModelEntry.objects.visible_to(user)

    def clean_max_batch_sizes(self) -> list[int]:
        return parse_batch_sizes(self.cleaned_data["max_batch_sizes"])

    def clean_max_queue_delays_ms(self) -> list[float]:
        return parse_delays(self.cleaned_data["max_queue_delays_ms"])

    def clean_speculative_draft(self) -> str | None:
        return self.cleaned_data.get("speculative_draft", "").strip() or None

    def clean_kv_quant_nbits(self) -> list[int] | None:
        return parse_int_list(self.cleaned_data.get("kv_quant_nbits", ""), "KV-cache bits", "4,8") or None

    def clean_kv_quant_context_lens(self) -> list[int] | None:
        text = self.cleaned_data.get("kv_quant_context_lens", "")
        return parse_int_list(text, "context lengths", "128,512") or None

    def serving_mapping(self) -> dict[str, Any]:
        """The spec the form describes; blank optional fields are left out (the spec's defaults apply)."""
        data = self.cleaned_data
        return {
            "mode": "serving",
            "model": data["model"].reference,
            "steps": [{"pass": "onnx_export"}] if data.get("onnx_export") else [],
            "p95_budget_ms": data["p95_budget_ms"],
            "batching": {
                "max_batch_sizes": data["max_batch_sizes"],
                "max_queue_delays_ms": data["max_queue_delays_ms"],
            },
            "speculative": spec_section(
                data.get("speculative_enabled"),
                {
                    "draft_model": bool(data.get("speculative_draft_model")),
                    "draft": data.get("speculative_draft"),
                    "prompt_lookup": bool(data.get("speculative_prompt_lookup")),
                    "max_new_tokens": data.get("speculative_max_new_tokens"),
                },
            ),
            "kv_quant": spec_section(
                data.get("kv_quant_enabled"),
                {"nbits": data.get("kv_quant_nbits"), "context_lens": data.get("kv_quant_context_lens")},
            ),
            "continuous_batching": spec_section(
                data.get("continuous_enabled"),
                {"max_batch": data.get("continuous_max_batch"), "requests": data.get("continuous_requests")},
            ),
        }
