"""build_datasets: French corpora from configurable sources and per-module code datasets.

Entry point: ``monGARS.mlops.datasets.build.build_datasets(config, out_dir)`` with a
``monGARS.mlops.datasets.config.DatasetsConfig`` (``load_datasets_config``). See docs/datasets.md.
"""
