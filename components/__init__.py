"""KFP components: one per stage, thin typed adapters into ``monGARS.mlops``.

Modules here import only the standard library and kfp at top level, so compiling the pipeline
needs neither torch nor the training stack.
"""
