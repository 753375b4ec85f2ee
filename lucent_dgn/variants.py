"""The machinery of the presets: declared variants, their registry, :class:`Recipe` and :func:`recipe`.

Use it through :mod:`lucent_dgn.recipes` (``ld.recipe``), which also loads the built-in variants.
Modules that declare variants (:mod:`lucent_dgn.cnnpref.presets` ...) import only this module.

A *variant* is a declared combination objective x parameterization x optimizer with its
default options (cnnpref's four are registered by :mod:`lucent_dgn.cnnpref.presets`). A
:class:`Recipe` holds what the user chose (variant, layer, mask, generator or a ready objective,
options) and nothing else: each :meth:`Recipe.build` makes fresh pieces, so rendering a recipe
twice, on two models, or in two threads never shares or mutates state, and nothing the user
passed is changed.

Options are the keyword arguments of :func:`recipe`; :func:`recipe_options` lists them with
their defaults. An unknown option is an error that names the variant and lists the valid ones.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .errors import ConfigError, describe
from .render.result import RenderResult

__all__ = ["Variant", "Pieces", "Recipe", "recipe", "recipe_options", "register_variant", "variant_names",
           "get_variant", "RENDER_OPTIONS"]

#: Keyword arguments of :meth:`Recipe.render` (everything else is a recipe option).
RENDER_OPTIONS = ("seed", "progress", "callbacks", "device", "stop_early", "preserve_pre_relu", "input_space",
                  "preprocess")


@dataclass(frozen=True)
class Variant:
    """A declared preset: how to build its pieces from options.

    Attributes:
        name: the variant's name (``"gd"``, ``"dgn_lbfgs"`` ...).
        defaults: every option of the variant with its default value.
        build: ``build(spec) -> Pieces`` where ``spec`` is a :class:`Recipe` whose ``options``
            hold every option (defaults filled in) and ``model`` the render's model (or None).
        needs_generator: the variant optimises a generator code (a generator is required).
        needs_units: the variant's default objective is built from ``layer`` and ``mask``.
        option_groups: {solver name: options only that solver takes}, checked against the
            ``solver`` option (empty for variants without a solver choice).
        choices: {option: allowed values} for options with a fixed set of values.
        summary: one line for listings and error messages.
    """

    name: str
    defaults: Mapping[str, Any]
    build: Callable[["Recipe", Optional[nn.Module]], "Pieces"]
    needs_generator: bool = False
    needs_units: bool = True
    option_groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    choices: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    summary: str = ""


@dataclass
class Pieces:
    """The built pieces of one render (fresh objects, owned by this render)."""

    objective: Any
    param: Any
    optimizer: Any
    steps: int
    transforms: List[Callable] = field(default_factory=list)
    name: str = ""
    seed: Optional[int] = None

    def render(self, model: Optional[nn.Module], **render_options: Any) -> RenderResult:
        """:func:`lucent_dgn.render` on these pieces (``seed`` defaults to the recipe's)."""
        from .render.loop import render
        render_options.setdefault("seed", self.seed)
        device = render_options.get("device")
        if model is not None or device is not None:
            from .render._setup import device_of
            self.param.to(torch.device(device) if device is not None else (device_of(model) or torch.device("cpu")))
        result = render(model, self.objective, self.param, self.optimizer, self.steps, transforms=self.transforms,
                        **render_options)
        result.settings["variant"] = self.name
        return result


_REGISTRY: Dict[str, Variant] = {}


def register_variant(variant: Variant) -> Variant:
    """Add a variant to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[variant.name] = variant
    return variant


def variant_names() -> List[str]:
    """Names of the registered variants."""
    return list(_REGISTRY)


def get_variant(name: str) -> Variant:
    """The registered :class:`Variant` called ``name``; ConfigError with close names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=2, cutoff=0.5)
        hint = f"Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(describe("variant", f"one of {list(_REGISTRY)}", name, hint))
    return _REGISTRY[name]


def recipe_options(variant: str) -> Dict[str, Any]:
    """Every option of ``variant`` with its default (a copy)."""
    return dict(get_variant(variant).defaults)


@dataclass
class Recipe:
    """A variant with the user's choices; :meth:`render` builds fresh pieces and renders them.

    Attributes:
        variant: the variant's name.
        layer: the layer of the masked-unit objective (None with ``objective``).
        mask: its unit mask (None with ``objective``).
        generator: the generator of DGN variants (not modified; it is frozen during renders).
        objective: an objective used instead of the masked-unit one (any Lucent objective).
        options: every option of the variant, defaults filled in.
        given: the option names the user set.
    """

    variant: str
    layer: Any = None
    mask: Any = None
    generator: Optional[nn.Module] = None
    objective: Any = None
    options: Dict[str, Any] = field(default_factory=dict)
    given: Tuple[str, ...] = ()

    @property
    def spec(self) -> Variant:
        return get_variant(self.variant)

    def build(self, model: Optional[nn.Module] = None) -> Pieces:
        """Fresh pieces for a render on ``model`` (its ``input_size`` fills size options left None).

        Pieces are built outside ``torch.inference_mode()`` so a recipe renders inside it too.
        """
        with torch.inference_mode(False):
            pieces = self.spec.build(self, model)
        pieces.name = self.variant
        return pieces

    def render(self, model: Optional[nn.Module], **render_options: Any) -> RenderResult:
        """Build fresh pieces and render them on ``model``.

        Args:
            model: the network.
            **render_options: keyword arguments of :func:`lucent_dgn.render` (``seed`` -- default
                the recipe's ``seed`` option --, ``progress``, ``callbacks``, ``device``,
                ``stop_early``, ``preserve_pre_relu``, ``input_space``, ``preprocess``).
        """
        unknown = [k for k in render_options if k not in RENDER_OPTIONS]
        if unknown:
            raise ConfigError(describe(unknown[0], f"one of the render options {list(RENDER_OPTIONS)}", unknown[0],
                                       "Recipe options go to recipe(...)."))
        result = self.build(model).render(model, **render_options)
        result.settings["options"] = {k: _record(self.options[k]) for k in self.given}
        return result

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={_record(self.options[k])!r}" for k in self.given)
        return f"Recipe({self.variant!r}, layer={self.layer!r}{', ' + given if given else ''})"


