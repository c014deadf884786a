"""The assets and checks of the code location, as the Dagster tests materialize them."""

from pipelines.defs.compile.assets import genesis, node_keys, rendered_manifests
from pipelines.defs.compile.checks import genesis_lock, manifests_valid, no_plaintext_secrets, render_deterministic
from pipelines.defs.environments.assets import environment_config
from pipelines.defs.environments.checks import config_valid
from pipelines.defs.publish.assets import gitops_commit

ASSETS = [environment_config, node_keys, genesis, rendered_manifests, gitops_commit]
CHECKS = [config_valid, genesis_lock, manifests_valid, no_plaintext_secrets, render_deterministic]
ASSET_NAMES = ["environment_config", "node_keys", "genesis", "rendered_manifests", "gitops_commit"]
CHECK_NAMES = ["config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets", "render_deterministic"]


def checks_of(result) -> dict[str, tuple[bool, str]]:
    """Each asset check of a materialisation: (passed, severity)."""
    return {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}
