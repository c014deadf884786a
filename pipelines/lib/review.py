"""What a change does, in words a reviewer can trust: the review summary.

The review summary compares two states of one environment in the GitOps repository —
the files committed at the base commit and the files a compile produces — as parsed
objects, never as text: objects added/changed/removed by kind and name, image and replica
changes, nodes and validators added or removed (with the vote calls the operator must
make), keys rotated, plaintext Secrets in use, and a GENESIS CHANGED banner. Secret
contents are never read: sealed files are named, nothing more.

The summary is Markdown from a Jinja2 template in `templates/` (markdown.py: sandboxed,
StrictUndefined) and is deterministic: no timestamps, sorted everywhere, so a re-run
with nothing changed writes the same bytes and makes no commit.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

from pipelines.lib.errors import GuardError, ManifestError
from pipelines.lib.genesis import transitions_by_block
from pipelines.lib.layout import GENESIS_FILE, LOCK_FILE, env_dir
from pipelines.lib.lock import LockedAccount, LockedNode, NetworkLock, parse_lock
from pipelines.lib.markdown import template_env
from pipelines.lib.validator_plan import Validator, ValidatorPlan, plan_change
from pipelines.lib.yaml_io import load_yaml_all

# The API namespace each method needs enabled on the node (--rpc-http-api / --http.api).
VOTE_APIS = {"qbft": "QBFT", "ibft2": "IBFT", "clique": "clique"}
# Besu local permissioning (chart_sources/besu-node/templates/configmap-permissions.yaml).
ALLOWLIST_CONFIGMAP = "besu-permissions"
ALLOWLIST_FILE = "permissions_config.toml"
# How a running Besu node loads a changed permissions file: the PERM API method, or a restart
# (besu-docs, private-networks/how-to/use-local-permissioning.md: "update the
# permissions_config.toml file directly and then update the allowlist using the
# perm_reloadPermissionsFromFile method"; the PERM API is not enabled by default).
RELOAD_METHOD = "perm_reloadPermissionsFromFile"
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
SCALABLE_KINDS = ("StatefulSet", "Deployment", "ReplicaSet")
MAX_FIELD_DEPTH = 10
MAX_FIELDS_SHOWN = 8
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
class AlertChange:
    """An alert of a PrometheusRule (monitoring.enabled) added, removed or changed."""

    action: Action
    alert: str
    fields: tuple[str, ...] = ()  # expr, for, labels.severity, ...


@dataclass(frozen=True)
class NodeRef:
    name: str
    role: str
    address: str


@dataclass(frozen=True)
class TransitionChange:
    """A consensus transition a change adds (or, with a genesis change, alters or removes)."""

    block: int
    action: Action
    changes: tuple[str, ...]  # e.g. "block period 2 s -> 5 s", against the settings in force before the block


@dataclass(frozen=True)
class AllowlistChange:
    """Besu's node allowlist before and after: who is added or removed, and which running
    nodes must load the new file (`reload`) or load it anyway because their pods restart."""

    added: tuple[str, ...]  # node names, or "external <id>…@host:port"
    removed: tuple[str, ...]
    readdressed: tuple[str, ...]  # the same node id under another address
    reload: tuple[str, ...]  # kept nodes whose pods keep running
    restarted: tuple[str, ...]  # kept nodes whose pod template changes (they restart and read it)
    state: Literal["changed", "enabled", "disabled"] = "changed"

    def line(self) -> str:
        if self.state == "enabled":
            return (f"Node allowlist enabled: {len(self.added)} nodes; every node restarts with local permissioning "
                    "(its pod template changes)")
        if self.state == "disabled":
            return "Node allowlist removed: permissioning is off; every node restarts without it"
        what = [f"+{n}" for n in self.added] + [f"-{n}" for n in self.removed] + [f"~{n} (new address)" for n in self.readdressed]
        parts = [f"Node allowlist changed: {', '.join(what)}"]
        if self.reload:
            parts.append(f"reload on {compress_names(self.reload)} ({RELOAD_METHOD} or restart)")
        if self.restarted:
            parts.append(f"{compress_names(self.restarted)} restart with this change and load it")
        if not self.reload and not self.restarted:
            parts.append("no running node to reload")
        return "; ".join(parts)


def compress_names(names: Iterable[str]) -> str:
    """`validator-0, validator-1, validator-2, rpc-0` -> `validator-0..2, rpc-0` (runs of indices)."""
    order = {"validator": 0, "rpc": 1, "bootnode": 2}
    parsed = []
    for name in names:
        role, _, index = name.rpartition("-")
        parsed.append((order.get(role, 9), role, int(index)) if index.isdigit() else (10, name, -1))
    runs: list[str] = []
    for _, role, index in sorted(parsed):
        if index < 0:
            runs.append(role)
            continue
        previous = runs[-1] if runs else ""
        match = re.fullmatch(rf"{re.escape(role)}-(\d+)(?:\.\.(\d+))?", previous)
        if match and int(match.group(2) or match.group(1)) == index - 1:
            runs[-1] = f"{role}-{match.group(1)}..{index}"
        else:
            runs.append(f"{role}-{index}")
    return ", ".join(runs)


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
    transitions: tuple[TransitionChange, ...] = ()  # consensus transitions added to a live chain's genesis
    block_period: int | None = None  # seconds per block at genesis (for "about how long until block N")
    alerts: tuple[AlertChange, ...] = ()  # PrometheusRule alerts by name
    allowlist: AllowlistChange | None = None  # Besu local permissioning (None: unchanged or not used)

    @property
    def transitions_added(self) -> tuple[TransitionChange, ...]:
        return tuple(t for t in self.transitions if t.action == "added")

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
        found += [f"consensus transition at block {t.block}" for t in self.transitions_added]
        found += [f"image {_short_image(i.before)} -> {_short_image(i.after)}" for i in self.images]
        found += [f"{r.name} replicas {r.before} -> {r.after}" for r in self.replicas]
        found += [f"+{n.name}" for n in self.nodes_added if not any(r for r in self.replicas if r.name == n.role)]
        found += [f"-{n.name}" for n in self.nodes_removed if not any(r for r in self.replicas if r.name == n.role)]
        if self.validators_added or self.validators_removed:
            found.append(f"validators +{len(self.validators_added)}/-{len(self.validators_removed)} (votes needed)")
        if self.keys_rotated:
            found.append(f"keys rotated: {', '.join(self.keys_rotated)}")
        if self.allowlist is not None:
            found.append(f"node allowlist {self.allowlist.state}")
        if not found and self.changed:
            counts = self.counts()
            found.append(f"{sum(counts.values()) or len(self.files)} {'objects' if sum(counts.values()) else 'files'} changed")
        return found

    def headline(self, limit: int = 100) -> str:
        text = ", ".join(self.highlights()) or "no changes"
        return text if len(text) <= limit else text[: limit - 1].rstrip(", ") + "…"


# -- reading committed and compiled files ---------------------------------------------
def is_sealed_path(path: str) -> bool:
    """Files whose bytes a reviewer never sees: Secrets (sealed or not) and age files."""
    base = path.rsplit("/", 1)[-1]
    return base.startswith(("secret-", "sealedsecret-")) or base.endswith(".age")


def read_lock(files: Mapping[str, bytes], environment: str) -> NetworkLock | None:
    """The environment's lock in `files` (None: there is none), read with lock.parse_lock.

    Tolerant, as the summary has always been: it describes the states it is given, and the
    base commit of an explicit reset (--allow-genesis-change) or of a decommission can hold a
    lock damaged by hand. A lock parse_lock refuses is therefore not refused here but read as
    far as it goes (see _unchecked_lock); a JSON value that is no object counts as no lock, and
    only a lock that is not JSON at all raises (ValueError). The compile and every other reader
    refuse such a lock (ExistingEnvironment.lock)."""
    data = files.get(env_dir(environment) + LOCK_FILE)
    if not data:
        return None
    try:
        return parse_lock(data, environment)
    except GuardError:
        document = json.loads(data)
        return _unchecked_lock(document) if isinstance(document, dict) else None


def _unchecked_lock(document: Mapping[str, Any]) -> NetworkLock:
    """The fields the summary reads of a lock that failed its checks, unvalidated
    (model_construct, so they may hold what the types forbid, such as a "" role): every node by
    its name (a node without one raises KeyError), a missing role, address, enode or Secret
    as "", a missing account field or genesisHash as None, a missing consensus as "". Only
    the summary reads it; other fields are not set."""
    nodes = [
        LockedNode.model_construct(
            name=n["name"], role=n.get("role", ""), address=n.get("address", ""), enode=n.get("enode", ""),
            secret=n.get("secret", ""),
        )
        for n in document.get("nodes", [])
    ]
    accounts = [
        LockedAccount.model_construct(name=a.get("name"), address=a.get("address"), secret=a.get("secret"))
        for a in document.get("accounts", [])
    ]
    return NetworkLock.model_construct(
        consensus=str(document.get("consensus", "")), genesisHash=document.get("genesisHash"), nodes=nodes, accounts=accounts
    )


def read_genesis(files: Mapping[str, bytes], environment: str) -> dict[str, Any] | None:
    data = files.get(env_dir(environment) + GENESIS_FILE)
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


def _nodes(lock: NetworkLock | None) -> dict[str, NodeRef]:
    if lock is None:
        return {}
    return {n.name: NodeRef(n.name, n.role, n.address) for n in lock.nodes}


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
    lock = new_lock or old_lock
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
    genesis_before = old_lock.genesisHash if old_lock is not None else None
    genesis_after = new_lock.genesisHash if new_lock is not None else None
    old_genesis, new_genesis = read_genesis(before, environment), read_genesis(after, environment)
    transitions = _transition_changes(old_genesis, new_genesis) if kind == "update" else ()
    # Transitions added to a live chain keep its genesis: `config` is not in the block hash.
    kept = _without_added_transitions(old_genesis, new_genesis)
    genesis_file_changed = bool(old_genesis is not None and kept is not None and old_genesis != kept)
    genesis_fields = tuple(changed_fields(old_genesis, new_genesis)) if genesis_file_changed else ()
    consensus = lock.consensus if lock is not None else ""
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
        namespace=namespace_of(new_objects or old_objects),
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
        transitions=transitions,
        block_period=_engine(new_genesis or old_genesis).get("blockperiodseconds"),
        alerts=_alert_changes(old_objects, new_objects) if kind == "update" else (),
        allowlist=_allowlist_change(kind, old_lock, new_lock, old_objects, new_objects),
    )
    if provisional.genesis_changed:  # a reset chain starts from the new genesis validators: no votes
        return replace(provisional, plan=None)
    return provisional


def _engine(genesis: Mapping[str, Any] | None) -> dict[str, Any]:
    """The genesis' BFT block (`config.qbft` or `config.ibft2`), keys lower-cased; {} for others."""
    config = {str(k).lower(): v for k, v in ((genesis or {}).get("config") or {}).items()}
    engine = config.get("qbft") or config.get("ibft2") or {}
    return {str(k).lower(): v for k, v in engine.items()} if isinstance(engine, dict) else {}


