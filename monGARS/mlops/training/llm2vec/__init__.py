"""llm2vec: the fine-tuned decoder turned into a text encoder (bidirectional attention, MNTP,
SimCSE, supervised contrastive), with the upstream config mapping."""
