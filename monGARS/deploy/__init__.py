"""Running the pipeline on a cluster: submit, schedule and preflight (``mongars`` subcommands).

This package talks to Kubeflow Pipelines and Kubernetes, so unlike ``monGARS.mlops`` it may import
kfp and the kubernetes client, lazily, inside the functions that need them.
"""
