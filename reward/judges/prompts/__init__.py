"""Judge prompts of the public benchmarks: VIEScore (GEdit-Bench) and ImgEdit-Bench's per-edit-type rubrics."""
