"""The WSI inference engine shared by `autoscope infer` and the BentoML slide job.

`engine.infer_slide` runs one model over one slide and writes its outputs; `runner` spreads a list
of slides over processes. Importing this package imports nothing heavy.
"""
