"""The export stage: merged models -> verified GGUF files, an Ollama Modelfile, a bundle manifest.

Entry point: ``monGARS.mlops.export.export.export_module``; loader: ``monGARS.mlops.export.bundle``.
"""
