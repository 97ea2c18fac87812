"""Small-number suppression: no count from 1 to 4 is shown, and no hidden cell can be worked out from
what is shown (the published cells, row totals, column totals and grand total)."""

from __future__ import annotations

from fractions import Fraction
from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.reports.suppression import (
    PRIMARY_MARK,
    SECONDARY_MARK,
    CountTable,
    Link,
    suppress,
    suppress_together,
)


def _values(table: CountTable) -> list[list[int]]:
    _, _, values, _ = table.grid()
    return values


def subtraction_attack(table: CountTable, published: list[list[str]]) -> dict[tuple[int, int], int]:
    """An attacker who knows that each published row and column adds up to its total, and solves any
    line with one unknown, over and over (independent of the implementation's linear algebra)."""
    n_rows, n_cols = len(published), len(published[0])
    known = {(i, j): int(v) for i in range(n_rows) for j, v in enumerate(published[i]) if v.isdigit()}
    lines = []
    row_totals = n_cols > len(table.columns)
    data_rows, data_cols = n_rows - 1, (n_cols - 1 if row_totals else n_cols)
    if row_totals:
        lines += [[(i, j) for j in range(data_cols)] + [(i, data_cols)] for i in range(n_rows)]
    lines += [[(i, j) for i in range(data_rows)] + [(data_rows, j)] for j in range(n_cols)]
    recovered: dict[tuple[int, int], int] = {}
    changed = True
    while changed:
        changed = False
        for line in lines:
            unknown = [c for c in line if c not in known]
            if len(unknown) != 1:
                continue
            *parts, total = line
            cell = unknown[0]
            if cell == total:
                value = sum(known[c] for c in parts)
            else:
                value = known[total] - sum(known[c] for c in parts if c != cell)
            known[cell] = recovered[cell] = value
            changed = True
    return recovered


def brute_force_values(table: CountTable, published: list[list[str]], cell: tuple[int, int]) -> set[int]:
    """Every value the hidden cell can take in a non-negative table consistent with what is shown."""
    values = _values(table)
    n_rows, n_cols = len(values), len(values[0])
    row_totals = n_cols > len(table.columns)
    data_rows, data_cols = n_rows - 1, (n_cols - 1 if row_totals else n_cols)
    hidden = [(i, j) for i in range(data_rows) for j in range(data_cols) if not published[i][j].isdigit()]
    bound = values[data_rows][n_cols - 1] if row_totals else max(values[data_rows])
    seen = set()
    for guess in product(range(bound + 1), repeat=len(hidden)):
        grid = [row[:data_cols] for row in values[:data_rows]]
        for (i, j), v in zip(hidden, guess, strict=True):
            grid[i][j] = v
        full = [row + ([sum(row)] if row_totals else []) for row in grid]
        full.append([sum(r[j] for r in full) for j in range(n_cols)])
        if all(published[i][j] == str(full[i][j]) for i in range(n_rows) for j in range(n_cols)
               if published[i][j].isdigit()):
            seen.add(full[cell[0]][cell[1]])
    return seen


tables = st.integers(min_value=1, max_value=4).flatmap(
    lambda n_rows: st.integers(min_value=1, max_value=4).flatmap(
        lambda n_cols: st.lists(
            st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 9, 14, 30]), min_size=n_cols, max_size=n_cols),
            min_size=n_rows, max_size=n_rows)))


@settings(max_examples=150, deadline=None)
@given(tables)
def test_no_small_count_is_shown_and_no_hidden_cell_can_be_worked_out(grid: list[list[int]]) -> None:
    table = CountTable.of("t", "T", "area", [f"c{j}" for j in range(len(grid[0]))],
                          [(f"r{i}", row) for i, row in enumerate(grid)])
    published = suppress(table)
    shown = [list(cells) for _, cells in published.rows]
    values = _values(table)
    for i, row in enumerate(shown):
        for j, text in enumerate(row):
            if 1 <= values[i][j] <= 4:
                assert text == PRIMARY_MARK
            elif text.isdigit():
                assert int(text) == values[i][j]
            else:
                assert text in (PRIMARY_MARK, SECONDARY_MARK)
    assert subtraction_attack(table, shown) == {}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 1, 3, 6]), min_size=2, max_size=2), min_size=2, max_size=2))
def test_every_hidden_cell_could_take_more_than_one_value(grid: list[list[int]]) -> None:
    # Exhaustive: every non-negative table consistent with what is shown (2x2 plus margins).
    table = CountTable.of("t", "T", "area", ["a", "b"], [("x", grid[0]), ("y", grid[1])])
    published = suppress(table)
    shown = [list(cells) for _, cells in published.rows]
    for i in range(2):
        for j in range(2):
            if shown[i][j] == PRIMARY_MARK:  # a hidden zero may be pinned to 0: nobody to identify
                assert len(brute_force_values(table, shown, (i, j))) > 1, (grid, shown)


def test_a_single_small_cell_in_a_list_hides_the_next_smallest_and_keeps_the_total() -> None:
    table = CountTable.of("risk", "Referrals by risk band", "risk band", ["referrals"],
                          [("high", [3]), ("medium", [12]), ("standard", [40])])
    published = suppress(table)
    assert published.rows == (("high", ("<5",)), ("medium", ("*",)), ("standard", ("40",)), ("Total", ("55",)))
    assert "<5" in published.csv() and "3" not in published.csv().split("\n", 1)[1].replace("<5", "")


