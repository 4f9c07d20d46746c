"""Exploring the preference space: preference inference, the UMAP map, controllability sweeps.

May import `alignx.backbone`, `alignx.preferences` and `alignx.schema`; never gradio.
"""
