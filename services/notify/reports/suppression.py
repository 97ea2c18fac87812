"""Small-number suppression for published counts.

A count from 1 to 4 could identify a survivor in a small area, so it is shown as "<5" (primary
suppression). Published totals are linear equations over the cells, so one hidden cell in a row whose
other cells and total are shown could be worked out by subtraction; further cells (secondary
suppression, shown as "*") are hidden until no hidden cell is determined by the published figures.

A cell is determined when its unit vector lies in the row space of the published equations restricted
to the hidden cells: that is exactly "recoverable by any sequence of additions and subtractions of the
published rows, columns and totals", and it covers two-way tables with both margins, not only one line
at a time. Secondary cells are chosen smallest first (least information lost), interior cells before
totals, non-zero cells before zeros.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

SMALL_MAX = 4  # 1..SMALL_MAX is suppressed; 0 is shown (nobody to identify)
PRIMARY_MARK = "<5"
SECONDARY_MARK = "*"
TOTAL = "Total"


class Hidden(StrEnum):
    shown = "shown"
    primary = "primary"  # a count from 1 to 4
    secondary = "secondary"  # hidden so that a primary cell cannot be worked out


Cell = tuple[int, int]  # (row, column) in the table including its totals


@dataclass(frozen=True)
class CountTable:
    """A table of counts. ``additive`` says the cells of a row add up to something published (the row
    total column and the total row are then added here): only then can subtraction recover a cell. A
    table where one survivor counts in several columns (characteristics) is not additive."""

    key: str
    title: str
    row_header: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[int, ...]], ...]
    additive: bool = True
    # Row totals are meaningful only where each survivor falls in one column of the row.
    row_totals: bool = True
    note: str = ""

    @classmethod
    def of(cls, key: str, title: str, row_header: str, columns: Sequence[str],
           rows: Iterable[tuple[str, Sequence[int]]], **options: object) -> CountTable:
        return cls(key, title, row_header, tuple(columns),
                   tuple((label, tuple(int(v) for v in values)) for label, values in rows), **options)  # type: ignore[arg-type]

    def grid(self) -> tuple[list[str], list[str], list[list[int]], list[list[Cell]]]:
        """Row labels, column labels, the values with totals added, and the published equations (each a
        list of cells whose last entry is the total the others add up to)."""
        labels = [label for label, _ in self.rows]
        columns = list(self.columns)
        values = [list(v) for _, v in self.rows]
        equations: list[list[Cell]] = []
        if not self.additive:
            return labels, columns, values, equations
        n_rows, n_cols = len(values), len(columns)
        with_row_totals = self.row_totals and n_cols > 1
        if with_row_totals:
            columns.append(TOTAL)
            for i, row in enumerate(values):
                row.append(sum(row))
                equations.append([*((i, j) for j in range(n_cols)), (i, n_cols)])
        width = len(columns)
        labels.append(TOTAL)
        values.append([sum(values[i][j] for i in range(n_rows)) for j in range(width)])
        for j in range(width):
            equations.append([*((i, j) for i in range(n_rows)), (n_rows, j)])
        if with_row_totals:
            equations.append([*((n_rows, j) for j in range(n_cols)), (n_rows, n_cols)])
        return labels, columns, values, equations


@dataclass(frozen=True)
class PublishedTable:
    """A table as it may be shown: every cell as text, with the original kept only for tests."""

    key: str
    title: str
    row_header: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    hidden: frozenset[Cell] = frozenset()
    note: str = ""

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([self.row_header, *self.columns])
        for label, cells in self.rows:
            writer.writerow([label, *cells])
        return out.getvalue()

    def number(self, row: str, column: str) -> int | None:
        """A shown count (``None`` when hidden), for charts."""
        index = self.columns.index(column)
        for label, cells in self.rows:
            if label == row:
                return int(cells[index]) if cells[index].isdigit() else None
        raise KeyError(row)


Ref = tuple[str, str, str]  # (table key, row label, column label): a cell named across tables
Key = tuple[str, int, int]  # (table key, row, column)


@dataclass(frozen=True)
class Link:
    """A published fact joining tables: the cells ``parts`` add up to the cell ``total`` (a grand total shown
    in two tables is the link ``Link((a,), b)``; an ICB's referrals are the sum of its authorities')."""

    parts: tuple[Ref, ...]
    total: Ref


# Arithmetic modulo a large prime (exact integers, no fractions): these equations are sums of cells
# equal to totals, whose matrices have minors of 0 and ±1, so their ranks modulo the prime are their
# ranks over the rationals. (Were a rank ever to differ, a cell would only seem determined when it is
# not, and be protected needlessly... or, vanishingly unlikely, the reverse; the tests check both ways.)
PRIME = (1 << 61) - 1


def determined(equations: list[list[Key]], hidden: set[Key],
               cache: dict[frozenset[Key], set[Key]] | None = None) -> set[Key]:
    """The hidden cells that the published equations pin down, worked out separately for each group of
    hidden cells that equations join (``cache`` keeps each group's answer between calls)."""
    parent = {cell: cell for cell in hidden}

    def root(cell: Key) -> Key:
        while parent[cell] != cell:
            parent[cell] = parent[parent[cell]]
            cell = parent[cell]
        return cell

    touching: list[list[Key]] = []
    for equation in equations:
        inside = [cell for cell in equation if cell in parent]
        if inside:
            touching.append(equation)
            first = root(inside[0])
            for cell in inside[1:]:
                parent[root(cell)] = first
    groups: dict[Key, set[Key]] = {}
    for cell in hidden:
        groups.setdefault(root(cell), set()).add(cell)
    by_group: dict[Key, list[list[Key]]] = {}
    for equation in touching:
        cell = next(c for c in equation if c in parent)
        by_group.setdefault(root(cell), []).append(equation)
    found: set[Key] = set()
    for top, cells in groups.items():
        key = frozenset(cells)
        if cache is not None and key in cache:
            found |= cache[key]
            continue
        result = _determined(by_group.get(top, []), cells)
        if cache is not None:
            cache[key] = result
        found |= result
    return found


def _determined(equations: list[list[Key]], hidden: set[Key]) -> set[Key]:
    """The hidden cells that the published equations pin down.

    Each equation is a list of cells whose last one is the total of the others. A hidden cell is
    determined exactly when its unit vector lies in the row space of the equations restricted to the
    hidden cells: in reduced row echelon form, a pivot row with no other entry. Rows are sparse (a
    line of a table), so the elimination keeps them as dictionaries."""
    number = {cell: k for k, cell in enumerate(sorted(hidden))}
    basis: dict[int, dict[int, int]] = {}
    for equation in equations:
        *parts, total = equation
        row: dict[int, int] = {}
        for cell in parts:
            if cell in number:
                row[number[cell]] = (row.get(number[cell], 0) + 1) % PRIME
        if total in number:
            row[number[total]] = (row.get(number[total], 0) - 1) % PRIME
        for pivot in [c for c in row if c in basis]:
            factor = row.get(pivot, 0)
            if factor:
                for column, value in basis[pivot].items():
                    row[column] = (row.get(column, 0) - factor * value) % PRIME
        row = {c: v for c, v in row.items() if v}
        if not row:
            continue
        pivot = min(row)
        inverse = pow(row[pivot], PRIME - 2, PRIME)
        row = {c: v * inverse % PRIME for c, v in row.items()}
        for other in basis.values():
            factor = other.get(pivot)
            if factor:
                for column, value in row.items():
                    other[column] = (other.get(column, 0) - factor * value) % PRIME
                for column in [c for c, v in other.items() if not v]:
                    del other[column]
        basis[pivot] = row
    cells = sorted(hidden)
    return {cells[p] for p, row in basis.items() if len(row) == 1}


def suppress(table: CountTable) -> PublishedTable:
    """One table on its own (see ``suppress_together``)."""
    return suppress_together([table])[0]


def suppress_together(tables: Sequence[CountTable], links: Sequence[Link] = ()) -> list[PublishedTable]:
    """Hide counts of 1 to 4, then the fewest further cells (smallest first) so that none can be worked
    out from everything published together: each table's totals and the ``links`` between tables."""
    grids = {t.key: t.grid() for t in tables}
    value: dict[Key, int] = {}
    equations: list[list[Key]] = []
    margins: set[Key] = set()
    for t in tables:
        _, _, values, local = grids[t.key]
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                value[(t.key, i, j)] = v
                if t.additive and (i == len(t.rows) or j >= len(t.columns)):
                    margins.add((t.key, i, j))
        equations += [[(t.key, i, j) for i, j in eq] for eq in local]

    for t in tables:
        labels = [label for label, _ in t.rows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{t.key}: row labels must be unique (links find rows by label)")

    def key(ref: Ref) -> Key:
        labels, columns, _, _ = grids[ref[0]]
        return (ref[0], labels.index(ref[1]), columns.index(ref[2]))

    equations += [[*(key(p) for p in link.parts), key(link.total)] for link in links]
    primary = {cell for cell, v in value.items() if 1 <= v <= SMALL_MAX}
    hidden = set(primary)

    def cost(other: Key) -> tuple[bool, bool, int, Key]:
        return (value[other] == 0, other in margins, value[other], other)

    lines_of: dict[Key, list[int]] = {}
    for k, equation in enumerate(equations):
        for cell in equation:
            lines_of.setdefault(cell, []).append(k)
    answers: dict[frozenset[Key], set[Key]] = {}
    while exposed := determined(equations, hidden, answers):
        # One new hidden cell for each exposed cell whose lines nothing hid yet this round, then look again.
        touched: set[int] = set()
        for cell in sorted(exposed):
            lines = lines_of.get(cell, [])
            if touched.intersection(lines):  # a cell hidden this round may already protect it
                continue
            # The line that gives it away is the one where it is (nearly) the only unknown: hide another
            # cell there, not in a long line that happens to hold a smaller count.
            open_lines = [k for k in lines if any(other not in hidden for other in equations[k])]
            fewest = min((sum(c in hidden for c in equations[k]) for k in open_lines), default=0)
            candidates = {other for k in open_lines if sum(c in hidden for c in equations[k]) == fewest
                          for other in equations[k] if other not in hidden}
            if not candidates:  # its lines are all hidden, yet it is pinned down: widen to any cell
                candidates = {c for c in value if c not in hidden}
            if not candidates:
                break
            chosen = min(candidates, key=cost)
            hidden.add(chosen)
            touched.update(lines_of.get(chosen, []))
        else:
            continue
        break
    return [_published(t, grids[t.key], primary, hidden) for t in tables]


def _published(table: CountTable, grid: tuple[list[str], list[str], list[list[int]], list[list[Cell]]],
               primary: set[Key], hidden: set[Key]) -> PublishedTable:
    labels, columns, values, _ = grid
    mine = {(i, j) for k, i, j in hidden if k == table.key}
    small = {(i, j) for k, i, j in primary if k == table.key}
    shown_rows = tuple(
        (label, tuple(PRIMARY_MARK if (i, j) in small else SECONDARY_MARK if (i, j) in mine else str(v)
                      for j, v in enumerate(values[i])))
        for i, label in enumerate(labels)
    )
    note = table.note
    if mine:
        note = (note + " " if note else "") + (
            f'"{PRIMARY_MARK}": a count from 1 to {SMALL_MAX}, hidden to protect survivors.'
            + (f' "{SECONDARY_MARK}": hidden so that a "{PRIMARY_MARK}" cannot be worked out from the totals.'
               if mine - small else ""))
    return PublishedTable(table.key, table.title, table.row_header, tuple(columns), shown_rows,
                          frozenset(mine), note.strip())
