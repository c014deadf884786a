"""The production policy: what a live network must not run with, read off the rendered objects.

Every rule is checked on what would be applied (the rendered objects and the environment
file), never on chainops' intentions, so an override that slips past a values schema is
still caught. `production: true` environments are refused on any finding (one line each:
file, field, rule); the others carry the same findings as warnings in the review summary.
The README's policy table is `RULES`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.lib.config import EnvironmentConfig, parse_image

# JSON-RPC API namespaces that administer the node, expose internals or vote: never behind an
# Ingress (Besu: ADMIN, DEBUG, TRACE, TXPOOL, PERM, MINER, PLUGINS, QBFT/IBFT/CLIQUE votes;
# geth: admin, debug, txpool, miner, personal, clique).
DANGEROUS_APIS = ("ADMIN", "DEBUG", "TRACE", "TXPOOL", "MINER", "PLUGINS", "PERSONAL", "QBFT", "IBFT", "CLIQUE")
DANGEROUS_API_PREFIXES = ("PERM",)
# Ingress annotations that inject raw proxy configuration (ingress-nginx "snippets").
RAW_CONFIG_ANNOTATION_SUFFIX = "-snippet"
UNPINNED_TAGS = ("latest", "stable", "main", "master", "develop", "nightly", "edge")
MIN_BFT_VALIDATORS = 4


@dataclass(frozen=True)
class Rule:
    id: str
    field: str  # where in the environment file it is fixed
    text: str


RULES = (
    Rule("pinned-images", "images", "image tags are pinned releases or digests (no latest, stable, develop, nightly)"),
    Rule("bft-validators", "nodes.validators", f"QBFT and IBFT 2.0 run at least {MIN_BFT_VALIDATORS} validators (f = 1 fault tolerated)"),
    Rule("public-apis", "values.<node chart>.rpc.apis", "no admin, debug, trace, txpool, perm*, miner, plugin or vote APIs on nodes behind an Ingress"),
    Rule("public-cors", "values.<node chart>.rpc.corsOrigins / corsDomains", "no '*' CORS origin on nodes behind an Ingress"),
    Rule("public-hosts", "values.geth-node.rpc.extraVhosts", "no '*' host allowlist on nodes behind an Ingress"),
    Rule("ingress-tls", "values.<node chart>.rpc.ingress.tlsSecretName", "an Ingress serves TLS for its host"),
    Rule("raw-config", "values.<node chart>.rpc.ingress.annotations", "no raw proxy configuration annotations (*-snippet)"),
    Rule("pod-security", "values.network.podSecurity.level", "the namespace enforces Pod Security 'restricted'"),
    Rule("network-policies", "values.network.networkPolicy.enabled", "NetworkPolicies are rendered (default deny)"),
    Rule("cluster-recipient", "gitops.secrets.ageRecipients", "SOPS Secrets are also sealed for the cluster's own age recipient (chainops cluster init ENV), so the cluster never holds the pipeline identity"),
)
_RULE = {rule.id: rule for rule in RULES}


@dataclass(frozen=True, order=True)
class Finding:
    rule: str
    field: str
    detail: str

    def warning(self) -> str:
        """The finding without the file (review summaries travel to other machines)."""
        return f"{self.field}: {self.detail} (policy {self.rule}: {_RULE[self.rule].text})"

    def line(self, source: str) -> str:
        return f"{source}: {self.warning()}"


def evaluate(config: EnvironmentConfig, objects: Iterable[Mapping[str, Any]]) -> tuple[Finding, ...]:
    """Every policy finding of the environment, sorted."""
    objects = list(objects)
    found: list[Finding] = []
    for key, reference in sorted(config.images.items()):
        _, tag, digest = parse_image(reference)
        if not digest and (not tag or tag.lower() in UNPINNED_TAGS):
            found.append(Finding("pinned-images", f"images.{key}", f"{reference} is not a pinned release"))
    secrets = config.spec.gitops.secrets
    if secrets.provider == "sops" and not secrets.ageRecipients:
        found.append(Finding("cluster-recipient", "gitops.secrets.ageRecipients", "no cluster recipient: the cluster would need the pipeline identity, which opens every key escrow"))
    network = config.spec.network
    if network.consensus in ("qbft", "ibft2") and config.spec.nodes.validators < MIN_BFT_VALIDATORS:
        found.append(Finding("bft-validators", "nodes.validators", f"{config.spec.nodes.validators} validators tolerate no fault"))
    chart = config.profile.chart
    ingresses = [o for o in objects if o.get("kind") == "Ingress"]
    for ingress in ingresses:
        name = ingress["metadata"]["name"]
        hosts = {rule.get("host") for rule in ingress["spec"].get("rules", [])}
        covered = {h for tls in ingress["spec"].get("tls") or [] for h in tls.get("hosts", [])}
        if not hosts <= covered:
            found.append(Finding("ingress-tls", f"values.{chart}.rpc.ingress.tlsSecretName", f"Ingress {name} serves {', '.join(sorted(hosts - covered))} without TLS"))
        for annotation in sorted(ingress["metadata"].get("annotations") or {}):
            if annotation.endswith(RAW_CONFIG_ANNOTATION_SUFFIX):
                found.append(Finding("raw-config", f"values.{chart}.rpc.ingress.annotations", f"Ingress {name} has {annotation}"))
    for workload in _behind_ingress(objects, ingresses):
        found += _exposure_findings(chart, workload, objects)
    namespaces = [o for o in objects if o.get("kind") == "Namespace"]
    for namespace in namespaces:
        level = (namespace["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        if level != "restricted":
            found.append(Finding("pod-security", "values.network.podSecurity.level", f"namespace {namespace['metadata']['name']} enforces {level or 'nothing'}"))
    if not any(o.get("kind") == "NetworkPolicy" for o in objects):
        found.append(Finding("network-policies", "values.network.networkPolicy.enabled", "no NetworkPolicy is rendered"))
    return tuple(sorted(set(found)))


def refusals(config: EnvironmentConfig, findings: Iterable[Finding]) -> list[str]:
    """The findings as refusal lines, for `production: true` (else none)."""
    return [f.line(config.source_path) for f in findings] if config.spec.production else []


def _selects(selector: Mapping[str, str], workload: Mapping[str, Any]) -> bool:
    labels = (((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _behind_ingress(objects: list[Mapping[str, Any]], ingresses: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    services = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Service"}
    backends = {
        path["backend"]["service"]["name"]
        for ingress in ingresses
        for rule in ingress["spec"].get("rules", [])
        for path in (rule.get("http") or {}).get("paths", [])
        if "service" in path.get("backend", {})
    }
    workloads = [o for o in objects if o.get("kind") in ("StatefulSet", "Deployment")]
    return [
        w for w in workloads
        if any(_selects((services[b].get("spec") or {}).get("selector") or {}, w) for b in backends if b in services)
    ]


def _flag_values(args: Iterable[str], *names: str) -> list[str]:
    values = []
    for arg in args:
        for name in names:
            if arg.startswith(f"{name}="):
                values += [v.strip() for v in arg.split("=", 1)[1].split(",") if v.strip()]
    return values


def _exposure_findings(chart: str, workload: Mapping[str, Any], objects: list[Mapping[str, Any]]) -> list[Finding]:
    name = f"{workload['kind']}/{workload['metadata']['name']}"
    args = [a for c in workload["spec"]["template"]["spec"].get("containers", []) for a in c.get("args", []) + c.get("command", [])]
    apis = _flag_values(args, "--rpc-http-api", "--rpc-ws-api", "--http.api", "--ws.api")
    cors = _flag_values(args, "--rpc-http-cors-origins", "--http.corsdomain", "--ws.origins")
    hosts = _flag_values(args, "--host-allowlist", "--http.vhosts")
    for config_map in (o for o in objects if o.get("kind") == "ConfigMap"):
        for key, text in (config_map.get("data") or {}).items():
            if key.endswith(".toml") and "host-allowlist" in text:
                try:
                    hosts += list(tomllib.loads(text).get("host-allowlist", []))
                except tomllib.TOMLDecodeError:
                    continue
    found = []
    bad = sorted({a for a in apis if a.upper() in DANGEROUS_APIS or a.upper().startswith(DANGEROUS_API_PREFIXES)})
    if bad:
        found.append(Finding("public-apis", f"values.{chart}.rpc.apis", f"{name} serves {', '.join(bad)} behind an Ingress"))
    if "*" in cors:
        found.append(Finding("public-cors", f"values.{chart}.rpc.{'corsOrigins' if chart == 'besu-node' else 'corsDomains'}", f"{name} allows CORS from any origin behind an Ingress"))
    if "*" in hosts:
        found.append(Finding("public-hosts", f"values.{chart}.rpc.extraVhosts" if chart == "geth-node" else "host-allowlist", f"{name} accepts any Host header behind an Ingress"))
    return found
