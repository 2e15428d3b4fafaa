"""The monGARS training and export library: every pipeline stage's logic, configs and I/O.

This package never imports kfp: the KFP components in ``components/`` are thin adapters into it,
so everything here can be tested and used without Kubeflow.
"""

from monGARS.version import __version__

__all__ = ["__version__"]
