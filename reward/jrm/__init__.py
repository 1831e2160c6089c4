"""JRM: the Joint Reward Model (Qwen3-VL backbone, <|reward|> token, reward head + language head)."""
