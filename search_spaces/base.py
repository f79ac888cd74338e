"""SearchSpace base class and the two ways to draw from a space (an Optuna trial, a seeded RNG).

A space is sampled define-by-run: each choice is a named parameter, and conditional choices get
names of their own, so that a parameter's set of choices never changes within a study (Optuna
requires it). Spaces know nothing of measuring or training.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from search_spaces.spec import ArchSpec, Conv, SpecError

WIDTHS = tuple(range(8, 65, 8))  # 8..64: tensor-core friendly multiples of 8


class Chooser(Protocol):
    """What a space needs from a sampler: named categorical and integer choices."""

    def categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def integer(self, name: str, low: int, high: int) -> int: ...


class TrialChooser:
    """Draws through an Optuna trial (TPE learns from these parameter names)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(name, list(choices))

    def integer(self, name: str, low: int, high: int) -> int:
        return int(self.trial.suggest_int(name, low, high))


class RngChooser:
    """Draws uniformly from a seeded ``random.Random``: for tests and benchmarks."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.rng.choice(list(choices))

    def integer(self, name: str, low: int, high: int) -> int:
        return self.rng.randint(low, high)


def draw_stage(choose: Chooser, prefix: str, low: int, high: int, widths: Sequence[int] = WIDTHS) -> tuple[Conv, ...]:
    """A run of ``low``..``high`` conv layers, each with its own width and kernel size."""
    n = choose.integer(f"n_{prefix}", low, high)
    return tuple(
        Conv(width=choose.categorical(f"{prefix}{i}_width", widths),
             kernel=choose.categorical(f"{prefix}{i}_kernel", (1, 3, 5)))
        for i in range(n)
    )


def stage_params(prefix: str, layers: tuple[Conv, ...]) -> dict[str, Any]:
    """The parameters ``draw_stage(choose, prefix, ...)`` draws to produce ``layers``."""
    params: dict[str, Any] = {f"n_{prefix}": len(layers)}
    for i, layer in enumerate(layers):
        params[f"{prefix}{i}_width"] = layer.width
        params[f"{prefix}{i}_kernel"] = layer.kernel
    return params


class FixedChooser:
    """Answers every choice from a parameter dict: replays ``params_of(spec)`` back into the spec."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.params[name]
        if value not in choices:
            raise SpecError(f"parameter '{name}' = {value!r} is not among this space's choices {list(choices)}")
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        value = int(self.params[name])
        if not low <= value <= high:
            raise SpecError(f"parameter '{name}' = {value} is outside this space's range {low}..{high}")
        return value


class Partial:
    """Answers choices from a parameter dict, those it lacks (a layer a child adds) from ``rng``; ``drawn``
    keeps every answer: all the parameters that draw the spec, none it did not ask for."""

    def __init__(self, params: dict[str, Any], rng: random.Random) -> None:
        self.params, self.rng = params, rng
        self.drawn: dict[str, Any] = {}

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.params.get(name)
        self.drawn[name] = value if value in choices else self.rng.choice(list(choices))
        return self.drawn[name]

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.params.get(name)
        fits = isinstance(value, int) and low <= value <= high
        self.drawn[name] = int(value) if fits else self.rng.randint(low, high)
        return self.drawn[name]


def divisors_allowed(input_size: tuple[int, int] | None, factors: Sequence[int]) -> list[int]:
    """The factors that divide both input height and width (all of them when the size is unknown)."""
    if input_size is None:
        return list(factors)
    h, w = input_size
    return [f for f in factors if h % f == 0 and w % f == 0]


class SearchSpace(ABC):
    """A named, versioned family of ArchSpecs for one task."""

    name: str
    task: str
    version: int = 1  # bump whenever a parameter's choices change: Optuna studies must not mix them

    @property
    def data_kind(self) -> str:
        """How the trainer makes inputs (``nas.training.data.load_data``'s ``kind``): the spec kind unless a
        space differs."""
        return self.kind

    def sample(self, trial: Any, input_size: tuple[int, int] | None = None) -> ArchSpec:
        """Draw a spec through an Optuna trial; ``input_size`` (H, W) rules out what cannot tile it."""
        return self.draw(TrialChooser(trial), input_size)

    def random_spec(self, rng: random.Random | int, input_size: tuple[int, int] | None = None) -> ArchSpec:
        """Draw a spec from a seeded RNG (an int seeds a fresh ``random.Random``)."""
        if isinstance(rng, int):
            rng = random.Random(rng)
        return self.draw(RngChooser(rng), input_size)

    @abstractmethod
    def draw(self, choose: Chooser, input_size: tuple[int, int] | None) -> ArchSpec:
        """Draw one spec, making every choice through ``choose``."""

    def complete(self, params: dict[str, Any], rng: random.Random,
                 input_size: tuple[int, int] | None = None) -> tuple[ArchSpec, dict[str, Any]]:
        """The spec a (partial) parameter dict draws, choices it lacks drawn from ``rng``, and every parameter
        that draws it: what a sampler needs to know a child's network before proposing it."""
        chooser = Partial(params, rng)
        return self.draw(chooser, input_size), chooser.drawn

    @abstractmethod
    def params_of(self, spec: ArchSpec) -> dict[str, Any]:
        """The Optuna parameters that make ``sample`` draw exactly ``spec`` (to enqueue it as a trial)."""

    @abstractmethod
    def references(self) -> dict[str, ArchSpec]:
        """Classic hand-designed networks of this space, by name, for warm starts and comparisons."""

    @abstractmethod
    def modern_references(self) -> dict[str, ArchSpec]:
        """The field's recent real-time designs adapted to the rules, by name (none shared with ``references``)."""

    def fitting_references(self, input_size: tuple[int, int] | None) -> tuple[dict[str, ArchSpec], dict[str, str]]:
        """Every reference net, classic then modern, that tiles ``input_size`` (the search's warm starts and
        the bench's comparisons); and, by name, why each other one is left out."""
        nets: dict[str, ArchSpec] = {}
        left_out: dict[str, str] = {}
        for name, spec in (self.references() | self.modern_references()).items():
            try:
                self.check(spec, input_size)
            except SpecError as exc:
                left_out[name] = str(exc)
            else:
                nets[name] = spec
        return nets, left_out

    @abstractmethod
    def dimensions(self) -> dict[str, str]:
        """Human-readable description of each searched dimension (for ``nas spaces``)."""

    def check(self, spec: ArchSpec, input_size: tuple[int, int] | None = None) -> None:
        """Raise SpecError when ``spec`` does not belong to this space's task or cannot tile the input."""
        if spec.space != self.kind or spec.scale != self.scale:
            raise SpecError(
                f"spec is for {spec.space} x{spec.scale}, but the task '{self.name}' needs "
                f"{self.kind} x{self.scale}: pick the matching --task"
            )
        if input_size is not None:
            m = spec.size_multiple
            if input_size[0] % m or input_size[1] % m:
                raise SpecError(
                    f"input size {input_size[0]}x{input_size[1]} is not a multiple of {m}, which this "
                    "spec's space-to-depth and levels need: choose a size divisible by it"
                )

    kind: str
    scale: int
