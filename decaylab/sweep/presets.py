"""The paper's four experiment families as data, the training scales, and the named sweep presets.

A **design** is one point of the design space, a :class:`decaylab.decay.DecaySpec`, or ``None``
for the softmax Transformer reference. A **family** is one of the paper's comparisons, a list of designs:

    (a) parameterization   every decay parameterization at vector granularity (TNL and TNL-L are
                           one fixed value per head, so scalar): Mamba2 and its three ablations
                           (w/o A, w/o Δ, w/o A & Δ), GLA (both forms), HGRN2, LightNet, LSSP, TNL,
                           TNL-L and Simple Decay SD-p for p ∈ {0.8, 0.9, 0.95, 0.99}
    (b) sharing            every decay that has a key form, vector granularity: a separate decay
                           projection vs decay and key from one shared projection
    (c) granularity        every decay scalar vs vector, plus TNL and TNL-L (scalar only)
    (d) positional         none / RoPE / cosine LRPE / TPE on scalar decays

and each family also holds the softmax Transformer reference row. A design that appears in
several families (e.g. GLA vector in (a), (b) and (c)) is one run, trained once.

A **scale** fixes the model size and the training budget (tokens, sequence length, batch, learning
rate) and what evaluation costs (extrapolation windows, the MQAR probe, decay statistics).

A **preset** is a choice of designs (``quick`` or ``full``), a default scale and seeds:

    quick   the README's first command: a subset of every family (below) at the ``quick`` scale,
            one seed, on 2 CPU cores in well under 15 minutes
    cpu     every design at the ``tiny`` scale, one seed (hours on a CPU)
    gpu     every design at the ``small`` scale (~7M parameters), two seeds: a starting point for one GPU
    h200    the ``study`` designs at the ``study`` scale, two seeds: 56 runs in ~12 minutes of one H200
            (12 workers sharing it)
    h200-optimal  the ``optimal`` designs (``study`` plus SD-0.5 and SD-0.999) at the ``optimal`` scale, three
            seeds: the compute-optimal study of issue 16
    h200-optimal-wide  the ``cross-scale`` designs (the 19 of the 30 ``optimal`` ones that each claim's
            comparisons rest on) at the ``optimal-wide`` scale (d 384, 6 layers), three seeds: its second,
            larger scale point
    paper   every design at 160M parameters on FineWeb-Edu, 10B tokens, as in the paper

Quick scale, and why: the micro model (d 64, 2 layers, 4 heads of 16, FFN 176, ~0.37M
parameters with a 2048-token vocabulary) on the embedded corpus tokenized with a 2048-token BPE
(5.6M training tokens, unigram perplexity 651.5), sequence length 128, 16 sequences per step,
120 steps (246k tokens), lr 5e-3 with a cosine schedule. Why these: on a 2-core CPU the
8192-token vocabulary quadruples the time per step (the LM head and its softmax dominate a model
this narrow), so the quick preset trains its own 2k tokenizer (cached like every prepared
dataset); and a training step of a vector decay costs ~0.4 CPU seconds at this size (scalar
~0.2), so 26 runs of 120 steps are what fits two cores in 15 minutes. Measured on the 2-core
development machine (one seed, 2 worker processes of one thread each, other jobs running at a
load average of 2–4): 8.0 minutes wall for ``decaylab sweep --preset quick`` from a cold cache,
of which 22 s built the dataset and tokenizer; 19–31 CPU seconds per scalar-decay or softmax run
and 40–50 per vector-decay run, training and evaluation included (about 850 CPU seconds in
all). Every run ends at a validation perplexity of 212–268, 2.4–3.1× below the unigram
perplexity, and the numbers are the same from run to run (the training is deterministic).
The MQAR probe is off at this scale: a micro model needs hundreds of probe steps to rise above
chance, which would cost more than the language-model run itself (the ``tiny`` and larger
scales run it).

Study scale, and why (``--preset h200``, reports/h200-2026-11-28): the small model (d 256, 4
layers, 7.4M parameters) on the larger corpus, 600 steps of 32 × 512 tokens (9.8M tokens, 0.58
epoch), MQAR probe 400 steps. With 8 runs sharing one H200, the small model trained at 1.41M
tokens/s in aggregate and a 34M model (d 512, 8 layers) at 0.64M: in the ~12 GPU minutes for 56
runs the small model sees 1.3 tokens per parameter, the 34M one 0.13. Designs: the quick designs
plus GLA with σ(f)^(1/τ), LSSP and TNL-L in (a).

Optimal scale, and why (``--preset h200-optimal``, issue 16): the same small model for
3,950 steps of 32 × 512 tokens, 64.7M tokens = 20 per non-embedding parameter (3.2M; with the 8k
vocabulary the embeddings and LM head hold another 4.2M) and 3.8 epochs of the larger corpus, the
most the issue allows without a larger corpus. It trains with ``compile_mode=reduce-overhead``
(CUDA graphs). Measured on one H200 (2026-12-03, benchmarks/RESULTS.md): a real run trains slower
than the benchmark's fresh model, as learned decays send the operator to its blocked path — Mamba2
vector at ~1.6M tokens/s from step ~1,000 (3.4M at step 100): 38 s of training, 49 s for a whole
seed-2 run with its evaluation once its graphs are compiled (in one sitting, the first run of a
design spends ~40 s more on torch.compile, and seed 0 also trains the recall curve's probes). So the
30 designs × 3 seeds (5.8B tokens) take ~2 GPU hours: several sittings with ``--time-limit``.
Run it with one worker on one GPU (the default):
with 4 workers sharing an H200 each run trained at 0.28–0.32M tokens/s, ~1.2M in aggregate
(2026-12-03, first sitting, stopped before any run ended), less than half of one run alone, since
processes sharing a GPU take turns rather than overlap. The recall probe is the design on the
``tiny`` model (d 128, 2 layers, heads of 32) trained 3,000 steps of 256 sequences at lr 3e-4 on 4
pairs in 64 tokens, and on the seed-0 run of each design also 2, 8 and 16 pairs: 4 probes per
design, 120 in all, each compiled with CUDA graphs. Calibrated on one H200 (2026-12-03, eager, 16
probes sharing the GPU, ~150 s each): the softmax reference reaches 1.000 at 2, 4, 8
and 16 pairs; SD-0.99 1.000 / 0.979 / 1.000 / 1.000, Mamba2 1.000 at 4 pairs, GLA 0.496 at 2 pairs
(chance 1/32); on the CPU, 3,000 steps of 32 sequences learned 4 pairs but not 8 or 16.

Second scale point, and why (``--preset h200-optimal-wide``, issue 16; not yet run): a wider and
deeper model (d 384, 6 layers of 6 heads of 64, FFN 1024: 10.8M non-embedding parameters, 3.3× the
small model's) for 4,150 steps of 32 × 512 tokens = 68M tokens, 4.0 epochs of the larger corpus. The
corpus, not the GPU, sets it: at 20 tokens per parameter this model would need 216M tokens (13
epochs); 4 epochs give 6.3 per non-embedding parameter, and a still larger model (d 512, 8 layers,
25.6M) only 2.7. Its cost per token is ~2.3× the small model's (6 × 17M against 6 × 7.4M FLOPs), so
~1.25M tokens/s and ~55 s per run are expected (not measured yet); lr 1.5e-3 (not tuned: 2e-3 at
d 256, lowered for width). The recall probe is off: it trains its own ``tiny`` model, so it would
repeat the first scale's. Its evaluations during training cover the whole validation split, as the
final one does (at the first scale only its first 10 batches), so the loss figure shows whether 4
epochs overfit. Its designs are the ``cross-scale`` set (19 designs, 57 runs, ~55 GPU minutes
expected against ~80 for all 30): measured, a design's first run in a sitting costs 2–4 later seeds,
and the first scale point needs ~2 GPU hours, so the second keeps only what each claim compares.

Quick designs (26 runs after de-duplication): (a) Mamba2 and its three ablations, GLA, HGRN2,
LightNet, TNL and SD-p for all four p, plus softmax; (b) shared vs separate for Mamba2, GLA and
SD-0.99; (c) scalar vs vector for Mamba2, GLA and SD-0.99, plus TNL and TNL-L; (d) the four
positional encodings on scalar SD-0.99 and TNL. Dropped from quick (kept in ``full``): GLA with
σ(f)^(1/τ), LSSP, and the (b)/(c)/(d) rows of the other decays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

from decaylab.decay import POSITIONALS, DecaySpec, all_decay_names

# --------------------------------------------------------------------------- designs
# A design is a :class:`decaylab.decay.DecaySpec` (the four axes), or ``None`` for the softmax reference.

SOFTMAX = None


def design_key(design: DecaySpec | None) -> str:
    """Stable identifier (part of the run id): ``softmax`` or ``<decay>-<granularity>-<sep|shared>-<positional>``."""
    if design is None:
        return "softmax"
    sharing = "shared" if design.share_decay_key else "sep"
    return f"{design.decay}-{design.decay_granularity}-{sharing}-{design.positional}"


def design_label(design: DecaySpec | None) -> str:
    """Short human-readable name for tables and legends, e.g. ``gla (scalar, rope)``."""
    if design is None:
        return "softmax Transformer"
    extras = [design.decay_granularity] + (["shared"] if design.share_decay_key else []) + (
        [design.positional] if design.positional != "none" else [])
    return f"{design.decay} ({', '.join(extras)})"


def design_problems(design: DecaySpec | None) -> list[str]:
    """Why the design is invalid (empty when valid; the softmax reference always is)."""
    return [] if design is None else design.problems()


def default_granularity(decay: str) -> str:
    """``vector`` for a decay that has one (input-dependent), ``scalar`` for a fixed one per head (TNL)."""
    return "vector" if DecaySpec(decay).decay_class.supports_vector else "scalar"


@dataclass(frozen=True)
class Family:
    """One of the paper's experiment families: a question and the designs that answer it."""

    key: str  # "a" … "d"
    name: str
    question: str
    designs: tuple[DecaySpec | None, ...]


