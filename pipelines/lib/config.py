"""The environment file (`environments/<env>.yaml`, apiVersion chainops/v1).

Every error names the file, the field path and what is allowed, so an operator can fix
the file without reading chainops' source.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pyrage
import yaml
from eth_utils import is_checksum_address, to_checksum_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.lib.enode import EnodeError, is_ip_address, parse_enode
from pipelines.lib.errors import InputProblem
from pipelines.lib.profiles import CONSENSUS_BY_CLIENT, Profile, profile_for

API_VERSION = "chainops/v1"
ENV_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
AGE_RECIPIENT_RE = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


def _age_recipient_parses(recipient: str) -> bool:
    """The Bech32 checksum holds (the pattern alone accepts a mistyped key)."""
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except Exception:  # pyrage raises its own error type
        return False
    return True
BALANCE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s+(ether|gwei|wei)\s*$")
# Precompiled contracts at 0x01..0x11 (Prague adds the BLS12-381 ones at 0x0b..0x11).
LAST_PRECOMPILE = 0x11
# Kubernetes and GitOps system namespaces: a network there would share (and, decommissioned,
# prune) what the cluster runs on.
RESERVED_NAMESPACES = ("default", "flux-system", "argocd", "sealed-secrets", "cert-manager", "ingress-nginx", "monitoring")
# Public chains (chainlist.org): a private network with their id replays signed transactions.
PUBLIC_CHAIN_IDS = {
    1: "Ethereum mainnet", 5: "Goerli", 10: "OP Mainnet", 56: "BNB Smart Chain", 61: "Ethereum Classic",
    100: "Gnosis", 137: "Polygon", 250: "Fantom", 324: "zkSync Era", 8453: "Base", 17000: "Holesky",
    42161: "Arbitrum One", 43114: "Avalanche C-Chain", 59144: "Linea", 534352: "Scroll", 560048: "Hoodi",
    11155111: "Sepolia",
}
MAX_NAMED_ACCOUNTS = 200  # each is a key, an escrow entry and a Secret
MAX_ALLOC_ENTRIES = 5000  # accounts + contracts in genesis (the genesis ConfigMap stays well below 1 MiB)
UNIT_WEI = {"ether": 10**18, "gwei": 10**9, "wei": 1}
MAX_FILE_BYTES = 1 << 20
# Nodes a document may expand to, counting every use of an alias: bounds "billion laughs"
# files, which PyYAML loads as shared references that later stages would expand.
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64  # nesting levels; the deepest chainops field is a handful of levels down
MAX_UINT256 = (1 << 256) - 1
# Characters a YAML document cannot carry as they are: C0 controls other than tab and line
# ends, DEL, C1 controls, lone surrogates, non-characters, and the line breaks YAML 1.1 folds
# into spaces (NEL, LS, PS). Refused in every string, so no rendered value is altered.
UNSAFE_CHAR_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\ufffe\uffff]")
# What the charts accept as `repository:tag`, `repository:tag@sha256:…` or `repository@sha256:…`
# (the same patterns as their values.schema.json).
IMAGE_RE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


class ConfigError(InputProblem):
    """One or more problems in environment files; each line names file, field and rule."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


def parse_balance(value: Any) -> int:
    """'<n> ether|gwei|wei' -> wei. A number without a unit is refused: `1000000` read as
    wei would silently be 10^-12 ether (DESIGN.md: balances need a unit)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be '<n> ether', '<n> gwei' or '<n> wei'")
    if isinstance(value, int) or value.strip().isdigit():
        raise ValueError(
            f"{value!r} has no unit; write '{str(value).strip()} wei' if wei is meant (or ether, gwei): "
            "allowed: '<n> ether', '<n> gwei', '<n> wei'"
        )
    match = BALANCE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a balance; allowed: '<n> ether', '<n> gwei', '<n> wei' (a space before the unit)")
    try:
        exact = Decimal(match.group(1)) * UNIT_WEI[match.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - regex already guards digits
        raise ValueError(f"{value!r} is not a number") from exc
    if exact != exact.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of wei")
    wei = int(exact)
    if wei < 0 or wei > MAX_UINT256:
        raise ValueError(f"{value!r} is out of range; allowed: 0 to 2^256-1 wei")
    return wei


def address_problem(value: str) -> str | None:
    """Why `value` is not an address chainops accepts (None if it is): 0x and 40 hex digits;
    a mixed-case address must carry a valid EIP-55 checksum (a typo is caught, not lower-cased);
    the zero address and the precompiles hold no balance, code or key."""
    if not ADDRESS_RE.match(value):
        return f"{value!r} is not an address; allowed: 0x followed by 40 hex digits"
    digits = value[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(value):
        return f"{value} has a wrong EIP-55 checksum (mixed case); expected {to_checksum_address(value)}"
    if int(digits, 16) <= LAST_PRECOMPILE:
        return f"{value} is reserved (the zero address or a precompiled contract, 0x...01 to 0x...{LAST_PRECOMPILE:02x})"
    return None


def _address(value: str) -> str:
    if problem := address_problem(value):
        raise ValueError(problem)
    return value


Address = Annotated[str, AfterValidator(_address)]  # an address field: the rules of address_problem


MAX_BLOCK_NUMBER = 2**63 - 1  # Besu reads a transition's block as a Java long


def shown_url(url: str) -> str:
    """How messages name an RPC endpoint: scheme, host and port only; user names, passwords,
    paths and queries (where API keys live) are never printed."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}" if parts.scheme and host else "(an unreadable URL)"


