"""The report's second table: every objective on one shared backbone, and what that says.

Rows (from the method table, :mod:`neurossl.catalog`): the backbone that another family's
objective is trained on (a method with ``objective_of``), every pretraining method on
that backbone (its own objective, e.g. ``calm``, and the borrowed ones, e.g.
``dual_axis_mtm``), then the backbone's scratch control as a control row. Columns and
cells are the headline matrix's (:func:`neurossl.report.matrix.build_matrix`), so a cell
reads the same in both tables and a cell without a value says why.

The comparison, per column: the spread (best minus worst mean) between the objectives
on the shared backbone, beside the spread between the same objectives on their own
families' backbones (``mtm``, ``poyo_ssl``, ``calm`` in the headline matrix). On the
shared backbone only the objective differs; on their own backbones objective and
architecture differ together. Only objectives with a value in both tables are compared,
so the two spreads are over the same set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurossl import catalog
from neurossl.names import higher_is_better
from neurossl.report.matrix import Column, Matrix, Objective
from neurossl.report.tables import OK


def shared_rows() -> tuple[Objective, ...]:
    """Pretraining methods on a backbone that hosts a borrowed objective, then controls."""
    specs = catalog.methods()
    backbones = {s.backbone for s in specs if s.objective_of}
    ablations = {a for s in specs for a in s.ablations}
    native = [
        s for s in specs if s.pretrains and s.backbone in backbones and s.name not in ablations
    ]
    rows = [Objective(s.name, s.objective or "", s.scratch) for s in native]
    controls = dict.fromkeys(s.scratch for s in native if s.scratch)
    rows += [Objective(c, "none (random initialisation)", None, control=True) for c in controls]
    return tuple(rows)


def family_objective(method: str) -> str:
    """The family method whose objective ``method`` trains (itself for a family method)."""
    return catalog.method(method).objective_of or method


@dataclass(frozen=True)
class Spread:
    """One column's gap between objectives on the shared backbone and on their own."""

    column: Column
    #: Family objectives compared (those with a value in both tables).
    objectives: tuple[str, ...]
    shared: float = math.nan
    own: float = math.nan
    shared_best: str = ""
    own_best: str = ""

    @property
    def compared(self) -> bool:
        return len(self.objectives) >= 2

    def sentence(self) -> str:
        c = self.column
        name = f"{c.modality} {c.task} ({c.metric})"
        objectives = ", ".join(self.objectives)
        text = (
            f"{name}: the objectives ({objectives}) differ by {self.shared:.3g} on the "
            f"shared backbone (best {self.shared_best}) and by {self.own:.3g} on their own "
            f"backbones (best {self.own_best})"
        )
        if self.own > 0:
            text += f"; the shared-backbone spread is {self.shared / self.own:.0%} of the other"
        return text + "."


def objective_vs_backbone(shared: Matrix, own: Matrix) -> list[Spread]:
    """Per column of the shared table, the spreads of :class:`Spread`."""
    spreads = []
    for column in shared.columns:
        means: dict[str, tuple[str, float, float]] = {}
        for row in shared.rows:
            if row.control:
                continue
            family = family_objective(row.method)
            a, b = shared.cells.get((row.method, column)), own.cells.get((family, column))
            if a is None or b is None or a.state != OK or b.state != OK:
                continue
            if math.isfinite(a.mean) and math.isfinite(b.mean):
                means[family] = (row.method, a.mean, b.mean)
        if len(means) < 2:
            spreads.append(Spread(column, tuple(means)))
            continue
        sign = 1.0 if higher_is_better(column.metric) else -1.0
        top_shared = max(sign * m[1] for m in means.values())
        top_own = max(sign * m[2] for m in means.values())
        # Ties are named together ("a = b"), not broken by row order.
        shared_best = " = ".join(m[0] for m in means.values() if sign * m[1] == top_shared)
        own_best = " = ".join(f for f, m in means.items() if sign * m[2] == top_own)
        spreads.append(
            Spread(
                column,
                tuple(means),
                max(m[1] for m in means.values()) - min(m[1] for m in means.values()),
                max(m[2] for m in means.values()) - min(m[2] for m in means.values()),
                shared_best,
                own_best,
            )
        )
    return spreads