FAMILY_NAMES = {
    "a": ("parameterization", "How should the decay be computed from the input?"),
    "b": ("sharing", "Does deriving the key from the decay projection (shared parameters) hurt?"),
    "c": ("granularity", "Scalar decay (one per head) or vector decay (one per key channel)?"),
    "d": ("positional", "Does a relative positional encoding help a scalar-decay linear attention?"),
}


def _families(param: list[str], share: list[str], gran: list[str], pos: list[str]) -> dict[str, Family]:
    """The four families from the decay names each one varies (softmax reference added to each)."""
    designs = {
        "a": [DecaySpec(n, default_granularity(n)) for n in param],
        "b": [DecaySpec(n, "vector", shared) for n in share if DecaySpec(n).decay_class.has_key_form
              for shared in (False, True)],
        "c": [DecaySpec(n, g) for n in gran if default_granularity(n) == "vector" for g in ("scalar", "vector")]
             + [DecaySpec(n, "scalar") for n in gran if default_granularity(n) == "scalar"],
        "d": [DecaySpec(n, "scalar", False, p) for n in pos for p in POSITIONALS],
    }
    return {k: Family(k, *FAMILY_NAMES[k], tuple(designs[k]) + (SOFTMAX,)) for k in designs}


def full_families() -> dict[str, Family]:
    """Every design of every family."""
    names = all_decay_names()
    return _families(names, names, names, names)