class TransitionSpec(_Strict):
    """From `block` on, the BFT network runs with the settings given here (Besu's
    `config.transitions`); the genesis block hash is unchanged."""

    block: int
    blockPeriodSeconds: int | None = Field(default=None, ge=1, le=3600)
    # Named by the day-2 contract, but Besu applies no round timeout from a transition: refused.
    requestTimeoutSeconds: int | None = None
    validatorSelection: Literal["contract"] | None = None
    validatorContractAddress: Address | None = None

    @field_validator("block")
    @classmethod
    def _block(cls, v: int) -> int:
        if v == 0:
            raise ValueError("0 is the genesis block; a transition takes effect at a later block (Besu refuses block 0)")
        if not 1 <= v <= MAX_BLOCK_NUMBER:
            raise ValueError(f"{v} is out of range; allowed: a block number from 1 to 2^63-1")
        return v

    @field_validator("requestTimeoutSeconds")
    @classmethod
    def _no_request_timeout(cls, v: int | None) -> int | None:
        if v is not None:
            raise ValueError(
                "Besu does not change the round timeout at a transition (its QBFT and IBFT 2.0 fork schedules "
                "apply blockperiodseconds, block rewards and the validator selection; the round timer keeps the "
                "genesis requesttimeoutseconds), so this would change nothing; remove it"
            )
        return v

    @model_validator(mode="after")
    def _changes_something(self) -> TransitionSpec:
        if self.validatorSelection == "contract" and self.validatorContractAddress is None:
            raise ValueError("validatorSelection 'contract' needs validatorContractAddress (the deployed validator contract)")
        if self.validatorSelection is None and self.validatorContractAddress is not None:
            raise ValueError("validatorContractAddress is only used with validatorSelection: contract")
        if self.blockPeriodSeconds is None and self.validatorSelection is None:
            raise ValueError("a transition changes nothing without blockPeriodSeconds or validatorSelection")
        return self
def _enode(value: str) -> str:
    try:
        return parse_enode(value).url()
    except EnodeError as exc:
        raise ValueError(str(exc)) from None


EnodeURL = Annotated[str, AfterValidator(_enode)]


class PermissioningSpec(_Strict):
    """Besu local permissioning: a nodes-allowlist every node loads (geth has none)."""

    nodes: bool = False


