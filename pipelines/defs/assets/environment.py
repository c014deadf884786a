"""The compile pipeline as partitioned assets: thin wrappers around pipelines.lib.

Outputs hold public data only: KeySet carries private keys solely as an age ciphertext
for the pipeline's identity, and rendered files hold sealed Secrets.

Backfill policy: one run per environment. The assets set no `backfill_policy`, which
is Dagster's documented default of one run per partition (`BackfillPolicy.multi_run(1)`
is still beta in 1.13). Each run compiles and publishes exactly one environment, so a
failing environment (a bad file, a guarded genesis change) fails alone, its blocking
checks and run tags are its own, and a retry re-runs only it. Runs compute in parallel;
only `gitops_commit` is serialized, by the concurrency pool `gitops_publish` (limit 1,
see deploy/dagster.yaml).
"""

import re

import dagster as dg

from pipelines.defs.partitions import environments_partitions
from pipelines.defs.resources.chainops import ChainopsResource
from pipelines.lib import publish, review
from pipelines.lib.config import ConfigError, EnvironmentConfig, load_environment
from pipelines.lib.errors import ChainopsError
from pipelines.lib.gitops import GitopsError
from pipelines.lib.keys import KeySet
from pipelines.lib.layout import SOPS_CONFIG_FILE, environment_paths
from pipelines.lib.model import CompiledEnvironment, Decisions, ExistingEnvironment, GenesisResult
from pipelines.lib.publish import source_commit
from pipelines.lib.stages.genesis import check_transitions, check_validator_plan, compute_genesis
from pipelines.lib.stages.keys import compute_keys
from pipelines.lib.stages.render import render_environment
from pipelines.lib.stages.seal import sealed_secret_paths
from pipelines.lib.validator_plan import describe_step

OWNERS = ["team:platform"]
GROUP = "chainops"
PUBLISH_POOL = "gitops_publish"
ENVIRONMENT_TAG = "chainops/environment"
PROFILE_TAG = "chainops/profile"
ALLOW_GENESIS_CHANGE_TAG = "chainops/allow-genesis-change"
ACCEPT_REWIND_TAG = "chainops/accept-remote-rewind"
VALIDATORS_VOTED_TAG = "chainops/validators-voted"
ALLOW_UNSAFE_VALIDATOR_CHANGE_TAG = "chainops/allow-unsafe-validator-change"
CONFIRM_TRANSITIONS_TAG = "chainops/confirm-transitions"
# CLI flag -> the run tag that records the same per-environment decision in Dagster.
_FLAG_TAGS = {
    "--allow-genesis-change": ALLOW_GENESIS_CHANGE_TAG,
    "--validators-voted": VALIDATORS_VOTED_TAG,
    "--allow-unsafe-validator-change": ALLOW_UNSAFE_VALIDATOR_CHANGE_TAG,
    "--confirm-transitions": CONFIRM_TRANSITIONS_TAG,
}

_COMMON = {
    "partitions_def": environments_partitions,
    "group_name": GROUP,
    "owners": OWNERS,
}


def _snapshot(chainops: ChainopsResource, config: EnvironmentConfig, keys: KeySet, reset: bool = False) -> ExistingEnvironment:
    """The committed state node_keys planned on: the compile steps of a run share one snapshot
    (and do not fetch again), so a writer publishing mid-run is caught by gitops_commit's guard."""
    try:
        existing = chainops.existing_at(config.name, keys.based_on, chainops.review(config))
    except GitopsError as exc:
        raise dg.Failure(description=str(exc)) from None
    return existing.without_lock_if_damaged() if reset else existing


