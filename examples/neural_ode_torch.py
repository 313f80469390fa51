"""A neural ODE in torch, integrated with Parareal on the batched backend.

A small MLP ``f_theta(t, y)`` is fitted for a few hundred Adam steps to the spiral vector field
``y' = (y**3) A`` with ``A = [[-0.1, 2], [-2, -0.1]]`` (torchdiffeq's ``ode_demo``), by
regression on random points: no ODE solve in the training loop, so it takes a second or two.
Then a batch of initial states, a tensor of shape ``(n, 2)``, is integrated with
:func:`parareal.solve` using ``backend="batched"`` and ``vectorized=True``: every tick of the
engine calls the network once on all the states of all the slices in flight, stacked along a
leading axis, ``f(t, Y)`` with ``t`` of shape ``(B,)`` and ``Y`` of shape ``(B, n, 2)``.

The result is compared with :func:`torchdiffeq.odeint` using the same fixed-step method
(torchdiffeq's ``"rk4"`` is the 3/8 rule, ``parareal.RK4(variant="3/8")``) and with
:func:`parareal.solve_serial`, and the script reports calls of the network against the
critical path. ``--train-steps 0`` skips training (a random network with a fixed seed).

Run ``python examples/neural_ode_torch.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch
import torchdiffeq

import parareal

SPIRAL = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command-line options.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    argparse.Namespace
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300,
                        help="Adam steps fitting the spiral field (default 300; 0: random net)")
    parser.add_argument("--trajectories", type=int, default=64,
                        help="initial states integrated together (default 64)")
    parser.add_argument("--slices", type=int, default=16, help="time slices (default 16)")
    parser.add_argument("--fine-steps", type=int, default=25,
                        help="RK4 steps per slice of the fine propagator (default 25)")
    parser.add_argument("--coarse-steps", type=int, default=4,
                        help="RK4 steps per slice of the coarse propagator (default 4)")
    parser.add_argument("--t-end", type=float, default=8.0, help="end time (default 8)")
    parser.add_argument("--tol", type=float, default=1e-5,
                        help="absolute tolerance on the boundary update (default 1e-5)")
    parser.add_argument("--double", action="store_true", help="use float64 instead of float32")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser.parse_args(argv)


class VectorField(torch.nn.Module):
    """An MLP vector field ``f(t, y)`` on states ``(..., 2)``, with ``t`` as an input feature.

    Parameters
    ----------
    hidden : int
        Width of the two hidden layers.

    Notes
    -----
    ``t`` is a 0-d tensor when the field is called on one state (torchdiffeq, or parareal
    without ``vectorized``) and a vector of shape ``(B,)``, one time per stacked state, when
    parareal calls it with ``vectorized=True`` on ``y`` of shape ``(B, ..., 2)``. Both cases
    reduce to broadcasting ``t`` against ``y[..., :1]``.
    """

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, 2),
        )

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return ``dy/dt`` with the shape of ``y``."""
        if t.ndim == 1:  # a batched call: one time per leading index
            t = t.reshape(-1, *([1] * (y.ndim - 1)))
        tt = t.expand(y[..., :1].shape).to(y.dtype)
        return self.net(torch.cat([y**3, tt], dim=-1))


def spiral_field(y: torch.Tensor) -> torch.Tensor:
    """The target vector field ``(y**3) A`` on states ``(..., 2)``."""
    return (y**3) @ SPIRAL.to(y)


def train(field: VectorField, steps: int, dtype: torch.dtype) -> float:
    """Fit ``field`` to :func:`spiral_field` on random points of the disc of radius 2.2.

    Parameters
    ----------
    field : VectorField
        The network, trained in place.
    steps : int
        Adam steps (batches of 256 points).
    dtype : torch.dtype
        Dtype of the training points.

    Returns
    -------
    float
        The final mean squared error (NaN when ``steps == 0``).
    """
    if steps == 0:
        return float("nan")
    opt = torch.optim.Adam(field.parameters(), lr=3e-3)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        radius = 2.2 * torch.rand(256, 1, dtype=dtype).sqrt()
        angle = 2 * torch.pi * torch.rand(256, 1, dtype=dtype)
        y = torch.cat([radius * angle.cos(), radius * angle.sin()], dim=-1)
        t = torch.zeros((), dtype=dtype)
        loss = torch.mean((field(t, y) - spiral_field(y)) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns the exit status."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    # tiny matrices: one thread avoids OpenMP start-up and contention costs that can make
    # each call of the network many times slower than the arithmetic itself
    torch.set_num_threads(1)
    dtype = torch.float64 if args.double else torch.float32
    field = VectorField().to(dtype)

    start = time.perf_counter()
    mse = train(field, args.train_steps, dtype)
    print(f"trained {args.train_steps} steps in {time.perf_counter() - start:.2f} s, "
          f"mse {mse:.2e}")
    field.requires_grad_(False)  # inference only from here on

    angle = torch.linspace(0.0, 2 * torch.pi, args.trajectories + 1, dtype=dtype)[:-1]
    y0 = torch.stack([2.0 * angle.cos(), 2.0 * angle.sin()], dim=-1)  # shape (n, 2)
    coarse = parareal.RK4(steps=args.coarse_steps, variant="3/8")
    fine = parareal.RK4(steps=args.fine_steps, variant="3/8")
    span = (0.0, args.t_end)

    start = time.perf_counter()
    sol = parareal.solve(
        field, y0, span, coarse=coarse, fine=fine, slices=args.slices, tol=args.tol,
        backend="batched", schedule="pipelined", vectorized=True,
    )
    wall_parareal = time.perf_counter() - start
    print(f"parareal: {sol.status.value} after {sol.iterations} of {args.slices} iterations, "
          f"y has shape {tuple(sol.y.shape)} and dtype {sol.y.dtype}")
    print(f"{'iter':>4}  {'max update':>10}  {'critical path':>13}")
    for k, path in enumerate(sol.stats.critical_path_per_iteration):
        update = "-" if k == 0 else f"{sol.residuals[k - 1]:.3e}"
        print(f"{k:>4}  {update:>10}  {path:>13}")

    start = time.perf_counter()
    serial = parareal.solve_serial(field, y0, span, propagator=fine, slices=args.slices)
    wall_serial = time.perf_counter() - start
    h = (args.t_end / args.slices) / args.fine_steps
    start = time.perf_counter()
    reference = torchdiffeq.odeint(field, y0, torch.as_tensor(sol.t, dtype=dtype),
                                   method="rk4", options={"step_size": h})
    wall_torchdiffeq = time.perf_counter() - start
    eps = torch.finfo(dtype).eps
    print(f"max |parareal - solve_serial|      = {(sol.y - serial).abs().max():.2e}  "
          f"(tol = {args.tol:g} on the update, eps = {eps:.1e})")
    print(f"max |parareal - torchdiffeq.odeint| = {(sol.y - reference).abs().max():.2e}")

    stats = sol.stats
    serial_calls = args.slices * fine.evals
    print(f"network calls: parareal {stats.f_calls} batched calls ({stats.f_evals} slice "
          f"evaluations of {args.trajectories} states each); critical path {stats.critical_path} "
          f"vs {serial_calls} sequential calls for the serial fine solve "
          f"({serial_calls / stats.critical_path:.2f}x shorter)")
    print(f"wall time: parareal {wall_parareal:.3f} s, solve_serial {wall_serial:.3f} s, "
          f"torchdiffeq {wall_torchdiffeq:.3f} s (one CPU process: no parallel hardware)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
