"""The four axes of the design space and which combinations of them are valid.

    decay             parameterization (registry name; ``sd-<p>`` carries its p)
    decay_granularity "scalar" (one decay per head) or "vector" (one per key channel)
    share_decay_key   the key projection also produces the decay; the key is derived from it
    positional        "none", "rope", "lrpe-cos" or "tpe"

Field names are those of :class:`decaylab.model.DecayLinearConfig`; every refusal names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from decaylab.decay.base import DECAYS, Decay, DecayContext

GRANULARITIES = ("scalar", "vector")
POSITIONALS = ("none", "rope", "lrpe-cos", "tpe")
SD_SWEEP = (0.8, 0.9, 0.95, 0.99)


def parse_decay_name(name: str) -> tuple[str, dict]:
    """``"sd-0.9"`` → ``("sd", {"p": 0.9})``; other names carry no options."""
    if not isinstance(name, str):
        raise ValueError(f"decay must be a string such as 'gla' or 'sd-0.99', got {name!r}")
    if name in DECAYS:
        return name, {}
    base, _, arg = name.rpartition("-")
    if base == "sd":
        try:
            return "sd", {"p": float(arg)}
        except ValueError:
            pass
    known = sorted(DECAYS) + ["sd-<p>"]
    raise ValueError(f"decay={name!r} is not a known parameterization; choose one of {known}")


@dataclass(frozen=True)
class DecaySpec:
    decay: str = "sd-0.99"
    decay_granularity: str = "vector"
    share_decay_key: bool = False
    positional: str = "none"

    @property
    def decay_class(self) -> type[Decay]:
        return DECAYS[parse_decay_name(self.decay)[0]]

    @property
    def vector(self) -> bool:
        return self.decay_granularity == "vector"

    def problems(self) -> list[str]:
        """Every reason this combination is invalid (empty when it is valid)."""
        try:
            base, options = parse_decay_name(self.decay)
        except ValueError as err:
            return [str(err)]
        out = []
        if base == "sd" and not 0.0 < options.get("p", 0.99) < 1.0:
            out.append(f"decay={self.decay!r}: Simple Decay needs p in (0, 1)")
        if self.decay_granularity not in GRANULARITIES:
            out.append(f"decay_granularity={self.decay_granularity!r} must be one of {GRANULARITIES}")
        if self.positional not in POSITIONALS:
            out.append(f"positional={self.positional!r} must be one of {POSITIONALS}")
        cls = DECAYS[base]
        if self.vector and not cls.supports_vector:
            out.append(f"decay={self.decay!r} is one fixed value per head: it needs decay_granularity='scalar'")
        if self.share_decay_key:
            if not cls.has_key_form:
                out.append(
                    f"share_decay_key=True needs a decay that the key can be derived from; decay={self.decay!r} "
                    "has no key form (it does not depend on the input)"
                )
            if self.decay_granularity == "scalar":
                out.append(
                    "share_decay_key=True needs decay_granularity='vector': a shared key has one entry per key "
                    "channel, a scalar decay only one per head"
                )
            if self.positional == "rope":
                out.append(
                    "share_decay_key=True with positional='rope' is refused: RoPE ties the decay within each "
                    "rotated pair, which would leave the derived key only K/2 free entries"
                )
        return out

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid decay design: " + "; ".join(problems))

    def build(self, ctx: DecayContext) -> Decay:
        base, options = parse_decay_name(self.decay)
        return DECAYS[base](ctx, **options)


def all_decay_names() -> list[str]:
    """Every parameterization name, with SD expanded over the paper's p values."""
    names = [n for n in DECAYS if n != "sd"]
    return names + [f"sd-{p}" for p in SD_SWEEP]


def design_space(valid_only: bool = True) -> list[DecaySpec]:
    """Every combination of the four axes (only the valid ones by default)."""
    specs = [
        DecaySpec(name, gran, share, pos)
        for name in all_decay_names()
        for gran in GRANULARITIES
        for share in (False, True)
        for pos in POSITIONALS
    ]
    return [s for s in specs if not s.problems()] if valid_only else specs
