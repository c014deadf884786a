"""Publishing compiled environments by their review mode; shared by the CLI and Dagster.

- `direct`: one commit per changed environment on the target branch (replayed on a
  moved remote, see GitopsRepository.publish).
- `pull-request`: the environment's commit goes to branch `chainops/<env>` on top of the
  target branch, and exactly one pull/merge request from it is opened or updated with
  the review summary as its body.

Both modes start from the same ReviewSummary, built from the committed files at the
base commit and the compiled files, so the commit message, the PR body and
`chainops diff` tell the same story.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pipelines.lib import compiler, review
from pipelines.lib.forges import Forge, ReviewRequest
from pipelines.lib.gitops import EnvironmentChange, GitopsError, GitopsRepository

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
    return repo.pending_review(name, base, compiler.owned_paths(name)) or base


def plan_compiled(
    repo: GitopsRepository,
    base: str | None,
    compiled: compiler.CompiledEnvironment,
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
    change = compiler.to_change(compiled, profile, source_commit, summary)
    return PublishItem(compiled.name, change, review_mode, summary)


def plan_decommission(repo: GitopsRepository, base: str | None, name: str, review_mode: ReviewMode = "direct") -> PublishItem:
    change = compiler.decommission_change(name)
    before = repo.read_files(base, change.prefixes)
    summary = review.build_summary(name, before, {})
    return PublishItem(name, compiler.decommission_change(name, summary), review_mode, summary)


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
