"""Render stage: one environment's objects as files (charts, sealed Secrets, lock, genesis,
kustomization, network page, bootstrap), validated and sealed, all in memory.
"""


from __future__ import annotations

from typing import Any

from pipelines.lib import policy
from pipelines.lib.chart_values import render_objects
from pipelines.lib.config import ConfigError, EnvironmentConfig
from pipelines.lib.errors import GuardError
from pipelines.lib.gitops import git_blob_id
from pipelines.lib.keys import (
    KeySet,
    open_private_bundle,
)
from pipelines.lib.kustomize import kustomization
from pipelines.lib.layout import (
    GENESIS_FILE,
    LOCK_FILE,
    README_FILE,
    bootstrap_path,
    env_dir,
    owned_paths,
    sops_path_regex,
)
from pipelines.lib.lock import canonical_json
from pipelines.lib.manifests import ValidationIssue, object_filename, validator_for
from pipelines.lib.model import (
    CompileContext,
    CompiledEnvironment,
    ExistingEnvironment,
    GenesisResult,
    PublishTarget,
    StageTimes,
)
from pipelines.lib.network_page import network_readme
from pipelines.lib.peers import check_external_peers
from pipelines.lib.review import build_summary
from pipelines.lib.sealing import (
    sops_rule_yaml,
)
from pipelines.lib.stages.genesis import build_lock
from pipelines.lib.stages.seal import seal_secrets, sealer_for
from pipelines.lib.stages.validate import (
    ManifestValidationError,
    check_no_leaks,
    check_object_size,
    raise_problems,
    schema_problems,
)
from pipelines.lib.yaml_io import dump_yaml, load_yaml


def bootstrap_objects(config: EnvironmentConfig, target: PublishTarget) -> list[dict[str, Any]]:
    """What points the cluster's GitOps controller at `rendered/<env>`."""
    name = f"chainops-{config.name}"
    labels = {"app.kubernetes.io/part-of": "chainops", "app.kubernetes.io/instance": config.name}
    path = f"rendered/{config.name}"
    url = target.url_for_cluster
    if config.spec.gitops.controller == "argocd":
        return [
            {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                # Deleting the Application (a decommission) deletes the network's objects too.
                "metadata": {"name": name, "namespace": "argocd", "labels": labels,
                             "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": url, "targetRevision": target.branch, "path": path},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": config.spec.kubernetes.namespace},
                    "syncPolicy": {
                        "automated": {"prune": True, "selfHeal": True},
                        "syncOptions": ["CreateNamespace=true"],
                    },
                },
            }
        ]
    kustomization_spec: dict[str, Any] = {
        "interval": "10m",
        "path": f"./{path}",
        "prune": True,
        "wait": True,
        "timeout": "5m",
        "sourceRef": {"kind": "GitRepository", "name": name},
    }
    repository_spec: dict[str, Any] = {"interval": "1m", "url": url, "ref": {"branch": target.branch}}
    if config.spec.gitops.repositorySecret:  # credentials of a private repository (ssh key or https token)
        repository_spec["secretRef"] = {"name": config.spec.gitops.repositorySecret}
    if config.spec.gitops.secrets.provider == "sops":
        kustomization_spec["decryption"] = {"provider": "sops", "secretRef": {"name": "sops-age"}}
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": "flux-system", "labels": labels},
            "spec": repository_spec,
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": "flux-system", "labels": labels},
            "spec": kustomization_spec,
        },
    ]


