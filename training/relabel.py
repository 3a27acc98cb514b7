"""Label decisions applied while building the training set (see ``configs/taxonomy.yaml``)."""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]


def merge_adjacent(boxes: Sequence[Box], gap: float) -> list[Box]:
    """Boxes that touch or lie within ``gap`` x the smaller box's shorter side of each other merged
    into their enclosing box (transitively: connected components).

    Used for per-cell diode-fault labels: a bypass-diode fault heats one substring of a module,
    and a thermographer reports the substring, not each of its cells. Merging its cells gives one
    box per fault, the unit the model is asked to find and the priority counts.
    """
    n = len(boxes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sides = [min(x2 - x1, y2 - y1) for x1, y1, x2, y2 in boxes]
    order = sorted(range(n), key=lambda i: boxes[i][0])
    for a_pos, i in enumerate(order):
        x1, y1, x2, y2 = boxes[i]
        for j in order[a_pos + 1 :]:
            u1, v1, u2, v2 = boxes[j]
            tol = gap * min(sides[i], sides[j])
            if u1 - x2 > gap * max(sides) + 1e-9:  # sorted by x1: nothing further right can touch
                break
            dx = max(u1 - x2, x1 - u2, 0.0)
            dy = max(v1 - y2, y1 - v2, 0.0)
            if dx <= tol and dy <= tol:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        out.append(
            (
                min(boxes[k][0] for k in members),
                min(boxes[k][1] for k in members),
                max(boxes[k][2] for k in members),
                max(boxes[k][3] for k in members),
            )
        )
    return sorted(out)
