"""Stage 1's output must be shared storage on a multi-node cluster, seen from every node (rl/shared_storage.py)."""

import pytest

from editrl.config import ConfigError, load_config
from reward.jrm.train_config import JRMTrainConfig
from rl.shared_storage import require_shared_output


def test_one_node_needs_nothing_and_several_need_shared_storage(tmp_path):
    require_shared_output("runs/jrm", False, ["n1"], probe=lambda node, path: False)  # one node: no probe
    with pytest.raises(ConfigError, match=r"jrm\.shared_output_dir: the cluster has 4 nodes"):
        require_shared_output(str(tmp_path / "jrm"), False, ["n1", "n2", "n3", "n4"])
    with pytest.raises(ConfigError, match=r"jrm\.output_dir: must be an absolute path"):
        require_shared_output("runs/jrm", True, ["n1", "n2"], probe=lambda node, path: True)


def test_the_probe_file_must_be_visible_from_every_node(tmp_path):
    seen = []

    def probe(node, path):
        seen.append((node, path))
        return node != "n3"  # n3 mounts something else

    with pytest.raises(ConfigError, match=r"jrm\.output_dir: .* is not shared storage: 1 of 3 node\(s\) .*n3"):
        require_shared_output(str(tmp_path / "jrm"), True, ["n1", "n2", "n3"], probe=probe)
    assert [n for n, _ in seen] == ["n1", "n2", "n3"] and len({p for _, p in seen}) == 1
    assert not list((tmp_path / "jrm").iterdir())  # the probe file is removed
    require_shared_output(str(tmp_path / "jrm"), True, ["n1", "n2"], probe=lambda node, path: True)


def test_config_validation_wants_an_absolute_shared_output_dir(tmp_path):
    with pytest.raises(ConfigError, match=r"output_dir: must be an absolute path on shared storage"):
        load_config(JRMTrainConfig, None, ["shared_output_dir=true", "output_dir=runs/jrm"])
    cfg = load_config(JRMTrainConfig, None, ["shared_output_dir=true", f"output_dir={tmp_path}/jrm"])
    assert cfg.shared_output_dir


@pytest.mark.slow
def test_the_ray_probe_runs_on_each_alive_node(tmp_path):
    import ray

    from rl.shared_storage import alive_ray_nodes, ray_probe

    ray.init(num_cpus=1, include_dashboard=False)
    try:
        nodes = alive_ray_nodes()
        assert len(nodes) == 1
        require_shared_output(str(tmp_path / "jrm"), True, nodes)
        assert ray_probe(nodes[0], str(tmp_path)) and not ray_probe(nodes[0], str(tmp_path / "absent"))
    finally:
        ray.shutdown()
