"""An Inductor graph pass for :class:`core.Compiled`: a tall, skinny product as its transpose.

A linear model's step multiplies the data ``X`` (``n x d``) by the weights' transpose
(``d x c``, ``c`` classes): an ``n x c`` output with ``c`` far below ``n``. BLAS computes
that shape slowly on the CPU; the same numbers as ``(W Xᵀ)ᵀ``, a ``c x n`` product of the
same operands (views, nothing is copied), came 1.7x faster (MKL, one thread, ``n=5000``,
``d=785``, ``c=10``: 4.2 ms against 2.5 ms), and a compiled step of
``benchmarks.library.peers``' problem 7.2 ms against 5.7 ms without a graph, 12.7 against
9.9 ms with one. The rewrite changes the order of no sum, only which operand BLAS walks
along rows, so the result is the same up to the kernel's rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

__all__ = ["SkinnyProducts", "compile_options"]

_aten = torch.ops.aten

# rewrite an m x n product when n <= _MAX_N and m >= _RATIO * n: the shapes measured above
# (n = 10 columns, 500 times as many rows); wider outputs BLAS already handles well
_MAX_N = 32
_RATIO = 8


class SkinnyProducts(CustomGraphPass):
    """Replace ``mm(a, b)`` whose output is tall and skinny by ``mm(bᵀ, aᵀ)ᵀ`` (see module)."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        """Rewrite the graph in place (Inductor's ``post_grad_custom_post_pass``)."""
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target is not _aten.mm.default:
                continue
            a, b = node.args
            av = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
            bv = b.meta.get("val") if isinstance(b, torch.fx.Node) else None
            if av is None or bv is None:
                continue
            m, n = av.shape[0], bv.shape[1]
            if not (isinstance(m, int) and isinstance(n, int) and n <= _MAX_N and m >= _RATIO * n):
                continue
            if av.device.type != "cpu":  # measured with MKL only; cuBLAS picks its own kernels
                continue
            with graph.inserting_before(node):
                bt = graph.call_function(_aten.permute.default, (b, [1, 0]))
                at = graph.call_function(_aten.permute.default, (a, [1, 0]))
                ct = graph.call_function(_aten.mm.default, (bt, at))
                c = graph.call_function(_aten.permute.default, (ct, [1, 0]))
            # Inductor's lowering reads each node's fake value
            bt.meta["val"], at.meta["val"] = bv.permute(1, 0), av.permute(1, 0)
            ct.meta["val"] = bv.new_empty((n, m))  # mm's output: contiguous n x m
            c.meta["val"] = ct.meta["val"].permute(1, 0)
            node.replace_all_uses_with(c)
            graph.erase_node(node)

    def uuid(self) -> Any:
        """The key of the pass in Inductor's cache: this file's contents."""
        from torch._inductor.custom_graph_pass import get_hash_for_files

        return get_hash_for_files((__file__,))


# one instance for every compile: Dynamo reuses a compiled function's code only for an equal
# backend, and options holding a new pass each time would make each Compiled recompile (and
# soon reach torch.compile's recompile limit, past which it runs eagerly)
_PASS = SkinnyProducts()


def compile_options() -> dict[str, Any]:
    """``torch.compile``'s ``options`` for the default mode: the pass above."""
    return {"post_grad_custom_post_pass": _PASS}
