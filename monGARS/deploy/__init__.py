"""Running the pipeline: on this machine through kfp.local (``local_run``, ``local_console``) and on
a cluster (submit, schedule, preflight: ``mongars`` subcommands).

This package talks to Kubeflow Pipelines and Kubernetes, so unlike ``monGARS.mlops`` it may import
kfp and the kubernetes client, lazily, inside the functions that need them. It builds on the
compile-time pipeline (``monGARS.pipelines``); the pipeline never imports it.
"""
