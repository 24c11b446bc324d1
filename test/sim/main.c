/*
 * main.c - dledger-sim: runs the deterministic Raft simulator over a range of
 * seeds (see sim.h).
 *
 *   dledger-sim --seed S --seeds N --steps K --nodes 3|5|both --groups G [--trace]
 *
 * Prints one summary line and exits 0 when every seed passed; prints
 * "sim: VIOLATION seed=S step=K invariant=NAME: detail" and exits 1 at the
 * first seed that fails; exits 2 on bad arguments. With --nodes both, even
 * seeds run 3-member groups and odd seeds 5-member groups. A failing seed
 * replays with --seed S --seeds 1 (same --steps, --nodes, --groups), and
 * --trace prints its every event.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct options {
	uint64_t seed;
	uint64_t seeds;
	uint64_t steps;
	uint32_t nodes; /* 0: both */
	uint32_t groups;
	bool trace;
	bool demo;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: dledger-sim [--seed S] [--seeds N] [--steps K] [--nodes 3|5|both] "
		   "[--groups G] [--trace]\n"
		   "       dledger-sim --demo   (the README's main job until the node exists)\n"
		   "  defaults: --seed 1 --seeds 1 --steps 10000 --nodes 3 --groups 3\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

static int bad_arg(const char *opt, const char *val, const char *want)
{
	fprintf(stderr, "dledger-sim: bad value '%s' for %s: %s\n", val ? val : "(missing)", opt,
		want);
	usage(stderr);
	return 2;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.seed = 1, .seeds = 1, .steps = 10000, .nodes = 3, .groups = 3};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x = 0;
		if (strcmp(a, "--trace") == 0) {
			o->trace = true;
			continue;
		}
		if (strcmp(a, "--demo") == 0) {
			o->demo = true;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		i++;
		if (strcmp(a, "--seed") == 0) {
			if (!parse_u64(v, &o->seed))
				return bad_arg(a, v, "an unsigned 64-bit number");
		} else if (strcmp(a, "--seeds") == 0) {
			if (!parse_u64(v, &o->seeds) || o->seeds == 0)
				return bad_arg(a, v, "a count of seeds, at least 1");
		} else if (strcmp(a, "--steps") == 0) {
			if (!parse_u64(v, &o->steps) || o->steps > 100000000)
				return bad_arg(a, v, "a number of steps, at most 100000000");
		} else if (strcmp(a, "--nodes") == 0) {
			if (v != NULL && strcmp(v, "both") == 0)
				o->nodes = 0;
			else if (parse_u64(v, &x) && (x == 3 || x == 5))
				o->nodes = (uint32_t)x;
			else
				return bad_arg(a, v, "3, 5 or both");
		} else if (strcmp(a, "--groups") == 0) {
			if (!parse_u64(v, &x) || x == 0 || x > SIM_MAX_GROUPS)
				return bad_arg(a, v, "a number of groups, 1..64");
			o->groups = (uint32_t)x;
		} else {
			fprintf(stderr, "dledger-sim: unknown argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (o->seed + o->seeds - 1 < o->seed)
		return bad_arg("--seeds", "", "the seed range wraps around");
	return 0;
}

static void add_stats(struct sim_stats *sum, const struct sim_stats *s)
{
	sum->ticks += s->ticks;
	sum->proposals += s->proposals;
	sum->rejected += s->rejected;
	sum->commits += s->commits;
	sum->elections += s->elections;
	sum->transfers += s->transfers;
	sum->crashes += s->crashes;
	sum->partitions += s->partitions;
	sum->msgs += s->msgs;
	sum->delivered += s->delivered;
	sum->dropped += s->dropped;
	sum->duplicated += s->duplicated;
	sum->truncations += s->truncations;
	sum->wipes += s->wipes;
	sum->slow_writes += s->slow_writes;
	sum->torn_writes += s->torn_writes;
	sum->disk_errors += s->disk_errors;
	sum->disk_full += s->disk_full;
	sum->flips += s->flips;
	sum->flip_resets += s->flip_resets;
	if (s->slowest_election > sum->slowest_election)
		sum->slowest_election = s->slowest_election;
	if (s->peak_in_flight > sum->peak_in_flight)
		sum->peak_in_flight = s->peak_in_flight;
	if (s->liveness_ticks > sum->liveness_ticks)
		sum->liveness_ticks = s->liveness_ticks; /* the slowest heal */
}

/* The seed's three groups on three nodes: g0 (n0-n2), g1 (a0-a2), g2
 * (b0-b2), preferred leaders n0, a1, b2, one per node. */
static int demo(void)
{
	static const char *const prefix[] = {"n", "a", "b"};
	struct sim_config cfg = {.seed = 1, .n_nodes = 3, .n_groups = 3, .steps = 3000};
	struct sim_result res;
	printf("dledger-sim demo: 3 nodes, groups g0 (n0-n2), g1 (a0-a2), g2 (b0-b2); preferred\n"
	       "leaders n0, a1, b2; %llu ticks of faults (loss, delay, duplication, partitions,\n"
	       "crashes, slow disks) and client appends, then the faults heal.\n\n",
	       (unsigned long long)cfg.steps);
	if (sim_run(&cfg, &res) != 0 || !res.ok) {
		printf("demo FAILED: %s: %s\n", res.invariant, res.detail);
		return 1;
	}
	const struct sim_stats *st = &res.stats;
	printf("faults: %" PRIu64 " crashes, %" PRIu64 " partitions, %" PRIu64
	       " messages lost, %" PRIu64 " duplicated, %" PRIu64 " slow disk writes\n",
	       st->crashes, st->partitions, st->dropped, st->duplicated, st->slow_writes);
	printf("work:   %" PRIu64 " entries acknowledged, %" PRIu64 " elections, %" PRIu64
	       " leadership transfers asked, %" PRIu64 " divergent tails truncated\n",
	       st->commits, st->elections, st->transfers, st->truncations);
	printf("checks: one leader per term, log matching, leader completeness, same entry\n"
	       "        applied at each index, acknowledged entries durable on a majority:\n"
	       "        held after each of %" PRIu64 " ticks\n\n", st->ticks);
	printf("%-6s %-7s %-9s %-6s %-10s %-10s %s\n", "group", "leader", "preferred", "term",
	       "committed", "last", "elections");
	uint32_t per_node[3] = {0};
	for (uint32_t g = 0; g < 3; g++) {
		const struct sim_group_report *r = &res.groups[g];
		char leader[16] = "-", pref[16];
		if (r->leader != 0)
			snprintf(leader, sizeof(leader), "%s%u", prefix[g], r->leader - 1);
		snprintf(pref, sizeof(pref), "%s%u", prefix[g], g);
		printf("g%-5u %-7s %-9s %-6" PRIu64 " %-10" PRIu64 " %-10" PRIu64 " %" PRIu64 "\n", g,
		       leader, pref, r->term, r->commit, r->last, r->elections);
		if (r->leader != 0)
			per_node[r->leader - 1]++;
	}
	printf("\nleaders per node: node0 %u, node1 %u, node2 %u\n", per_node[0], per_node[1],
	       per_node[2]);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	int rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return rc;
	if (o.demo)
		return demo();
	struct sim_stats sum = {0};
	for (uint64_t i = 0; i < o.seeds; i++) {
		uint64_t seed = o.seed + i;
		struct sim_config cfg = {.seed = seed,
					 .n_nodes = o.nodes ? o.nodes : (seed % 2 ? 5 : 3),
					 .n_groups = o.groups,
					 .steps = o.steps,
					 .trace = o.trace ? stdout : NULL};
		struct sim_result res;
		if (sim_run(&cfg, &res) != 0) {
			fprintf(stderr, "dledger-sim: %s\n", res.detail);
			return 2;
		}
		if (!res.ok) {
			fflush(stdout);
			printf("sim: VIOLATION seed=%" PRIu64 " step=%" PRIu64 " invariant=%s: %s\n",
			       seed, res.step, res.invariant, res.detail);
			printf("sim: replay with: dledger-sim --seed %" PRIu64 " --seeds 1 --steps %" PRIu64
			       " --nodes %u --groups %u --trace\n",
			       seed, o.steps, cfg.n_nodes, o.groups);
			return 1;
		}
		add_stats(&sum, &res.stats);
	}
	char nodes[16] = "3+5";
	if (o.nodes)
		snprintf(nodes, sizeof(nodes), "%u", o.nodes);
	printf("sim: %" PRIu64 " seeds passed, %" PRIu64 " steps each, nodes %s, groups %u, "
	       "%" PRIu64 " commits, %" PRIu64 " elections, %" PRIu64 " crashes, %" PRIu64
	       " wiped stores, %" PRIu64 " partitions, %" PRIu64 " drops, %" PRIu64 " dups, %" PRIu64 " truncations, %" PRIu64
	       " transfers, %" PRIu64 " msgs, peak %" PRIu64 " msgs in flight, slowest heal %" PRIu64
	       " ticks\n",
	       o.seeds, o.steps, nodes, o.groups, sum.commits, sum.elections, sum.crashes,
	       sum.wipes, sum.partitions, sum.dropped, sum.duplicated, sum.truncations, sum.transfers,
	       sum.msgs, sum.peak_in_flight, sum.liveness_ticks);
	printf("sim: storage faults: %" PRIu64 " torn writes at a crash, %" PRIu64
	       " members stopped by EIO, %" PRIu64 " by ENOSPC, %" PRIu64
	       " damaged entries found (%" PRIu64 " of them acknowledged: a new incarnation); "
	       "slowest election of a connected voter majority %" PRIu64 " ticks\n",
	       sum.torn_writes, sum.disk_errors, sum.disk_full, sum.flips, sum.flip_resets,
	       sum.slowest_election);
	return 0;
}
