"""Network profiles: which client version really runs which consensus.

A profile pins a client image that still seals blocks with the chosen consensus
(geth >= 1.14 seals no Clique blocks, geth >= 1.12 mines no ethash), so users cannot
end up with a chain that never produces a block.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    client: str
    consensus: str
    chart: str
    images: dict[str, str]
    legacy: bool
    note: str

    @property
    def client_image(self) -> str:
        return self.images[self.client]


BESU_IMAGE = "hyperledger/besu:25.10.0"
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
        ),
        Profile(
            name="besu-ibft2",
            client="besu",
            consensus="ibft2",
            chart="besu-node",
            images={"besu": BESU_IMAGE, "ethstats": ETHSTATS_IMAGE},
            legacy=False,
            note="Besu IBFT 2.0; prefer QBFT for new networks.",
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
        ),
    )
}

CONSENSUS_BY_CLIENT: dict[str, tuple[str, ...]] = {
    "besu": ("qbft", "ibft2"),
    "geth": ("clique", "ethash"),
}


def profile_for(client: str, consensus: str) -> Profile:
    return PROFILES[f"{client}-{consensus}"]