def genesis_change_allowed(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    return context.run.tags.get(ALLOW_GENESIS_CHANGE_TAG) == "true"


def rewind_accepted(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> bool:
    return context.run.tags.get(ACCEPT_REWIND_TAG) == "true"


def decisions(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Decisions:
    """The operator's decisions for this partition's run, from its run tags."""
    tags = context.run.tags
    return Decisions(
        allow_genesis_change=tags.get(ALLOW_GENESIS_CHANGE_TAG) == "true",
        validators_voted=tags.get(VALIDATORS_VOTED_TAG) == "true",
        allow_unsafe_validator_change=tags.get(ALLOW_UNSAFE_VALIDATOR_CHANGE_TAG) == "true",
        transition_confirmed=tags.get(CONFIRM_TRANSITIONS_TAG) == "true",
    )


def _vote_lines(summary: review.ReviewSummary) -> str:
    """The ordered vote plan, one plain line per step."""
    plan = summary.plan
    if plan is None:
        return ""
    lines = [f"{i}. before applying: {describe_step(plan, step)}" for i, step in enumerate(plan.removals, 1)]
    lines.append(f"{len(plan.removals) + 1}. apply the change")
    lines += [f"{len(plan.removals) + 1 + i}. after sync: {describe_step(plan, step)}" for i, step in enumerate(plan.additions, 1)]
    return "\n".join(lines)


def refusal(exc: Exception) -> dg.Failure:
    """A lib error as the step's failure, its repair advice in Dagster's terms (run tags, not CLI flags)."""
    text = str(exc)
    for flag, tag in _FLAG_TAGS.items():
        text = re.sub(rf"{flag} (?:[a-z0-9-]+|ENV)", f"the run tag {tag}=true", text)
    text = text.replace("--accept-remote-rewind", f"the run tag {ACCEPT_REWIND_TAG}=true")
    return dg.Failure(description=text)


@dg.asset(
    **_COMMON,
    kinds={"yaml"},
    description=(
        "The validated environment file `environments/<env>.yaml` (chainops/v1). Also tags the run with "
        "`chainops/environment` and `chainops/profile`, whichever way it was launched."
    ),
)
def environment_config(context: dg.AssetExecutionContext, chainops: ChainopsResource) -> EnvironmentConfig:
    settings = chainops.settings()
    path = settings.environments_dir / f"{context.partition_key}.yaml"
    if not path.exists():
        raise dg.Failure(
            description=f"{path}: no such environment file for partition {context.partition_key}; add the file, or "
            "delete the partition (Partitions tab) if the environment is gone (decommission it first if it was published)"
        )
    try:
        config = load_environment(path)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from None
    context.instance.add_run_tags(context.run.run_id, {ENVIRONMENT_TAG: config.name, PROFILE_TAG: config.profile.name})
    context.add_output_metadata(
        {
            "profile": config.profile.name,
            "legacy": config.profile.legacy,
            "chain_id": config.spec.network.chainId,
            "validators": config.spec.nodes.validators,
            "review": chainops.review(config),
            "source": dg.MetadataValue.path(str(path)),
        }
    )
    return config


@dg.asset(
    **_COMMON,
    description=(
        "Node and account identities: locked ones are reused (decrypted from the committed sealed Secrets), "
        "new ones generated once. Private keys travel only as an age ciphertext for the pipeline identity."
    ),
)
def node_keys(
    context: dg.AssetExecutionContext, chainops: ChainopsResource, environment_config: EnvironmentConfig
) -> KeySet:
    reset = genesis_change_allowed(context)
    try:
        existing = chainops.guarded_existing(environment_config, reset, rewind_accepted(context))
        keys = compute_keys(environment_config, existing, chainops.identity(), reset=reset)
    except ChainopsError as exc:  # one tree: every lib error becomes the step's Failure
        raise refusal(exc) from None
    context.add_output_metadata(
        {
            "validators": dg.MetadataValue.json([n.address for n in keys.validators]),
            "nodes": len(keys.nodes),
            "new_keys": dg.MetadataValue.json(list(keys.generated)),
        }
    )
    return keys


@dg.asset(
    **_COMMON,
    description="The genesis block the nodes load and its block hash; a locked environment keeps its genesis validators.",
)
def genesis(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
) -> GenesisResult:
    reset = genesis_change_allowed(context)
    existing = _snapshot(chainops, environment_config, node_keys, reset)
    try:
        result = compute_genesis(environment_config, node_keys, existing=existing, allow_change=reset)
        check_validator_plan(environment_config, result.validator_plan, decisions(context))
        check_transitions(environment_config, result, decisions(context))
    except ChainopsError as exc:  # one tree: every lib error becomes the step's Failure
        raise refusal(exc) from None
    context.add_output_metadata(
        {
            "genesis_hash": result.block_hash,
            "validator_count": len(node_keys.validators),
            "genesis_validator_count": len(result.validators),
            "genesis_validators": dg.MetadataValue.json(list(result.validators)),
            "transitions": dg.MetadataValue.json(list(result.transitions)),
        }
    )
    return result


@dg.asset(
    **_COMMON,
    description="Plain Kubernetes manifests: rendered charts, sealed Secrets, network.lock.json, genesis.json, kustomization.",
)
def rendered_manifests(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    node_keys: KeySet,
    genesis: GenesisResult,
) -> CompiledEnvironment:
    existing = _snapshot(chainops, environment_config, node_keys, genesis_change_allowed(context))
    try:
        compiled = render_environment(
            environment_config, node_keys, genesis, existing, chainops.compile_context()
        )
    except ChainopsError as exc:  # one tree: every lib error becomes the step's Failure
        raise refusal(exc) from None
    context.add_output_metadata(
        {
            "genesis_hash": compiled.genesis_hash,
            "objects_written": compiled.object_count,
            "files": len(compiled.files),
            "sealed_secrets": len(sealed_secret_paths(compiled)),
        }
    )
    return compiled


@dg.asset(
    **_COMMON,
    pool=PUBLISH_POOL,
    description=(
        "The environment's commit in the GitOps repository (none when nothing changed): pushed to the branch "
        "(review: direct) or to chainops/<env> with one pull/merge request (review: pull-request); with "
        "`decommission: true`, the commit that removes its output. Runs only after the blocking checks "
        "passed, one at a time (pool gitops_publish); a rejected push is replayed."
    ),
)
def gitops_commit(
    context: dg.AssetExecutionContext,
    chainops: ChainopsResource,
    environment_config: EnvironmentConfig,
    rendered_manifests: CompiledEnvironment,
) -> dg.MaterializeResult:
    settings = chainops.settings()
    review_mode = chainops.review(environment_config)
    source = source_commit(settings.environments_dir)
    name = rendered_manifests.name
    try:
        forge = chainops.forge() if review_mode == "pull-request" else None
        with chainops.repository(rewind_accepted(context)) as repo:
            base = repo.fetch()
            if environment_config.spec.decommission:  # remove its output in one reviewed commit
                item = publish.plan_decommission(repo, base, name, review_mode)
            else:
                at = publish.compile_base(repo, base, name, review_mode)
                compiled_from = {
                    p: sha for p, sha in rendered_manifests.compiled_from.items() if p != SOPS_CONFIG_FILE
                }
                if repo.tree_entries(at, environment_paths(name)) != compiled_from:
                    # Another writer changed this environment after rendered_manifests read it:
                    # publishing would overwrite its keys or lock. Nothing is written.
                    raise GitopsError(
                        f"{name}: rendered/{name} changed in the GitOps repository since this run compiled it; "
                        "run the partition again"
                    )
                item = publish.plan_compiled(
                    repo, base, rendered_manifests, environment_config.profile.name, review_mode, source
                )
            outcome = publish.publish_environments(repo, base, [item], forge)[name]
            repo.adopt_rewind()
    except ChainopsError as exc:  # one tree: every lib error becomes the step's Failure
        raise refusal(exc) from None
    context.log.info(f"{name}: {outcome.describe()}")
    metadata: dict[str, object] = {
        "commit": outcome.commit or "unchanged",
        "status": ("decommissioned: " if environment_config.spec.decommission else "") + outcome.describe(),
        "review": review_mode,
        "branch": outcome.branch or settings.branch,
        "headline": outcome.summary.headline(),
        # Visible in the run's list view, without opening the summary's Markdown.
        "genesis_changed": outcome.summary.genesis_changed,
        "validator_votes": dg.MetadataValue.text(_vote_lines(outcome.summary) or "none"),
        "genesis_hash": rendered_manifests.genesis_hash,
        "validator_count": rendered_manifests.validator_nodes,
        "objects_written": rendered_manifests.object_count,
        "summary": dg.MetadataValue.md(review.render_summary(outcome.summary)),
    }
    if outcome.request is not None:
        metadata["pull_request"] = dg.MetadataValue.url(outcome.request.url)
    return dg.MaterializeResult(metadata=metadata)
