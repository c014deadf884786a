"""The environment's commit in the GitOps repository (gitops_commit), serialized by the
concurrency pool gitops_publish.

Backfill policy: one run per environment. The assets set no `backfill_policy`, which
is Dagster's documented default of one run per partition (`BackfillPolicy.multi_run(1)`
is still beta in 1.13). Each run compiles and publishes exactly one environment, so a
failing environment (a bad file, a guarded genesis change) fails alone, its blocking
checks and run tags are its own, and a retry re-runs only it. Runs compute in parallel;
only `gitops_commit` is serialized, by the concurrency pool `gitops_publish` (limit 1,
see deploy/dagster.yaml).
"""


import dagster as dg

from pipelines.defs.common import (
    ASSET_DEFAULTS,
    lib_failures,
    rewind_accepted,
)
from pipelines.defs.resources import ChainopsResource
from pipelines.lib import publish, review
from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.gitops import GitopsError
from pipelines.lib.layout import SOPS_CONFIG_FILE, environment_paths
from pipelines.lib.model import CompiledEnvironment
from pipelines.lib.publish import source_commit
from pipelines.lib.validator_plan import describe_step

PUBLISH_POOL = "gitops_publish"


def _vote_lines(summary: review.ReviewSummary) -> str:
    """The ordered vote plan, one plain line per step."""
    plan = summary.plan
    if plan is None:
        return ""
    lines = [f"{i}. before applying: {describe_step(plan, step)}" for i, step in enumerate(plan.removals, 1)]
    lines.append(f"{len(plan.removals) + 1}. apply the change")
    lines += [f"{len(plan.removals) + 1 + i}. after sync: {describe_step(plan, step)}" for i, step in enumerate(plan.additions, 1)]
    return "\n".join(lines)


@dg.asset(
    **ASSET_DEFAULTS,
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
    with lib_failures():
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
