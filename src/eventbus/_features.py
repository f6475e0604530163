"""What a broker can do, declared per broker rather than sniffed from API versions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Features:
    """Capabilities of a broker (with a given client), as measured.

    Attributes:
        name: profile name (``kafka``, ``noida``, ``tansu``, ``memory``).
        idempotence_clients: clients whose idempotent producer works on this broker.
        transactions: read_committed isolation and ``send_offsets_to_transaction`` work.
        durable: acknowledged data and committed offsets survive a graceful restart.
        crash_durable: they also survive SIGKILL of the broker.
        expires_dead_members: a member that died without leaving is expired after its
            session timeout, so its partitions move to the survivors.
        commit_during_rebalance: OffsetCommit is accepted while a rebalance is preparing
            (noida-db answers ILLEGAL_GENERATION, which makes aiokafka rejoin as a new member).
        static_membership: ``group.instance.id`` is honoured.
        correct_end_offsets: ListOffsets(LATEST) returns the log end, and ListOffsets by
            timestamp the first offset at or after it (Tansu's answer neither right).
        offset_reset_latest: ``auto_offset_reset=latest`` starts at the log end.
        create_partitions: topics can grow.
        tls: TLS listeners exist.
        sasl: real SASL authentication exists.
    """

    name: str
    idempotence_clients: frozenset[str] = frozenset({"aiokafka", "confluent"})
    transactions: bool = True
    durable: bool = True
    crash_durable: bool = True
    expires_dead_members: bool = True
    commit_during_rebalance: bool = True
    static_membership: bool = True
    correct_end_offsets: bool = True
    offset_reset_latest: bool = True
    create_partitions: bool = True
    tls: bool = True
    sasl: bool = True

    def idempotence_for(self, client: str) -> bool:
        """Whether ``client``'s idempotent producer works on this broker."""
        return client in self.idempotence_clients


APACHE_KAFKA = Features(name="kafka")

NOIDA = Features(
    name="noida",
    crash_durable=False,  # ~1 s of acknowledged writes lost on SIGKILL
    expires_dead_members=False,  # members are never expired; a crashed member wedges its group
    commit_during_rebalance=False,  # ILLEGAL_GENERATION during PreparingRebalance
    tls=False,
    sasl=False,  # SASL PLAIN accepts anything; SCRAM refused
)

TANSU = Features(
    name="tansu",
    idempotence_clients=frozenset({"confluent"}),  # aiokafka's InitProducerId v0 fails
    transactions=False,  # read_committed sees aborted records
    durable=False,  # memory storage: a restart wipes topics, data and offsets
    crash_durable=False,
    correct_end_offsets=False,  # ListOffsets(LATEST) wrong after batched produce
    offset_reset_latest=False,  # latest replays old records
    create_partitions=False,
    tls=False,
    sasl=False,
)

MEMORY = Features(
    name="memory",
    durable=False,
    crash_durable=False,
    tls=False,
    sasl=False,
)

PROFILES: dict[str, Features] = {f.name: f for f in (APACHE_KAFKA, NOIDA, TANSU, MEMORY)}
