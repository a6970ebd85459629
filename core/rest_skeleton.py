"""A target model's rest skeleton (bone names, rest positions, hierarchy, leg-IK chains) and forward kinematics.

The retargeter (``core.retarget``) only needs the bones of a PMX model, not its mesh: this module holds them as
numpy arrays, either read from a PMX model (:meth:`RestSkeleton.from_pmx`) or built in (:meth:`RestSkeleton.standard`,
so the engine works without any model file).

Frames and units: MMD model space, MMD units (1 unit = 8 cm), left-handed, Y up, the model faces -Z and its left is
+X (``core.conventions``; docs/MMD_FACTS.md §2.1). A PMX bone has a position only and no rest orientation: every rest
frame is aligned with the model axes (docs/MMD_FACTS.md §2.2), so a "world rotation" below is the rotation carrying a bone
from its rest pose to its posed frame. Quaternions are (x, y, z, w) (``core.quat``).

Bone names are matched exactly, byte for byte (full-width ``ＩＫ`` in 足ＩＫ / つま先ＩＫ, ASCII ``IK`` in 足IK親;
docs/MMD_FACTS.md §4); :data:`BONE_ALIASES` gives the common English forms (docs/MMD_FACTS.md §4 list) that :meth:`RestSkeleton.find`
also accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from . import quat as Q

__all__ = ["BONE_ALIASES", "IkChain", "KNEE_LIMIT", "RestSkeleton", "STANDARD_BONES"]


def _aliases() -> dict[str, str]:
    centre = {
        "全ての親": "master", "操作中心": "view cnt", "センター": "center", "グルーブ": "groove", "腰": "waist",
        "上半身": "upper body", "上半身2": "upper body2", "上半身3": "upper body3", "下半身": "lower body",
        "首": "neck", "頭": "head", "両目": "eyes",
    }
    sided = {
        "肩P": "shoulderP", "肩": "shoulder", "肩C": "shoulderC", "腕": "arm", "腕捩": "arm twist",
        "ひじ": "elbow", "手捩": "wrist twist", "手首": "wrist", "目": "eye",
        "足": "leg", "ひざ": "knee", "足首": "ankle", "つま先": "toe", "足ＩＫ": "leg IK", "つま先ＩＫ": "toe IK",
        "足IK親": "leg IKP", "足D": "leg D", "ひざD": "knee D", "足首D": "ankle D", "足先EX": "toe2",
        "親指０": "thumb0", "親指１": "thumb1", "親指２": "thumb2",
        "人指１": "fore1", "人指２": "fore2", "人指３": "fore3", "中指１": "middle1", "中指２": "middle2",
        "中指３": "middle3", "薬指１": "third1", "薬指２": "third2", "薬指３": "third3",
        "小指１": "little1", "小指２": "little2", "小指３": "little3",
    }
    out = dict(centre)
    for side, tag in (("左", "_L"), ("右", "_R")):
        for jp, en in sided.items():
            out[side + jp] = en + tag
        out["腰キャンセル" + side] = "waist cancel" + tag       # the side comes last in this name (docs/MMD_FACTS.md §4)
    return out


#: Japanese bone name -> common English alias (docs/MMD_FACTS.md §4: the 100-bone fixture's and yw's English names).
#: English names are not standardised in models, so these are only a convenience for :meth:`RestSkeleton.find`.
BONE_ALIASES: dict[str, str] = _aliases()


def _norm_alias(s: str) -> str:
    return " ".join(s.replace("_", " ").lower().split())


_ALIAS_TO_JP = {_norm_alias(en): jp for jp, en in BONE_ALIASES.items()}


#: The built-in standard skeleton: (name, English name, rest position (MMD units), parent name or None).
#: Source: ``pmx/fixtures/test_semi_basic_bone.pmx`` (three-mmd-loader test fixture, yohawing/three-mmd-loader
#: ``test/fixtures``, MIT; "準標準ボーン", 100 bones), positions rounded to 3 decimals. Kept: the standard and
#: semi-standard bones the retargeter uses (body, arms with the two twist bones, index/little finger roots for the
#: hand frame, legs, leg IK). Each parent is the nearest kept ancestor in the file (the file's own parent for every
#: bone here). The fixture has no 全ての親 / グルーブ / 腰 / 肩P / 腰キャンセル: センター is its root and 足ＩＫ bones
#: are roots, as in a standard-only model. ``tests/test_rest_skeleton.py`` checks these numbers against the file.
STANDARD_BONES: tuple[tuple[str, str, tuple[float, float, float], str | None], ...] = (
    ("センター", "center", (0.000, 8.000, 0.000), None),
    ("上半身", "upper body", (0.000, 13.301, -0.255), "センター"),
    ("上半身2", "upper body2", (0.000, 14.392, -0.166), "上半身"),
    ("首", "neck", (0.000, 16.418, 0.000), "上半身2"),
    ("頭", "head", (0.000, 16.799, 0.000), "首"),
    ("両目", "eyes", (0.000, 21.000, -0.700), "頭"),
    ("下半身", "lower body", (0.000, 13.243, -0.255), "センター"),
    ("左肩", "shoulder_L", (0.136, 16.130, 0.265), "上半身2"),
    ("左腕", "arm_L", (0.891, 15.689, 0.318), "左肩"),
    ("左腕捩", "arm twist_L", (1.844, 15.368, 0.305), "左腕"),
    ("左ひじ", "elbow_L", (3.591, 14.148, 0.282), "左腕捩"),
    ("左手捩", "wrist twist_L", (4.036, 13.782, 0.276), "左ひじ"),
    ("左手首", "wrist_L", (5.270, 12.725, 0.272), "左手捩"),
    ("左人指１", "fore1_L", (6.134, 11.974, 0.046), "左手首"),
    ("左小指１", "little1_L", (6.013, 11.924, 0.576), "左手首"),
    ("左足", "leg_L", (0.797, 10.753, -0.073), "下半身"),
    ("左ひざ", "knee_L", (0.674, 5.927, -0.053), "左足"),
    ("左足首", "ankle_L", (0.875, 1.340, 0.000), "左ひざ"),
    ("左足ＩＫ", "leg IK_L", (0.875, 1.340, 0.000), None),
    ("左つま先", "toe_L", (0.929, 0.000, -2.464), "左足首"),
    ("左つま先ＩＫ", "toe IK_L", (0.929, 0.000, -2.464), "左足ＩＫ"),
    ("右肩", "shoulder_R", (-0.136, 16.130, 0.265), "上半身2"),
    ("右腕", "arm_R", (-0.891, 15.689, 0.318), "右肩"),
    ("右腕捩", "arm twist_R", (-1.844, 15.368, 0.305), "右腕"),
    ("右ひじ", "elbow_R", (-3.591, 14.148, 0.282), "右腕捩"),
    ("右手捩", "wrist twist_R", (-4.036, 13.782, 0.276), "右ひじ"),
    ("右手首", "wrist_R", (-5.270, 12.725, 0.272), "右手捩"),
    ("右人指１", "fore1_R", (-6.134, 11.974, 0.046), "右手首"),
    ("右小指１", "little1_R", (-6.013, 11.924, 0.576), "右手首"),
    ("右足", "leg_R", (-0.797, 10.753, -0.073), "下半身"),
    ("右ひざ", "knee_R", (-0.674, 5.927, -0.053), "右足"),
    ("右足首", "ankle_R", (-0.875, 1.340, 0.000), "右ひざ"),
    ("右足ＩＫ", "leg IK_R", (-0.875, 1.340, 0.000), None),
    ("右つま先", "toe_R", (-0.929, 0.000, -2.464), "右足首"),
    ("右つま先ＩＫ", "toe IK_R", (-0.929, 0.000, -2.464), "右足ＩＫ"),
)

#: The standard knee limit (docs/MMD_FACTS.md §2.2, §5.4): rotation about X only, in [-180°, -0.5°] (radians, min
#: then max).
KNEE_LIMIT: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (-3.141592653589793, 0.0, 0.0), (-0.008726646259971648, 0.0, 0.0))

#: Leg-IK chains of the built-in skeleton, as in the fixture (docs/MMD_FACTS.md §2.5): (IK bone, target, links
#: nearest the target first, loop count, unit angle (radians), per-link limits). The fixture's solver parameters: legs 40 loops /
#: 2.0 rad with ひざ limited to X in [-180°, -0.5°]; toes 3 loops / 4.0 rad, unlimited.
_STANDARD_IK = tuple(
    (s + "足ＩＫ", s + "足首", (s + "ひざ", s + "足"), 40, 2.0, (KNEE_LIMIT, None)) for s in "左右"
) + tuple((s + "つま先ＩＫ", s + "つま先", (s + "足首",), 3, 4.0, (None,)) for s in "左右")


@dataclass(frozen=True)
class IkChain:
    """One IK chain of a model: IK bone name, target bone name, link bone names (nearest the target first), and the
    solver parameters of its PMX IK block (docs/MMD_FACTS.md §3.4 item 6, §2.5).

    ``loop_count``: CCD iterations; ``unit_angle``: the per-iteration rotation limit in radians; ``limits``: one entry
    per link, ``None`` (unlimited) or ``((min_x, min_y, min_z), (max_x, max_y, max_z))`` Euler limits in radians in
    the link's parent frame; ``limits=None`` (the default, e.g. chains read from a Blender armature) means "not
    known": ``core.ik`` then applies :data:`KNEE_LIMIT` to links named 左ひざ / 右ひざ, as MMD does for PMD models
    (docs/MMD_FACTS.md §5.4). The solver parameters are not part of equality (``==`` compares bone, target and links
    only).
    """

    bone: str
    target: str
    links: tuple[str, ...]
    loop_count: int = field(default=40, compare=False)
    unit_angle: float = field(default=2.0, compare=False)
    limits: tuple | None = field(default=None, compare=False)


@dataclass
class RestSkeleton:
    """Bones of a target model at rest.

    Attributes:
        names: ``N`` Japanese bone names, in model order (the first of duplicate names wins in :meth:`find`).
        positions: ``(N, 3)`` float64 rest positions, absolute, MMD model space and units.
        parents: ``(N,)`` int64 parent indices, -1 for a root.
        names_en: ``N`` English names as stored in the model ('' when none).
        ik_chains: the model's IK chains (:class:`IkChain`), e.g. 左足ＩＫ -> 左足首 via 左ひざ, 左足.
        inherit_source: ``(N,)`` int64 付与 (inherit) source index or -1 (docs/MMD_FACTS.md §3.4).
        inherit_ratio: ``(N,)`` float64 inherit ratio (0 where none).
        inherit_rotation: ``(N,)`` bool, the bone inherits its source's rotation (flag 0x0100).
        model_name: the model's name (for the VMD header).
        model_name_en: its English name ('' when none): the VMD header's fallback when cp932 cannot hold
            ``model_name`` (docs/MMD_FACTS.md §1.2).
        layers: ``(N,)`` int64 transform layer (変形階層; default 0) and
        after_physics: ``(N,)`` bool flag 0x1000 (default False): with the bone index they fix MMD's evaluation
            order, which ``core.ik`` follows (docs/MMD_FACTS.md §3.4).

    Raises:
        ValueError: (on construction) inconsistent lengths, a parent or inherit index out of range, a parent cycle,
            non-finite positions.
    """

    names: list
    positions: np.ndarray
    parents: np.ndarray
    names_en: list = field(default_factory=list)
    ik_chains: list = field(default_factory=list)
    inherit_source: np.ndarray | None = None
    inherit_ratio: np.ndarray | None = None
    inherit_rotation: np.ndarray | None = None
    model_name: str = ""
    model_name_en: str = ""
    layers: np.ndarray | None = None
    after_physics: np.ndarray | None = None

    def __post_init__(self):
        self.names = [str(n) for n in self.names]
        n = len(self.names)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        if self.positions.shape != (n, 3):
            raise ValueError(f"RestSkeleton: positions must be ({n}, 3) for {n} names, got {self.positions.shape}")
        if not np.all(np.isfinite(self.positions)):
            raise ValueError("RestSkeleton: rest positions must be finite")
        self.parents = np.asarray(self.parents, dtype=np.int64)
        if self.parents.shape != (n,):
            raise ValueError(f"RestSkeleton: parents must be ({n},), got {self.parents.shape}")
        if np.any((self.parents < -1) | (self.parents >= n)):
            raise ValueError(f"RestSkeleton: parent index out of range [-1, {n}) in {self.parents.tolist()}")
        self.names_en = [str(s) for s in self.names_en] if self.names_en else [""] * n
        if len(self.names_en) != n:
            raise ValueError(f"RestSkeleton: {len(self.names_en)} English names for {n} bones")
        if self.inherit_source is None:
            self.inherit_source = np.full(n, -1, dtype=np.int64)
        if self.inherit_ratio is None:
            self.inherit_ratio = np.zeros(n)
        if self.inherit_rotation is None:
            self.inherit_rotation = np.zeros(n, dtype=bool)
        self.inherit_source = np.asarray(self.inherit_source, dtype=np.int64)
        self.inherit_ratio = np.asarray(self.inherit_ratio, dtype=np.float64)
        self.inherit_rotation = np.asarray(self.inherit_rotation, dtype=bool)
        self.layers = np.zeros(n, dtype=np.int64) if self.layers is None else np.asarray(self.layers, dtype=np.int64)
        self.after_physics = np.zeros(n, dtype=bool) if self.after_physics is None \
            else np.asarray(self.after_physics, dtype=bool)
        for a, what in ((self.inherit_source, "inherit_source"), (self.inherit_ratio, "inherit_ratio"),
                        (self.inherit_rotation, "inherit_rotation"), (self.layers, "layers"),
                        (self.after_physics, "after_physics")):
            if a.shape != (n,):
                raise ValueError(f"RestSkeleton: {what} must be ({n},), got {a.shape}")
        if np.any((self.inherit_source < -1) | (self.inherit_source >= n)):
            raise ValueError("RestSkeleton: inherit_source index out of range")
        self.ik_chains = list(self.ik_chains)
        self._index = {}
        for i, name in enumerate(self.names):
            self._index.setdefault(name, i)
        self._order = self._topological_order()

    # ------------------------------------------------------------------ construction

    @classmethod
    def standard(cls) -> "RestSkeleton":
        """The built-in standard skeleton (:data:`STANDARD_BONES`, from ``test_semi_basic_bone.pmx``), with its
        four leg-IK chains. 35 bones; no file needed."""
        names = [b[0] for b in STANDARD_BONES]
        parents = [names.index(b[3]) if b[3] is not None else -1 for b in STANDARD_BONES]
        return cls(names=names, positions=np.array([b[2] for b in STANDARD_BONES]), parents=parents,
                   names_en=[b[1] for b in STANDARD_BONES],
                   ik_chains=[IkChain(*c[:3], loop_count=c[3], unit_angle=c[4], limits=c[5]) for c in _STANDARD_IK],
                   model_name="標準ボーン (built-in)")

    @classmethod
    def from_pmx(cls, model) -> "RestSkeleton":
        """Build from a PMX model read by ``core.formats.pmx.read`` (duck-typed).

        Uses ``model.header.name`` and, per bone: ``name, name_en, position (3,), parent, layer, after_physics,
        ik (None or .target, .loop_count, .limit_angle and .links[i].bone / .limit_min / .limit_max),
        inherit_source, inherit_ratio, inherit_rotation``. Every bone is kept (indices match the
        model's).

        Raises:
            ValueError: the model has no bones, or an inconsistent hierarchy (see the class).
        """
        bones = list(model.bones)
        if not bones:
            raise ValueError("RestSkeleton.from_pmx: the model has no bones")
        names = [b.name for b in bones]
        chains = []
        for b in bones:
            ik = getattr(b, "ik", None)
            if ik is None:
                continue
            limits = tuple(None if getattr(l, "limit_min", None) is None else
                           (tuple(float(v) for v in l.limit_min), tuple(float(v) for v in l.limit_max))
                           for l in ik.links)
            try:
                chains.append(IkChain(b.name, names[ik.target], tuple(names[l.bone] for l in ik.links),
                                      loop_count=int(getattr(ik, "loop_count", 40)),
                                      unit_angle=float(getattr(ik, "limit_angle", 2.0)), limits=limits))
            except IndexError:
                raise ValueError(f"RestSkeleton.from_pmx: IK bone {b.name!r} refers to a bone out of range") from None
        header = getattr(model, "header", None)
        return cls(
            names=names,
            positions=np.array([np.asarray(b.position, dtype=np.float64) for b in bones]),
            parents=[int(b.parent) for b in bones],
            names_en=[getattr(b, "name_en", "") or "" for b in bones],
            ik_chains=chains,
            inherit_source=[int(getattr(b, "inherit_source", -1)) for b in bones],
            inherit_ratio=[float(getattr(b, "inherit_ratio", 0.0)) for b in bones],
            inherit_rotation=[bool(getattr(b, "inherit_rotation", False)) and int(getattr(b, "inherit_source", -1))
                              >= 0 for b in bones],
            model_name=getattr(header, "name", "") if header is not None else "",
            model_name_en=getattr(header, "name_en", "") if header is not None else "",
            layers=[int(getattr(b, "layer", 0)) for b in bones],
            after_physics=[bool(getattr(b, "after_physics", False)) for b in bones],
        )

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name_or_alias: str) -> bool:
        return self.index_of(name_or_alias) is not None

    def index_of(self, name_or_alias: str) -> int | None:
        """Like :meth:`find` but returns None when the bone is absent."""
        i = self._index.get(name_or_alias)
        if i is not None:
            return i
        jp = _ALIAS_TO_JP.get(_norm_alias(name_or_alias))
        if jp is not None and jp in self._index:
            return self._index[jp]
        key = _norm_alias(name_or_alias)
        hits = [i for i, en in enumerate(self.names_en) if en and _norm_alias(en) == key]
        return hits[0] if len(hits) == 1 else None

    def find(self, name_or_alias: str) -> int:
        """Index of a bone given its exact Japanese name, a :data:`BONE_ALIASES` English alias (case, spaces and
        underscores ignored: ``leg IK_L`` = ``leg_ik_l``), or the model's own English name when that is unique.

        Raises:
            KeyError: no such bone in this model.
        """
        i = self.index_of(name_or_alias)
        if i is None:
            raise KeyError(f"bone {name_or_alias!r} is not in model {self.model_name!r} "
                           f"({len(self.names)} bones; names are matched exactly, e.g. 左足ＩＫ with full-width ＩＫ)")
        return i

    def ik_chain(self, bone: str) -> IkChain | None:
        """The IK chain whose IK bone is ``bone`` (Japanese name or alias), or None."""
        i = self.index_of(bone)
        if i is None:
            return None
        for c in self.ik_chains:
            if c.bone == self.names[i]:
                return c
        return None

    def children(self, index: int) -> np.ndarray:
        """Indices of the direct children of bone ``index``."""
        return np.flatnonzero(self.parents == index)

    def ancestors(self, index: int) -> list[int]:
        """Indices from the parent of ``index`` up to its root."""
        out, p = [], int(self.parents[index])
        while p != -1:
            out.append(p)
            p = int(self.parents[p])
        return out

    def _topological_order(self) -> np.ndarray:
        n = len(self.names)
        depth = np.full(n, -1, dtype=np.int64)
        for i in range(n):
            chain, j = [], i
            while j != -1 and depth[j] < 0:
                if j in chain:
                    raise ValueError(f"RestSkeleton: parent cycle through bone {self.names[j]!r}")
                chain.append(j)
                j = int(self.parents[j])
            d = -1 if j == -1 else depth[j]
            for k in reversed(chain):
                d += 1
                depth[k] = d
        return np.argsort(depth, kind="stable")

    def effective_rotation(self, i: int, local: Mapping[int, np.ndarray], cache: dict[int, np.ndarray | None],
                           n_frames: int, *, inherit: bool = True, _guard: tuple = ()) -> np.ndarray | None:
        """Bone ``i``'s local rotation with rotation inheritance (付与, flag 0x0100, docs/MMD_FACTS.md §3.4) applied.

        ``q_eff = q_key · slerp(I, q_eff(source), ratio)``, the way [BM] ``appendTransformSolver`` does for
        non-local inheritance; the one place the project evaluates it (FK here, the retargeter's partial poses).

        Args:
            i: bone index.
            local: bone index -> ``(T, 4)`` key rotation (absent = identity).
            cache: memo of effective rotations (bone index -> value), shared across calls of one pose.
            n_frames: T.
            inherit: False ignores inheritance (returns the key).
        Returns:
            ``(T, 4)`` (x, y, z, w), or None for identity.
        """
        if i in cache:
            return cache[i]
        q = local.get(i)
        src = int(self.inherit_source[i])
        if inherit and self.inherit_rotation[i] and src >= 0 and self.inherit_ratio[i] != 0.0 and src not in _guard:
            qs = self.effective_rotation(src, local, cache, n_frames, inherit=inherit, _guard=_guard + (i,))
            if qs is not None:
                part = Q.slerp(Q.identity(n_frames), qs, self.inherit_ratio[i]) if self.inherit_ratio[i] != 1.0 \
                    else qs
                q = part if q is None else Q.multiply(q, part)
        cache[i] = q
        return q

    # ------------------------------------------------------------------ forward kinematics

    def fk(self, rotations: Mapping[str, np.ndarray] | None = None,
           locations: Mapping[str, np.ndarray] | None = None, *, n_frames: int | None = None,
           inherit: bool = True, bones: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """World positions and rotations of the posed model, for every frame.

        Evaluates ``world_b = world_parent · T(rest_b - rest_parent + t_b) · R(q_b)`` in hierarchy order
        (docs/MMD_FACTS.md §2.2, [BM] ``mmdRuntimeBone.updateWorldMatrix``): a bone's key translation is an offset from rest
        in its parent's posed axes and its key rotation is relative to the parent's posed frame. With ``inherit``,
        rotation inheritance (付与, flag 0x0100, docs/MMD_FACTS.md §3.4) is applied the way [BM] ``appendTransformSolver``
        does for non-local inheritance: ``q_eff = q_key · slerp(I, q_eff(source), ratio)`` (for the bones the
        retargeter keys no key and inheritance meet on one bone, so the order of that product does not matter
        here). Translation inheritance, local inheritance and IK are ignored: this is for verification and tests.

        Args:
            rotations: bone name (or alias) -> ``(T, 4)`` (x, y, z, w) local key rotations (normalised here).
            locations: bone name (or alias) -> ``(T, 3)`` key translations, MMD units.
            n_frames: T when both dicts are empty (default 1).
            inherit: apply rotation inheritance.
            bones: optional names; then only these bones (and what they depend on) are evaluated and returned,
                in this order.

        Returns:
            ``(positions, rotations)``: ``(T, N, 3)`` float64 world positions (MMD units) and ``(T, N, 4)`` world
            rotations (rest -> posed), N = all bones or ``len(bones)``.

        Raises:
            KeyError: an unknown bone name.  ValueError: arrays of the wrong shape or differing T.
        """
        rotations = dict(rotations or {})
        locations = dict(locations or {})
        t_len = None
        rot_idx: dict[int, np.ndarray] = {}
        loc_idx: dict[int, np.ndarray] = {}
        for src, dst, width in ((rotations, rot_idx, 4), (locations, loc_idx, 3)):
            for name, arr in src.items():
                a = np.asarray(arr, dtype=np.float64)
                if a.ndim != 2 or a.shape[1] != width:
                    raise ValueError(f"fk: {name!r} must be (T, {width}), got {a.shape}")
                if t_len is None:
                    t_len = a.shape[0]
                elif a.shape[0] != t_len:
                    raise ValueError(f"fk: {name!r} has {a.shape[0]} frames, others have {t_len}")
                dst[self.find(name)] = Q.normalize(a) if width == 4 else a
        if t_len is None:
            t_len = 1 if n_frames is None else int(n_frames)
        elif n_frames is not None and n_frames != t_len:
            raise ValueError(f"fk: n_frames={n_frames} but the arrays have {t_len} frames")

        n = len(self.names)
        if bones is None:
            want = np.ones(n, dtype=bool)
            out_idx = None
        else:
            out_idx = [self.find(b) for b in bones]
            want = np.zeros(n, dtype=bool)
            for i in out_idx:
                want[i] = True
                want[self.ancestors(i)] = True

        eff_cache: dict[int, np.ndarray | None] = {}

        def eff_local(i: int) -> np.ndarray | None:
            return self.effective_rotation(i, rot_idx, eff_cache, t_len, inherit=inherit)

        wpos = np.full((t_len, n, 3), np.nan)
        wrot = np.full((t_len, n, 4), np.nan)
        for i in self._order:
            if not want[i]:
                continue
            p = int(self.parents[i])
            offset = self.positions[i] - (self.positions[p] if p >= 0 else 0.0)
            t = loc_idx.get(i)
            off = offset if t is None else offset + t
            q = eff_local(i)
            if p < 0:
                wpos[:, i] = off
                wrot[:, i] = Q.identity(t_len) if q is None else q
            else:
                wpos[:, i] = wpos[:, p] + Q.rotate(wrot[:, p], np.broadcast_to(off, (t_len, 3)))
                wrot[:, i] = wrot[:, p] if q is None else Q.multiply(wrot[:, p], q)
        if out_idx is not None:
            return wpos[:, out_idx], wrot[:, out_idx]
        return wpos, wrot
