"""Serving: the BentoML service (batched patches, slide jobs), its settings and the bento build.

`service` imports bentoml at its top (BentoML imports it); the other modules import nothing heavy.
"""
