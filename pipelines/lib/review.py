"""What a change does, in words a reviewer can trust, and a page per network for people.

The review summary compares two states of one environment in the GitOps repository —
the files committed at the base commit and the files a compile produces — as parsed
objects, never as text: objects added/changed/removed by kind and name, image and replica
changes, nodes and validators added or removed (with the vote calls the operator must
make), keys rotated, plaintext Secrets in use, and a GENESIS CHANGED banner. Secret
contents are never read: sealed files are named, nothing more.

Both documents are Markdown from Jinja2 templates in `templates/` (sandboxed,
StrictUndefined) and are deterministic: no timestamps, sorted everywhere, so a re-run
with nothing changed writes the same bytes and makes no commit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
from eth_utils import to_checksum_address
from jinja2.sandbox import SandboxedEnvironment

from pipelines.lib.config import EnvironmentConfig
from pipelines.lib.manifests import ManifestError, load_yaml_all
from pipelines.lib.validator_plan import VOTE_METHODS, Validator, ValidatorPlan, plan_change

TEMPLATES_DIR = Path(__file__).with_name("templates")
LOCK_FILE = "network.lock.json"
GENESIS_FILE = "genesis.json"
README_FILE = "README.md"
# The API namespace each method needs enabled on the node (--rpc-http-api / --http.api).
VOTE_APIS = {"qbft": "QBFT", "ibft2": "IBFT", "clique": "clique"}
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
SCALABLE_KINDS = ("StatefulSet", "Deployment", "ReplicaSet")
MAX_FIELD_DEPTH = 10
MAX_FIELDS_SHOWN = 8
MAX_PODS_IN_DIAGRAM = 6
Action = Literal["added", "changed", "removed"]


# -- model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectChange:
    action: Action
    kind: str
    name: str
    namespace: str
    path: str
    fields: tuple[str, ...] = ()  # changed field paths; always empty for Secrets
    secret: str = ""  # "" | "sealed" | "plaintext"


@dataclass(frozen=True)
class FileChange:
    action: Action
    path: str
    sealed: bool = False


@dataclass(frozen=True)
class ImageChange:
    before: str
    after: str
    containers: tuple[str, ...]  # "StatefulSet/rpc: besu"


@dataclass(frozen=True)
class ReplicaChange:
    kind: str
    name: str
    before: int
    after: int


@dataclass(frozen=True)
class NodeRef:
    name: str
    role: str
    address: str


@dataclass(frozen=True)
class ReviewSummary:
    environment: str
    kind: Literal["new", "update", "decommission", "none"]
    consensus: str
    namespace: str
    genesis_before: str | None
    genesis_after: str | None
    genesis_file_changed: bool
    genesis_fields: tuple[str, ...]
    objects: tuple[ObjectChange, ...]
    files: tuple[FileChange, ...]
    images: tuple[ImageChange, ...]
    replicas: tuple[ReplicaChange, ...]
    nodes_added: tuple[NodeRef, ...]
    nodes_removed: tuple[NodeRef, ...]
    validators_added: tuple[NodeRef, ...]
    validators_removed: tuple[NodeRef, ...]
    plan: ValidatorPlan | None  # the ordered votes a live chain needs (None: no votes)
    keys_rotated: tuple[str, ...]
    plaintext_secrets: tuple[str, ...]
    warnings: tuple[str, ...] = ()  # production-policy findings (pipelines/lib/policy.py)

    @property
    def changed(self) -> bool:
        return bool(self.objects or self.files)

    @property
    def genesis_changed(self) -> bool:
        """A committed genesis changes: its block hash, or the file the nodes load."""
        if self.genesis_before is None or self.genesis_after is None:
            return False
        return self.genesis_before != self.genesis_after or self.genesis_file_changed

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for o in self.objects if o.action == a) for a in ("added", "changed", "removed")}

    def highlights(self) -> list[str]:
        """The changes that matter, one short phrase each (commit subject, PR title)."""
        if self.kind == "decommission":
            return ["decommission"]
        if self.kind == "new":
            return [f"new network ({len(self.nodes_added)} nodes)"]
        found = []
        if self.genesis_changed:
            found.append("GENESIS CHANGED")
        found += [f"image {_short_image(i.before)} -> {_short_image(i.after)}" for i in self.images]
        found += [f"{r.name} replicas {r.before} -> {r.after}" for r in self.replicas]
        found += [f"+{n.name}" for n in self.nodes_added if not any(r for r in self.replicas if r.name == n.role)]
        found += [f"-{n.name}" for n in self.nodes_removed if not any(r for r in self.replicas if r.name == n.role)]
        if self.validators_added or self.validators_removed:
            found.append(f"validators +{len(self.validators_added)}/-{len(self.validators_removed)} (votes needed)")
        if self.keys_rotated:
            found.append(f"keys rotated: {', '.join(self.keys_rotated)}")
        if not found and self.changed:
            counts = self.counts()
            found.append(f"{sum(counts.values()) or len(self.files)} {'objects' if sum(counts.values()) else 'files'} changed")
        return found

    def headline(self, limit: int = 100) -> str:
        text = ", ".join(self.highlights()) or "no changes"
        return text if len(text) <= limit else text[: limit - 1].rstrip(", ") + "…"


# -- reading committed and compiled files ---------------------------------------------
def env_prefix(environment: str) -> str:
    return f"rendered/{environment}/"


def is_sealed_path(path: str) -> bool:
    """Files whose bytes a reviewer never sees: Secrets (sealed or not) and age files."""
    base = path.rsplit("/", 1)[-1]
    return base.startswith(("secret-", "sealedsecret-")) or base.endswith(".age")


def read_lock(files: Mapping[str, bytes], environment: str) -> dict[str, Any] | None:
    data = files.get(env_prefix(environment) + LOCK_FILE)
    return json.loads(data) if data else None


def _genesis(files: Mapping[str, bytes], environment: str) -> dict[str, Any] | None:
    data = files.get(env_prefix(environment) + GENESIS_FILE)
    return json.loads(data) if data else None


ObjectKey = tuple[str, str, str]  # kind, namespace, name


@lru_cache(maxsize=1024)
def _load_documents(data: bytes) -> list[Any]:
    """Parsed documents by content: a summary parses the same unchanged bytes before and
    after, and thousands of environments share identical files. Callers only read them."""
    return load_yaml_all(data)


def parse_objects(files: Mapping[str, bytes]) -> dict[ObjectKey, tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in the YAML files, by (kind, namespace, name) -> (path, object).
    kustomization.yaml and .sops.yaml are build/tool configuration, not objects."""
    found: dict[ObjectKey, tuple[str, dict[str, Any]]] = {}
    for path in sorted(files):
        name = path.rsplit("/", 1)[-1]
        if not path.endswith(".yaml") or name in ("kustomization.yaml", ".sops.yaml"):
            continue
        try:
            documents = _load_documents(files[path])
        except ManifestError:
            continue  # not YAML we can read: reported as a file change
        for doc in documents:
            if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and isinstance(doc.get("metadata"), dict):
                meta = doc["metadata"]
                found[(doc["kind"], str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = (path, doc)
    return found


def secret_state(obj: Mapping[str, Any]) -> str:
    """"sealed" for a SOPS-encrypted Secret or a SealedSecret, "plaintext" for a bare Secret."""
    if obj.get("kind") == "SealedSecret":
        return "sealed"
    if obj.get("kind") == "Secret":
        return "sealed" if "sops" in obj else "plaintext"
    return ""


_MISSING = object()


def changed_fields(before: Any, after: Any, prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted paths of what differs; lists of named items (containers, ports, env) by name."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict) and depth < MAX_FIELD_DEPTH:
        found: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            found += changed_fields(before.get(key, _MISSING), after.get(key, _MISSING), _join(prefix, str(key)), depth + 1)
        return found
    if _named_list(before) and _named_list(after) and depth < MAX_FIELD_DEPTH:
        old = {item["name"]: item for item in before}
        new = {item["name"]: item for item in after}
        found = []
        for key in sorted(set(old) | set(new)):
            found += changed_fields(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}[{key}]", depth + 1)
        return found
    return [prefix or "(document)"]


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)


def _join(prefix: str, key: str) -> str:
    key = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
    return f"{prefix}.{key}" if prefix else key


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def container_images(obj: Mapping[str, Any]) -> dict[str, str]:
    """container name -> image of a workload (init containers marked `init:`)."""
    spec = pod_spec(obj)
    images = {}
    for field, mark in (("initContainers", "init:"), ("containers", "")):
        for container in spec.get(field) or []:
            if isinstance(container, dict) and container.get("name"):
                images[mark + str(container["name"])] = str(container.get("image", ""))
    return images


def _nodes(lock: Mapping[str, Any] | None) -> dict[str, NodeRef]:
    if not lock:
        return {}
    return {n["name"]: NodeRef(n["name"], n.get("role", ""), n.get("address", "")) for n in lock.get("nodes", [])}


# -- the summary -----------------------------------------------------------------------
def build_summary(
    environment: str, before: Mapping[str, bytes], after: Mapping[str, bytes], warnings: tuple[str, ...] = ()
) -> ReviewSummary:
    """Compare the committed files of an environment with the files a compile produced.
    `warnings`: the compile's policy findings, shown to the reviewer."""
    old_lock, new_lock = read_lock(before, environment), read_lock(after, environment)
    kind: Literal["new", "update", "decommission", "none"]
    if old_lock is None and new_lock is not None:
        kind = "new"
    elif old_lock is not None and new_lock is None:
        kind = "decommission"
    else:
        kind = "update"
    objects, old_objects, new_objects = _object_changes(before, after)
    object_paths = {path for path, _ in old_objects.values()} | {path for path, _ in new_objects.values()}
    files = tuple(
        FileChange(action, path, is_sealed_path(path))
        for action, path in _file_changes(before, after)
        if path not in object_paths
    )
    if not objects and not files:
        kind = "none"
    lock = new_lock or old_lock or {}
    old_nodes, new_nodes = _nodes(old_lock), _nodes(new_lock)
    nodes_added = tuple(new_nodes[n] for n in sorted(set(new_nodes) - set(old_nodes)))
    nodes_removed = tuple(old_nodes[n] for n in sorted(set(old_nodes) - set(new_nodes)))
    old_validators = {n.address.lower(): n for n in old_nodes.values() if n.role == "validator"}
    new_validators = {n.address.lower(): n for n in new_nodes.values() if n.role == "validator"}
    validators_added: tuple[NodeRef, ...] = ()
    validators_removed: tuple[NodeRef, ...] = ()
    if kind == "update":
        validators_added = tuple(new_validators[a] for a in sorted(set(new_validators) - set(old_validators)))
        validators_removed = tuple(old_validators[a] for a in sorted(set(old_validators) - set(new_validators)))
    genesis_before = old_lock.get("genesisHash") if old_lock else None
    genesis_after = new_lock.get("genesisHash") if new_lock else None
    old_genesis, new_genesis = _genesis(before, environment), _genesis(after, environment)
    genesis_file_changed = bool(old_genesis is not None and new_genesis is not None and old_genesis != new_genesis)
    genesis_fields = tuple(changed_fields(old_genesis, new_genesis)) if genesis_file_changed else ()
    consensus = str(lock.get("consensus", ""))
    plan = None
    if validators_added or validators_removed:
        by_contract = bool(((new_genesis or old_genesis or {}).get("config", {}).get("qbft") or {}).get("validatorcontractaddress"))
        plan = plan_change(
            consensus,
            [Validator(n.name, n.address) for n in old_validators.values()],
            [Validator(n.name, n.address) for n in new_validators.values()],
            by_contract,
        )
    provisional = ReviewSummary(
        environment=environment,
        kind=kind,
        consensus=consensus,
        namespace=_namespace(new_objects or old_objects),
        genesis_before=genesis_before,
        genesis_after=genesis_after,
        genesis_file_changed=genesis_file_changed,
        genesis_fields=genesis_fields,
        objects=objects,
        files=files,
        images=_image_changes(old_objects, new_objects),
        replicas=_replica_changes(old_objects, new_objects),
        nodes_added=nodes_added if kind != "decommission" else (),
        nodes_removed=nodes_removed if kind != "decommission" else (),
        validators_added=validators_added,
        validators_removed=validators_removed,
        plan=plan,
        keys_rotated=_rotated(old_lock, new_lock),
        plaintext_secrets=tuple(
            sorted(obj["metadata"]["name"] for _, obj in new_objects.values() if secret_state(obj) == "plaintext")
        ),
        warnings=warnings,
    )
    if provisional.genesis_changed:  # a reset chain starts from the new genesis validators: no votes
        return replace(provisional, plan=None)
    return provisional


def _object_changes(
    before: Mapping[str, bytes], after: Mapping[str, bytes]
) -> tuple[tuple[ObjectChange, ...], dict[ObjectKey, tuple[str, dict]], dict[ObjectKey, tuple[str, dict]]]:
    old, new = parse_objects(before), parse_objects(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        kind, namespace, name = key
        if key not in old:
            path, obj = new[key]
            changes.append(ObjectChange("added", kind, name, namespace, path, secret=secret_state(obj)))
        elif key not in new:
            path, obj = old[key]
            changes.append(ObjectChange("removed", kind, name, namespace, path, secret=secret_state(obj)))
        elif old[key][1] != new[key][1]:
            path, obj = new[key]
            state = secret_state(obj)
            fields = () if state else tuple(changed_fields(old[key][1], obj))
            changes.append(ObjectChange("changed", kind, name, namespace, path, fields, state))
    order = {"removed": 0, "changed": 1, "added": 2}
    changes.sort(key=lambda c: (order[c.action], c.kind, c.namespace, c.name))
    return tuple(changes), old, new


def _file_changes(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> list[tuple[Action, str]]:
    found: list[tuple[Action, str]] = []
    for path in sorted(set(before) | set(after)):
        if path not in after:
            found.append(("removed", path))
        elif path not in before:
            found.append(("added", path))
        elif before[path] != after[path]:
            found.append(("changed", path))
    return found


def _namespace(objects: Mapping[ObjectKey, tuple[str, dict]]) -> str:
    for (kind, _, name), _value in sorted(objects.items()):
        if kind == "Namespace":
            return name
    spaces = sorted({ns for (_, ns, _) in objects if ns})
    return spaces[0] if spaces else ""


def _image_changes(old: Mapping[ObjectKey, tuple[str, dict]], new: Mapping[ObjectKey, tuple[str, dict]]) -> tuple[ImageChange, ...]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for key in sorted(set(old) & set(new)):
        if key[0] not in WORKLOAD_KINDS:
            continue
        before, after = container_images(old[key][1]), container_images(new[key][1])
        for container in sorted(set(before) & set(after)):
            if before[container] != after[container]:
                grouped.setdefault((before[container], after[container]), []).append(f"{key[0]}/{key[2]}: {container}")
    return tuple(ImageChange(b, a, tuple(where)) for (b, a), where in sorted(grouped.items()))


def _replica_changes(old: Mapping[ObjectKey, tuple[str, dict]], new: Mapping[ObjectKey, tuple[str, dict]]) -> tuple[ReplicaChange, ...]:
    found = []
    for key in sorted(set(old) & set(new)):
        if key[0] not in SCALABLE_KINDS:
            continue
        before = (old[key][1].get("spec") or {}).get("replicas", 1)
        after = (new[key][1].get("spec") or {}).get("replicas", 1)
        if before != after:
            found.append(ReplicaChange(key[0], key[2], int(before), int(after)))
    return tuple(found)


def _rotated(old_lock: Mapping[str, Any] | None, new_lock: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Nodes and accounts whose key changed under the same name (names only)."""
    if not old_lock or not new_lock:
        return ()
    rotated = []
    for section, label in (("nodes", ""), ("accounts", "account/")):
        old = {e.get("name"): e.get("address") for e in old_lock.get(section, []) if e.get("name")}
        new = {e.get("name"): e.get("address") for e in new_lock.get(section, []) if e.get("name")}
        rotated += [f"{label}{n}" for n in sorted(set(old) & set(new)) if old[n] != new[n]]
    return tuple(rotated)


def _short_image(reference: str) -> str:
    """`hyperledger/besu:25.10.0` -> `besu:25.10.0` for one-line headlines."""
    return reference.rsplit("/", 1)[-1]


# -- Markdown --------------------------------------------------------------------------
def md_code(value: Any) -> str:
    """Inline code that survives any backticks inside the value."""
    text = str(value).replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def mermaid_label(value: Any) -> str:
    return str(value).replace('"', "#quot;").replace("\n", " ")


def ether(wei: int) -> str:
    """Exact decimal ether for a wei amount (no float rounding)."""
    text = format(Decimal(wei).scaleb(-18).normalize(), "f")
    return text


@lru_cache(maxsize=1)
def template_env() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML; values go through md_code / md_cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(code=md_code, cell=md_cell, mlabel=mermaid_label)
    return env


def render_summary(summary: ReviewSummary) -> str:
    """The review summary as Markdown (pull request body, `chainops diff` output)."""
    return template_env().get_template("review_summary.md.j2").render(s=summary, counts=summary.counts(),
                                                                       vote_api=VOTE_APIS.get(summary.consensus, ""))


def for_terminal(markdown: str) -> str:
    """Markdown for a terminal: the GENESIS CHANGED banner in bold red."""
    return "\n".join(
        f"\x1b[1;31m{line}\x1b[0m" if "GENESIS CHANGED" in line or "DECOMMISSION" in line else line
        for line in markdown.split("\n")
    )


def commit_lines(summary: ReviewSummary) -> list[str]:
    """Plain-text lines for the commit message body: what changed, without Markdown.
    (The compiler adds the GENESIS CHANGED line and the validator votes itself.)"""
    if summary.kind == "none":
        return []
    counts = summary.counts()
    lines = [f"Changes: {counts['added']} added, {counts['changed']} changed, {counts['removed']} removed objects"]
    for image in summary.images:
        lines.append(f"Image: {image.before} -> {image.after} ({', '.join(image.containers)})")
    for replica in summary.replicas:
        lines.append(f"Replicas: {replica.kind}/{replica.name} {replica.before} -> {replica.after}")
    if summary.nodes_added:
        lines.append(f"Nodes added: {', '.join(n.name for n in summary.nodes_added)}")
    if summary.nodes_removed:
        lines.append(f"Nodes removed: {', '.join(n.name for n in summary.nodes_removed)}")
    if summary.keys_rotated:
        lines.append(f"Keys rotated: {', '.join(summary.keys_rotated)}")
    if summary.plaintext_secrets:
        lines.append(f"Plaintext Secrets: {', '.join(summary.plaintext_secrets)}")
    return lines


# -- the network page (rendered/<env>/README.md) ---------------------------------------
@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    note: str


@dataclass(frozen=True)
class Account:
    label: str
    address: str
    balance_ether: str


def network_readme(config: EnvironmentConfig, lock: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """The environment's page for people: identity, versions, endpoints, validators,
    accounts, wallet setup and a Mermaid topology, all from the files being committed."""
    objects = parse_objects({p: b for p, b in files.items() if p.startswith(env_prefix(config.name))})
    genesis = _genesis(files, config.name) or {}
    topology = Topology.of(objects, lock)
    rpc, ws, dashboards, forward = _endpoints(topology, config.spec.kubernetes.namespace)
    nodes = list(lock.get("nodes", []))
    context = {
        "c": config,
        "lock": lock,
        "profile": config.profile,
        "images": sorted(config.images.items()),
        "validators": [n for n in nodes if n.get("role") == "validator"],
        "others": [n for n in nodes if n.get("role") != "validator"],
        "genesis_validators": list(lock.get("validators", [])),
        "accounts": _accounts(genesis, lock),
        "rpc": rpc,
        "ws": ws,
        "dashboards": dashboards,
        "forward": forward,
        "chain_id_hex": hex(config.spec.network.chainId),
        "wallet_json": json.dumps(_wallet_params(config, rpc), indent=2, sort_keys=True),
        "diagram": topology_diagram(config, topology),
        "vote_method": VOTE_METHODS.get(config.spec.network.consensus, ""),
    }
    return template_env().get_template("network_readme.md.j2").render(**context).encode()


@dataclass(frozen=True)
class Topology:
    """Workloads, the Services in front of them and the Ingresses in front of those."""

    namespace: str
    roles: dict[str, tuple[str, ...]]  # node role -> node names (from the lock)
    workloads: dict[str, dict[str, Any]]  # name -> StatefulSet/Deployment
    services: dict[str, dict[str, Any]]  # name -> client-facing (not headless) Service
    targets: dict[str, tuple[str, ...]]  # Service name -> workloads it selects
    ingresses: dict[str, dict[str, Any]]
    static_peers: bool = False  # a rendered config lists static peers (besu static-nodes.json, geth StaticNodes)

    @classmethod
    def of(cls, objects: Mapping[ObjectKey, tuple[str, dict]], lock: Mapping[str, Any]) -> Topology:
        roles: dict[str, list[str]] = {}
        for node in lock.get("nodes", []):
            roles.setdefault(str(node.get("role")), []).append(str(node.get("name")))
        items = sorted(objects.items())
        workloads = {name: obj for (kind, _, name), (_, obj) in items if kind in ("StatefulSet", "Deployment")}
        services = {
            name: obj
            for (kind, _, name), (_, obj) in items
            if kind == "Service" and (obj.get("spec") or {}).get("clusterIP") != "None"
        }
        targets = {}
        for name, svc in services.items():
            selector = (svc.get("spec") or {}).get("selector") or {}
            targets[name] = tuple(
                w for w, obj in workloads.items()
                if selector and all(_pod_labels(obj).get(k) == v for k, v in selector.items())
            )
        return cls(
            namespace=_namespace(objects),
            roles={k: tuple(v) for k, v in roles.items()},
            workloads=workloads,
            services=services,
            targets=targets,
            ingresses={name: obj for (kind, _, name), (_, obj) in items if kind == "Ingress"},
            static_peers=any(
                key == "static-nodes.json" or "StaticNodes" in str(value)
                for (kind, _, _), (_, obj) in items
                if kind == "ConfigMap"
                for key, value in (obj.get("data") or {}).items()
            ),
        )

    def serves_nodes(self, service: str) -> bool:
        return any(w in self.roles for w in self.targets.get(service, ()))


def _pod_labels(workload: Mapping[str, Any]) -> dict[str, Any]:
    return ((((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}


def _ingress_backends(ingress: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(host, backend Service) pairs of an Ingress."""
    found = []
    for rule in (ingress.get("spec") or {}).get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            backend = ((path.get("backend") or {}).get("service") or {}).get("name")
            if backend:
                found.append((str(rule.get("host") or "*"), str(backend)))
    return found


def _endpoints(topology: Topology, namespace: str) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint], str]:
    """JSON-RPC, WebSocket and dashboard endpoints, and a port-forward command for JSON-RPC."""
    rpc: list[Endpoint] = []
    ws: list[Endpoint] = []
    dashboards: list[Endpoint] = []
    forward = ""
    for name, ingress in topology.ingresses.items():
        tls = {h for t in (ingress.get("spec") or {}).get("tls") or [] for h in t.get("hosts") or []}
        for host, backend in _ingress_backends(ingress):
            if topology.serves_nodes(backend) and host != "*":
                scheme = "https" if host in tls else "http"
                rpc.append(Endpoint(f"Ingress {name}", f"{scheme}://{host}", "JSON-RPC from outside the cluster"))
    for name, svc in topology.services.items():
        host = f"{name}.{svc.get('metadata', {}).get('namespace') or namespace}.svc.cluster.local"
        for port in (svc.get("spec") or {}).get("ports") or []:
            number, pname = port.get("port"), str(port.get("name", ""))
            if not topology.serves_nodes(name):
                if pname.startswith("http") and topology.targets.get(name):
                    dashboards.append(Endpoint(f"Service {name}", f"http://{host}:{number}", f"{', '.join(topology.targets[name])} web UI"))
            elif pname in ("http", "rpc", "http-rpc", "jsonrpc") or number == 8545:
                rpc.append(Endpoint(f"Service {name}", f"http://{host}:{number}", "JSON-RPC inside the cluster"))
                forward = forward or f"kubectl -n {namespace} port-forward svc/{name} 8545:{number}"
            elif pname in ("ws", "websocket") or number == 8546:
                ws.append(Endpoint(f"Service {name}", f"ws://{host}:{number}", "WebSocket inside the cluster"))
    return rpc, ws, dashboards, forward


def _accounts(genesis: Mapping[str, Any], lock: Mapping[str, Any]) -> list[Account]:
    labels: dict[str, str] = {}
    for node in lock.get("nodes", []):
        labels[str(node.get("address", "")).lower()] = f"node {node.get('name')}"
    for account in lock.get("accounts", []):
        labels[str(account.get("address", "")).lower()] = f"{account.get('name')} (key in Secret {account.get('secret')})"
    found = []
    for address, entry in sorted((genesis.get("alloc") or {}).items()):
        normal = address.lower() if address.lower().startswith("0x") else "0x" + address.lower()
        label = labels.get(normal) or ("contract" if isinstance(entry, dict) and entry.get("code") else "external")
        balance = str((entry or {}).get("balance", "0"))
        wei = int(balance, 16) if balance.lower().startswith("0x") else int(balance or "0")
        found.append(Account(label, to_checksum_address(normal), ether(wei)))
    return sorted(found, key=lambda a: (a.label.startswith(("external", "contract")), a.label, a.address))


def _wallet_params(config: EnvironmentConfig, rpc: list[Endpoint]) -> dict[str, Any]:
    """EIP-3085 `wallet_addEthereumChain` parameters."""
    external = [e.url for e in rpc if e.name.startswith("Ingress")]
    return {
        "chainId": hex(config.spec.network.chainId),
        "chainName": f"chainops {config.name}",
        "nativeCurrency": {"name": "Ether", "symbol": "ETH", "decimals": 18},
        "rpcUrls": external or ["http://127.0.0.1:8545"],
    }


def _mid(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def topology_diagram(config: EnvironmentConfig, topology: Topology) -> str:
    """A Mermaid flowchart: node groups with their pods, client Services, Ingresses,
    static peering, bootnode discovery and ethstats reporting."""
    namespace = config.spec.kubernetes.namespace
    lines = ["flowchart LR", f'  subgraph {_mid("ns", namespace)}["namespace {mermaid_label(namespace)}"]']
    group_ids = {name: _mid("grp", name) for name in topology.workloads}
    for name, obj in topology.workloads.items():
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        lines.append(f'    subgraph {group_ids[name]}["{obj["kind"]} {mermaid_label(name)} ×{replicas}"]')
        if obj["kind"] == "StatefulSet":  # stable pod names
            pods = list(topology.roles.get(name) or [f"{name}-{i}" for i in range(int(replicas))])
            for pod in pods[:MAX_PODS_IN_DIAGRAM]:
                lines.append(f'      {_mid("pod", pod)}["{mermaid_label(pod)}"]')
            if len(pods) > MAX_PODS_IN_DIAGRAM:
                lines.append(f'      {_mid("more", name)}["… {len(pods) - MAX_PODS_IN_DIAGRAM} more"]')
        else:
            lines.append(f'      {_mid("pods", name)}["{replicas} pod(s)"]')
        lines.append("    end")
    edges = []
    for name, svc in topology.services.items():
        ports = ", ".join(f"{p.get('name', '')} {p.get('port')}".strip() for p in (svc.get("spec") or {}).get("ports") or [])
        lines.append(f'    {_mid("svc", name)}(["Service {mermaid_label(name)}<br/>{mermaid_label(ports)}"])')
        edges += [f"  {_mid('svc', name)} --> {group_ids[w]}" for w in topology.targets[name]]
    ethstats = config.spec.ethstats.enabled
    if ethstats and "ethstats" not in group_ids:
        lines.append('    ethstats[("ethstats")]')
    lines.append("  end")
    for name, ingress in topology.ingresses.items():
        backends = _ingress_backends(ingress)
        hosts = ", ".join(sorted({h for h, _ in backends}))
        lines.append(f'  {_mid("ing", name)}[/"Ingress {mermaid_label(hosts)}"/]')
        edges += [f"  {_mid('ing', name)} --> {_mid('svc', b)}" for b in sorted({b for _, b in backends}) if b in topology.services]
    peers = [group_ids[r] for r in ("validator", "rpc") if r in group_ids]
    if len(peers) == 2 and topology.static_peers:  # geth with bootnodes discovers its peers instead
        edges.append(f'  {peers[0]} <-->|"static peers"| {peers[1]}')
    if "bootnode" in group_ids:
        edges += [f'  {group_ids["bootnode"]} -.->|"discovery"| {gid}' for gid in peers]
    if ethstats:
        target = group_ids.get("ethstats", "ethstats")
        edges += [f'  {gid} -.->|"stats"| {target}' for gid in peers]
    return "\n".join(lines + edges)