def _record(value: Any) -> Any:
    """A short, JSON-friendly form of an option value for records."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, (str, int, float, bool)) or v is None for v in value):
        return list(value)
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    shape = getattr(value, "shape", None)
    return f"array{tuple(shape)}" if shape is not None else repr(value)[:80]


def recipe(variant: str, layer: Any = None, mask: Any = None, generator: Optional[nn.Module] = None, *,
           objective: Any = None, **options: Any) -> Recipe:
    """The preset ``variant`` with options; render it with ``.render(model, **render_options)``.

    Args:
        variant: a registered variant: ``"gd"``, ``"lbfgs"``, ``"dgn_gd"``, ``"dgn_lbfgs"``
            (cnnpref's four, :mod:`lucent_dgn.cnnpref.presets`) or any other registered one
            (:func:`variant_names`).
        layer: the layer whose units the masked-unit objective maximises.
        mask: the unit mask (see :func:`lucent_dgn.masked_units`).
        generator: the generator of DGN variants.
        objective: use this objective (any Lucent objective, e.g. a composition) instead of the
            masked-unit one; ``layer``, ``mask`` and the objective options are then not used.
        **options: the variant's options (:func:`recipe_options`), e.g. ``weight``, ``iter_n``,
            ``lr``, ``lower``/``upper``, ``solver``, ``transforms`` (extra transforms, appended).

    Raises:
        ConfigError: an unknown variant or option (the message lists the valid ones), a missing
            generator, a generator given to a pixel variant, or neither ``layer``/``mask`` nor
            ``objective``.
    """
    spec = get_variant(variant)
    unknown = [k for k in options if k not in spec.defaults]
    if unknown:
        render_hint = (f" {unknown[0]!r} is a render option: pass it to .render(model, ...)."
                       if unknown[0] in RENDER_OPTIONS else "")
        close = difflib.get_close_matches(unknown[0], list(spec.defaults), n=1)
        hint = (f"Did you mean {close[0]!r}? " if close else "") + f"Valid options: {sorted(spec.defaults)}."
        raise ConfigError(describe(unknown[0], f"an option of variant {variant!r}", unknown[0],
                                   (render_hint.strip() + " " + hint).strip()))
    for name, allowed in spec.choices.items():
        if name in options and options[name] not in allowed:
            raise ConfigError(describe(name, "one of " + ", ".join(map(repr, allowed)), options[name]))
    solver = options.get("solver", spec.defaults.get("solver"))
    for group, names in spec.option_groups.items():
        wrong = [k for k in options if k in names and group != solver]
        if wrong:
            raise ConfigError(describe(wrong[0], f"an option of the solver in use ({solver!r})", wrong[0],
                                       f"It belongs to solver={group!r}."))
    if spec.needs_generator and generator is None:
        raise ConfigError(describe("generator", f"a generator module for variant {variant!r}", None))
    if not spec.needs_generator and generator is not None:
        raise ConfigError(describe("generator", f"None for the pixel variant {variant!r}", type(generator).__name__,
                                   "Use a DGN variant (e.g. 'dgn_gd') to optimise a generator code."))
    if spec.needs_units and objective is None and (layer is None or mask is None):
        raise ConfigError(describe("layer, mask", "both given (or objective=...)", (layer, mask)))
    merged = dict(spec.defaults)
    merged.update(options)
    return Recipe(variant, layer, mask, generator, objective, merged, tuple(options))


def split_options(kwargs: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Split keyword arguments into (recipe options, render options)."""
    options = {k: v for k, v in kwargs.items() if k not in RENDER_OPTIONS or k == "seed"}
    render_options = {k: v for k, v in kwargs.items() if k in RENDER_OPTIONS and k != "seed"}
    return options, render_options


def signature_defaults(cls: Any, skip: Sequence[str] = ()) -> Dict[str, Any]:
    """Keyword arguments of ``cls.__init__`` with their defaults (for declaring solver options)."""
    params = inspect.signature(cls.__init__).parameters
    return {n: p.default for n, p in params.items()
            if n != "self" and n not in skip and p.default is not inspect.Parameter.empty}
