"""monGARS: a French-speaking, code-aware assistant. This distribution holds its MLOps pipeline."""
