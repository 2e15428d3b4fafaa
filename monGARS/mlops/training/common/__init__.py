"""What sft, llm2vec and raft share: backends, the training loop, checkpoints, chat data,
retrieval evaluation and loss curves."""
