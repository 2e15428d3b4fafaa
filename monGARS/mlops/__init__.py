"""The monGARS training and export library: every pipeline stage's logic, configs and I/O.

This package never imports kfp: the KFP components in ``components/`` are thin adapters into it,
so everything here can be tested and used without Kubeflow.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mongars-mlops")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
