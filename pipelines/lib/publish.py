"""Publishing compiled environments by their review mode; shared by the CLI and Dagster.

- `direct`: one commit per changed environment on the target branch (replayed on a
  moved remote, see GitopsRepository.publish).
- `pull-request`: the environment's commit goes to branch `chainops/<env>` on top of the
  target branch, and exactly one pull/merge request from it is opened or updated with
  the review summary as its body.

Both modes start from the same review.ReviewSummary, built from the committed files at the
base commit and the compiled files, so the commit message, the PR body and
`chainops diff` tell the same story.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import git

from pipelines.lib import review
from pipelines.lib.forges import Forge, ReviewRequest
from pipelines.lib.gitops import EnvironmentChange, GitopsError, GitopsRepository, SharedEdit
from pipelines.lib.layout import SOPS_CONFIG_FILE, environment_paths, owned_paths
from pipelines.lib.model import VERSION, CompiledEnvironment
from pipelines.lib.sealing import merge_sops_rule
from pipelines.lib.validator_plan import describe_step

ReviewMode = Literal["direct", "pull-request"]
PR_FOOTER = (
    "\n---\n"
    "Opened by chainops from `environments/{env}.yaml`. Branch `{branch}` is rebuilt on every "
    "run: change the environment file, not this branch. Merge to apply; Flux/Argo CD sync the target branch.\n"
)


@dataclass(frozen=True)
class PublishItem:
    """One environment to publish: its change, how it is reviewed, what it does."""

    name: str
    change: EnvironmentChange
    review: ReviewMode
    summary: review.ReviewSummary


@dataclass(frozen=True)
class PublishOutcome:
    name: str
    review: ReviewMode
    summary: review.ReviewSummary
    commit: str | None  # the new commit (direct) or the review branch head (pull-request); None = unchanged
    pushed: bool = False
    branch: str | None = None
    request: ReviewRequest | None = None

    def describe(self) -> str:
        """One status phrase for the CLI and asset metadata."""
        if self.review == "direct":
            return f"commit {self.commit[:12]}" if self.commit else "unchanged"
        if not self.commit:
            return "unchanged (nothing to review)"
        pushed = f"commit {self.commit[:12]}" if self.pushed else "branch unchanged"
        request = f"; review #{self.request.number} {self.request.action}: {self.request.url}" if self.request else ""
        return f"{pushed} on {self.branch}{request}"


def compile_base(repo: GitopsRepository, base: str | None, name: str, review_mode: ReviewMode) -> str | None:
    """The commit whose files are the environment's current state for the next compile.

    Direct mode: the target branch. Pull-request mode: the open review branch when it
    builds on the target's current state of the environment, so keys generated for a
    pending change are kept (never regenerated on every run) and its sealed Secrets are
    not re-encrypted. The summary and the genesis banner still compare with the target."""
    if review_mode != "pull-request":
        return base
    return repo.pending_review(name, base, owned_paths(name)) or base


def plan_compiled(
    repo: GitopsRepository,
    base: str | None,
    compiled: CompiledEnvironment,
    profile: str,
    review_mode: ReviewMode,
    source_commit: str | None,
    before: Mapping[str, bytes] | None = None,
) -> PublishItem:
    """Summary against the base commit (``before``: its files, when the caller has them),
    and the change whose message carries it."""
    if before is None:
        before = repo.read_files(base, compiled.prefixes)
    if compiled.summary is not None and compiled.built_on(before):
        summary = compiled.summary  # made by the compile worker against these very files
    else:
        summary = review.build_summary(compiled.name, before, compiled.files, compiled.policy_warnings)
    change = to_change(compiled, profile, source_commit, summary)
    return PublishItem(compiled.name, change, review_mode, summary)


def plan_decommission(repo: GitopsRepository, base: str | None, name: str, review_mode: ReviewMode = "direct") -> PublishItem:
    change = decommission_change(name)
    before = repo.read_files(base, change.prefixes)
    summary = review.build_summary(name, before, {})
    return PublishItem(name, decommission_change(name, summary), review_mode, summary)


def publish_environments(
    repo: GitopsRepository, base: str | None, items: Sequence[PublishItem], forge: Forge | None
) -> dict[str, PublishOutcome]:
    """Direct environments first (one push for all of them), then each pull-request
    environment's branch on top of the resulting target head, then its request."""
    direct = [i for i in items if i.review == "direct"]
    reviewed = [i for i in items if i.review == "pull-request"]
    if reviewed and forge is None:
        raise GitopsError(
            f"{', '.join(i.name for i in reviewed)}: gitops.review is pull-request but no forge is configured; "
            "set CHAINOPS_FORGE (github|gitlab), CHAINOPS_FORGE_REPO and CHAINOPS_FORGE_TOKEN"
        )
    outcomes: dict[str, PublishOutcome] = {}
    head = base
    if direct:
        result = repo.publish([i.change for i in direct], base)
        head = result.head
        for item in direct:
            commit = result.commits.get(item.name)
            outcomes[item.name] = PublishOutcome(item.name, "direct", item.summary, commit, commit is not None)
    for item in reviewed:
        if head is None:
            raise GitopsError(
                f"{item.name}: pull-request review needs branch {repo.branch} to exist in {repo.shown_url}; "
                "publish a first environment with review: direct, or create the branch"
            )
        summary = item.summary
        if head != base:  # the request compares with the target as it is after this run's direct commits
            summary = review.build_summary(
                item.name, repo.read_files(head, item.change.prefixes), item.change.files, item.summary.warnings
            )
        branch = repo.publish_review_branch(item.change, head)
        request = None
        if branch.commit is not None and forge is not None:
            title = f"chainops({item.name}): {summary.headline()}"
            body = review.render_summary(summary) + PR_FOOTER.format(env=item.name, branch=branch.branch)
            request = forge.open_or_update(branch.branch, repo.branch, title, body)
        outcomes[item.name] = PublishOutcome(item.name, "pull-request", summary, branch.commit, branch.pushed, branch.branch, request)
    return outcomes


