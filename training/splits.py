"""Leak-free train/val/test assignment by source group."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

SPLITS = ("train", "val", "test")


class SplitLeakError(RuntimeError):
    """One source group would land on two sides of a split."""


def assign_splits(
    groups: Sequence[str],
    classes: Sequence[set[str]],
    seed: int = 0,
    fractions: Mapping[str, float] | None = None,
) -> list[str]:
    """A split name per image, decided per group, deterministic for a seed.

    ``groups[i]`` is image i's group id, ``classes[i]`` the set of classes it holds.
    First, for each class from the rarest, val and test each receive one group that
    holds it (when the class has at least three groups), so every class is present
    in val and test; the remaining groups then fill val and test up to their
    fraction of images, and the rest go to train.
    """
    fractions = dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    group_ids = sorted(members)
    rng = random.Random(seed)
    rng.shuffle(group_ids)
    gclasses = {g: set().union(*(classes[i] for i in members[g])) for g in group_ids}
    class_groups: dict[str, list[str]] = defaultdict(list)
    for g in group_ids:
        for c in sorted(gclasses[g]):
            class_groups[c].append(g)

    side: dict[str, str] = {}
    count: Counter[str] = Counter()

    def put(g: str, s: str) -> None:
        side[g] = s
        count[s] += len(members[g])

    for c in sorted(class_groups, key=lambda c: (len(class_groups[c]), c)):
        cands = class_groups[c]
        if len(cands) < 3:
            continue  # too few groups to show it on every side; it stays in train
        for s in ("test", "val"):
            if any(side.get(g) == s for g in cands):
                continue
            free = [g for g in cands if g not in side]
            if len(free) < 2:  # keep at least one group of the class for train
                break
            # the smallest free group, so that a rare class costs train little
            put(min(free, key=lambda g: (len(members[g]), group_ids.index(g))), s)

    total = len(groups)
    for g in group_ids:
        if g in side:
            continue
        for s in ("test", "val"):
            if count[s] + len(members[g]) / 2 <= fractions[s] * total:
                put(g, s)
                break
        else:
            put(g, "train")

    out = [side[g] for g in groups]
    check_no_leak(groups, out)
    return out


def check_no_leak(groups: Sequence[str], splits: Sequence[str]) -> None:
    """Raise :class:`SplitLeakError` when a group appears in more than one split."""
    where: dict[str, set[str]] = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        where[g].add(s)
    leaks = {g: sorted(s) for g, s in where.items() if len(s) > 1}
    if leaks:
        sample = ", ".join(f"{g} in {'/'.join(s)}" for g, s in list(leaks.items())[:5])
        raise SplitLeakError(f"{len(leaks)} source group(s) on more than one side of the split: {sample}")
