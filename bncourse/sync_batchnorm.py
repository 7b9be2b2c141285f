"""SyncBatchNorm: Batch Normalization over the mini-batches of several processes.

With data parallelism each process sees only its own slice of the batch, and
plain BN normalises every slice with its own statistics: a batch of 64 split
over 8 processes is normalised as 8 batches of 8. SyncBatchNorm gives every
process the statistics of the whole batch, exchanging per-channel numbers
only, never the data:

- forward: each process computes (m_k, mu_k, M2_k) of its slice (the
  corrected two-pass algorithm of ``bncourse.gpu``); an all-gather gives every
  process all of them, and ``merge_batch_stats`` (Chan's formula) turns them
  into (n, mu_B, M2) of the union. Slices may have different sizes, even one
  sample or none.
- backward: dx needs sum dy and sum dy * x_hat over the whole batch; an
  all-reduce of the per-process sums gives them. dgamma and dbeta stay the
  sums over the process's own slice, as in ``torch.nn.SyncBatchNorm``: the
  data-parallel wrapper adds them up across processes with the other
  parameter gradients.

The collectives run on ``torch.distributed`` with any backend: gloo for CPU
tensors, NCCL for CUDA tensors (``init_process_group("nccl")``). Without an
initialised process group, with one process, or in evaluation mode the
layer is the plain ``bncourse.gpu`` BN, as torch's is. Parameters and
buffers are those of ``torch.nn.SyncBatchNorm``, so state dicts load both ways.

``spawn_gloo_processes`` starts a small gloo group on this machine (loopback
only), for tests and the book's demonstration.
"""

from __future__ import annotations

import datetime
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.autograd.function import once_differentiable

from bncourse import _validate
from bncourse._tensors import channel_vector, check_tensor, compute_dtype, per_channel, reduce_dims
from bncourse.gpu import _batch_stats, _BatchNorm, _blend_running_stats, merge_batch_stats

__all__ = ["SyncBatchNorm", "SyncBatchNormFunction", "spawn_gloo_processes", "compare_with_whole_batch"]


