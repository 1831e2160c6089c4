"""Pretrained toy bases (issue 13): the policy and the VLM backbone the toy world's method starts from.

The real method never starts from scratch (stage 1 fine-tunes Qwen3-VL, stage 2 fine-tunes OmniGen2); the toy
world ships bases built by ``python -m world.bases.build`` (``make world-bases``), deterministically.

  config.py    :class:`BasesConfig`, the build's structured config (presets ``configs/world_bases*.yaml``)
  policy.py    the tiny OmniGen2-class policy base: :mod:`world.pretrain`'s autoencoder + flow matching
  captions.py  the backbone's texts, built from scene data only: describe a scene, say what changed
  backbone.py  the tiny Qwen3-VL backbone base, trained on those texts (LM loss on the answers)
  metadata.py  build metadata (config, git revision) in ``world_base.json``, safetensors headers, manifest
  build.py     the CLI: stages into a work folder (resumable per stage), output folder written atomically
  load.py      the bases through the real loaders (policy registry, JRM ``model.backbone``), metadata checked
"""