def quick_families() -> dict[str, Family]:
    """The subset trained by ``--preset quick`` (see the module docstring)."""
    param = ["mamba2", "mamba2-no-a", "mamba2-no-delta", "mamba2-no-a-no-delta", "gla", "hgrn2", "lightnet",
             "tnl", "sd-0.8", "sd-0.9", "sd-0.95", "sd-0.99"]
    return _families(param, ["mamba2", "gla", "sd-0.99"], ["mamba2", "gla", "sd-0.99", "tnl", "tnl-l"],
                     ["sd-0.99", "tnl"])


def study_families() -> dict[str, Family]:
    """The designs of ``--preset h200``: the quick subset plus GLA's second form, LSSP and TNL-L in (a)."""
    quick = quick_families()
    extra = tuple(DecaySpec(n, default_granularity(n)) for n in ("gla-pow", "lssp", "tnl-l"))
    a = quick["a"]
    return {**quick, "a": replace(a, designs=a.designs[:-1] + extra + (SOFTMAX,))}


def optimal_families() -> dict[str, Family]:
    """The designs of ``--preset h200-optimal``: the study designs plus SD-0.5 and SD-0.999 in (a), so that
    claim 1 sees Simple Decay from a fast to a very slow forgetting."""
    study = study_families()
    extra = tuple(DecaySpec(n, default_granularity(n)) for n in ("sd-0.5", "sd-0.999"))
    a = study["a"]
    return {**study, "a": replace(a, designs=a.designs[:-1] + extra + (SOFTMAX,))}


