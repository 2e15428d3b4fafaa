"""The monGARS pipeline definition, its compiled YAML and the kfp.local driver."""
