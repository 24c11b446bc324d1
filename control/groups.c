/*
 * groups.c - the node's set of groups: the config's groups as the running
 * members see them (find, drop, a member's config and directory), an
 * add-group's keys checked as a group of the config, and groups.yaml
 * applied on top of a config. Used by the server (control.c) and by
 * reload (reload.c); it calls neither. Threads: the caller's, holding
 * whatever serializes use of the cfg (the server's lock).
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "control/control_internal.h"

/* The config module checks a member's directory against its own copy of
 * the store's limit (config/ does not depend on storage/). */
_Static_assert(CFG_MEMBER_DIR_MAX == STO_DIR_MAX, "CFG_MEMBER_DIR_MAX must be STO_DIR_MAX");

void ctl_member_config(const struct cfg *c, const struct cfg_group *g, struct rt_member_config *mc)
{
	rt_member_config_defaults(mc);
	snprintf(mc->group, sizeof(mc->group), "%s", g->group);
	snprintf(mc->self_id, sizeof(mc->self_id), "%s", g->self_id);
	mc->n_peers = g->peers.n_members;
	for (uint32_t i = 0; i < g->peers.n_members; i++) {
		const struct cfg_peer *p = &g->peers.members[i];
		snprintf(mc->peers[i].id, sizeof(mc->peers[i].id), "%s", p->id);
		cfg_format_addr(p->host, p->port, mc->peers[i].addr, sizeof(mc->peers[i].addr));
	}
	if (g->preferred_leader_id != NULL)
		snprintf(mc->preferred_id, sizeof(mc->preferred_id), "%s", g->preferred_leader_id);
	if (!g->o.enable_leader_elector && g->leader_id != NULL)
		snprintf(mc->fixed_leader_id, sizeof(mc->fixed_leader_id), "%s", g->leader_id);
	mc->heartbeat_ms = g->o.heart_beat_time_interval_ms;
	mc->election_ms = g->o.election_timeout_ms;
	mc->max_pending_appends = g->o.max_pending_requests_num;
	mc->max_pending_bytes = g->o.max_pending_bytes;

	struct sto_config *s = &mc->store;
	s->type = g->o.store_type == CFG_STORE_MEMORY ? STO_TYPE_MEMORY : STO_TYPE_MMAP;
	s->base_dir = g->o.store_base_dir != NULL ? g->o.store_base_dir : c->node.store_base_dir;
	s->segment_bytes = g->o.mapped_file_size_for_entry_data_bytes;
	s->index_segment_bytes = g->o.mapped_file_size_for_entry_index_bytes;
	s->flush_mode = g->o.flush_mode == CFG_FLUSH_ASYNC ? STO_FLUSH_ASYNC : STO_FLUSH_SYNC;
	s->flush_interval_ms = g->o.flush_file_interval_ms;
	s->file_reserved_hours = g->o.file_reserved_hours;
	s->enable_disk_force_clean = g->o.enable_disk_force_clean;
	s->disk_space_ratio_to_force_clean = g->o.disk_space_ratio_to_force_clean;
	s->disk_full_ratio = g->o.disk_full_ratio;
}

/* ---- config bookkeeping ------------------------------------------------------- */

ssize_t ctl_cfg_find(const struct cfg *c, const char *group)
{
	for (size_t i = 0; i < c->n_groups; i++)
		if (strcmp(c->groups[i].group, group) == 0)
			return (ssize_t)i;
	return -1;
}

void ctl_cfg_drop(struct cfg *c, size_t i)
{
	DL_ASSERT(i < c->n_groups);
	cfg_group_free(&c->groups[i]);
	memmove(&c->groups[i], &c->groups[i + 1], (c->n_groups - i - 1) * sizeof(c->groups[0]));
	c->n_groups--;
}

void ctl_member_dir(const struct cfg *c, const struct cfg_group *g, char *buf, size_t cap)
{
	const char *base = g->o.store_base_dir ? g->o.store_base_dir : c->node.store_base_dir;
	snprintf(buf, cap, "%s/%s/%s", base, g->group, g->self_id);
}

int ctl_group_of_rec(const struct cfg *c, const struct ctl_rec *r, struct cfg_group *g,
		     struct dl_errctx *err)
{
	struct cfg_kv kv[CTL_MAX_KV];
	for (uint32_t i = 0; i < r->n_kv; i++)
		kv[i] = (struct cfg_kv){r->key[i], r->val[i]};
	int rc = cfg_group_from_kv(&c->node, kv, r->n_kv, g, err);
	if (rc == DL_OK && (rc = cfg_check_new_group(c, g, err)) != DL_OK)
		cfg_group_free(g);
	return rc;
}

int ctl_apply_state(struct cfg *c, const struct ctl_state *st, const char *state_path,
		    struct dl_errctx *err)
{
	for (size_t i = 0; i < st->n_removed; i++) {
		ssize_t k = ctl_cfg_find(c, ctl_rec_get(&st->removed[i], "group"));
		if (k >= 0 && strcmp(c->groups[k].self_id, ctl_rec_get(&st->removed[i], "id")) == 0)
			ctl_cfg_drop(c, (size_t)k);
	}
	for (size_t i = 0; i < st->n_added; i++) {
		const struct ctl_rec *r = &st->added[i];
		ssize_t k = ctl_cfg_find(c, ctl_rec_get(r, "group"));
		if (k >= 0)
			ctl_cfg_drop(c, (size_t)k);
		struct cfg_group g;
		struct dl_errctx e = {{0}};
		int rc = ctl_group_of_rec(c, r, &g, &e);
		if (rc == DL_OK && (rc = cfg_add_group(c, &g, &e)) != DL_OK)
			cfg_group_free(&g);
		if (rc != DL_OK)
			return dl_errf(err, rc, "%s: added group '%s': %s", state_path,
				       ctl_rec_get(r, "group"), e.msg);
	}
	return DL_OK;
}

/* No membership change: another member's data of the group on this node
 * means a different member once lived here. */
int ctl_check_no_other_member(const struct cfg *c, const struct cfg_group *g,
			      struct dl_errctx *err)
{
	char dir[CFG_PATH_MAX];
	const char *base = g->o.store_base_dir ? g->o.store_base_dir : c->node.store_base_dir;
	snprintf(dir, sizeof(dir), "%s/%s", base, g->group);
	DIR *d = opendir(dir);
	if (d == NULL)
		return DL_OK;
	int rc = DL_OK;
	for (struct dirent *e; rc == DL_OK && (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.' && strcmp(e->d_name, g->self_id) != 0 &&
		    e->d_type == DT_DIR)
			rc = dl_errf(err, DL_ECONFIG,
				     "group '%s' has data of member '%s' on this node (%s); "
				     "changing a group's members is not supported",
				     g->group, e->d_name, dir);
	closedir(d);
	return rc;
}
