"""A ``core.rest_skeleton.RestSkeleton`` from a Blender armature (ours from ``pmx_import`` or one from MMD Tools).

MMD names: ``pose_bone.mmd_bone.name_j`` for armatures imported by MMD Tools (docs/MMD_FACTS.md §4; [MT]
``properties/pose_bone.py``), else the data bone's ``mmd_name_j`` custom property (``pmx_import``), else the bone
name. MMD Tools' helper bones (``is_mmd_shadow_bone``: ``_dummy_`` / ``_shadow_`` bones) are left out; their
children hang from the nearest kept ancestor.
Rest positions: the bone heads in armature space converted with ``core.conventions.blender_to_mmd`` (MMD units).
Bone order: the PMX order for armatures built by ``pmx_import`` (``mmd_index``), else Blender's.
IK chains: from the armature's IK constraints (owner = the link nearest the target; the target bone is the owner's
child whose head is at the owner's tail, or the ``mmd_ik_target`` property). Rotation inheritance (付与): from the
``mmd_inherit_*`` properties ``pmx_import`` stores, or MMD Tools' ``mmd_bone.additional_transform_*``.
"""
from __future__ import annotations

import numpy as np

from ._core import conventions
from ._core import rest_skeleton as rest_skeleton_module


def _is_helper(pose_bone) -> bool:
    return bool(getattr(pose_bone, "is_mmd_shadow_bone", False))


def mmd_name(pose_bone) -> str:
    """The MMD (Japanese) name of a pose bone: MMD Tools' ``mmd_bone.name_j``, our ``mmd_name_j``, or the name."""
    mb = getattr(pose_bone, "mmd_bone", None)
    nj = getattr(mb, "name_j", "") if mb is not None else ""
    if nj:
        return nj
    nj = pose_bone.bone.get("mmd_name_j", "")
    return nj if isinstance(nj, str) and nj else pose_bone.name


def mmd_name_en(pose_bone) -> str:
    mb = getattr(pose_bone, "mmd_bone", None)
    ne = getattr(mb, "name_e", "") if mb is not None else ""
    if ne:
        return ne
    ne = pose_bone.bone.get("mmd_name_en", "")
    return ne if isinstance(ne, str) else ""


def bone_name_map(obj) -> dict:
    """MMD name -> Blender bone name for every (non-helper) bone of armature ``obj``; the first bone wins for a
    duplicated MMD name."""
    out: dict = {}
    for pb in obj.pose.bones:
        if not _is_helper(pb):
            out.setdefault(mmd_name(pb), pb.name)
    return out


def model_name(obj) -> str:
    """The MMD model name of an armature: our ``mmd_model_name``, MMD Tools' root ``mmd_root.name``, or the name."""
    n = obj.get("mmd_model_name", "")
    if isinstance(n, str) and n:
        return n
    root = obj.parent
    while root is not None:
        mr = getattr(root, "mmd_root", None)
        if mr is not None and getattr(mr, "name", ""):
            return mr.name
        root = root.parent
    return obj.name


def rest_skeleton(obj):
    """Build a :class:`core.rest_skeleton.RestSkeleton` (MMD names, MMD units, model axes) from armature ``obj``.

    Raises:
        ValueError: ``obj`` is not an armature or has no bones.
    """
    if obj is None or obj.type != "ARMATURE":
        raise ValueError("the target must be an armature object")
    pbs = [pb for pb in obj.pose.bones if not _is_helper(pb)]
    if not pbs:
        raise ValueError(f"armature {obj.name!r} has no bones")
    order = [pb.bone.get("mmd_index") for pb in pbs]
    if all(isinstance(k, int) for k in order) and len(set(order)) == len(order):
        pbs = [pb for _, pb in sorted(zip(order, pbs), key=lambda x: x[0])]  # PMX order (pmx_import)
    index = {pb.name: i for i, pb in enumerate(pbs)}
    names = [mmd_name(pb) for pb in pbs]
    names_en = [mmd_name_en(pb) for pb in pbs]
    heads = np.array([tuple(pb.bone.head_local) for pb in pbs], dtype=np.float64).reshape(-1, 3)
    positions = conventions.blender_to_mmd(heads)
    parents = []
    for pb in pbs:
        p = pb.parent
        while p is not None and p.name not in index:
            p = p.parent
        parents.append(index[p.name] if p is not None else -1)

    chains = []
    for i, pb in enumerate(pbs):
        for con in pb.constraints:
            if con.type != "IK" or con.target != obj or con.subtarget not in index:
                continue
            links, cur = [], pb
            count = con.chain_count or 1000
            while cur is not None and len(links) < count:
                if cur.name in index:
                    links.append(names[index[cur.name]])
                cur = cur.parent
            ik_bone = obj.pose.bones[con.subtarget]
            target = _ik_target(obj, pb, ik_bone, index)
            if target is not None:
                chains.append(rest_skeleton_module.IkChain(names[index[ik_bone.name]], names[index[target]], tuple(links)))

    n = len(pbs)
    inh_src = np.full(n, -1, dtype=np.int64)
    inh_ratio = np.zeros(n)
    inh_rot = np.zeros(n, dtype=bool)
    for i, pb in enumerate(pbs):
        src, ratio, rot = _inherit(pb)
        if src and src in index and ratio != 0.0:
            inh_src[i], inh_ratio[i], inh_rot[i] = index[src], ratio, rot
    return rest_skeleton_module.RestSkeleton(names=names, positions=positions, parents=parents, names_en=names_en, ik_chains=chains,
                           inherit_source=inh_src, inherit_ratio=inh_ratio, inherit_rotation=inh_rot,
                           model_name=model_name(obj))


def _ik_target(obj, owner, ik_bone, index) -> str | None:
    stored = ik_bone.bone.get("mmd_ik_target", "")
    if isinstance(stored, str) and stored in index:
        return stored
    tail = np.array(owner.bone.tail_local)
    best, best_d = None, None
    for child in owner.children:
        if child.name not in index:
            continue
        d = float(np.linalg.norm(np.array(child.bone.head_local) - tail))
        if best_d is None or d < best_d:
            best, best_d = child.name, d
    return best


def _inherit(pb) -> tuple:
    """(source Blender bone name, ratio, inherits rotation) of a pose bone, or ("", 0.0, False)."""
    b = pb.bone
    src = b.get("mmd_inherit_source", "")
    if isinstance(src, str) and src:
        return src, float(b.get("mmd_inherit_ratio", 0.0)), bool(b.get("mmd_inherit_rotation", False))
    mb = getattr(pb, "mmd_bone", None)
    if mb is not None and getattr(mb, "has_additional_rotation", False):
        src = getattr(mb, "additional_transform_bone", "")
        return src, float(getattr(mb, "additional_transform_influence", 0.0)), True
    return "", 0.0, False