# -- the commit of one environment ---------------------------------------------------
def commit_message(
    compiled: CompiledEnvironment, profile: str, source_commit: str | None, summary: review.ReviewSummary | None = None
) -> str:
    """Structured message; provenance goes into trailers, never into files. With the
    review summary, the subject names what changed and the body lists it."""
    headline = f" ({summary.headline()})" if summary is not None and summary.kind != "none" else ""
    lines = [
        f"chainops: compile {compiled.name}{headline}",
        "",
        f"Environment: {compiled.name}",
        f"Profile: {profile}",
        f"Genesis: {compiled.genesis_hash}",
        f"Objects: {compiled.object_count}",
    ]
    if compiled.genesis_changed_from:
        lines.insert(2, f"GENESIS CHANGED: block hash {compiled.genesis_changed_from} -> {compiled.genesis_hash}")
        lines += [f"  {d}" for d in compiled.genesis_differences]
    if compiled.generated_keys:
        lines.append(f"New keys: {', '.join(compiled.generated_keys)}")
    plan = compiled.validator_plan
    if plan is not None:
        lines += [f"Validator vote, before this change is applied: {describe_step(plan, step)}" for step in plan.removals]
        lines += [f"Validator vote, once the new pods have synced: {describe_step(plan, step)}" for step in plan.additions]
    if summary is not None:
        lines += review.commit_lines(summary)
    lines += ["", f"Chainops-Environment: {compiled.name}", f"Chainops-Version: {VERSION}"]
    if source_commit:
        lines.append(f"Chainops-Source: {source_commit}")
    return "\n".join(lines) + "\n"


def to_change(
    compiled: CompiledEnvironment, profile: str, source_commit: str | None, summary: review.ReviewSummary | None = None
) -> EnvironmentChange:
    return EnvironmentChange(
        environment=compiled.name,
        files=compiled.files,
        prefixes=compiled.prefixes,
        message=commit_message(compiled, profile, source_commit, summary),
        shared=(SharedEdit(SOPS_CONFIG_FILE, compiled.sops_rule, merge_sops_rule),),
    )


def decommission_change(name: str, summary: review.ReviewSummary | None = None) -> EnvironmentChange:
    """Remove an environment's rendered output, bootstrap and creation rule in `.sops.yaml`
    (and nothing of any other environment: `environment_paths` refuses a name that is not one)."""
    body = "".join(f"{line}\n" for line in review.commit_lines(summary)) + "\n" if summary is not None and summary.changed else ""
    return EnvironmentChange(
        environment=name,
        files={},
        prefixes=environment_paths(name),
        shared=(SharedEdit(SOPS_CONFIG_FILE, None, merge_sops_rule),),
        message=f"chainops: decommission {name}\n\n{body}Chainops-Environment: {name}\nChainops-Version: {VERSION}\n",
    )


def source_commit(environments_dir: Path) -> str | None:
    """The commit of the environments repository, when it is a clean git checkout."""
    try:
        with git.Repo(environments_dir, search_parent_directories=True) as repo:
            if repo.is_dirty(untracked_files=True, path=str(environments_dir)):
                return None
            return repo.head.commit.hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
        return None


def rendered_environments(repo: GitopsRepository, base: str | None) -> set[str]:
    """Environments that have output in the GitOps repository."""
    return {path.split("/")[1] for path in repo.tree_entries(base, ("rendered",))}
