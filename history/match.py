"""Matching the findings of a flight to the site's tracks: pure functions on arrays.

1. Positions go to a local east/north plane in metres (equirectangular around the site;
   at plant scale, a few km, it differs from the geodesic distance by far less than GPS noise).
2. The flight's GPS bias (:func:`estimate_offset`): the median displacement between mutually
   nearest findings and tracks of one family within ``offset_search_m``, refined once within
   the gate; it is removed from the flight's positions before the gate applies.
3. One-to-one assignment (:func:`assign`): pairs of one family within their gate are the
   edges of a bipartite graph; each connected component is solved by SciPy's
   ``linear_sum_assignment`` on the distances (plus a penalty for a change of class within
   the family), so 5,000 findings cost thousands of tiny problems, not one 5,000² matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from detector.geo import metres_per_degree


class Plane:
    """Latitude/longitude <-> metres east/north of an origin."""

    def __init__(self, lat0: float, lon0: float) -> None:
        self.lat0, self.lon0 = lat0, lon0
        self.m_lat, self.m_lon = metres_per_degree(lat0)

    def to_xy(self, lat: np.ndarray | Sequence[float], lon: np.ndarray | Sequence[float]) -> np.ndarray:
        lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
        return np.stack([(lon - self.lon0) * self.m_lon, (lat - self.lat0) * self.m_lat], axis=1).reshape(-1, 2)

    def to_latlon(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return self.lat0 + xy[:, 1] / self.m_lat, self.lon0 + xy[:, 0] / self.m_lon


def _groups(families: Sequence[str]) -> dict[str, np.ndarray]:
    out: dict[str, list[int]] = {}
    for i, f in enumerate(families):
        out.setdefault(f, []).append(i)
    return {f: np.asarray(ix, np.int64) for f, ix in out.items()}


def _mutual_pairs(
    t_xy: np.ndarray, t_fam: Sequence[str], o_xy: np.ndarray, o_fam: Sequence[str], radius: float
) -> np.ndarray:
    """Displacements (obs - track) of mutually nearest same-family pairs within ``radius``."""
    out = []
    tg = _groups(t_fam)
    for fam, oi in _groups(o_fam).items():
        ti = tg.get(fam)
        if ti is None or not len(ti):
            continue
        tt, ot = cKDTree(t_xy[ti]), cKDTree(o_xy[oi])
        d1, n1 = tt.query(o_xy[oi], distance_upper_bound=radius)  # each obs -> nearest track
        _, n2 = ot.query(t_xy[ti], distance_upper_bound=radius)  # each track -> nearest obs
        for k in np.nonzero(np.isfinite(d1))[0]:
            j = n1[k]
            if n2[j] == k:
                out.append(o_xy[oi[k]] - t_xy[ti[j]])
    return np.asarray(out, np.float64).reshape(-1, 2)


def estimate_offset(
    t_xy: np.ndarray,
    t_fam: Sequence[str],
    o_xy: np.ndarray,
    o_fam: Sequence[str],
    *,
    search_m: float,
    gate_m: float,
    min_pairs: int,
) -> tuple[np.ndarray, int]:
    """The flight's position bias against the tracks (east, north metres) and how many pairs
    it rests on; zero when fewer than ``min_pairs`` pairs are found."""
    zero = np.zeros(2)
    if not len(t_xy) or not len(o_xy) or search_m <= 0:
        return zero, 0
    d = _mutual_pairs(t_xy, t_fam, o_xy, o_fam, search_m)
    if len(d) < min_pairs:
        return zero, len(d)
    off = np.median(d, axis=0)
    d2 = _mutual_pairs(t_xy, t_fam, o_xy - off, o_fam, gate_m)  # refine: only the pairs the gate accepts
    if len(d2) >= min_pairs:
        off = off + np.median(d2, axis=0)
        return off, len(d2)
    return off, len(d)


def assign(
    t_xy: np.ndarray,
    t_fam: Sequence[str],
    t_cls: Sequence[str],
    o_xy: np.ndarray,
    o_fam: Sequence[str],
    o_cls: Sequence[str],
    gates: np.ndarray,
    *,
    class_penalty_m: float = 0.0,
) -> list[tuple[int, int, float]]:
    """One-to-one pairs (track index, observation index, distance m) of the same family
    within the observation's gate (``gates[i]``), minimising the summed distance."""
    if not len(t_xy) or not len(o_xy):
        return []
    rows: list[int] = []
    cols: list[int] = []
    cost: list[float] = []
    dist: list[float] = []
    tg = _groups(t_fam)
    for fam, oi in _groups(o_fam).items():
        ti = tg.get(fam)
        if ti is None:
            continue
        tree = cKDTree(t_xy[ti])
        near = tree.query_ball_point(o_xy[oi], r=float(np.max(gates[oi])))
        for k, cand in enumerate(near):
            o = int(oi[k])
            for j in cand:
                t = int(ti[j])
                dd = float(math.hypot(*(o_xy[o] - t_xy[t])))
                if dd <= gates[o]:
                    rows.append(t)
                    cols.append(o)
                    dist.append(dd)
                    cost.append(dd + (class_penalty_m if t_cls[t] != o_cls[o] else 0.0))
    if not rows:
        return []
    nt, no = len(t_xy), len(o_xy)
    r, c = np.asarray(rows), np.asarray(cols)
    graph = coo_matrix((np.ones(len(r)), (r, nt + c)), shape=(nt + no, nt + no))
    _, label = connected_components(graph, directed=False)
    edges: dict[int, list[int]] = {}
    for e in range(len(r)):
        edges.setdefault(int(label[r[e]]), []).append(e)
    out: list[tuple[int, int, float]] = []
    for es in edges.values():
        if len(es) == 1:
            e = es[0]
            out.append((int(r[e]), int(c[e]), dist[e]))
            continue
        ts = sorted({int(r[e]) for e in es})
        os_ = sorted({int(c[e]) for e in es})
        ti = {t: i for i, t in enumerate(ts)}
        oi = {o: i for i, o in enumerate(os_)}
        big = 1e9
        m = np.full((len(ts), len(os_)), big)
        d = np.zeros_like(m)
        for e in es:
            m[ti[int(r[e])], oi[int(c[e])]] = cost[e]
            d[ti[int(r[e])], oi[int(c[e])]] = dist[e]
        a, b = linear_sum_assignment(m)
        for i, j in zip(a, b, strict=True):
            if m[i, j] < big:
                out.append((ts[i], os_[j], float(d[i, j])))
    return sorted(out)


def covered(points: np.ndarray, cams: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each point, whether it lies within ``radii[k]`` of some camera position ``cams[k]``."""
    res = np.zeros(len(points), bool)
    if not len(points) or not len(cams):
        return res
    tree = cKDTree(cams)
    near = tree.query_ball_point(points, r=float(np.max(radii)))
    for i, cand in enumerate(near):
        for k in cand:
            if math.hypot(*(points[i] - cams[k])) <= radii[k]:
                res[i] = True
                break
    return res
