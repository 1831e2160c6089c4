"""Policy benchmarks (GEdit-Bench with VIEScore, ImgEdit-Bench basic): edit with the policy's ODE, ask a VLM
judge, aggregate per group then over groups. The same code runs from the CLI and as an RL eval hook."""
