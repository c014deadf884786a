"""Compile domain: keys, genesis and rendered manifests of one environment, and their checks."""

import dagster as dg

from pipelines.defs.compile.assets import genesis, node_keys, rendered_manifests
from pipelines.defs.compile.checks import genesis_lock, manifests_valid, no_plaintext_secrets, render_deterministic

defs = dg.Definitions(
    assets=[node_keys, genesis, rendered_manifests],
    asset_checks=[genesis_lock, manifests_valid, no_plaintext_secrets, render_deterministic],
)
