"""Teachers that write JRM's rationales (language supervision).

- :mod:`~reward.jrm.teachers.base`: the request/answer interface (:class:`AnnotationRequest`, :class:`Teacher`,
  :class:`TeacherError`), shared by every backend and by the toy world's rule-based teacher.
- :mod:`~reward.jrm.teachers.prompts`: the appendix-A teacher prompts.
- :mod:`~reward.jrm.teachers.transformers_local`: a local transformers Qwen-VL model.
- :mod:`~reward.jrm.teachers.openai_compatible`: any OpenAI-compatible chat-completions endpoint.
- :mod:`~reward.jrm.teachers.config`: :class:`TeacherConfig` and :func:`build_teacher`.

The annotation pipeline (:mod:`reward.jrm.annotate`) validates every answer the same way whichever teacher wrote it.
"""