def _without_added_transitions(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """`new` without the transitions `old` lacks: equal to `old` when a change only adds transitions."""
    if old is None or new is None:
        return new
    old_blocks = set(transitions_by_block(old))
    added = set(transitions_by_block(new)) - old_blocks
    if not added:
        return new
    config = dict(new.get("config") or {})
    kept = {
        engine: [e for e in entries if not (isinstance(e, dict) and e.get("block") in added)]
        for engine, entries in (config.get("transitions") or {}).items()
        if isinstance(entries, list)
    }
    kept = {engine: entries for engine, entries in kept.items() if entries}
    if kept:
        config["transitions"] = kept
    else:
        config.pop("transitions", None)
    return {**new, "config": config}


def _describe_settings(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    found = []
    if before.get("period") != after.get("period"):
        found.append(f"block period {before.get('period')} s -> {after.get('period')} s")
    if before.get("contract") != after.get("contract"):
        shown = "block header votes" if before.get("contract") is None else f"contract {before['contract']}"
        found.append(f"validator selection {shown} -> contract {after.get('contract')}")
    return tuple(found) or ("no setting changes",)


def _settings_schedule(genesis: Mapping[str, Any] | None) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """block -> (settings in force before it, settings from it on), along the genesis' transitions."""
    engine = _engine(genesis)
    state: dict[str, Any] = {"period": engine.get("blockperiodseconds"), "contract": engine.get("validatorcontractaddress")}
    schedule = {}
    for block, entry in transitions_by_block(genesis).items():
        after = dict(state)
        if "blockperiodseconds" in entry:
            after["period"] = entry["blockperiodseconds"]
        if str(entry.get("validatorselectionmode", "")).lower() == "contract":
            after["contract"] = entry.get("validatorcontractaddress")
        schedule[block] = (state, after)
        state = after
    return schedule


def _transition_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[TransitionChange, ...]:
    if old is None or new is None:
        return ()
    before, after = transitions_by_block(old), transitions_by_block(new)
    old_schedule, new_schedule = _settings_schedule(old), _settings_schedule(new)
    found = []
    for block in sorted(set(before) | set(after)):
        if block not in before:
            found.append(TransitionChange(block, "added", _describe_settings(*new_schedule[block])))
        elif block not in after:
            found.append(TransitionChange(block, "removed", ("was: " + "; ".join(_describe_settings(*old_schedule[block])),)))
        elif before[block] != after[block]:
            found.append(TransitionChange(block, "changed", _describe_settings(*new_schedule[block])))
    return tuple(found)


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


def namespace_of(objects: Mapping[ObjectKey, tuple[str, dict]]) -> str:
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


def _alerts(objects: Mapping[ObjectKey, tuple[str, dict]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for (kind, _, name), (_, obj) in sorted(objects.items()):
        if kind == "PrometheusRule":
            for group in (obj.get("spec") or {}).get("groups") or []:
                for rule in group.get("rules") or []:
                    if isinstance(rule, dict) and rule.get("alert"):
                        found[f"{name}/{rule['alert']}"] = rule
    return found


def _alert_changes(old: Mapping[ObjectKey, tuple[str, dict]], new: Mapping[ObjectKey, tuple[str, dict]]) -> tuple[AlertChange, ...]:
    """Alerts by name: what a reviewer of a PrometheusRule change wants to read."""
    before, after = _alerts(old), _alerts(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        alert = key.split("/", 1)[1]
        if key not in before:
            changes.append(AlertChange("added", alert))
        elif key not in after:
            changes.append(AlertChange("removed", alert))
        elif before[key] != after[key]:
            changes.append(AlertChange("changed", alert, tuple(changed_fields(before[key], after[key]))))
    return tuple(changes)


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


def _allowlist(objects: Mapping[ObjectKey, tuple[str, dict]]) -> list[str] | None:
    """The nodes-allowlist of the besu-permissions ConfigMap (None without one)."""
    for (kind, _, name), (_, obj) in objects.items():
        if kind == "ConfigMap" and name == ALLOWLIST_CONFIGMAP:
            try:
                return [str(e) for e in tomllib.loads(str((obj.get("data") or {}).get(ALLOWLIST_FILE, ""))).get("nodes-allowlist", [])]
            except tomllib.TOMLDecodeError:
                return []
    return None


def _node_id(enode: str) -> str:
    return enode.removeprefix("enode://").split("@", 1)[0].lower()


def _allowlist_change(
    kind: str,
    old_lock: NetworkLock | None,
    new_lock: NetworkLock | None,
    old_objects: Mapping[ObjectKey, tuple[str, dict]],
    new_objects: Mapping[ObjectKey, tuple[str, dict]],
) -> AllowlistChange | None:
    """What a reviewer must do about Besu's node allowlist: it is one ConfigMap every node
    mounts (no pod restarts for it), so each running node has to load the new file."""
    before, after = _allowlist(old_objects), _allowlist(new_objects)
    if kind in ("new", "decommission", "none") or (before is None and after is None):
        return None
    names: dict[str, str] = {}
    for lock in (old_lock, new_lock):
        if lock is not None:
            names |= {_node_id(n.enode): n.name for n in lock.nodes}

    def grouped(entries: list[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for entry in entries:
            found.setdefault(_node_id(entry), set()).add(entry)
        return found

    def label(node_id: str, entries: set[str]) -> str:
        if node_id in names:
            return names[node_id]
        address = sorted(entries)[0].split("@", 1)[-1]
        return f"external {node_id[:12]}…@{address}"

    old, new = grouped(before or []), grouped(after or [])
    if before is None or after is None:
        return AllowlistChange(tuple(label(i, e) for i, e in sorted(new.items())), (), (), (), (),
                               "enabled" if before is None else "disabled")
    if old == new:
        return None
    added = tuple(sorted(label(i, new[i]) for i in set(new) - set(old)))
    removed = tuple(sorted(label(i, old[i]) for i in set(old) - set(new)))
    readdressed = tuple(sorted(label(i, new[i]) for i in set(old) & set(new) if old[i] != new[i]))
    kept = sorted(set(_nodes(old_lock)) & set(_nodes(new_lock)))
    rolled = {
        key[2] for key in set(old_objects) & set(new_objects)
        if key[0] == "StatefulSet" and (old_objects[key][1].get("spec") or {}).get("template") != (new_objects[key][1].get("spec") or {}).get("template")
    }
    roles = {n.name: n.role for n in _nodes(new_lock).values()}
    restarted = tuple(n for n in kept if roles.get(n) in rolled)
    reload = tuple(n for n in kept if roles.get(n) not in rolled)
    return AllowlistChange(added, removed, readdressed, reload, restarted)


def _rotated(old_lock: NetworkLock | None, new_lock: NetworkLock | None) -> tuple[str, ...]:
    """Nodes, then accounts (`account/<name>`), whose key changed under the same name (names only)."""
    if old_lock is None or new_lock is None:
        return ()
    old, new = old_lock.addresses_by_name(), new_lock.addresses_by_name()
    kept = sorted(set(old) & set(new), key=lambda name: (name.startswith("account/"), name))
    return tuple(name for name in kept if old[name] != new[name])


def _short_image(reference: str) -> str:
    """`hyperledger/besu:25.10.0` -> `besu:25.10.0` for one-line headlines."""
    return reference.rsplit("/", 1)[-1]


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
    (publish.commit_message adds the GENESIS CHANGED line and the validator votes itself.)"""
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
    for transition in summary.transitions:
        lines.append(
            f"Consensus transition at block {transition.block} ({transition.action}): {'; '.join(transition.changes)}"
            + (f"; every node must restart with the new genesis before block {transition.block}"
               if transition.action == "added" else "")
        )
    if summary.allowlist is not None:
        lines.append(summary.allowlist.line())
    if summary.plaintext_secrets:
        lines.append(f"Plaintext Secrets: {', '.join(summary.plaintext_secrets)}")
    return lines


