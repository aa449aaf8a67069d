"""A job's checkpoint: a ``core.FitState`` as bytes (``torch.save``) and back."""

from __future__ import annotations

import io

import torch

import core

__all__ = ["checkpoint_bytes", "load_checkpoint"]


def checkpoint_bytes(state: core.FitState) -> bytes:
    """``state`` serialised for the store, without its history.

    The history lives in ``trace_points``; the checkpoint keeps its keys only, so that its
    size does not grow with the iteration count.
    """
    d = state.state_dict()
    d["history"] = {k: [] for k in state.history}
    buf = io.BytesIO()
    torch.save(d, buf)
    return buf.getvalue()


def load_checkpoint(data: bytes, device: torch.device) -> core.FitState:
    """The state that :func:`checkpoint_bytes` wrote, with its tensors on ``device``."""
    # onto the job's device: resuming a CUDA job must not continue on the CPU
    d = torch.load(io.BytesIO(data), weights_only=True, map_location=device)
    return core.FitState.from_state_dict(d)