class NetworkSpec(_Strict):
    allowPublicChainId: bool = False  # a test network that reuses a public chain's id on purpose (first: read by the id checks)
    chainId: int = Field(ge=1, le=2**53 - 1)
    networkId: int | None = Field(default=None, ge=1, le=2**53 - 1)
    client: Literal["besu", "geth"] = "besu"
    consensus: Literal["qbft", "ibft2", "clique", "ethash"] = "qbft"
    blockPeriodSeconds: int = Field(default=2, ge=1, le=3600)
    gasLimit: int = Field(default=30_000_000, ge=5000, le=2**63 - 1)
    genesisTimestamp: int = Field(default=0, ge=0, le=2**63 - 1)
    zeroBaseFee: bool = False
    contractSizeLimit: int | None = Field(default=None, ge=1, le=2**31 - 1)
    validatorSelection: Literal["blockHeader", "contract"] = "blockHeader"
    validatorContractAddress: Address | None = None
    transitions: tuple[TransitionSpec, ...] = ()
    rpcUrl: str | None = None  # a node of the live chain: chainops reads its head to check new transitions

    @field_validator("transitions", mode="before")
    @classmethod
    def _transitions_list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("rpcUrl")
    @classmethod
    def _rpc_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        allowed = "allowed: an http(s) URL of a node of the live chain, e.g. http://rpc.chain-staging.svc:8545"
        if len(v) > 2048 or any(c.isspace() for c in v):
            raise ValueError(f"not a URL (spaces, or longer than 2048 characters); {allowed}")
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - parses the port
        except ValueError:
            raise ValueError(f"not a URL (bad host or port); {allowed}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{shown_url(v)} is not an http(s) URL with a host; {allowed}")
        return v
    # Nodes outside this cluster: static peers (and bootnodes) of every node, and in the allowlist.
    externalPeers: tuple[EnodeURL, ...] = ()
    permissioning: PermissioningSpec = PermissioningSpec()

    @field_validator("externalPeers", mode="before")
    @classmethod
    def _peers_list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("chainId", "networkId")
    @classmethod
    def _private_id(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v in PUBLIC_CHAIN_IDS and not info.data.get("allowPublicChainId"):
            raise ValueError(
                f"{v} is {PUBLIC_CHAIN_IDS[v]}'s; a private network with it replays signed transactions "
                "across chains: pick another, or set network.allowPublicChainId: true"
            )
        return v

    @model_validator(mode="after")
    def _consensus_matches_client(self) -> NetworkSpec:
        allowed = CONSENSUS_BY_CLIENT[self.client]
        if self.consensus not in allowed:
            raise ValueError(
                f"consensus {self.consensus!r} does not run on client {self.client!r}; allowed: {', '.join(allowed)}"
            )
        if self.client != "besu" and (self.zeroBaseFee or self.contractSizeLimit is not None):
            raise ValueError("zeroBaseFee and contractSizeLimit are Besu options; not allowed for geth profiles")
        if self.validatorSelection == "contract":
            if self.consensus != "qbft":
                raise ValueError("validatorSelection 'contract' is QBFT only; allowed here: blockHeader")
            if self.validatorContractAddress is None:
                raise ValueError("validatorSelection 'contract' needs validatorContractAddress (one of `contracts:`)")
        elif self.validatorContractAddress is not None:
            raise ValueError("validatorContractAddress is only used with validatorSelection: contract")
        return self

    @property
    def effective_network_id(self) -> int:
        return self.networkId if self.networkId is not None else self.chainId


class NodesSpec(_Strict):
    validators: int = Field(default=4, ge=1, le=64)
    rpc: int = Field(default=1, ge=0, le=64)
    bootnodes: int | None = Field(default=None, ge=0, le=8)


class AccountSpec(_Strict):
    name: str | None = None
    address: Address | None = None
    balance: int | str

    @field_validator("name")
    @classmethod
    def _name_is_label(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not allowed; a name is a DNS label matching {ENV_NAME_RE.pattern}")
        return v

    @field_validator("balance")
    @classmethod
    def _balance_parses(cls, v: int | str) -> int | str:
        parse_balance(v)
        return v

    @model_validator(mode="after")
    def _exactly_one_identity(self) -> AccountSpec:
        if (self.name is None) == (self.address is None):
            raise ValueError("give exactly one of 'name' (chainops generates the key) or 'address' (external account)")
        return self

    @property
    def balance_wei(self) -> int:
        return parse_balance(self.balance)


HEX_WORD_RE = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
HEX_CODE_RE = re.compile(r"^0x([0-9a-fA-F]{2})+$")


class ContractSpec(_Strict):
    """A contract predeployed in genesis (e.g. a validator-selection contract)."""

    address: Address
    code: str
    storage: dict[str, str] = Field(default_factory=dict)
    balance: str = "0 wei"

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not HEX_CODE_RE.match(v) or len(v) > 2 + 2 * 49152:
            raise ValueError("not contract code; allowed: 0x followed by an even number of hex digits (at most 48 KiB)")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: dict[str, str]) -> dict[str, str]:
        slots: dict[int, str] = {}
        for key, value in v.items():
            for item in (key, value):
                if not isinstance(item, str) or not HEX_WORD_RE.match(item):
                    raise ValueError(f"{item!r} is not a storage word; allowed: 0x followed by 1 to 64 hex digits")
            slot = int(key, 16)
            if slot in slots:  # 0x1 and 0x0001 are the same 32-byte slot: one value would be lost
                raise ValueError(f"{slots[slot]!r} and {key!r} are the same storage slot 0x{slot:064x}")
            slots[slot] = key
        return v

    @field_validator("balance")
    @classmethod
    def _balance(cls, v: str) -> str:
        parse_balance(v)
        return v

    def storage_words(self) -> tuple[tuple[str, str], ...]:
        """Slots and values as 32-byte 0x words, sorted (the form genesis.json holds)."""
        return tuple(sorted((f"0x{int(k, 16):064x}", f"0x{int(v, 16):064x}") for k, v in self.storage.items()))


class EthstatsSpec(_Strict):
    enabled: bool = False


class StorageSpec(_Strict):
    size: str = "20Gi"
    storageClassName: str | None = None

    @field_validator("size")
    @classmethod
    def _quantity(cls, v: str) -> str:
        if not QUANTITY_RE.match(v):
            raise ValueError(f"{v!r} is not a Kubernetes quantity; allowed e.g. 20Gi, 500Mi, 1Ti")
        if not re.search(r"[1-9]", re.sub(r"[A-Za-z]+$", "", v)):
            raise ValueError(f"{v!r} is no storage at all; a volume needs a positive size (e.g. 20Gi)")
        return v

    @field_validator("storageClassName")
    @classmethod
    def _class_name(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a DNS subdomain name")
        return v


class IngressSpec(_Strict):
    host: str
    tlsSecretName: str | None = None  # a kubernetes.io/tls Secret for the host (cert-manager or by hand)

    @field_validator("tlsSecretName")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a Secret name (a DNS subdomain name)")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not DNS_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a DNS host name (lower-case letters, digits, '-' and '.')")
        if all(label.isdigit() for label in v.split(".")):
            raise ValueError(f"{v!r} is an IP address; an Ingress host is a DNS name (Kubernetes refuses IPs)")
        return v


P2P_EXPOSED_ROLES = ("validator", "rpc")  # the pods of the client chart (bootnodes stay in the cluster)
MAX_GROUP = 64  # nodes.validators and nodes.rpc are at most 64: the nodePort blocks below
DEFAULT_NODE_PORT_BASE = 30303
NODE_PORT_MAX = 32767  # the default --service-node-port-range is 30000-32767


class KubernetesSpec(_Strict):
    namespace: str
    storage: StorageSpec = StorageSpec()
    rpcIngress: IngressSpec | None = None
    # How nodes outside the cluster reach the p2p port: one Service per pod, the advertised
    # address in the node's enode (network.lock.json) and in the client's NAT flags.
    p2pExposure: Literal["none", "loadBalancer", "nodePort"] = "none"
    p2pAdvertisedHosts: dict[str, str] = Field(default_factory=dict)
    p2pAdvertisedHost: str | None = None
    p2pNodePortBase: int = Field(default=DEFAULT_NODE_PORT_BASE, ge=30000, le=NODE_PORT_MAX - 2 * MAX_GROUP + 1)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not DNS_LABEL_RE.match(v):
            raise ValueError(f"{v!r} is not a namespace name; allowed: a DNS label matching {DNS_LABEL_RE.pattern}")
        if v in RESERVED_NAMESPACES or v.startswith("kube-"):
            raise ValueError(
                f"{v!r} is a system namespace (kube-*, {', '.join(RESERVED_NAMESPACES)}): the network would share it "
                "and a decommission would prune it; use a namespace of its own"
            )
        return v


SAFE_RELATIVE_PATH_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def relative_path_problem(value: str) -> str | None:
    """Why `value` is not a safe path relative to the environments directory (None if it is):
    no absolute paths, '~', backslashes, '.', '..' or hidden components."""
    if not value or len(value) > 255:
        return "must be a non-empty relative path of at most 255 characters"
    if not SAFE_RELATIVE_PATH_RE.match(value):
        return (
            f"{value!r} is not allowed; use a path relative to the environments directory "
            "(letters, digits, '.', '_', '-' and '/'; no absolute paths, '~' or backslashes)"
        )
    if any(part in (".", "..") or part.startswith(".") for part in value.split("/")):
        return f"{value!r} is not allowed; '.', '..' and hidden path components are refused"
    return None


class SecretsSpec(_Strict):
    provider: Literal["sops", "sealed-secrets", "plaintext"] = "sops"
    ageRecipients: tuple[str, ...] = ()
    sealedSecretsCert: str | None = None  # relative to the environments directory
    allowPlaintextSecrets: bool = False

    @field_validator("sealedSecretsCert")
    @classmethod
    def _cert_path(cls, v: str | None) -> str | None:
        problem = relative_path_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("ageRecipients", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("ageRecipients")
    @classmethod
    def _recipients(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for recipient in v:
            if not AGE_RECIPIENT_RE.match(recipient) or not _age_recipient_parses(recipient):
                raise ValueError(
                    f"{recipient!r} is not an age recipient; allowed: 'age1' followed by 58 bech32 characters "
                    "with a valid checksum (age-keygen -y prints one)"
                )
        return v

    @model_validator(mode="after")
    def _provider_rules(self) -> SecretsSpec:
        if self.provider == "plaintext" and not self.allowPlaintextSecrets:
            raise ValueError("provider 'plaintext' is refused unless allowPlaintextSecrets: true (local clusters only)")
        if self.provider == "sealed-secrets" and not self.sealedSecretsCert:
            raise ValueError("provider 'sealed-secrets' needs sealedSecretsCert (the controller's public certificate)")
        return self


class KeysSpec(_Strict):
    """Where new keys come from: the CSPRNG, or (development only) CHAINOPS_MNEMONIC."""

    source: Literal["generated", "mnemonic"] = "generated"


class GitopsSpec(_Strict):
    controller: Literal["flux", "argocd"] = "flux"
    secrets: SecretsSpec = SecretsSpec()
    review: Literal["direct", "pull-request"] = "direct"
    # Flux: the Secret in flux-system holding the GitOps repository's credentials (the
    # GitRepository's spec.secretRef: an SSH deploy key or an HTTPS token, see
    # docs/deploy-flux.md); null for a public repository. Argo CD matches repository
    # credentials by URL instead (`argocd repo add`), so it is not referenced there.
    repositorySecret: str | None = "chainops-gitops-auth"

    @field_validator("repositorySecret")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None and not DNS_NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a Secret name (a DNS-1123 subdomain: lower-case letters, digits, '-' and '.')")
        return v


LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
PROMETHEUS_DURATION_RE = re.compile(r"^([1-9][0-9]{0,3})(s|m)$")


def duration_seconds(value: str) -> int:
    """Seconds of a Prometheus duration chainops accepts (`30s`, `1m`)."""
    match = PROMETHEUS_DURATION_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a duration; allowed: <n>s or <n>m (e.g. 30s, 1m)")
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key) or len(key) > 253:
            raise ValueError(f"{key!r} is not a label key ([prefix/]name, a name of at most 63 characters)")
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            raise ValueError(f"{key}: {value!r} is not a label value (at most 63 letters, digits, '-', '_', '.')")
        if key.startswith(("app.kubernetes.io/", "helm.sh/")):
            raise ValueError(f"{key!r}: chainops sets the app.kubernetes.io/* and helm.sh/* labels itself")
    return labels


class MonitoringThresholds(_Strict):
    # Alert when no node's block height rose for this many block periods (ethash: 15 s each).
    blockStallPeriods: int = Field(default=5, ge=1, le=1000)
    # Alert when a node's data volume has less than this fraction of its capacity free.
    diskFreeRatio: float = Field(default=0.1, gt=0, lt=1)
    # Alert when a node is this many blocks behind the highest node of the network.
    headLagBlocks: int = Field(default=10, ge=1, le=1_000_000)


class MonitoringSpec(_Strict):
    """Prometheus Operator and Grafana objects for the network (chart `monitoring`):
    the node charts' ServiceMonitors, a PrometheusRule and a Grafana dashboard ConfigMap."""

    enabled: bool = False
    # Labels of the dashboard ConfigMap: what the Grafana sidecar watches for.
    grafanaDashboardLabel: dict[str, str] = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    # Labels of the PrometheusRule: what the Prometheus' ruleSelector matches.
    prometheusRuleLabels: dict[str, str] = Field(default_factory=dict)
    # Labels of the ServiceMonitors: what the Prometheus' serviceMonitorSelector matches.
    serviceMonitorLabels: dict[str, str] = Field(default_factory=dict)
    scrapeInterval: str = "30s"
    thresholds: MonitoringThresholds = MonitoringThresholds()

    @field_validator("grafanaDashboardLabel", "prometheusRuleLabels", "serviceMonitorLabels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)

    @field_validator("scrapeInterval")
    @classmethod
    def _interval(cls, v: str) -> str:
        if not 5 <= duration_seconds(v) <= 600:
            raise ValueError(f"{v!r} is out of range; allowed: 5s to 10m")
        return v

    @field_validator("grafanaDashboardLabel")
    @classmethod
    def _dashboard_label(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("the Grafana sidecar finds dashboards by a label; give one (e.g. grafana_dashboard: \"1\")")
        return v


class EnvironmentSpec(_Strict):
    apiVersion: Literal["chainops/v1"]
    network: NetworkSpec
    nodes: NodesSpec = NodesSpec()
    accounts: tuple[AccountSpec, ...] = ()
    contracts: tuple[ContractSpec, ...] = ()
    ethstats: EthstatsSpec = EthstatsSpec()
    kubernetes: KubernetesSpec
    monitoring: MonitoringSpec = MonitoringSpec()
    images: dict[str, str] = Field(default_factory=dict)
    # Helm-style overrides per chart (`values.<chart>`), checked against the chart's
    # values.schema.json when it renders; values chainops computes cannot be overridden.
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gitops: GitopsSpec = GitopsSpec()
    decommission: bool = False
    production: bool = False
    keys: KeysSpec = KeysSpec()

    @field_validator("accounts", "contracts", mode="before")
    @classmethod
    def _accounts_list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("images")
    @classmethod
    def _image_references(cls, v: dict[str, str]) -> dict[str, str]:
        for key, reference in v.items():
            match = IMAGE_RE.match(reference)
            if not match or not (match["tag"] or match["digest"]):
                raise ValueError(
                    f"{key}: {reference[:80]!r} is not an image reference; allowed: "
                    "'<repository>:<tag>', '<repository>:<tag>@sha256:<digest>' or '<repository>@sha256:<digest>' "
                    "with a lower-case repository (e.g. hyperledger/besu:26.8.0)"
                )
        return v

    @model_validator(mode="after")
    def _cross_field_rules(self) -> EnvironmentSpec:
        if self.production and self.keys.source == "mnemonic":
            raise ValueError(
                "keys.source: 'mnemonic' is refused for production: true environments (anyone with the words "
                "has every key); allowed: generated"
            )
        profile = profile_for(self.network.client, self.network.consensus)
        unknown_images = sorted(set(self.images) - set(profile.images))
        if unknown_images:
            raise ValueError(
                f"images: unknown image key(s) {', '.join(unknown_images)}; allowed for profile {profile.name}: "
                f"{', '.join(sorted(profile.images))}"
            )
        unknown_charts = sorted(set(self.values) - set(profile.charts))
        if unknown_charts:
            raise ValueError(
                f"values: unknown chart(s) {', '.join(unknown_charts)}; allowed for profile {profile.name}: "
                f"{', '.join(profile.charts)}"
            )
        named = sum(1 for a in self.accounts if a.name)
        if named > MAX_NAMED_ACCOUNTS:
            raise ValueError(
                f"accounts: {named} named accounts (each a generated key and a Secret); at most {MAX_NAMED_ACCOUNTS}: "
                "fund external addresses instead"
            )
        if len(self.accounts) + len(self.contracts) > MAX_ALLOC_ENTRIES:
            raise ValueError(f"accounts, contracts: {len(self.accounts) + len(self.contracts)} genesis entries; at most {MAX_ALLOC_ENTRIES}")
        for key, reference in sorted(self.images.items()):
            if key in profile.version_limits:
                (limit, why) = profile.version_limits[key]
                version = image_version(reference)
                if version is None or version >= limit:
                    shown = ".".join(map(str, limit))
                    raise ValueError(
                        f"images.{key}: {reference} {'has no release version' if version is None else 'is too new'} for "
                        f"profile {profile.name}: {why}; allowed: a release tag below v{shown}"
                    )
        if self.network.client == "besu" and self.nodes.bootnodes:
            raise ValueError("nodes.bootnodes: bootnodes are for geth profiles only; besu validators are the bootnodes")
        seen: set[str] = set()
        for account in self.accounts:
            key = account.name or (account.address or "").lower()
            if key in seen:
                raise ValueError(f"accounts: {key!r} is listed twice; names and addresses must be unique")
            seen.add(key)
        for contract in self.contracts:
            if contract.address.lower() in seen:
                raise ValueError(f"contracts: {contract.address} is listed twice (or is also an account)")
            seen.add(contract.address.lower())
        selector = self.network.validatorContractAddress
        if selector is not None and selector.lower() not in {c.address.lower() for c in self.contracts}:
            raise ValueError(f"network.validatorContractAddress: {selector} must be one of `contracts:`")
        self._transition_rules()
        peer_ids: dict[str, int] = {}
        for index, url in enumerate(self.network.externalPeers):
            node_id = parse_enode(url).node_id
            if node_id in peer_ids:
                raise ValueError(
                    f"network.externalPeers[{index}]: node key {node_id[:12]}… is already listed as "
                    f"network.externalPeers[{peer_ids[node_id]}]; list each external node once"
                )
            peer_ids[node_id] = index
        if self.network.permissioning.nodes and self.network.client != "besu":
            raise ValueError(
                "network.permissioning.nodes: node permissioning is Besu's local permissioning (a nodes-allowlist in "
                "permissions_config.toml); geth has no node allowlist, so it would run unrestricted; allowed for geth: false"
            )
        _check_p2p_exposure(self)
        return self

    def _transition_rules(self) -> None:
        """Transitions are Besu's, per profile; one per block, in block order (Besu refuses
        duplicates; the order is chainops' own, so the file reads as the chain's history)."""
        network = self.network
        if not network.transitions:
            return
        if network.client != "besu":
            raise ValueError(
                f"network.transitions: {network.client}/{network.consensus} has no consensus transitions; "
                "allowed only for the besu-qbft and besu-ibft2 profiles (network.client besu, consensus qbft or ibft2)"
            )
        for i, transition in enumerate(network.transitions):
            if transition.validatorSelection is not None and network.consensus != "qbft":
                raise ValueError(
                    f"network.transitions[{i}].validatorSelection: validator selection by contract is QBFT only; "
                    "an IBFT 2.0 transition changes blockPeriodSeconds"
                )
            if i and transition.block <= network.transitions[i - 1].block:
                earlier = network.transitions[i - 1].block
                rule = "is listed twice; one transition per block" if transition.block == earlier else (
                    f"is not after block {earlier} of network.transitions[{i - 1}]; list transitions in increasing block order"
                )
                raise ValueError(f"network.transitions[{i}].block: {transition.block} {rule}")


def p2p_node_names(spec: EnvironmentSpec) -> list[str]:
    """The nodes a p2p exposure publishes (validators and RPC nodes, in their stable order)."""
    return [f"validator-{i}" for i in range(spec.nodes.validators)] + [f"rpc-{i}" for i in range(spec.nodes.rpc)]


def node_port_of(name: str, base: int) -> int:
    """validator-i -> base + i, rpc-i -> base + 64 + i: fixed per node, whatever the counts,
    so adding a validator moves no RPC node's port (and no enode in the lock)."""
    role, index = name.rsplit("-", 1)
    return base + (0 if role == "validator" else MAX_GROUP) + int(index)


def _advertised_host_problem(client: str, host: str) -> str | None:
    if is_ip_address(host):
        return None if ":" not in host else f"{host!r} is an IPv6 address; allowed: an IPv4 address"
    if DNS_NAME_RE.match(host) and not all(label.isdigit() for label in host.split(".")):
        if client == "geth":
            return (f"{host!r} is a DNS name; geth advertises an IP only (--nat=extip:<IP> takes an address, not a name): "
                    "give the IPv4 address the load balancer or node has")
        return (f"{host!r} is a DNS name; Besu's --p2p-host takes an IP only (its discovery agent refuses a host name: "
                "'valid advertisement host required'): give the IPv4 address the load balancer or node has")
    return f"{host!r} is not an IPv4 address"


def _check_p2p_exposure(spec: EnvironmentSpec) -> None:
    kubernetes, client = spec.kubernetes, spec.network.client
    exposure = kubernetes.p2pExposure
    if exposure == "none":
        for field in ("p2pAdvertisedHosts", "p2pAdvertisedHost", "p2pNodePortBase"):
            if field in kubernetes.model_fields_set:
                raise ValueError(f"kubernetes.{field}: only used with kubernetes.p2pExposure: loadBalancer or nodePort "
                                 "(with none, no pod is reachable from outside the cluster)")
        return
    if "p2pNodePortBase" in kubernetes.model_fields_set and exposure != "nodePort":
        raise ValueError("kubernetes.p2pNodePortBase: only used with kubernetes.p2pExposure: nodePort")
    names = p2p_node_names(spec)
    for name, host in sorted(kubernetes.p2pAdvertisedHosts.items()):
        if name not in names:
            raise ValueError(f"kubernetes.p2pAdvertisedHosts.{name}: not a p2p node of this environment; allowed: "
                             f"{', '.join(names)} (bootnodes stay inside the cluster)")
        if problem := _advertised_host_problem(client, host):
            raise ValueError(f"kubernetes.p2pAdvertisedHosts.{name}: {problem}")
    if kubernetes.p2pAdvertisedHost is not None and (problem := _advertised_host_problem(client, kubernetes.p2pAdvertisedHost)):
        raise ValueError(f"kubernetes.p2pAdvertisedHost: {problem}")
    missing = [n for n in names if n not in kubernetes.p2pAdvertisedHosts and kubernetes.p2pAdvertisedHost is None]
    if missing:
        raise ValueError(
            f"kubernetes.p2pAdvertisedHosts: no advertised address for {', '.join(missing)}; p2pExposure {exposure} "
            "publishes every validator and RPC node, and its enode must name the address outside nodes dial "
            "(give each one, or kubernetes.p2pAdvertisedHost for all)"
        )
    if exposure == "loadBalancer":
        owners: dict[str, str] = {}
        for name in names:
            host = kubernetes.p2pAdvertisedHosts.get(name) or kubernetes.p2pAdvertisedHost or ""
            if host in owners:
                raise ValueError(
                    f"kubernetes.p2pAdvertisedHosts: {owners[host]} and {name} both advertise {host}:30303; with "
                    "loadBalancer every node has a load balancer address of its own (nodePort shares one address)"
                )
            owners[host] = name


def parse_image(reference: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of `repo:tag`, `repo:tag@sha256:…` or `repo@sha256:…`; an
    empty string for a part it lacks. The one parser of image references (config, charts,
    policy, smoke)."""
    match = IMAGE_RE.match(reference)
    if match is None:
        raise ValueError(f"not an image reference: {reference!r}")
    return match["repository"], match["tag"] or "", match["digest"] or ""


def image_version(reference: str) -> tuple[int, ...] | None:
    """(1, 13, 15) for `ethereum/client-go:v1.13.15` or `:alltools-v1.13.15`; None without one."""
    tag = parse_image(reference)[1]
    match = re.search(r"(?:^|-)v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?$", tag)
    return tuple(int(p) for p in match.groups() if p is not None) if match else None


class EnvironmentConfig(BaseModel):
    """A validated environment file plus what chainops derives from it."""

    model_config = ConfigDict(frozen=True)

    name: str
    source_path: str
    spec: EnvironmentSpec

    @property
    def profile(self) -> Profile:
        return profile_for(self.spec.network.client, self.spec.network.consensus)

    @property
    def bootnode_count(self) -> int:
        if self.spec.network.client == "besu":
            return 0
        return 1 if self.spec.nodes.bootnodes is None else self.spec.nodes.bootnodes

    @property
    def images(self) -> dict[str, str]:
        return {**self.profile.images, **self.spec.images}

    def advertised_endpoints(self) -> dict[str, tuple[str, int]]:
        """Node name -> (host, port) outside nodes dial, for every exposed node ({} without exposure).
        loadBalancer: the node's own address, port 30303; nodePort: the node's fixed nodePort."""
        kubernetes = self.spec.kubernetes
        if kubernetes.p2pExposure == "none":
            return {}
        found = {}
        for name in p2p_node_names(self.spec):
            host = kubernetes.p2pAdvertisedHosts.get(name) or kubernetes.p2pAdvertisedHost or ""
            port = node_port_of(name, kubernetes.p2pNodePortBase) if kubernetes.p2pExposure == "nodePort" else 30303
            found[name] = (host, port)
        return found


class _UniqueKeyLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader that rejects duplicate mapping keys instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} on line {line}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


    def get_single_data(self) -> Any:
        """Bound the document before constructing it: aliases are counted once per use,
        so a small file cannot expand to millions of values (or loop) in later stages."""
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def _check_expansion(root: yaml.Node) -> None:
    """Raise a YAMLError when the composed graph is recursive, nests deeper than MAX_YAML_DEPTH
    or expands beyond MAX_YAML_NODES. Sizes are memoized per node, so the check itself never
    expands anything."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        if done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            if depths[key] > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"the document nests deeper than {MAX_YAML_DEPTH} levels; refused")
            if sizes[key] > MAX_YAML_NODES:
                raise yaml.YAMLError(
                    f"the document expands to more than {MAX_YAML_NODES} values (aliases count once per use); refused"
                )
            continue
        if key in sizes:
            continue
        if key in active:
            raise yaml.YAMLError(f"recursive alias on line {node.start_mark.line + 1}; refused")
        active.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _unsafe_strings(data: Any) -> list[tuple[str, str]]:
    """(field path, problem) for every key or string value holding an UNSAFE_CHAR_RE character."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        items: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            items = [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
            keys = [str(k) for k in value if isinstance(k, str)]
        elif isinstance(value, list):
            items, keys = [(f"{where}[{i}]", v) for i, v in enumerate(value)], []
        else:
            keys = []
        for text in keys + ([value] if isinstance(value, str) else []):
            match = UNSAFE_CHAR_RE.search(text)
            if match:
                found.append((where or "(top level)", f"contains the control character U+{ord(match.group()):04X}; "
                              "allowed: printable text, tabs and newlines"))
        stack.extend(items)
    return sorted(set(found))


def environment_name(path: Path) -> str:
    return path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.stem


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif str(item).startswith(("function-", "literal[", "int", "str", "bool", "tuple[")):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk the model along loc to list the keys allowed where an unknown key was found."""
    current: Any = model
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        field = getattr(current, "model_fields", {}).get(item)
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
    return sorted(getattr(current, "model_fields", {}))


def _pydantic_problems(source: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        where = _format_loc(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(EnvironmentSpec, loc)
            message = f"unknown key; allowed: {', '.join(allowed)}"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "literal_error":
            message = f"{err.get('input')!r} is not allowed; {err['msg'].replace('Input should be', 'allowed:')}"
        elif kind in {"int_type", "int_parsing"}:
            message = f"{err.get('input')!r} is not an integer"
        elif kind in {"string_type"}:
            message = f"{err.get('input')!r} is not a string"
        elif kind in {"bool_type"}:
            message = f"{err.get('input')!r} is not a boolean; allowed: true, false"
        elif kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
            message = f"{err.get('input')!r} is out of range; {err['msg'].lower()}"
        else:
            message = err["msg"].removeprefix("Value error, ")
        if where == "(top level)" and re.match(r"^[a-zA-Z][\w.\[\]-]*(, [a-zA-Z][\w.\[\]-]*)*: ", message):
            problems.append(f"{source}: {_shorten(message)}")  # a cross-field rule names its own field
        else:
            problems.append(f"{source}: {where}: {_shorten(message)}")
    return problems


def _shorten(message: str, limit: int = 400) -> str:
    """Keep a problem one readable line even when it quotes a huge hostile value: the
    start names the value, the end says what is allowed."""
    message = message.replace("\n", "\\n")
    return message if len(message) <= limit else f"{message[: limit // 2]} … {message[-limit // 2 :]}"


def parse_environment(name: str, text: bytes | str, source: str) -> EnvironmentConfig:
    """Validate one environment document; `source` is how errors name the file."""
    problems: list[str] = []
    if not ENV_NAME_RE.match(name):
        problems.append(
            f"{source}: file name: {name!r} is not an environment name; allowed: a DNS label of at most 40 "
            f"characters matching {ENV_NAME_RE.pattern}"
        )
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(problems + [f"{source}: file is larger than {MAX_FILE_BYTES} bytes"])
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - safe loader subclass
    except UnicodeDecodeError:
        raise ConfigError(problems + [f"{source}: file is not UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        detail = re.sub(r'\s*in "<unicode string>",', " at", " ".join(str(exc).split()))
        raise ConfigError(problems + [f"{source}: not valid YAML: {detail}"]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # Scalars YAML resolves but Python cannot build: 2001-13-45 as a date, an integer
        # of more than 4300 digits, an unhashable (list) mapping key, nesting too deep.
        detail = str(exc).replace("\n", " ")[:200]
        raise ConfigError(problems + [f"{source}: not a valid environment document: {detail}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(problems + [f"{source}: (top level): must be a mapping with apiVersion: {API_VERSION}"])
    unsafe = _unsafe_strings(data)
    if unsafe:
        raise ConfigError(problems + [f"{source}: {where}: {what}" for where, what in unsafe])
    try:
        spec = EnvironmentSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(source, exc))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return EnvironmentConfig(name=name, source_path=source, spec=spec)


def shown_path(path: Path) -> str:
    """How messages name a file: quoted when its name holds a newline or another control
    character, so a file name cannot add lines or terminal escapes to chainops' output.
    (Such a name is never an environment name, so the quoted form is never read back.)"""
    return str(path) if path.name.isprintable() else repr(str(path))


def load_environment(path: Path) -> EnvironmentConfig:
    source = shown_path(path)
    if path.is_symlink() or not path.is_file():
        raise ConfigError([f"{source}: not a regular file"])
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError([f"{source}: file is larger than {MAX_FILE_BYTES} bytes"])
    return parse_environment(environment_name(path), path.read_bytes(), source)


def environment_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigError([f"{directory}: environments directory does not exist"])
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in {".yaml", ".yml"} and not p.name.startswith("."))


def cross_file_problems(configs: list[EnvironmentConfig]) -> list[str]:
    """Rules that span files: chainIds and namespaces must be unique."""
    problems = []
    for field, key in (("network.chainId", lambda c: c.spec.network.chainId),
                       ("kubernetes.namespace", lambda c: c.spec.kubernetes.namespace)):
        owners: dict[Any, str] = {}
        for config in sorted(configs, key=lambda c: c.name):
            value = key(config)
            if value in owners:
                problems.append(
                    f"{config.source_path}: {field}: {value!r} is already used by {owners[value]}; "
                    f"each environment needs its own"
                )
            else:
                owners[value] = config.source_path
    return problems


def load_all(directory: Path) -> list[EnvironmentConfig]:
    """Load and validate every environment file; raise one ConfigError listing every problem."""
    configs: list[EnvironmentConfig] = []
    problems: list[str] = []
    for path in environment_files(directory):
        if path.suffix != ".yaml":
            problems.append(f"{shown_path(path)}: file name: {path.suffix!r} is not read; use the .yaml extension")
            continue
        try:
            configs.append(load_environment(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(cross_file_problems(configs))
    if problems:
        raise ConfigError(problems)
    return configs