def cross_scale_families() -> dict[str, Family]:
    """The designs of ``--preset h200-optimal-wide``: of the ``optimal`` designs, those each claim's
    comparisons rest on, so the second scale point can say which verdicts hold across scale at 19
    designs instead of 30. (a) Mamba2 and its ablation without Δ, GLA, HGRN2, LightNet, TNL and SD-p
    for p ∈ {0.5, 0.9, 0.99, 0.999}; (b) unchanged; (c) without TNL-L; (d) RoPE against none only."""
    optimal = optimal_families()
    kept_a = {DecaySpec(n, default_granularity(n)) for n in (
        "mamba2", "mamba2-no-delta", "gla", "hgrn2", "lightnet", "tnl", "sd-0.5", "sd-0.9", "sd-0.99", "sd-0.999")}
    keep = {"a": lambda d: d in kept_a, "b": lambda d: True, "c": lambda d: d.decay != "tnl-l",
            "d": lambda d: d.positional in ("none", "rope")}
    return {k: replace(f, designs=tuple(d for d in f.designs if d is SOFTMAX or keep[k](d)))
            for k, f in optimal.items()}


DESIGN_SETS = {"quick": quick_families, "study": study_families, "optimal": optimal_families,
               "cross-scale": cross_scale_families, "full": full_families}

# --------------------------------------------------------------------------- scales

CURVE_SEED = 0  # the seed whose run of each design measures the recall curve (Scale.mqar_curve)


@dataclass(frozen=True)
class Scale:
    """Model size and training/evaluation budget of every run of a sweep.

    ``size`` is a key of :data:`decaylab.model.PRESETS`; ``model_overrides`` change its fields
    (the vocabulary always follows the dataset). ``data`` is the ``TrainConfig.data`` mapping.
    ``train`` holds further ``TrainConfig`` fields. Evaluation: perplexity by position on windows
    of ``extrapolation_factor`` × ``seq_len`` tokens (``extrapolation_batches`` batches), an MQAR
    probe trained for ``mqar_steps`` steps (0 = off) on ``mqar_task``, and on the ``CURVE_SEED`` run of each
    design the probe's accuracy against the number of key–value pairs ``mqar_curve`` (empty = off;
    one fresh probe per number); ``mqar_probe`` holds further :class:`decaylab.evaluate.recall.RecallProbe`
    fields (lr, hidden_size, num_hidden_layers, …; empty = the probe's defaults); decay statistics over
    ``analysis_batches`` validation batches, and a last-word cloze of ``cloze_examples`` examples
    (0 = off; decaylab.evaluate.cloze). ``mqar_families`` (empty = all) names the families whose
    designs get the MQAR probe and curve; a design of none of them skips both.
    """

    name: str
    size: str
    data: dict
    train: dict
    model_overrides: dict = field(default_factory=dict)
    extrapolation_factor: int = 4
    extrapolation_batches: int = 8
    mqar_steps: int = 0
    mqar_task: dict = field(default_factory=lambda: {"seq_len": 64, "num_pairs": 8, "vocab_size": 64})
    mqar_batch_size: int = 32
    analysis_batches: int = 4
    cloze_examples: int = 0
    mqar_curve: tuple[int, ...] = ()
    mqar_probe: dict = field(default_factory=dict)
    mqar_families: tuple[str, ...] = ()

    def probes_recall(self, families: tuple[str, ...]) -> bool:
        """Whether a design shown in ``families`` gets the MQAR probe (see ``mqar_families``)."""
        return not self.mqar_families or bool(set(families) & set(self.mqar_families))

    @property
    def seq_len(self) -> int:
        return int(self.train["seq_len"])

    def train_values(self, design: DecaySpec | None, seed: int) -> dict:
        """The ``TrainConfig`` fields of one run but ``run_dir`` (a plain dict, JSON-serializable).
        A design's fields are named as the model config's, so they are its model overrides."""
        if design is None:
            model = {"arch": "softmax", "overrides": _softmax_fields(self.model_overrides)}
        else:
            model = {"arch": "decay_linear", "overrides": {**self.model_overrides, **dataclasses.asdict(design)}}
        return {
            **self.train,
            "seed": seed,
            "model": {"size": self.size, **model},
            "data": dict(self.data),
            "progress": False,
            "tensorboard": False,
            "keep_checkpoints": 1,
        }

    def to_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "data": self.data, "train": self.train,
                "model_overrides": self.model_overrides, "extrapolation_factor": self.extrapolation_factor,
                "extrapolation_batches": self.extrapolation_batches, "mqar_steps": self.mqar_steps,
                "mqar_task": self.mqar_task, "mqar_batch_size": self.mqar_batch_size,
                "analysis_batches": self.analysis_batches,
                **self.added_settings()}

    def added_settings(self) -> dict:
        """The settings added after the first sweeps were recorded (the cloze, the recall curve, the
        probe's training), only where they are set, so a sweep recorded before a field existed stays
        the same sweep."""
        return {**({"cloze_examples": self.cloze_examples} if self.cloze_examples else {}),
                **({"mqar_curve": list(self.mqar_curve)} if self.mqar_curve else {}),
                **({"mqar_probe": dict(self.mqar_probe)} if self.mqar_probe else {}),
                **({"mqar_families": list(self.mqar_families)} if self.mqar_families else {})}


