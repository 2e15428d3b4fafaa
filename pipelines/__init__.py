"""The monGARS pipeline definition, its compiled YAML and the checks it passes when compiled.

Installed as ``monGARS.pipelines``. Compile-time only: running the pipeline is ``monGARS.deploy``'s
(``local_run`` on this machine, ``submit``/``schedule`` on a cluster).
"""
