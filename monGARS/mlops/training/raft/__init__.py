"""raft: retrieval-augmented fine-tuning on top of the module's SFT adapter."""