SOFTMAX_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "head_dim", "num_attention_heads")


def _softmax_fields(overrides: dict) -> dict:
    """The size overrides the softmax reference understands (decay-specific ones are dropped)."""
    return {k: v for k, v in overrides.items() if k in SOFTMAX_FIELDS}


def _train(seq_len: int, batch: int, steps: int, lr: float, *, grad_accum: int = 1, eval_every: int = 0,
           final_eval_batches: int = 20, eval_batch_size: int = 16, log_every: int = 10, ckpt_every: int = 100,
           warmup_steps: int | None = None, eval_batches: int = 10) -> dict:
    return {"seq_len": seq_len, "micro_batch_size": batch, "grad_accum": grad_accum, "steps": steps, "lr": lr,
            "warmup_steps": steps // 10 if warmup_steps is None else warmup_steps, "schedule": "cosine",
            "eval_every": eval_every, "eval_batches": eval_batches, "final_eval_batches": final_eval_batches,
            "eval_batch_size": eval_batch_size, "log_every": log_every, "ckpt_every": ckpt_every}


EMBEDDED_2K = {"source": "embedded", "dir": "runs/data/embedded-2k", "vocab_size": 2048, "seed": 0}
EMBEDDED_8K = {"source": "embedded", "dir": "runs/data/embedded-8k", "vocab_size": 8192, "seed": 0}
LARGE_8K = {"source": "large", "dir": "runs/data/large-8k", "vocab_size": 8192, "seed": 0}
FINEWEB_EDU = {"source": "hf:HuggingFaceFW/fineweb-edu:sample-10BT:train", "dir": "runs/data/fineweb-edu-50k",
               "vocab_size": 50304, "seed": 0}

