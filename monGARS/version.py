"""The project's version: the one place it is written (pyproject.toml reads it from here).

Every layer may import it: the library, the components (which name their images after it), the
pipeline and the cluster commands.
"""

__version__ = "0.1.0"
