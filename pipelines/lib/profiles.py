"""Network profiles: which client version really runs which consensus.

A profile pins a client image that still seals blocks with the chosen consensus
(geth >= 1.14 seals no Clique blocks, geth >= 1.12 mines no ethash), so users cannot
end up with a chain that never produces a block. A profile also carries the "profile
defaults" layer of the chart values (chart defaults < profile defaults < environment
overrides < computed values).

Besu is pinned to 26.8.0: the newest release whose sources were checked for every option
the besu-node chart uses (chart_sources/besu-node/flags/26.8.0.txt). 25.10.0, pinned
before, is ten releases older. Besu 26.x keeps QBFT and IBFT 2.0 (it drops PoW mining and
new Clique networks, which no besu profile uses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NETWORK_CHART = "network"
BOOTNODE_CHART = "bootnode"
ETHSTATS_CHART = "ethstats"
MONITORING_CHART = "monitoring"


@dataclass(frozen=True)
class Profile:
    name: str
    client: str
    consensus: str
    chart: str
    images: dict[str, str]
    legacy: bool
    note: str
    # Profile defaults per chart, merged over the chart's values.yaml.
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Image key -> (first release that breaks the profile, why): applied to `images:` overrides.
    version_limits: Mapping[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)

    @property
    def client_image(self) -> str:
        return self.images[self.client]

    @property
    def charts(self) -> tuple[str, ...]:
        """Every chart an environment of this profile may render (and may set `values` for)."""
        optional = (BOOTNODE_CHART,) if "bootnode" in self.images else ()
        return (NETWORK_CHART, self.chart, *optional, ETHSTATS_CHART, MONITORING_CHART)

    def pinned_tag(self, image: str) -> str:
        """The tag the profile pins for one of its images (the release's app version)."""
        return self.images[image].rsplit(":", 1)[1]


BESU_IMAGE = "hyperledger/besu:26.8.0"
ETHSTATS_IMAGE = "ethereumex/eth-stats-dashboard:v0.0.1"

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="besu-qbft",
            client="besu",
            consensus="qbft",
            chart="besu-node",
            images={"besu": BESU_IMAGE, "ethstats": ETHSTATS_IMAGE},
            legacy=False,
            note="Besu QBFT; use >= 4 validators to tolerate one faulty validator.",
            values={"besu-node": {"validatorApis": ["ETH", "NET", "QBFT"]}},
        ),
        Profile(
            name="besu-ibft2",
            client="besu",
            consensus="ibft2",
            chart="besu-node",
            images={"besu": BESU_IMAGE, "ethstats": ETHSTATS_IMAGE},
            legacy=False,
            note="Besu IBFT 2.0; prefer QBFT for new networks.",
            values={"besu-node": {"validatorApis": ["ETH", "NET", "IBFT"]}},
        ),
        Profile(
            name="geth-clique",
            client="geth",
            consensus="clique",
            chart="geth-node",
            images={
                "geth": "ethereum/client-go:v1.13.15",
                "bootnode": "ethereum/client-go:alltools-v1.13.15",
                "ethstats": ETHSTATS_IMAGE,
            },
            legacy=True,
            note="Legacy: geth v1.13.15 is the last geth release that seals Clique blocks.",
            version_limits={
                image: ((1, 14), "geth v1.14 seals no Clique blocks (proof-of-authority mining was removed)")
                for image in ("geth", "bootnode")
            },
        ),
        Profile(
            name="geth-ethash",
            client="geth",
            consensus="ethash",
            chart="geth-node",
            images={
                "geth": "ethereum/client-go:v1.11.6",
                "bootnode": "ethereum/client-go:alltools-v1.11.6",
                "ethstats": ETHSTATS_IMAGE,
            },
            legacy=True,
            note="Legacy: geth v1.11.6 is the last geth release that mines ethash.",
            version_limits={
                image: ((1, 12), "geth v1.12 runs no proof-of-work network (ethash mining was removed)")
                for image in ("geth", "bootnode")
            },
            # Miners hold the ethash DAG (about 1 GiB at epoch 0, growing) besides the chain.
            values={
                "geth-node": {
                    "resources": {
                        "validator": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
                    }
                }
            },
        ),
    )
}

CONSENSUS_BY_CLIENT: dict[str, tuple[str, ...]] = {
    "besu": ("qbft", "ibft2"),
    "geth": ("clique", "ethash"),
}


def profile_for(client: str, consensus: str) -> Profile:
    return PROFILES[f"{client}-{consensus}"]
