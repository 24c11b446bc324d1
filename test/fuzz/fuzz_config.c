/*
 * fuzz_config.c - libFuzzer target: the YAML config loader (config/config.h).
 *
 * Feeds: the input as the bytes of a config file, to cfg_load_buffer()
 * (what cfg_load_file() calls once it has read the file).
 *
 * Asserts: the result is DL_OK, DL_ECONFIG or DL_ENOMEM; a failure leaves
 * the struct zeroed and says why in a message that names the file; a
 * success holds only what validation promises (valid names, self among
 * its group's peers, this node's one address, unique groups, leader ids
 * that are members, an election timeout above the heartbeat), and the
 * loaded config refuses its own first group a second time. cfg_free()
 * releases everything (LeakSanitizer checks after every input).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "test/fuzz/fuzz.h"

#define NAME "fuzz.yaml"

static bool is_member(const struct cfg_peers *p, const char *id)
{
	return id != NULL && cfg_peers_find(p, id) >= 0;
}

static void check_group(const struct cfg *c, const struct cfg_group *g, bool first)
{
	FZ_CHECK(cfg_name_valid(g->group, false) && cfg_name_valid(g->self_id, true));
	FZ_CHECK(g->peers.n_members >= 1 && g->peers.n_members <= CFG_MAX_MEMBERS);
	FZ_CHECK(g->self_index < g->peers.n_members);
	const struct cfg_peer *self = &g->peers.members[g->self_index];
	FZ_CHECK(strcmp(self->id, g->self_id) == 0);
	/* the node's address is the first group's; the others name the same
	 * address, perhaps spelled differently ("::1", "0:0::1") */
	FZ_CHECK(self->port == c->node.self_port);
	FZ_CHECK(!first || strcmp(self->host, c->node.self_host) == 0);
	for (uint32_t i = 0; i < g->peers.n_members; i++) {
		const struct cfg_peer *p = &g->peers.members[i];
		FZ_CHECK(cfg_name_valid(p->id, true) && p->host != NULL && p->port != 0);
		FZ_CHECK(cfg_peers_find(&g->peers, p->id) == (int)i);
	}
	FZ_CHECK(g->preferred_leader_id == NULL || is_member(&g->peers, g->preferred_leader_id));
	FZ_CHECK((g->leader_id != NULL) == !g->o.enable_leader_elector);
	FZ_CHECK(g->leader_id == NULL || is_member(&g->peers, g->leader_id));
	FZ_CHECK(g->o.election_timeout_ms > g->o.heart_beat_time_interval_ms);
	FZ_CHECK(g->o.disk_full_ratio > 0 && g->o.disk_full_ratio < 1);
}

static void check_loaded(const struct cfg *c)
{
	FZ_CHECK(c->source != NULL && strcmp(c->source, NAME) == 0);
	FZ_CHECK(c->n_groups >= 1 && c->groups != NULL && c->node.self_host != NULL);
	FZ_CHECK(c->node.store_base_dir != NULL && c->node.control_socket != NULL);
	FZ_CHECK(strlen(c->node.control_socket) <= CFG_SOCKPATH_MAX);
	for (size_t i = 0; i < c->n_groups; i++)
		check_group(c, &c->groups[i], i == 0);
	/* Unique group names (quadratic: a few groups only). */
	for (size_t i = 0; i < c->n_groups && c->n_groups <= 64; i++)
		for (size_t j = i + 1; j < c->n_groups; j++)
			FZ_CHECK(strcmp(c->groups[i].group, c->groups[j].group) != 0);
	struct dl_errctx err = {{0}};
	FZ_CHECK(cfg_check_new_group(c, &c->groups[0], &err) == DL_ECONFIG);
	FZ_CHECK(err.msg[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct cfg zero;
	struct cfg c;
	struct dl_errctx err = {{0}};
	int rc = cfg_load_buffer(NAME, (const char *)data, size, &c, &err);
	if (getenv("FUZZ_VERBOSE") != NULL) /* replaying one input: what it got */
		fprintf(stderr, "%s: %s\n", dl_strerror(rc), rc == DL_OK ? "loaded" : err.msg);
	if (rc == DL_OK) {
		check_loaded(&c);
		cfg_free(&c);
		FZ_CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
		return 0;
	}
	FZ_CHECK(rc == DL_ECONFIG || rc == DL_ENOMEM);
	FZ_CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
	FZ_CHECK(strnlen(err.msg, sizeof(err.msg)) < sizeof(err.msg));
	FZ_CHECK(rc != DL_ECONFIG || strncmp(err.msg, NAME, strlen(NAME)) == 0);
	return 0;
}
