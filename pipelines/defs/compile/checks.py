"""The compile's asset checks. The blocking ones guard the commit: gitops_commit does not run when they fail.


Blocking: config_valid (environments domain), genesis_lock, manifests_valid, no_plaintext_secrets.
Not blocking: render_deterministic (a nondeterministic render is a bug that makes churn
commits, not an unsafe commit; it shows as a failed check in the UI).
"""

import tempfile
from pathlib import Path

import dagster as dg

from pipelines.defs.common import (
    genesis_change_allowed,
    md_list,
    refusal,
)
from pipelines.defs.compile.assets import genesis, rendered_manifests
from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources import ChainopsResource
from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.errors import ChainopsError, ManifestError
from pipelines.lib.keys import KeySet, open_private_bundle
from pipelines.lib.kustomize import kustomize_build
from pipelines.lib.layout import env_dir
from pipelines.lib.leak_scan import files_holding_private_material
from pipelines.lib.lock import NetworkLock
from pipelines.lib.manifests import validator_for
from pipelines.lib.model import CompiledEnvironment, GenesisResult
from pipelines.lib.pipeline import nondeterministic_files
from pipelines.lib.sealing import is_sops_encrypted
from pipelines.lib.stages.genesis import check_genesis_lock
from pipelines.lib.stages.validate import parse_files

BLOCKING_CHECKS = ("config_valid", "genesis_lock", "manifests_valid", "no_plaintext_secrets")


@dg.asset_check(
    asset=genesis,
    blocking=True,
    partitions_def=environments_partitions,
    additional_ins={"environment_config": dg.AssetIn("environment_config"), "node_keys": dg.AssetIn("node_keys")},
    description="The committed genesis (network.lock.json) does not change, unless the run is tagged chainops/allow-genesis-change=true.",
)
def genesis_lock(
    context: dg.AssetCheckExecutionContext,
    chainops: ChainopsResource,
    genesis: GenesisResult,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
) -> dg.AssetCheckResult:
    allowed = genesis_change_allowed(context)
    lock = None
    try:
        existing = chainops.existing_at(environment_config.name, node_keys.based_on, chainops.review(environment_config))
        if allowed:
            existing = existing.without_lock_if_damaged()
        lock = existing.lock
        check_genesis_lock(environment_config, lock, genesis, allowed)
    except ChainopsError as exc:  # any lib error: the check fails with what it could read
        locked = existing_lock_summary(lock)
        computed = {
            "genesisHash": genesis.block_hash,
            "genesisFileSha256": genesis.file_sha256,
            "chainId": environment_config.spec.network.chainId,
            "networkId": environment_config.spec.network.effective_network_id,
        }
        return dg.AssetCheckResult(
            passed=False,
            description=refusal(exc).description,
            metadata={
                "locked": dg.MetadataValue.json(locked),
                "computed": dg.MetadataValue.json(computed),
                "differences": md_list(genesis.differences),
            },
        )
    return dg.AssetCheckResult(passed=True, metadata={"genesis_hash": genesis.block_hash, "locked": bool(lock)})


def existing_lock_summary(lock: NetworkLock | None) -> dict:
    """The genesis fields of the committed lock, as the check shows them."""
    if lock is None:
        return {}
    return {
        "genesisHash": lock.genesisHash,
        "genesisFileSha256": lock.genesisFileSha256,
        "chainId": lock.chainId,
        "networkId": lock.networkId,
    }


@dg.asset_check(
    asset=rendered_manifests,
    blocking=True,
    partitions_def=environments_partitions,
    description="Every object validates against the Kubernetes schemas and kubectl kustomize builds the directory.",
)
def manifests_valid(rendered_manifests: CompiledEnvironment) -> dg.AssetCheckResult:
    validator = validator_for()
    problems = []
    for path, obj in parse_files(rendered_manifests).items():
        problems += [f"{p.path}: {p.message}" for p in validator.validate(obj, path)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path, data in rendered_manifests.files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
        try:
            built = kustomize_build(root / env_dir(rendered_manifests.name))
        except ManifestError as exc:
            problems.append(str(exc))
            built = ""
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": md_list(problems), "built_documents": built.count("\n---\n") + 1 if built else 0},
    )


@dg.asset_check(
    asset=rendered_manifests,
    blocking=True,
    partitions_def=environments_partitions,
    additional_ins={"environment_config": dg.AssetIn("environment_config"), "node_keys": dg.AssetIn("node_keys")},
    description=(
        "No Secret is committed unsealed and no other file holds a private key, keystore or password "
        "(blocks the commit). An environment that chose provider plaintext with allowPlaintextSecrets: true "
        "gets a warning instead of a block for its own Secrets."
    ),
)
def no_plaintext_secrets(
    chainops: ChainopsResource,
    rendered_manifests: CompiledEnvironment,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
) -> dg.AssetCheckResult:
    plaintext_allowed = environment_config.spec.gitops.secrets.provider == "plaintext"
    secrets = [p for p, obj in parse_files(rendered_manifests).items() if obj.get("kind") == "Secret"]
    unsealed = sorted(p for p in secrets if not is_sops_encrypted(rendered_manifests.files[p]))
    privates = open_private_bundle(node_keys.sealed_private, chainops.identity().secret())
    leaking = files_holding_private_material(rendered_manifests.files, privates, skip=unsealed if plaintext_allowed else ())
    metadata = {
        "unsealed_secrets": dg.MetadataValue.json(unsealed),
        "plaintext_provider": plaintext_allowed,
        "files_holding_private_material": dg.MetadataValue.json(leaking),
        "private_values_checked": len(privates),
    }
    if leaking or (unsealed and not plaintext_allowed):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
    if unsealed:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(unsealed)} Secrets are committed in plaintext (provider plaintext, allowPlaintextSecrets: true)",
            metadata=metadata,
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


@dg.asset_check(
    asset=rendered_manifests,
    blocking=False,
    partitions_def=environments_partitions,
    additional_ins={
        "environment_config": dg.AssetIn("environment_config"),
        "node_keys": dg.AssetIn("node_keys"),
        "genesis": dg.AssetIn("genesis"),
    },
    description="Rendering the same inputs again gives the same bytes (sealed Secrets keep their ciphertext).",
)
def render_deterministic(
    chainops: ChainopsResource,
    rendered_manifests: CompiledEnvironment,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
    genesis: GenesisResult,
) -> dg.AssetCheckResult:
    differing = nondeterministic_files(environment_config, node_keys, genesis, rendered_manifests, chainops.compile_context())
    return dg.AssetCheckResult(passed=not differing, metadata={"differing_files": dg.MetadataValue.json(differing)})
