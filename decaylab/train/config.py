"""Training configuration as data: one dataclass, loaded from YAML/JSON plus ``key=value`` overrides.

Every field is typed and documented (the help text lives in the field's metadata, so
``decaylab train --help`` lists them all). Values are checked when a config is built; an unknown
key or a value of the wrong type raises :class:`ConfigError` naming the key. Loading never
executes code: YAML goes through ``yaml.safe_load``, JSON through ``json.loads``.

``model`` and ``data`` are small dicts with a fixed set of keys (see :data:`MODEL_KEYS` and
:data:`DATA_KEYS`); the keys of ``model.overrides`` are fields of the model config, converted to
their types (and refused with the closest field name when unknown), and passed to
``make_config``. Override nested keys with dots: ``model.size=small``,
``model.overrides.decay=sd-0.99``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional


class ConfigError(ValueError):
    """A configuration key is unknown or its value has the wrong type or range."""


def _field(default: Any, help: str) -> Any:
    """A dataclass field with its help text (a mutable default is copied for each config)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata={"help": help})
    return field(default=default, metadata={"help": help})


#: Keys of ``TrainConfig.model``, with their types and defaults.
MODEL_KEYS: dict[str, tuple[Any, Any]] = {
    "size": (str, "tiny"),
    "arch": (str, "decay_linear"),
    "overrides": (dict, {}),
}

#: Keys of ``TrainConfig.data``, with their types and defaults. With ``source`` set, the dataset
#: is prepared into ``dir`` (a no-op when it is already there); with ``source: null``, ``dir``
#: must hold a prepared dataset.
DATA_KEYS: dict[str, tuple[Any, Any]] = {
    "source": (Optional[str], "embedded"),
    "dir": (str, "runs/data/embedded-8k"),
    "vocab_size": (int, 8192),
    "seed": (int, 0),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run. The global batch (sequences per optimizer step)
    is ``micro_batch_size * grad_accum * world_size``."""

    run_dir: str = _field("runs/default", "directory for checkpoints, logs and final.json")
    seed: int = _field(0, "seed of the model init and of the order of training batches")
    model: dict = _field({k: d for k, (_, d) in MODEL_KEYS.items()},
                         "model spec: size, arch, overrides (fields of the model config)")
    data: dict = _field({k: d for k, (_, d) in DATA_KEYS.items()},
                        "data spec: source (null = use dir as is), dir, vocab_size, seed")
    seq_len: int = _field(256, "tokens per training sequence")
    micro_batch_size: int = _field(16, "sequences per forward pass on one process")
    grad_accum: int = _field(1, "micro-batches accumulated per optimizer step")
    steps: int = _field(1000, "optimizer steps")
    lr: float = _field(3e-3, "peak learning rate")
    min_lr_ratio: float = _field(0.1, "final learning rate as a fraction of lr")
    schedule: Literal["cosine", "wsd"] = _field("cosine", "warmup then cosine decay, or warmup-stable-decay")
    warmup_steps: int = _field(100, "linear warmup steps")
    wsd_decay_fraction: float = _field(0.2, "fraction of steps in the final linear decay (schedule=wsd)")
    weight_decay: float = _field(0.1, "AdamW weight decay, applied to parameters with >= 2 dimensions only")
    beta1: float = _field(0.9, "AdamW beta1")
    beta2: float = _field(0.95, "AdamW beta2")
    eps: float = _field(1e-8, "AdamW epsilon")
    grad_clip: float = _field(1.0, "clip the global gradient norm to this value (0 = off)")
    eval_every: int = _field(100, "validate every this many steps (0 = only at the end)")
    eval_batches: int = _field(20, "validation batches at periodic evaluations")
    final_eval_batches: Optional[int] = _field(None, "validation batches at the final evaluation (null = all)")
    eval_batch_size: int = _field(16, "sequences per validation batch")
    log_every: int = _field(10, "write a metrics record every this many steps")
    ckpt_every: int = _field(200, "save a checkpoint every this many steps (and always at the end)")
    keep_checkpoints: int = _field(3, "keep the newest this many checkpoints")
    parallel: Literal["none", "ddp", "fsdp2"] = _field("none", "data parallelism under torchrun")
    device: Literal["auto", "cpu", "cuda"] = _field("auto", "auto = cuda when available, else cpu")
    precision: Literal["auto", "fp32", "bf16"] = _field("auto", "auto = bf16 autocast on cuda, fp32 on cpu")
    compile: Literal["auto", "true", "false"] = _field("auto", "torch.compile the model; auto = on cuda only")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = _field(
        "default", "torch.compile mode (reduce-overhead adds CUDA graphs: for launch-bound models; needs grad_accum=1)")
    progress: bool = _field(True, "show a progress bar (rank 0)")
    tensorboard: bool = _field(True, "write TensorBoard events next to metrics.jsonl")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check(f.name, getattr(self, f.name), hints[f.name]))
        self.model = _check_spec("model", self.model, MODEL_KEYS)
        self.model["overrides"] = check_model_overrides(self.model)
        self.data = _check_spec("data", self.data, DATA_KEYS)
        for name in ("seq_len", "micro_batch_size", "grad_accum", "steps", "eval_batch_size",
                     "log_every", "ckpt_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "weight_decay", "grad_clip", "eval_batches"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.wsd_decay_fraction <= 1.0:
            raise ConfigError(f"wsd_decay_fraction must be in [0, 1], got {self.wsd_decay_fraction}")
        if self.compile_mode == "reduce-overhead" and self.grad_accum > 1 and self._compiles_on_cuda():
            # Measured on an H200 (torch 2.11): the second micro-step's CUDA-graph replay overwrites the
            # gradients the first one accumulated ("accessing tensor output of CUDAGraphs ... overwritten").
            raise ConfigError(f"compile_mode=reduce-overhead cannot accumulate gradients over micro-steps "
                              f"(grad_accum={self.grad_accum}): CUDA graphs reuse the gradient memory; use "
                              f"grad_accum=1 with a larger micro_batch_size, or compile_mode=default")

    def _compiles_on_cuda(self) -> bool:
        """Whether the run will be compiled on a GPU (``compile=auto`` compiles on CUDA only; CUDA
        graphs exist only there)."""
        if self.compile == "false" or self.device == "cpu":
            return False
        import torch

        return self.device == "cuda" or torch.cuda.is_available()

    def to_dict(self) -> dict:
        """A JSON-serializable copy of every field."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args:
        return f"{_type_name(args[0])} or null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", dict: "a mapping"}[tp]