class SyncBatchNormFunction(torch.autograd.Function):
    """Training-mode BN with statistics over all processes of ``group``.

    ``apply(x, gamma, beta, eps, group)`` returns ``(out, mean, var, m)``:
    the output, and the whole batch's mu_B, biased sigma^2_B and number of
    values per channel (no gradient), so that running statistics use them
    without another exchange.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, group: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        compute = compute_dtype(x)
        values = x.to(compute)
        m_local = _validate.values_per_channel(x)
        if m_local > 0:
            centred, local_mean, local_var = _batch_stats(values)
        else:  # an empty slice: no values, statistics that the merge ignores
            centred = values
            local_mean = local_var = values.new_zeros(per_channel(gamma, x.ndim).shape)
        # One message per process: (m_k, mu_k, M2_k) in float64, so counts are exact.
        local = torch.cat(
            [
                torch.tensor([m_local], dtype=torch.float64, device=x.device),
                local_mean.reshape(-1).double(),
                (local_var * m_local).reshape(-1).double(),
            ]
        )
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
        dist.all_gather(gathered, local, group=group)
        table = torch.stack(gathered)  # (processes, 1 + 2C)
        channels = x.shape[1]
        count, mean, m2 = merge_batch_stats(table[:, 0], table[:, 1 : 1 + channels], table[:, 1 + channels :])
        m = int(count.item())
        if m <= 1:
            raise ValueError(f"x: Expected more than 1 value per channel when training, got {m} over all processes")
        var = m2 / m
        # x - mu_B = (x - mu_k) + (mu_k - mu_B): the locally repaired centring plus a small offset.
        offset = (local_mean.reshape(-1).double() - mean).to(compute)
        inv_std = torch.rsqrt(per_channel(var, x.ndim) + eps).to(compute)
        x_hat = (centred + per_channel(offset, x.ndim)) * inv_std
        gamma_b = per_channel(gamma.to(compute), x.ndim)
        out = gamma_b * x_hat + per_channel(beta.to(compute), x.ndim)
        ctx.save_for_backward(x_hat, gamma_b, inv_std)
        ctx.settings = (m, group, x.dtype, gamma.dtype)
        mean_c, var_c = mean.to(compute), var.to(compute)
        ctx.mark_non_differentiable(mean_c, var_c, count)
        return out.to(x.dtype), mean_c, var_c, count

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor, *_unused: Any) -> tuple[torch.Tensor | None, ...]:
        x_hat, gamma_b, inv_std = ctx.saved_tensors
        m, group, x_dtype, gamma_dtype = ctx.settings
        dy = dout.to(x_hat.dtype)
        dims = reduce_dims(x_hat.ndim)
        dbeta_local = dy.sum(dim=dims)
        dgamma_local = (dy * x_hat).sum(dim=dims)
        sums = torch.cat([dbeta_local, dgamma_local])
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)  # one message: both sums
        dbeta, dgamma = (per_channel(part, x_hat.ndim) for part in sums.chunk(2))
        dx = (gamma_b * inv_std / m) * (m * dy - dbeta - x_hat * dgamma)
        return dx.to(x_dtype), dgamma_local.to(gamma_dtype), dbeta_local.to(gamma_dtype), None, None


class SyncBatchNorm(_BatchNorm):
    """Drop-in replacement of ``torch.nn.SyncBatchNorm``: input (N, C, *spatial), any N >= 0 per process.

    Same constructor (``process_group`` None means the default group), same
    parameters and buffers. In training with more than one process, every
    process normalises with the statistics of the whole batch and all
    processes update identical running statistics.
    """

    _input_dims = tuple(range(2, 9))

    def __init__(
        self,
        num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,  # as BatchNorm1d/2d
        affine: bool = True, track_running_stats: bool = True,
        process_group: Any = None,  # where torch.nn.SyncBatchNorm has it: before device and dtype
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
        *, bias: bool = True,  # False: no beta, as in recent torch.nn.SyncBatchNorm
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.process_group = process_group

    def _synchronised(self) -> bool:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return False
        return dist.get_world_size(self.process_group) > 1

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._synchronised():
            return super().forward(input)
        self._check_input_dim(input)
        momentum = self._count_batch()  # synchronised implies training
        input = check_tensor("input", input)
        ones = input.new_ones(self.num_features, dtype=compute_dtype(input))
        gamma = self.weight if self.weight is not None else ones
        beta = self.bias if self.bias is not None else torch.zeros_like(ones)
        for name, vector in (("weight", gamma), ("bias", beta)):
            channel_vector(name, vector, input.shape[1], input)
        out, mean, var, count = SyncBatchNormFunction.apply(input, gamma, beta, self.eps, self.process_group)
        if self.track_running_stats:
            m = int(count.item())
            new_mean, new_var = _blend_running_stats(
                self.running_mean, self.running_var, mean.reshape(-1), var.reshape(-1), m, momentum
            )
            with torch.no_grad():
                self.running_mean.copy_(new_mean)
                self.running_var.copy_(new_var)
        return out


# ----------------------------------------------------------------------------- local process groups


def _gloo_worker(rank: int, world_size: int, port: int, worker: Callable[..., Any], args: tuple, results: Any) -> None:
    store = dist.TCPStore("127.0.0.1", port, world_size + 1, is_master=False, timeout=datetime.timedelta(seconds=60))
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60)
    )
    try:
        results.put((rank, "ok", worker(rank, world_size, *args)))
    except BaseException:  # reported to the parent, which raises it
        results.put((rank, "error", traceback.format_exc()))
    finally:
        dist.destroy_process_group()


def spawn_gloo_processes(worker: Callable[..., Any], world_size: int, *args: Any, timeout: float = 120.0) -> list[Any]:
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` new processes joined by gloo.

    The processes talk over loopback (127.0.0.1) through a TCP store that
    this process opens on a port the operating system picks (no port is
    guessed, so parallel runs cannot collide).

    Inputs:
    - worker: a function importable by name (defined in a module, not in a
      notebook or ``__main__``), whose return value can be pickled.
    - world_size: number of processes, >= 1.
    - args: further arguments for worker, picklable.
    - timeout: seconds after which the processes are killed and TimeoutError raised.

    Returns the list of the workers' return values, by rank. A worker's
    exception is raised here as a RuntimeError carrying its traceback.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: expected a positive int, got {world_size!r}")
    store = dist.TCPStore(
        "127.0.0.1", 0, world_size + 1, is_master=True, wait_for_workers=False, timeout=datetime.timedelta(seconds=60)
    )
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_gloo_worker, args=(rank, world_size, store.port, worker, args, results), daemon=True)
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + timeout
    outcomes: dict[int, tuple[str, Any]] = {}
    try:
        while len(outcomes) < world_size:
            try:  # read results while waiting: a large result would block its sender until read
                rank, status, value = results.get(timeout=0.2)
                outcomes[rank] = (status, value)
                continue
            except queue.Empty:
                pass
            silent = [rank for rank, p in enumerate(processes) if p.exitcode is not None and rank not in outcomes]
            if silent:  # killed or crashed before reporting (the others may then wait forever)
                outcomes[silent[0]] = ("error", f"exited with code {processes[silent[0]].exitcode}, no result")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"spawn_gloo_processes: the {world_size} processes did not finish in {timeout} s")
    finally:
        for process in processes:
            process.join(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
            if process.is_alive():
                process.kill()
                process.join()
    for rank, (status, value) in sorted(outcomes.items()):
        if status != "ok":
            raise RuntimeError(f"spawn_gloo_processes: rank {rank} failed:\n{value}")
    return [outcomes[rank][1] for rank in range(world_size)]


def compare_with_whole_batch(rank: int, world_size: int, sizes: tuple[int, ...], seed: int = 0) -> dict[str, float]:
    """A worker for ``spawn_gloo_processes``: this rank's slice through three normalisations.

    All ranks build the same batch of ``sum(sizes)`` examples (N, 3, 4, 4),
    float64, from ``seed``; rank k takes the k-th slice of ``sizes[k]``
    examples and compares, with BN over the whole batch (one process):

    - SyncBatchNorm on the slice (statistics of the whole batch);
    - plain BN on the slice alone (statistics of the slice).

    Returns the largest absolute differences from the whole-batch BN of the
    output and of dl/dx for l = sum(out * dout), for both, keyed
    "sync out", "sync dx", "local out", "local dx".
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (sum(sizes), 3, 4, 4)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 2 + 1
    dout = torch.randn(shape, generator=generator, dtype=torch.float64)
    start, stop = sum(sizes[:rank]), sum(sizes[: rank + 1])
    whole = x.clone().requires_grad_()
    expected = torch.nn.functional.batch_norm(whole, None, None, training=True)
    expected.backward(dout)
    differences = {}
    for name, layer in (
        ("sync", SyncBatchNorm(3, dtype=torch.float64)),
        ("local", torch.nn.BatchNorm2d(3, dtype=torch.float64)),
    ):
        part = x[start:stop].clone().requires_grad_()
        out = layer(part)
        out.backward(dout[start:stop])
        differences[f"{name} out"] = (out - expected[start:stop]).abs().max().item()
        differences[f"{name} dx"] = (part.grad - whole.grad[start:stop]).abs().max().item()
    return differences