def test_a_table_where_everything_is_small_hides_the_total_too() -> None:
    published = suppress(CountTable.of("t", "T", "band", ["n"], [("high", [2])]))
    assert published.rows == (("high", ("<5",)), ("Total", ("<5",)))
    published = suppress(CountTable.of("t", "T", "band", ["n"], [("high", [2]), ("low", [0])]))
    assert published.rows[0][1] == ("<5",) and published.rows[-1][1] != ("2",)


def test_not_additive_tables_hide_only_small_counts() -> None:
    # One survivor can share several characteristics: there is no total to subtract from.
    published = suppress(CountTable.of("c", "C", "characteristic", ["survivors"],
                                       [("deaf", [2]), ("lgbt+", [9])], additive=False))
    assert published.rows == (("deaf", ("<5",)), ("lgbt+", ("9",)))


def test_zero_is_shown() -> None:
    published = suppress(CountTable.of("t", "T", "band", ["n"], [("high", [0]), ("low", [7])]))
    assert published.rows == (("high", ("0",)), ("low", ("7",)), ("Total", ("7",)))


def test_two_way_table_with_margins() -> None:
    table = CountTable.of("t", "T", "ICB", ["accepted", "declined", "expired"],
                          [("A", [10, 2, 8]), ("B", [7, 9, 11]), ("C", [6, 12, 20])])
    published = suppress(table)
    shown = [list(cells) for _, cells in published.rows]
    assert shown[0][1] == PRIMARY_MARK
    assert subtraction_attack(table, shown) == {}
    assert Fraction(1)  # fractions are what the implementation uses; the attacker above does not


def test_tables_published_together_are_protected_together() -> None:
    # An ICB's referrals are its authorities' added up: a small authority hides a cell in the other table.
    icbs = CountTable.of("icb", "By ICB", "ICB", ["referrals"], [("North", [10]), ("South", [30])])
    las = CountTable.of("la", "By authority", "authority", ["referrals"],
                        [("North: Aston", [6]), ("North: Brig", [4]), ("South: Cray", [30])])
    links = [Link((("la", "North: Aston", "referrals"), ("la", "North: Brig", "referrals")),
                  ("icb", "North", "referrals")),
             Link((("la", "South: Cray", "referrals"),), ("icb", "South", "referrals")),
             Link((("la", "Total", "referrals"),), ("icb", "Total", "referrals"))]
    by_icb, by_la = suppress_together([icbs, las], links)
    assert by_la.rows[1] == ("North: Brig", ("<5",))
    # Alone, the authorities' table would show Aston (the total hides with it); with the ICB table beside
    # it, North = Aston + Brig would give Brig away, so North's count is hidden too.
    shown = {label: cells[0] for label, cells in (*by_icb.rows, *by_la.rows)}
    assert not (shown["North"].isdigit() and shown["North: Aston"].isdigit())


def _attack(equations: list[tuple[list[tuple[str, str, str]], tuple[str, str, str]]],
            shown: dict[tuple[str, str, str], str]) -> dict[tuple[str, str, str], int]:
    """Subtraction across tables: any published equation (parts add up to total) with one unknown."""
    known = {ref: int(text) for ref, text in shown.items() if text.isdigit()}
    recovered: dict[tuple[str, str, str], int] = {}
    changed = True
    while changed:
        changed = False
        for parts, total in equations:
            unknown = [ref for ref in (*parts, total) if ref not in known]
            if len(unknown) != 1:
                continue
            ref = unknown[0]
            known[ref] = recovered[ref] = (sum(known[p] for p in parts) if ref == total
                                           else known[total] - sum(known[p] for p in parts if p != ref))
            changed = True
    return recovered


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 1, 2, 4, 5, 7, 12, 40]), min_size=1, max_size=3), min_size=1, max_size=4))
def test_linked_tables_leak_no_hidden_cell_to_subtraction_across_them(icbs: list[list[int]]) -> None:
    # Each ICB has 1-3 authorities; the ICB table shows high/other by ICB; authorities add up to their ICB.
    la_rows = [(f"I{i}: L{j}", [v]) for i, las in enumerate(icbs) for j, v in enumerate(las)]
    icb_rows = [(f"I{i}", [sum(las) // 2, sum(las) - sum(las) // 2]) for i, las in enumerate(icbs)]
    by_icb = CountTable.of("icb", "I", "ICB", ["high", "other"], icb_rows)
    by_la = CountTable.of("la", "L", "LA", ["n"], la_rows)
    links = [Link(tuple(("la", f"I{i}: L{j}", "n") for j in range(len(las))), ("icb", f"I{i}", "Total"))
             for i, las in enumerate(icbs)] + [Link((("la", "Total", "n"),), ("icb", "Total", "Total"))]
    published = suppress_together([by_icb, by_la], links)
    shown = {(t.key, label, column): cell for t in published for label, cells in t.rows
             for column, cell in zip(t.columns, cells, strict=True)}
    equations = [([(link.parts[k]) for k in range(len(link.parts))], link.total) for link in links]
    for i in range(len(icbs)):
        equations.append(([("icb", f"I{i}", "high"), ("icb", f"I{i}", "other")], ("icb", f"I{i}", "Total")))
    for column in ("high", "other", "Total"):
        equations.append(([("icb", f"I{i}", column) for i in range(len(icbs))], ("icb", "Total", column)))
    equations.append(([("icb", "Total", "high"), ("icb", "Total", "other")], ("icb", "Total", "Total")))
    equations.append(([("la", label, "n") for label, _ in la_rows], ("la", "Total", "n")))
    assert not any(text in {"1", "2", "3", "4"} for text in shown.values())
    assert _attack(equations, shown) == {}
