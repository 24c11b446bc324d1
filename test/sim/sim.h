/*
 * sim.h - deterministic simulation of Raft groups over a faulty network and
 * slow disks, driven by one 64-bit seed.
 *
 * G groups run on N nodes (N members per group); node k hosts member k + 1 of
 * every group, and group g prefers member (g % N) + 1 as leader. Each member
 * is a `struct raft` (raft/raft.h) over an in-memory log. Time is counted in
 * ticks; each simulator step is one tick: disk writes that are due complete,
 * messages that are due arrive, every member of every live node ticks, a
 * fault may strike, clients propose.
 *
 * Faults (fault phase, `steps` ticks): message loss, duplication, delay and
 * so reordering; symmetric and one-way partitions; node crashes (everything
 * not durable is lost: queued writes, the unsynced log tail, a truncation not
 * yet durable comes back, in-flight messages to it) and restarts from the
 * durable state; slow and stalled disks. Storage faults: at a crash, the
 * writes queued first may land and the append after them torn (a prefix of
 * its entries durable: the store's recovery cuts a torn entry by checksum);
 * a write or sync failing with EIO, or with ENOSPC while a node's disk is
 * full, stops that member alone as a crash would (its queued writes gone, a
 * failed state write not persisted) until its store reopens; at a restart,
 * a wiped store (a new incarnation, not a voter), or a flipped byte in a
 * durable entry, which cuts the log before it and, when the member may have
 * acknowledged that entry, also makes it a new incarnation and not a voter
 * (raft.h, "Voters"). Wipes and flips strike only while every other member
 * of the group is a voter. Probabilities are drawn per seed, so some seeds
 * are calm and some are storms. Then the liveness phase heals everything and
 * requires, within SIM_LIVENESS_TIMEOUTS election timeouts (plus the time
 * the seed's append window needs to ship the backlog; see liveness_bound()
 * in sim.c), one agreed leader per group, that leader being the preferred
 * member, and every entry of its log committed and applied on every member.
 *
 * After every step the invariant checkers (check.h) run, and two checks of
 * the simulator itself: leader_without_quorum (a leader that has had no
 * answer from a majority for SIM_QUORUM_LOSS_TICKS has stepped down) and
 * no_election (a majority of voters that are up, with healthy disks and
 * links both ways among them, has a leader, or follows one, within
 * SIM_ELECTION_BOUND_TIMEOUTS election timeouts); the first violation ends
 * the run. Single-threaded; nothing global but the raft assert hook.
 */
#ifndef DLEDGER_SIM_H
#define DLEDGER_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

#define SIM_MAX_NODES 9
#define SIM_MAX_GROUPS 64
#define SIM_ELECTION_TICKS 10
/* The liveness phase must converge within this many election timeouts
 * (3000 ticks) plus the backlog's shipping time: a healed cluster needs a few timeouts to elect, a few
 * heartbeats to commit, and one transfer to reach the preferred leader;
 * the margin is for bad luck in randomized timeouts, not for slowness. */
#define SIM_LIVENESS_TIMEOUTS 300
/* Clients keep proposing for this many ticks after the heal, so that the
 * liveness phase starts with proposals pending. */
#define SIM_LIVENESS_PROPOSE_TICKS 50

struct sim_config {
	uint64_t seed;
	uint32_t n_nodes;  /* members per group, 1..SIM_MAX_NODES (3 or 5) */
	uint32_t n_groups; /* 1..SIM_MAX_GROUPS */
	uint64_t steps;    /* ticks of the fault phase */
	FILE *trace;       /* every event, one line each; NULL: none */
};

struct sim_stats {
	uint64_t ticks;          /* both phases */
	uint64_t liveness_ticks; /* until the healed cluster converged */
	uint64_t proposals;      /* entries accepted by a leader */
	uint64_t rejected;       /* proposals answered ENOTLEADER or EBUSY */
	uint64_t commits;        /* proposals acknowledged to the client */
	uint64_t elections;      /* members that became leader */
	uint64_t transfers;      /* transfer requests */
	uint64_t crashes;
	uint64_t partitions;     /* symmetric and one-way */
	uint64_t msgs;           /* sent by the cores */
	uint64_t delivered;
	uint64_t dropped;        /* loss, partition, dead node */
	uint64_t duplicated;
	uint64_t peak_in_flight; /* messages on the wire at once */
	uint64_t truncations;
	uint64_t slow_writes;
	uint64_t wipes;          /* stores lost at a restart */
	uint64_t torn_writes;    /* crashes that landed queued writes, the last torn */
	uint64_t disk_errors;    /* members stopped by a write or sync failing with EIO */
	uint64_t disk_full;      /* members stopped by a write failing with ENOSPC */
	uint64_t flips;          /* damaged entries found at a restart */
	uint64_t flip_resets;    /* ... at or below what the member acknowledged */
	uint64_t slowest_election; /* longest wait of a connected voter majority, ticks */
};

/* A group as the run left it (after the liveness phase). */
struct sim_group_report {
	raft_id leader;    /* 0: none agreed */
	uint64_t term;
	uint64_t commit;   /* the leader's */
	uint64_t last;     /* the leader's last index */
	uint64_t elections; /* times a member of this group became leader */
};

struct sim_result {
	bool ok;
	uint64_t step; /* tick of the violation */
	char invariant[32];
	char detail[400];
	struct sim_stats stats;
	struct sim_group_report groups[SIM_MAX_GROUPS];
};

/* Runs one seed to the end or to the first violation. Returns 0 when the run
 * took place (see res->ok), -1 when the config is out of range (res->detail
 * says why). */
int sim_run(const struct sim_config *cfg, struct sim_result *res);

#endif
