"""The compile stages of one environment, one module each: keys -> genesis -> render
(which validates and seals). ``pipelines.lib.pipeline`` runs them in this order; the
Dagster assets run them one per asset.
"""
