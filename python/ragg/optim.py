"""PyTorch through ragg: a DistributedOptimizer-style wrapper.

The model's parameters become views into one flat ragg_mem_alloc(3) buffer,
declared as one ragg tensor; their gradients are views into a second one.
``step(weight)`` is one ragg_pushpull(3): the gradient goes to the agents
with the local batch size as its weight, the servers apply their optimizer
to the sample-weighted mean over all workers, and the new parameters land
in the buffer the model reads. Over shm both buffers are shared with the
agent, so neither direction is copied.

The update is the servers': the learning rate and the optimizer are
``RAGG_LR``, ``RAGG_OPTIMIZER`` and ``RAGG_MOMENTUM`` as the servers read
them (ragg-run passes one environment to every process), not arguments
here. With ``RAGG_OPTIMIZER=sgd`` a step equals single-process SGD on the
union of the workers' batches with the loss averaged over it.
"""
import ctypes

import torch

from . import Context, WORKER, RaggError


class DistributedOptimizer:
    """Train ``params`` (e.g. ``model.parameters()``) through ragg.

    Collective over the workers: every worker constructs it with the same
    parameter shapes in the same order and the same ``name``. Worker 0's
    values become the initial parameters everywhere.
    """

    def __init__(self, ctx: Context, params, name="params"):
        if ctx.role != WORKER:
            raise RaggError("DistributedOptimizer on a %s" % ctx.role_name, -262)  # RAGG_ERR_ROLE
        self.ctx = ctx
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("no parameters")
        for p in self.params:
            if p.dtype != torch.float32 or p.device.type != "cpu":
                raise TypeError("ragg carries float32 CPU tensors, not %s on %s" % (p.dtype, p.device))
        self.count = sum(p.numel() for p in self.params)
        nbytes = self.count * 4
        self._param_addr = ctx.mem_alloc(nbytes)
        self._grad_addr = ctx.mem_alloc(nbytes)
        self.flat_params = _float_view(self._param_addr, self.count)
        self.flat_grads = _float_view(self._grad_addr, self.count)
        self._views = []
        off = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                pv = self.flat_params[off:off + n].view_as(p)
                gv = self.flat_grads[off:off + n].view_as(p)
                pv.copy_(p)
                p.data = pv
                p.grad = gv
                self._views.append(gv)
                off += n
        ctx._on_finalize.append(self._detach)
        self.tensor = ctx.declare(name, self._param_addr, self.count)

    def zero_grad(self, set_to_none=False):
        """Zero the flat gradient; every parameter's .grad is its view."""
        self.flat_grads.zero_()
        for p, gv in zip(self.params, self._views):
            p.grad = gv

    @torch.no_grad()
    def step(self, weight):
        """One round: push the gradient with ``weight`` (the local batch
        size), pull the parameters the servers computed."""
        for p, gv in zip(self.params, self._views):
            g = p.grad
            if g is None:
                gv.zero_()
            elif g.data_ptr() != gv.data_ptr():
                gv.copy_(g)  # autograd replaced the view (e.g. after set_to_none)
                p.grad = gv
        self.tensor.pushpull(self._grad_addr, weight, self._param_addr)

    def _detach(self):
        # ragg_finalize frees both buffers: the parameters get their own
        # memory first, so the model stays usable after the job.
        with torch.no_grad():
            for p in self.params:
                p.data = p.data.clone()
                p.grad = None
        self._views = []
        self.flat_params = self.flat_grads = None


def _float_view(address, count):
    buf = (ctypes.c_float * count).from_address(address)
    t = torch.frombuffer(buf, dtype=torch.float32, count=count)
    t._ragg_buffer = buf  # keep the ctypes object alive with the view
    return t
