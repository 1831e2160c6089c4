"""The toy editing world: seeded scenes of coloured shapes, edit tasks with exact targets, an oracle on the
paper's 1-4 scales, preference pairs in the EditReward-Data layout and a rule-based rationale teacher.

It is the embedded default: every stage of the method (policy pretraining, JRM training, Flow-GRPO,
evaluation) runs on it at CPU scale with numbers a reader can check against the oracle.

Layering: ``editrl`` <- ``policies``, ``reward`` <- ``rl`` <- ``world`` <- ``launch``. The world uses the
packages below it and adds its kinds (the ``world_oracle`` reward and eval hook) to the registries a run is
handed; nothing below imports it.
"""