SCALES: dict[str, Scale] = {s.name: s for s in (
    # ~0.4M parameters, 246k tokens: 25–55 CPU seconds of training per run.
    Scale("quick", "micro", EMBEDDED_2K, _train(128, 16, 120, 5e-3, ckpt_every=40, final_eval_batches=20),
          extrapolation_batches=4, mqar_steps=0, analysis_batches=2),
    # ~2.5M parameters, 4M tokens (about one epoch of the embedded corpus): tens of minutes per run on a CPU.
    Scale("tiny", "tiny", EMBEDDED_8K, _train(256, 16, 1000, 3e-3, eval_every=250, final_eval_batches=40),
          mqar_steps=300, cloze_examples=200),
    # ~7M parameters, 33M tokens of the larger corpus: minutes per run on one GPU.
    Scale("small", "small", LARGE_8K, _train(512, 32, 2000, 2e-3, eval_every=500, ckpt_every=500,
                                            final_eval_batches=100), mqar_steps=1000,
          mqar_task={"seq_len": 256, "num_pairs": 32, "vocab_size": 512}, extrapolation_batches=16, cloze_examples=500),
    # ~7M parameters, 9.8M tokens of the larger corpus: the one-H200 study (see the module docstring).
    Scale("study", "small", LARGE_8K, _train(512, 32, 600, 2e-3, ckpt_every=200, final_eval_batches=100),
          mqar_steps=400, mqar_task={"seq_len": 256, "num_pairs": 32, "vocab_size": 512}, extrapolation_batches=16),
    # ~7M parameters (3.2M without the embeddings and LM head), 64.7M tokens = 20 per non-embedding parameter
    # and 3.8 epochs of the larger corpus: the compute-optimal point of issue 16 (see the module docstring).
    Scale("optimal", "small", LARGE_8K, {**_train(512, 32, 3950, 2e-3, eval_every=1000, ckpt_every=500,
                                                 final_eval_batches=100), "compile_mode": "reduce-overhead"},
          mqar_steps=3000, mqar_task={"seq_len": 64, "num_pairs": 4, "vocab_size": 64}, mqar_curve=(2, 8, 16),
          mqar_batch_size=256, mqar_probe={"size": "tiny", "lr": 3e-4, "compile_mode": "reduce-overhead"},
          mqar_families=("a", "c"), extrapolation_batches=16, cloze_examples=500),
    # ~17M parameters (10.8M without the embeddings and LM head), 68M tokens = 4 epochs of the larger corpus
    # (6.3 per non-embedding parameter): the second, larger scale point of issue 16 (see the module docstring).
    Scale("optimal-wide", "small", LARGE_8K, {**_train(512, 32, 4150, 1.5e-3, eval_every=1000, ckpt_every=500,
                                                      eval_batches=100, final_eval_batches=100), "compile_mode": "reduce-overhead"},
          model_overrides={"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1024},
          extrapolation_batches=16, cloze_examples=500),
    # The paper's sizes: sequence length 2048, 0.5M tokens per step, 10B tokens.
    *(Scale(size, size, FINEWEB_EDU,
            _train(2048, 16, 20_000, lr, grad_accum=16, eval_every=1000, ckpt_every=500, final_eval_batches=200,
                   log_every=20, warmup_steps=1000),
            mqar_steps=2000, mqar_task={"seq_len": 512, "num_pairs": 64, "vocab_size": 8192},
            extrapolation_batches=32, analysis_batches=16, cloze_examples=1000)
      for size, lr in (("160m", 3e-3), ("410m", 1.5e-3), ("1.45b", 8e-4))),
)}

# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A named sweep: which designs (``design_set``), at which scale, with which seeds."""

    name: str
    description: str
    design_set: str
    scale: str
    seeds: tuple[int, ...]

    def families(self) -> dict[str, Family]:
        return DESIGN_SETS[self.design_set]()


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("quick", "a subset of every family, micro model, 2 CPU cores, < 15 minutes", "quick", "quick", (0,)),
    Preset("cpu", "every design, tiny model, embedded corpus (hours on a CPU)", "full", "tiny", (0,)),
    Preset("gpu", "every design, small model, larger corpus, two seeds (one GPU)", "full", "small", (0, 1)),
    Preset("h200", "the quick designs plus GLA-pow, LSSP and TNL-L, ~7M parameters, larger corpus, two seeds, "
           "~12 minutes on one H200 with --workers 12", "study", "study", (0, 1)),
    Preset("h200-optimal", "the h200 designs plus SD-0.5 and SD-0.999, ~7M parameters at 20 tokens per "
           "non-embedding parameter, three seeds (several H200 sittings with --time-limit)", "optimal", "optimal",
           (0, 1, 2)),
    Preset("h200-optimal-wide", "the h200-optimal designs each claim rests on (19 of 30) on a ~17M-parameter model "
           "(d 384, 6 layers), 4 epochs of the larger corpus, three seeds, no recall probe (it is the same at both "
           "scales)", "cross-scale", "optimal-wide", (0, 1, 2)),
    Preset("paper", "every design at 160M parameters, FineWeb-Edu, 10B tokens (as the paper)", "full", "160m", (0,)),
)}


def resolve(preset: str, families: list[str] | None = None, scale: str | None = None,
            seeds: tuple[int, ...] | None = None) -> tuple[dict[str, Family], Scale, tuple[int, ...]]:
    """The families, scale and seeds of ``preset``, narrowed or changed by the command-line options."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if scale is not None and scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    p = PRESETS[preset]
    found = p.families()
    if families:
        unknown = sorted(set(families) - set(found))
        if unknown:
            raise ValueError(f"unknown family {unknown[0]!r}; choose from {sorted(found)} "
                             f"({', '.join(f'{k}={f.name}' for k, f in found.items())})")
        found = {k: found[k] for k in sorted(set(families))}
    return found, SCALES[scale or p.scale], tuple(seeds) if seeds else p.seeds


def with_train(scale: Scale, **train: object) -> Scale:
    """A copy of ``scale`` with some ``train`` fields replaced (e.g. fewer steps)."""
    return replace(scale, train={**scale.train, **train})
