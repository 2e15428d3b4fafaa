"""Training stages: one package per stage (sft, llm2vec, raft) and what they share (common)."""