def _check(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` or raise ``ConfigError`` naming ``key``.

    Strings are accepted for numbers and booleans (command-line overrides, and YAML writes
    ``3e-4`` as a string), but only when they parse cleanly."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        return _check(key, value, next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin is Literal:
        if isinstance(value, bool):  # YAML's true/false for a choice spelled "true"/"false"
            value = str(value).lower()
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.strip().lower() in ("true", "yes", "1")
        elif tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str):
                return int(value)
        elif tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)
        elif tp is str:
            if isinstance(value, str):
                return value
        elif tp is dict:
            if isinstance(value, dict):
                return value
    except ValueError:
        pass
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _check_spec(name: str, spec: dict, keys: dict[str, tuple[Any, Any]]) -> dict:
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]} (known: {', '.join(f'{name}.{k}' for k in keys)})")
    out = {k: json.loads(json.dumps(default)) for k, (_, default) in keys.items()}
    for k, v in spec.items():
        out[k] = _check(f"{name}.{k}", v, keys[k][0])
    return out


def check_model_overrides(spec: dict) -> dict:
    """``spec["overrides"]`` with every value converted to the type of its model config field;
    raises ``ConfigError`` for an unknown field (naming the closest one) or a model that cannot be
    built (e.g. hidden_size not a multiple of head_dim)."""
    from decaylab.model.presets import config_fields, make_config

    try:
        fields = config_fields(spec["arch"])
    except ValueError as e:
        raise ConfigError(f"model.arch: {e}") from None
    overrides = {}
    for key, value in spec["overrides"].items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean model.overrides.{close[0]}?" if close else "known: " + ", ".join(fields)
            raise ConfigError(f"unknown model field model.overrides.{key}; {hint}")
        overrides[key] = _check(f"model.overrides.{key}", value, fields[key])
    try:
        make_config(spec["size"], spec["arch"], **overrides)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    return overrides


def _parse_free(raw: str) -> Any:
    """A free-form override value (``model.overrides.*``): JSON when it parses, else the string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` strings to a (nested) config dict and return it.

    Top-level keys and the keys of ``model``/``data`` are checked here so that a typo is
    reported as the key the user wrote; values are type-checked when the config is built."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        path = key.split(".")
        if path[0] not in names:
            raise ConfigError(f"unknown key {key!r} (see `decaylab train --help` for the fields)")
        if len(path) == 1:
            values[key] = _parse_free(raw) if key in ("model", "data") else raw
            continue
        spec_keys = {"model": MODEL_KEYS, "data": DATA_KEYS}.get(path[0])
        if spec_keys is None:
            raise ConfigError(f"{path[0]} is not a mapping, so {key!r} is not a key")
        if path[1] not in spec_keys:
            raise ConfigError(f"unknown key {key!r} (known: {', '.join(f'{path[0]}.{k}' for k in spec_keys)})")
        spec = values.setdefault(path[0], {})
        if len(path) == 2:
            spec[path[1]] = _parse_free(raw) if spec_keys[path[1]][0] is dict else raw
        elif path[1] == "overrides" and len(path) == 3:
            spec.setdefault("overrides", {})[path[2]] = _parse_free(raw)
        else:
            raise ConfigError(f"{key!r} is nested too deeply")
    return values


def read_config_file(path: str | Path) -> dict:
    """Read a ``.yaml``/``.yml``/``.json`` config file into a dict (no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    elif path.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    else:
        raise ConfigError(f"config file {path} must end in .yaml, .yml or .json")
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of fields, got {type(values).__name__}")
    return values


def build_config(values: dict) -> TrainConfig:
    """A ``TrainConfig`` from a dict of fields, with a clear error for an unknown key."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (see `decaylab train --help` for the fields)")
    return TrainConfig(**values)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """The config of a file (or the defaults when ``path`` is None) with ``key=value`` overrides."""
    values = read_config_file(path) if path is not None else {}
    return build_config(apply_overrides(values, list(overrides)))


def describe_fields() -> str:
    """One line per field with its default and help: the body of ``decaylab train --help``."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {f.name} = {json.dumps(default)}\n      {f.metadata['help']}")
    return "\n".join(lines)
