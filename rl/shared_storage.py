"""Stage 1's final JRM must reach the reward actors on every node: its output directory is on shared storage.

Under ``ray job submit --working-dir .`` every node runs the job in its own copy of the working directory, so a
relative ``jrm.output_dir`` resolves to a different, node-local directory on each node: rank 0's node would hold
the checkpoint and the reward actors elsewhere would look for it in vain. The rule (checked before stage 1
trains, once Ray is up):

- one node: anything goes (the driver resolves the path; every actor sees the same file system);
- several nodes: ``jrm.shared_output_dir: true`` is required, ``jrm.output_dir`` must be absolute (config
  validation), and a probe file the driver writes there must be visible from every alive node (one zero-CPU
  task pinned to each node). A failure names the key and the nodes that cannot see it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from editrl.config import ConfigError

#: (node id, path) -> whether that node sees ``path``.
NodeProbe = Callable[[str, str], bool]


def _path_exists(path: str) -> bool:
    return Path(path).exists()


def ray_probe(node_id: str, path: str) -> bool:
    """Whether the alive Ray node ``node_id`` sees ``path`` (a zero-CPU task pinned to it)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0)(_path_exists).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    )
    return bool(ray.get(task.remote(path)))


def alive_ray_nodes() -> list[str]:
    """Node ids of the alive nodes of the connected Ray cluster."""
    import ray

    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def require_shared_output(
    output_dir: str, shared: bool, nodes: Sequence[str], probe: NodeProbe = ray_probe
) -> None:
    """Refuse a multi-node stage 1 whose ``jrm.output_dir`` is not shared storage seen by every node.

    output_dir: stage 1's output directory (created here when missing); shared: ``jrm.shared_output_dir``;
    nodes: the alive node ids. Raises ConfigError naming ``jrm.shared_output_dir`` or ``jrm.output_dir``.
    """
    if len(nodes) <= 1 and not shared:
        return
    if not shared:
        raise ConfigError(
            f"jrm.shared_output_dir: the cluster has {len(nodes)} nodes, so stage 1's final JRM in "
            f"jrm.output_dir={output_dir!r} must be on storage every node mounts (a relative path resolves inside "
            "each node's copy of the job's working directory); set jrm.output_dir to an absolute path on shared "
            "storage and jrm.shared_output_dir=true"
        )
    directory = Path(output_dir)
    if not directory.is_absolute():
        raise ConfigError(f"jrm.output_dir: must be an absolute path with jrm.shared_output_dir=true, got {output_dir!r}")
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f".shared_probe_{uuid.uuid4().hex}"
    marker.write_text("editrl shared-storage probe\n")
    try:
        blind = [node for node in nodes if not probe(node, str(marker))]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ConfigError(
            f"jrm.output_dir: {output_dir} is not shared storage: {len(blind)} of {len(nodes)} node(s) cannot see "
            f"a file written there ({', '.join(blind[:4])}); use a directory every node mounts"
        )
