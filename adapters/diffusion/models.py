"""Model wrappers: a common ``model(x, t)`` interface for callables and diffusers UNets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from parareal.validation import check_real

__all__ = ["MODEL_CALL_HINT", "ModelCall", "ModelFn", "check_model_output", "wrap_model"]


class ModelFn:
    """The model output for a stack of states: ``fn(x, t)`` with ``x`` of shape ``(M, ...)``
    and ``t`` a tensor of ``M`` timesteps (long for DDIM steps, float32 for Euler and Heun).

    The wrappers of :func:`wrap_model` hand the user's callable or UNet copies of ``x`` and
    ``t``, so a model that writes into its input changes no state of the sampler (nor the
    caller's ``x_T``). A ``ModelFn`` subclass is called with the sampler's own tensors and
    must not write into them.

    Attributes
    ----------
    evals_per_state : int
        Network evaluations per state (2 with classifier-free guidance).
    """

    evals_per_state: int = 1

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_sample(self, x_T: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x_T`` does not fit the model."""

    def rows(self, start: int, stop: int) -> ModelFn:
        """The model for the samples ``start:stop`` of the batch (when a batch is split).

        Models whose inputs do not depend on the sample (the default) return themselves;
        per-sample inputs such as prompt embeddings are sliced.
        """
        return self


class _Callable(ModelFn):
    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # a copy: a model that writes into its input must not change the sampler's states
        return self.fn(x.clone(), t.clone())


class _UNet(ModelFn):
    """A diffusers ``UNet2DModel``: ``unet(x, t).sample``."""

    def __init__(self, unet: Any) -> None:
        self.unet = unet
        self.dtype = next(unet.parameters()).dtype

    def check_sample(self, x_T: torch.Tensor) -> None:
        config = self.unet.config
        channels = config.in_channels
        size = config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if x_T.ndim != 4 or x_T.shape[1] != channels or tuple(x_T.shape[2:]) != size:
            raise ValueError(
                f"x_T has shape {tuple(x_T.shape)}, but {type(self.unet).__name__} takes "
                f"(batch, {channels}, {size[0]}, {size[1]})"
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        x_in = x.to(self.dtype)
        if x_in is x:  # no cast: a copy, so that a UNet writing into its input changes no state
            x_in = x.clone()
        out = self.unet(x_in, t.clone(), **kwargs).sample
        return out.to(x.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.forward(x, t)


class _ConditionalUNet(_UNet):
    """A diffusers ``UNet2DConditionModel`` with prompt embeddings and optional guidance.

    With ``guidance_scale`` the unconditional and conditional halves run in one batch:
    ``eps = eps_uncond + scale * (eps_cond - eps_uncond)`` (diffusers' pipelines).
    """

    def __init__(
        self,
        unet: Any,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        guidance_scale: float | None,
    ) -> None:
        super().__init__(unet)
        self.prompt_embeds = prompt_embeds
        self.guidance_scale = guidance_scale
        self.negative_prompt_embeds = negative_prompt_embeds
        if guidance_scale is not None:
            if negative_prompt_embeds is None:
                self.negative_prompt_embeds = torch.zeros_like(prompt_embeds)
            self.evals_per_state = 2

    def rows(self, start: int, stop: int) -> _ConditionalUNet:
        def part(emb: torch.Tensor | None) -> torch.Tensor | None:
            return emb if emb is None or emb.shape[0] == 1 else emb[start:stop]

        return _ConditionalUNet(self.unet, part(self.prompt_embeds),  # type: ignore[arg-type]
                                part(self.negative_prompt_embeds), self.guidance_scale)

    def check_sample(self, x_T: torch.Tensor) -> None:
        super().check_sample(x_T)
        dim = self.unet.config.cross_attention_dim
        embeds: list[tuple[str, torch.Tensor | None]] = [("prompt_embeds", self.prompt_embeds)]
        if self.guidance_scale is not None:
            embeds.append(("negative_prompt_embeds", self.negative_prompt_embeds))
        for name, emb in embeds:
            assert emb is not None
            if emb.ndim != 3 or emb.shape[-1] != dim or emb.shape[0] not in (1, x_T.shape[0]):
                raise ValueError(
                    f"{name} has shape {tuple(emb.shape)}; expected (1 or {x_T.shape[0]}, "
                    f"sequence length, {dim})"
                )

    @staticmethod
    def _rows(emb: torch.Tensor, rows: int) -> torch.Tensor:
        # states are stacked slice-major: (slices * batch) rows, each slice the whole batch
        if emb.shape[0] == 1:
            return emb.expand(rows, -1, -1)
        return emb.repeat(rows // emb.shape[0], 1, 1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        cond = self._rows(self.prompt_embeds, rows).to(self.dtype)
        if self.guidance_scale is None:
            return self.forward(x, t, encoder_hidden_states=cond)
        assert self.negative_prompt_embeds is not None
        uncond = self._rows(self.negative_prompt_embeds, rows).to(self.dtype)
        out = self.forward(
            torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])
        )
        out_uncond, out_cond = out.chunk(2)
        return out_uncond + self.guidance_scale * (out_cond - out_uncond)


def _diffusers_class(model: Any) -> str | None:
    for cls in type(model).__mro__:
        if cls.__module__.startswith("diffusers") and cls.__name__ in (
            "UNet2DModel",
            "UNet2DConditionModel",
        ):
            return cls.__name__
    return None


def wrap_model(
    model: Any,
    *,
    guidance_scale: float | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
) -> ModelFn:
    """Wrap ``model`` as a :class:`ModelFn`.

    Parameters
    ----------
    model : callable or diffusers UNet
        Any callable ``model(x, t)`` returning the prediction (noise, v or sample, as the
        schedule's ``prediction_type`` says); a diffusers ``UNet2DModel``; or a
        ``UNet2DConditionModel`` (then ``prompt_embeds`` is required).
    guidance_scale : float, optional
        Classifier-free guidance scale (conditional UNets only).
        Finite; ``NaN``/``inf`` is a ``ValueError``, a non-real value a ``TypeError``.
    prompt_embeds, negative_prompt_embeds : torch.Tensor, optional
        Text embeddings ``(batch or 1, sequence, dim)``, finite floating tensors, e.g. from
        ``pipe.encode_prompt``. ``negative_prompt_embeds`` apply with ``guidance_scale``
        only, have the shape of ``prompt_embeds`` (as diffusers' pipelines require), and
        default to zeros.

    Raises
    ------
    TypeError, ValueError
        Naming the argument: a non-tensor, non-floating or non-finite embedding, mismatched
        embedding shapes, guidance or embeddings for a model that takes none.
    """
    extras = (guidance_scale, prompt_embeds, negative_prompt_embeds)
    if isinstance(model, ModelFn):
        if any(value is not None for value in extras):
            raise ValueError("guidance_scale and prompt embeddings cannot be added to a ModelFn; "
                             "pass the UNet2DConditionModel itself")
        return model
    kind = _diffusers_class(model)
    if guidance_scale is not None:
        guidance_scale = check_real(guidance_scale, "guidance_scale")
    for name, value in (("prompt_embeds", prompt_embeds),
                        ("negative_prompt_embeds", negative_prompt_embeds)):
        _check_embeds(value, name)
    if kind == "UNet2DConditionModel":
        if prompt_embeds is None:
            raise ValueError("UNet2DConditionModel needs prompt_embeds (e.g. pipe.encode_prompt)")
        if negative_prompt_embeds is not None:
            if guidance_scale is None:
                raise ValueError(
                    "negative_prompt_embeds apply with guidance_scale only (classifier-free "
                    "guidance); without guidance_scale the model sees prompt_embeds alone"
                )
            if negative_prompt_embeds.shape != prompt_embeds.shape:
                raise ValueError(
                    f"negative_prompt_embeds has shape {tuple(negative_prompt_embeds.shape)} but "
                    f"prompt_embeds has shape {tuple(prompt_embeds.shape)}; they must have the "
                    "same shape (their halves run in one batch)"
                )
        return _ConditionalUNet(model, prompt_embeds, negative_prompt_embeds, guidance_scale)
    if any(value is not None for value in extras):
        what = kind or "a plain model callable"
        raise ValueError(
            f"guidance_scale and prompt embeddings need a UNet2DConditionModel; got {what}"
        )
    if kind == "UNet2DModel":
        return _UNet(model)
    if not callable(model):
        raise TypeError(
            "model must be a callable model(x, t), a diffusers UNet2DModel or "
            f"UNet2DConditionModel, got {type(model).__name__}"
        )
    return _Callable(model)


def _check_embeds(value: Any, name: str) -> None:
    """Refuse prompt embeddings that are not finite floating tensors (``None`` passes)."""
    if value is None:
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or inf")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return "None" if value is None else f"a {type(value).__name__}"


def check_model_output(out: Any, x: torch.Tensor) -> torch.Tensor:
    """Return the model's output for the states ``x`` after checking it, in ``x``'s dtype.

    The output must be a floating ``torch.Tensor`` of exactly ``x``'s shape on ``x``'s device;
    another floating dtype is cast to ``x``'s (as the UNet wrappers do).

    Raises
    ------
    TypeError
        The output is not a tensor (``None``, a tuple, a ``UNet2DOutput``...) or not floating.
    ValueError
        Its shape differs from ``x``'s, including a flattened ``(M, D)`` output for states
        ``(M, C, H, W)`` (never reinterpreted), or it is on another device.
    """
    expected = f"the prediction as a tensor of x's shape {tuple(x.shape)}"
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model(x, t) returned {_describe(out)}; it must return {expected}")
    if out.shape != x.shape:
        raise ValueError(f"model(x, t) returned {_describe(out)}; it must return {expected}")
    if not out.is_floating_point():
        raise TypeError(f"model(x, t) returned {_describe(out)}; it must return a floating "
                        f"tensor (x has dtype {x.dtype})")
    if out.device != x.device:
        raise ValueError(f"model(x, t) returned a tensor on {out.device} for x on {x.device}")
    return out if out.dtype == x.dtype else out.to(x.dtype)


#: What :class:`ModelCall` notes on an exception raised by the model: how ``sample`` calls it
#: and the option that makes its calls smaller.
MODEL_CALL_HINT = (
    "sample calls the model on a stack of states along the batch axis: serial on the samples "
    "of a chunk, SRDS and Picard on several states of each sample at once; a model that takes "
    "one sample at a time needs method='serial' with max_batch=1 (max_batch bounds the "
    "samples per chunk)"
)


class ModelCall:
    """``model(x, t)`` as the sampler calls it: checked by :func:`check_model_output`, and
    never again after it failed once.

    An exception raised by the model, or by the check, gets a note (PEP 678) with the shape of
    ``x`` and :data:`MODEL_CALL_HINT`. Later calls raise ``RuntimeError`` at once without
    calling the model, so that nothing (a worker, the engine's check whether ``f`` takes one
    unbatched state) runs the failing model again or reports its failure as something else.
    """

    def __init__(self, model: ModelFn) -> None:
        self.model = model
        self.failed: BaseException | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.failed is not None:
            raise RuntimeError(f"the model already raised {type(self.failed).__name__} in this "
                               "run; it is not called again")
        try:
            return check_model_output(self.model(x, t), x)
        except Exception as exc:
            self.failed = exc
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(f"parareal: raised in a call model(x, t) with x of shape "
                             f"{tuple(x.shape)}; {MODEL_CALL_HINT}")
            raise
