"""A block-wise test part that meets ``test_size`` overall and per class, and the split summary that says so.

A spatial test part is made of whole blocks (:mod:`lcmodel.accuracy.spatial_cv`). Taking blocks one by one,
largest first, can miss the target badly: on the demo data it put 127 of 999 rows in the test part for
``test_size: 0.2``, with one class at 0.9 % and another at 56 %. :func:`balanced_test_blocks` chooses the
blocks to minimise the deviation of the overall and the per-class test shares from the target:

* the cost of a choice is, over the overall share and each class's share, ``BIG * excess^2 + deviation^2``,
  where ``deviation = share - test_size`` and ``excess`` is how far ``|deviation|`` exceeds the class's
  allowed deviation (``max(tolerance, 1 / n_c)``: within the tolerance, or within one row of the target for
  a class too small for it); a class left with no test row or no train row costs ``BIG`` more;
* a seeded greedy start (blocks largest first, random order among equal sizes; a block goes to the test part
  when that lowers the cost), then local search: the best single move of a block to the other side while one
  lowers the cost, then, while a share is still outside its allowed deviation, the best swap of a test block
  with a train block (quadratic in the blocks, so only then);
* several seeded starts (:data:`N_STARTS`), the cheapest kept (the first on ties): bit-for-bit reproducible.

:func:`split_shares` is the ``split`` summary written with the training table (``spatial_blocks.json``
``summary``): the overall and per-class test shares, the target, the tolerance, met or not and, where not, by
how much and why (a class that lies in one block; a class whose blocks allow no share near the target; a
trade-off with the other classes). The random (stratified) split is summarised the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lcmodel.errors import InputDataError, InsufficientDataError

__all__ = ["DEFAULT_TOLERANCE", "N_STARTS", "balanced_test_blocks", "split_shares"]

#: Allowed deviation of a test share from ``sampling.test_size`` (absolute, in share units: 0.2 +/- 0.05).
DEFAULT_TOLERANCE = 0.05

#: Seeded starts of the block search; the cheapest result is kept.
N_STARTS = 8

_BIG = 1e4
_MAX_ROUNDS = 2000


def balanced_test_blocks(
    blocks: np.ndarray, labels: np.ndarray, test_size: float, *, tolerance: float = DEFAULT_TOLERANCE,
    random_state: int = 42,
) -> np.ndarray:
    """Boolean test mask of whole blocks whose overall and per-class test shares are near ``test_size``.

    Parameters
    ----------
    blocks : block id per sample (e.g. :func:`lcmodel.accuracy.grid_blocks`).
    labels : class per sample.
    test_size : target share of the test part, strictly between 0 and 1.
    tolerance : allowed deviation of each share (see the module docstring for the cost).
    random_state : seed of the starts.

    Returns
    -------
    ndarray of bool
        One per sample; all samples of a block are on the same side.
    """
    g = np.asarray(blocks)
    lab = np.asarray(labels)
    if g.shape != lab.shape or g.ndim != 1:
        raise InputDataError(f"blocks {g.shape} and labels {lab.shape} must be 1-D arrays of the same length")
    uniq_g, gi = np.unique(g, return_inverse=True)
    if uniq_g.size < 2:
        raise InsufficientDataError(
            f"{uniq_g.size} spatial block(s) for a train/test split; lower sampling.block_size, or use "
            "sampling.split: random"
        )
    _, ci = np.unique(lab, return_inverse=True)
    counts = np.zeros((uniq_g.size, int(ci.max()) + 1), dtype=np.float64)
    np.add.at(counts, (gi.reshape(-1), ci.reshape(-1)), 1.0)
    chosen = _search(counts, float(test_size), float(tolerance), random_state)
    if not chosen.any() or chosen.all():  # e.g. one block holds nearly every sample
        raise InsufficientDataError(
            f"no choice of whole blocks ({uniq_g.size}) gives a test part and a training part; lower "
            "sampling.block_size, or use sampling.split: random"
        )
    return np.asarray(chosen[gi.reshape(-1)], dtype=bool)


def _costs(totals: np.ndarray, class_tot: np.ndarray, t: float, allow: np.ndarray) -> np.ndarray:
    """Cost of each candidate (rows of ``totals``: test counts, column 0 the overall size, then per class)."""
    share = totals / class_tot
    dev = share - t
    excess = np.maximum(np.abs(dev) - allow, 0.0)
    one_sided = ((totals <= 0) | (totals >= class_tot)) & (class_tot >= 2)
    weight = np.ones(class_tot.size)
    weight[0] = class_tot.size - 1  # the overall share counts as much as all classes together
    return np.asarray(((_BIG * excess**2 + dev**2 + _BIG * one_sided) * weight).sum(axis=-1))


def _within(total: np.ndarray, class_tot: np.ndarray, t: float, allow: np.ndarray) -> bool:
    """Every share within its allowed deviation and no class one-sided."""
    one_sided = ((total <= 0) | (total >= class_tot)) & (class_tot >= 2)
    return bool((np.abs(total / class_tot - t) <= allow).all() and not one_sided.any())


def _search(counts: np.ndarray, t: float, tolerance: float, random_state: int) -> np.ndarray:
    """The cheapest block choice over :data:`N_STARTS` seeded starts (see the module docstring)."""
    n_groups = counts.shape[0]
    blocks = np.concatenate([counts.sum(axis=1, keepdims=True), counts], axis=1)  # overall size first
    class_tot = blocks.sum(axis=0)
    allow = np.maximum(tolerance, 1.0 / class_tot)
    rng = np.random.default_rng(random_state)
    best: np.ndarray | None = None
    best_cost = np.inf
    for _ in range(N_STARTS):
        order = rng.permutation(n_groups)
        order = order[np.argsort(-blocks[order, 0], kind="stable")]
        chosen = np.zeros(n_groups, dtype=bool)
        total = np.zeros(blocks.shape[1])
        for grp in order:  # greedy start
            add, keep = _costs(np.stack([total + blocks[grp], total]), class_tot, t, allow)
            if add < keep:
                chosen[grp] = True
                total += blocks[grp]
        cost = float(_costs(total[None, :], class_tot, t, allow)[0])
        for _round in range(_MAX_ROUNDS):
            sign = np.where(chosen, -1.0, 1.0)[:, None]
            moves = _costs(total[None, :] + sign * blocks, class_tot, t, allow)
            i = int(np.argmin(moves))
            if moves[i] < cost - 1e-15:
                chosen[i] = not chosen[i]
                total += sign[i] * blocks[i]
                cost = float(moves[i])
                continue
            inside, outside = np.flatnonzero(chosen), np.flatnonzero(~chosen)
            if not inside.size or not outside.size or _within(total, class_tot, t, allow):
                break  # swaps (quadratic in the blocks) only while a share is outside its allowed deviation
            a, b, swap = _best_swap(total, blocks, inside, outside, class_tot, t, allow)
            if swap >= cost - 1e-15:
                break
            chosen[a], chosen[b] = False, True
            total += blocks[b] - blocks[a]
            cost = swap
        if cost < best_cost:
            best, best_cost = chosen.copy(), cost
    assert best is not None
    return best


def _best_swap(total: np.ndarray, blocks: np.ndarray, inside: np.ndarray, outside: np.ndarray,
               class_tot: np.ndarray, t: float, allow: np.ndarray) -> tuple[int, int, float]:
    """The cheapest swap of a test block (``inside``) with a train block (``outside``): (block in, block out, cost);
    computed in chunks of test blocks so that memory stays near a few million numbers."""
    best = (-1, -1, np.inf)
    step = max(1, 2_000_000 // max(1, outside.size * blocks.shape[1]))
    for start in range(0, inside.size, step):
        part = inside[start:start + step]
        swaps = _costs(total[None, None, :] - blocks[part][:, None, :] + blocks[outside][None, :, :],
                       class_tot, t, allow)
        a, b = np.unravel_index(int(np.argmin(swaps)), swaps.shape)
        if swaps[a, b] < best[2]:
            best = (int(part[a]), int(outside[b]), float(swaps[a, b]))
    return best


def _nearest_share(block_counts: np.ndarray, t: float) -> float:
    """The test share nearest ``t`` that whole blocks of these row counts allow (subset sums, a bitset)."""
    reach = 1
    for c in block_counts.astype(np.int64).tolist():
        if c > 0:
            reach |= reach << c
    n = int(block_counts.sum())
    sums = np.array([k for k in range(n + 1) if (reach >> k) & 1], dtype=np.float64)
    sums = sums[(sums > 0) & (sums < n)] if n >= 2 and ((sums > 0) & (sums < n)).any() else sums
    return float(sums[np.argmin(np.abs(sums / n - t))] / n)


def split_shares(
    labels: np.ndarray, test: np.ndarray, test_size: float, *, strategy: str,
    tolerance: float = DEFAULT_TOLERANCE, blocks: np.ndarray | None = None,
) -> dict[str, Any]:
    """The ``split`` summary: overall and per-class test shares against the target, met or not and why.

    Parameters
    ----------
    labels : class per row; test : boolean test mask per row.
    test_size : the target share; tolerance : the allowed deviation (a class may also be one row off).
    strategy : ``spatial`` or ``random``; blocks : block id per row (spatial), to say why a share is missed.

    Returns
    -------
    dict
        ``strategy``, ``target``, ``tolerance``, ``n_rows``, ``n_test``, ``test_share``, ``allowed``,
        ``overall_met`` and ``reason`` (None when met), ``met`` (overall and every class),
        ``n_blocks``/``n_test_blocks`` (spatial), ``per_class`` (``{str(class): {n, n_test, test_share,
        allowed, met, reason, [n_blocks]}}``) and ``unmet`` (one sentence per missed share).
    """
    lab = np.asarray(labels)
    te = np.asarray(test, dtype=bool)
    t, tol = float(test_size), float(tolerance)
    n, n_test = int(lab.size), int(te.sum())
    allowed = max(tol, 1.0 / n) if n else tol
    out: dict[str, Any] = {
        "strategy": strategy, "target": t, "tolerance": tol, "n_rows": n, "n_test": n_test,
        "test_share": n_test / n if n else float("nan"), "allowed": allowed,
    }
    g = None if blocks is None else np.asarray(blocks)
    if g is not None:
        out["n_blocks"] = int(np.unique(g).size)
        out["n_test_blocks"] = int(np.unique(g[te]).size)
    fix = "lower sampling.block_size (more, smaller blocks) or use sampling.split: random"
    per_class: dict[str, dict[str, Any]] = {}
    unmet: list[str] = []
    for c in np.unique(lab).tolist():
        rows = lab == c
        nc, tc = int(rows.sum()), int((rows & te).sum())
        row: dict[str, Any] = {"n": nc, "n_test": tc, "test_share": tc / nc, "allowed": max(tol, 1.0 / nc)}
        dev = tc / nc - t
        one_sided = nc >= 2 and tc in (0, nc)
        row["met"] = bool(abs(dev) <= row["allowed"] + 1e-12 and not one_sided)
        row["reason"] = None
        if g is not None:
            _, per_block = np.unique(g[rows], return_counts=True)
            row["n_blocks"] = int(per_block.size)
        if not row["met"]:
            if g is None:
                why = f"{nc} row(s) are too few for a share of {t:g} in both parts"
            elif per_block.size == 1:
                why = (f"all {nc} rows lie in one block and whole blocks go to one side, so its test share can only "
                       "be 0 or 1")
            else:
                best = _nearest_share(per_block, t)
                if abs(best - t) > row["allowed"] + 1e-12:
                    why = (f"its {nc} rows lie in {per_block.size} blocks (the largest holds {int(per_block.max())}): "
                           f"the nearest test share whole blocks allow is {best:.3f}")
                else:
                    why = (f"whole blocks allow a share of {best:.3f} for it alone, but not together with the "
                           "overall share and the other classes (they share its blocks)")
            row["reason"] = why
            unmet.append(f"class {c}: test share {tc / nc:.3f} ({tc} of {nc}) is off the target {t:g} by "
                         f"{dev:+.3f} (allowed +/- {row['allowed']:.3f}): {why}; {fix if g is not None else ''}"
                         .rstrip("; "))
        per_class[str(c)] = row
    dev = out["test_share"] - t
    out["overall_met"] = bool(abs(dev) <= allowed + 1e-12)
    out["reason"] = None
    if not out["overall_met"]:
        count = f"{out['n_blocks']} blocks" if g is not None else f"{n} rows"
        out["reason"] = (f"whole blocks ({count}) allow no choice nearer the target together with the per-class "
                         "shares" if g is not None else f"{count} are too few")
        unmet.insert(0, f"overall: test share {out['test_share']:.3f} ({n_test} of {n}) is off the target {t:g} by "
                        f"{dev:+.3f} (allowed +/- {allowed:.3f}): {out['reason']}")
    out["met"] = out["overall_met"] and all(r["met"] for r in per_class.values())
    out["per_class"] = per_class
    out["unmet"] = unmet
    return out