def render_environment(
    config: EnvironmentConfig,
    keys: KeySet,
    genesis: GenesisResult,
    existing: ExistingEnvironment,
    ctx: CompileContext,
    times: StageTimes | None = None,
) -> CompiledEnvironment:
    """Render, seal and validate every file of the environment (nothing touches disk)."""
    times = times or StageTimes()
    if keys.based_on != existing.commit:
        raise GuardError(
            f"{config.name}: its keys were planned on GitOps commit {_short(keys.based_on)} but the committed state "
            f"to render on is {_short(existing.commit)}: another writer published in between; run again"
        )
    check_external_peers(config, keys, existing.lock.node_names if existing.lock is not None else set())
    privates = open_private_bundle(keys.sealed_private, ctx.identity.secret())
    with times.stage("render"):
        objects = render_objects(config, keys, genesis.block_hash, genesis.json_bytes, privates, ctx.charts_dir)
    findings = policy.evaluate(config, (rendered.obj for rendered in objects))
    refused = policy.refusals(config, findings)
    if refused:
        raise ConfigError(refused)
    base = env_dir(config.name)
    validator = validator_for()
    sealer = sealer_for(config, ctx.identity)
    files: dict[str, bytes] = {}
    to_seal: list[tuple[str, dict, bytes | None]] = []
    problems: list[ValidationIssue] = []
    for rendered in objects:
        # A Secret is committed as the provider's kind (a SealedSecret file for sealed-secrets).
        kind = sealer.output_kind if rendered.obj["kind"] == "Secret" else rendered.obj["kind"]
        path = f"{base}{rendered.chart}/{object_filename({**rendered.obj, 'kind': kind})}"
        if path in files or any(path == p for p, _, _ in to_seal):
            raise ManifestValidationError(f"{path}: two objects render to the same file")
        with times.stage("validate"):
            problems += schema_problems(validator, [(path, rendered.obj)])
        if rendered.obj["kind"] == "Secret":
            to_seal.append((path, rendered.obj, existing.files.get(path)))
            continue
        with times.stage("render"):
            files[path] = dump_yaml(rendered.obj).encode()
        check_object_size(config, rendered.chart, rendered.obj, files[path])
    raise_problems(problems)
    try:
        with times.stage("seal"):
            sealed_files = seal_secrets(config, to_seal, privates, existing, ctx.identity, sealer)
    finally:
        sealer.close()
    if sealer.provider != "sops":  # our own YAML: check it like every other object
        problems += schema_problems(validator, [(path, load_yaml(sealed_files[path])) for path, _, _ in to_seal])
    files.update(sealed_files)
    lock = build_lock(config, keys, genesis)
    files[base + LOCK_FILE] = canonical_json(lock.document())
    files[base + GENESIS_FILE] = genesis.json_bytes
    resources = sorted(p[len(base) :] for p in files if p.endswith(".yaml"))
    files[base + "kustomization.yaml"] = dump_yaml(kustomization(resources)).encode()
    with times.stage("review"):
        files[base + README_FILE] = network_readme(config, lock, files)  # for people; not in the kustomization
    bootstrap = bootstrap_objects(config, ctx.target)
    problems += schema_problems(validator, [(bootstrap_path(config.name), obj) for obj in bootstrap])
    raise_problems(problems)
    files[bootstrap_path(config.name)] = "---\n".join(dump_yaml(o) for o in bootstrap).encode()
    sops_rule = None
    if sealer.provider == "sops":  # the environment's own creation rule in the shared .sops.yaml
        sops_rule = sops_rule_yaml(sops_path_regex(config.name), [ctx.identity.recipient, *config.spec.gitops.secrets.ageRecipients])
    unsealed = [p for p, _, _ in to_seal] if sealer.provider == "plaintext" else []
    check_no_leaks(config, files, privates, unsealed)
    with times.stage("review"):
        warnings = tuple(f.warning() for f in findings)
        summary = build_summary(config.name, existing.files, files, warnings)
    return CompiledEnvironment(
        name=config.name,
        files=files,
        prefixes=owned_paths(config.name),
        genesis_hash=genesis.block_hash,
        object_count=len(objects) + len(bootstrap),  # every object the commit writes, as the summary counts them
        validators=genesis.validators,
        generated_keys=keys.generated,
        validator_plan=genesis.validator_plan,
        validator_nodes=len(keys.validators),
        genesis_changed_from=genesis.previous_hash,
        genesis_differences=genesis.differences,
        compiled_from={path: git_blob_id(data) for path, data in existing.files.items()},
        secrets_provider=sealer.provider,
        plaintext_secrets=tuple(sorted(unsealed)),
        sops_rule=sops_rule,
        policy_warnings=warnings,
        summary=summary,
        stage_seconds=times.seconds,
    )


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "(none)"
