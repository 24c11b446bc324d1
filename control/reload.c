/*
 * reload.c - config reload: the config file re-read, groups.yaml applied
 * on top (the reloaded file becomes the new base; run-time removals and
 * additions still win), and the running members made to follow it.
 *
 * What may change live: the set of groups (members start and stop; data
 * stays on disk). What may not: a running member's keys (peers, tunables:
 * listed as "restart needed"; remove-group + add-group or a node restart
 * applies them) and the node-wide keys (listed, not applied). A changed
 * node address (the groups' self host:port) refuses the whole reload.
 *
 * Threads: the caller's, holding the control server's lock (control.c):
 * the control thread for the "reload" op, main for SIGHUP.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dl_log.h"
#include "control/control_internal.h"

static int strs_add(struct ctl_strs *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int strs_add(struct ctl_strs *l, const char *fmt, ...)
{
	if (l->n >= CFG_MAX_GROUPS)
		return DL_ETOOBIG;
	char **nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
	if (nv == NULL)
		return DL_ENOMEM;
	l->v = nv;
	va_list ap;
	va_start(ap, fmt);
	int rc = vasprintf(&l->v[l->n], fmt, ap);
	va_end(ap);
	if (rc < 0)
		return DL_ENOMEM;
	l->n++;
	return DL_OK;
}

static void strs_free(struct ctl_strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void ctl_reload_free(struct ctl_reload *r)
{
	if (r == NULL)
		return;
	strs_free(&r->added);
	strs_free(&r->removed);
	strs_free(&r->unchanged);
	strs_free(&r->restart);
	strs_free(&r->node_keys);
	strs_free(&r->applied);
	strs_free(&r->failed);
}

static bool str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

/* Appends ", key" to buf for every key of the member that differs. */
static void group_diff(const struct cfg_group *a, const struct cfg_group *b, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
#define DIFF(cond, key)                                                                   \
	do {                                                                              \
		if ((cond) && len < cap) {                                                \
			int w = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", key); \
			len += w > 0 ? (size_t)w : 0;                                     \
		}                                                                         \
	} while (0)
	DIFF(str_differs(a->peers.raw, b->peers.raw), "peers");
	DIFF(str_differs(a->preferred_leader_id, b->preferred_leader_id), "preferredLeaderId");
	DIFF(str_differs(a->leader_id, b->leader_id), "leaderId");
	const struct cfg_group_opts *x = &a->o, *y = &b->o;
	DIFF(x->store_type != y->store_type, "storeType");
	DIFF(str_differs(x->store_base_dir, y->store_base_dir), "storeBaseDir");
	DIFF(x->mapped_file_size_for_entry_data_bytes != y->mapped_file_size_for_entry_data_bytes,
	     "mappedFileSizeForEntryData");
	DIFF(x->mapped_file_size_for_entry_index_bytes != y->mapped_file_size_for_entry_index_bytes,
	     "mappedFileSizeForEntryIndex");
	DIFF(x->heart_beat_time_interval_ms != y->heart_beat_time_interval_ms,
	     "heartBeatTimeIntervalMs");
	DIFF(x->max_heart_beat_leak != y->max_heart_beat_leak, "maxHeartBeatLeak");
	DIFF(x->election_timeout_ms != y->election_timeout_ms, "electionTimeoutMs");
	DIFF(x->enable_leader_elector != y->enable_leader_elector, "enableLeaderElector");
	DIFF(x->flush_mode != y->flush_mode, "flushMode");
	DIFF(x->flush_file_interval_ms != y->flush_file_interval_ms, "flushFileIntervalMs");
	DIFF(x->check_point_interval_ms != y->check_point_interval_ms, "checkPointIntervalMs");
	DIFF(x->file_reserved_hours != y->file_reserved_hours, "fileReservedHours");
	DIFF(x->disk_space_ratio_to_force_clean != y->disk_space_ratio_to_force_clean,
	     "diskSpaceRatioToForceClean");
	DIFF(x->disk_full_ratio != y->disk_full_ratio, "diskFullRatio");
	DIFF(x->enable_disk_force_clean != y->enable_disk_force_clean, "enableDiskForceClean");
	DIFF(x->max_pending_requests_num != y->max_pending_requests_num, "maxPendingRequestsNum");
	DIFF(x->max_pending_bytes != y->max_pending_bytes, "maxPendingBytes");
	DIFF(x->max_push_time_out_ms != y->max_push_time_out_ms, "maxPushTimeOutMs");
	DIFF(x->max_wait_ack_time_ms != y->max_wait_ack_time_ms, "maxWaitAckTimeMs");
	DIFF(x->max_leadership_transfer_wait_index != y->max_leadership_transfer_wait_index,
	     "maxLeadershipTransferWaitIndex");
	DIFF(x->leadership_transfer_wait_timeout_ms != y->leadership_transfer_wait_timeout_ms,
	     "leadershipTransferWaitTimeoutMs");
#undef DIFF
}

static int node_diff(const struct cfg_node *a, const struct cfg_node *b, struct ctl_strs *out,
		     struct ctl_strs *applied)
{
	int rc = DL_OK;
	if (rc == DL_OK && str_differs(a->store_base_dir, b->store_base_dir))
		rc = strs_add(out, "storeBaseDir");
	if (rc == DL_OK && str_differs(a->control_socket, b->control_socket))
		rc = strs_add(out, "controlSocket");
	if (rc == DL_OK && str_differs(a->metrics_address, b->metrics_address))
		rc = strs_add(out, "metricsAddress");
	if (rc == DL_OK && str_differs(a->listen_address, b->listen_address))
		rc = strs_add(out, "listenAddress");
	if (rc == DL_OK && a->leader_balance != b->leader_balance)
		rc = strs_add(out, "leaderBalance");
	if (rc == DL_OK && a->max_frame_bytes != b->max_frame_bytes)
		rc = strs_add(out, "maxFrameBytes");
	if (rc == DL_OK && str_differs(a->tls_cert_file, b->tls_cert_file))
		rc = strs_add(out, "tlsCertFile");
	if (rc == DL_OK && str_differs(a->tls_key_file, b->tls_key_file))
		rc = strs_add(out, "tlsKeyFile");
	if (rc == DL_OK && str_differs(a->tls_ca_file, b->tls_ca_file))
		rc = strs_add(out, "tlsCaFile");
	if (rc == DL_OK && a->log_level != b->log_level) {
		/* The one node-wide key that can change live. */
		static const enum dl_log_level map[] = {
			[CFG_LOG_ERROR] = DL_LOG_ERROR, [CFG_LOG_WARN] = DL_LOG_WARN,
			[CFG_LOG_INFO] = DL_LOG_INFO, [CFG_LOG_DEBUG] = DL_LOG_DEBUG};
		dl_log_set_level(map[b->log_level]);
		rc = strs_add(applied, "logLevel");
	}
	return rc;
}

/* Loads the new file and applies groups.yaml; checks the node address. */
static int load_new(const struct cfg *c, const struct ctl_state *st, const char *state_path,
		    struct cfg *nc, struct dl_errctx *err)
{
	if (c->source == NULL || strcmp(c->source, "flags") == 0)
		return dl_errf(err, DL_EINVAL,
			       "the node was started from flags: there is no config file to reload");
	int rc = cfg_load_file(c->source, nc, err);
	if (rc != DL_OK)
		return rc;
	rc = ctl_apply_state(nc, st, state_path, err);
	bool addr_changed = c->node.self_host != NULL && nc->node.self_host != NULL &&
			    (strcmp(c->node.self_host, nc->node.self_host) != 0 ||
			     c->node.self_port != nc->node.self_port);
	if (rc == DL_OK && addr_changed)
		rc = dl_errf(err, DL_ECONFIG,
			     "%s: this node's address changed (%s:%u to %s:%u): restart the node",
			     c->source, c->node.self_host, c->node.self_port, nc->node.self_host,
			     nc->node.self_port);
	if (rc != DL_OK)
		cfg_free(nc);
	return rc;
}

/* Stops the running members that are gone from (or changed id in) `nc`. */
static int stop_vanished(struct cfg *c, const struct cfg *nc, struct rt_node *n,
			 struct ctl_reload *out)
{
	int rc = DL_OK;
	for (size_t i = c->n_groups; rc == DL_OK && i-- > 0;) {
		const struct cfg_group *g = &c->groups[i];
		ssize_t k = ctl_cfg_find(nc, g->group);
		if (k >= 0 && strcmp(nc->groups[k].self_id, g->self_id) == 0)
			continue;
		int r = rt_node_remove(n, g->group, g->self_id);
		if (r != DL_OK && r != DL_ENOTFOUND) {
			rc = strs_add(&out->failed, "%s/%s: cannot stop: %s", g->group, g->self_id,
				      dl_strerror(r));
			continue;
		}
		dl_log(DL_LOG_INFO, g->group, g->self_id, "reload: stopped (data kept)");
		rc = strs_add(&out->removed, "%s/%s", g->group, g->self_id);
		ctl_cfg_drop(c, i);
	}
	return rc;
}

/* Starts nc's group `g` and moves it into `c`. A failure is reported in
 * out->failed, not returned. */
static int start_new(struct cfg *c, struct cfg_group *g, struct rt_node *n,
		     struct ctl_reload *out)
{
	struct dl_errctx e = {{0}};
	int r = cfg_check_new_group(c, g, &e);
	if (r == DL_OK)
		r = ctl_check_no_other_member(c, g, &e);
	struct rt_member_config mc;
	if (r == DL_OK) {
		ctl_member_config(c, g, &mc);
		r = rt_node_add(n, &mc, &e);
	}
	/* mc borrows g's strings; cfg_add_group moves the pointers only. */
	if (r == DL_OK && (r = cfg_add_group(c, g, &e)) != DL_OK)
		rt_node_remove(n, mc.group, mc.self_id);
	if (r != DL_OK)
		return strs_add(&out->failed, "%s/%s: %s", g->group, g->self_id,
				e.msg[0] ? e.msg : dl_strerror(r));
	dl_log(DL_LOG_INFO, mc.group, mc.self_id, "reload: started");
	return strs_add(&out->added, "%s/%s", mc.group, mc.self_id);
}

int ctl_reload_run(struct cfg *c, const struct ctl_state *st, const char *state_path,
		   struct rt_node *n, struct ctl_reload *out, struct dl_errctx *err)
{
	DL_ASSERT(c != NULL && st != NULL && n != NULL && out != NULL);
	memset(out, 0, sizeof(*out));
	struct cfg nc;
	int rc = load_new(c, st, state_path, &nc, err);
	if (rc != DL_OK)
		return rc;
	rc = node_diff(&c->node, &nc.node, &out->node_keys, &out->applied);
	if (rc == DL_OK)
		rc = stop_vanished(c, &nc, n, out);
	/* Members in both: unchanged, or changed keys that need a restart. */
	for (size_t i = 0; rc == DL_OK && i < c->n_groups; i++) {
		const struct cfg_group *g = &c->groups[i];
		ssize_t k = ctl_cfg_find(&nc, g->group);
		if (k < 0) /* could not be stopped: listed in out->failed */
			continue;
		char keys[1024];
		group_diff(g, &nc.groups[k], keys, sizeof(keys));
		if (keys[0] != '\0')
			rc = strs_add(&out->restart, "%s/%s: %s", g->group, g->self_id, keys);
		else
			rc = strs_add(&out->unchanged, "%s/%s", g->group, g->self_id);
	}
	for (size_t i = 0; rc == DL_OK && i < nc.n_groups; i++)
		if (ctl_cfg_find(c, nc.groups[i].group) < 0)
			rc = start_new(c, &nc.groups[i], n, out);
	cfg_free(&nc);
	if (rc != DL_OK)
		return dl_errf(err, rc, "reload stopped half-way: %s", dl_strerror(rc));
	return DL_OK;
}

static void put_list(FILE *f, const char *what, const struct ctl_strs *l, bool *first)
{
	if (l->n == 0)
		return;
	fprintf(f, "%s%s", *first ? "" : "; ", what);
	for (size_t i = 0; i < l->n; i++)
		fprintf(f, "%s%s", i ? ", " : " ", l->v[i]);
	*first = false;
}

char *ctl_reload_text(const char *source, const struct ctl_reload *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (f == NULL)
		return NULL;
	fprintf(f, "reload of %s: ", source ? source : "?");
	bool first = true;
	put_list(f, "added", &r->added, &first);
	put_list(f, "removed (data kept)", &r->removed, &first);
	fprintf(f, "%s%zu unchanged", first ? "" : "; ", r->unchanged.n);
	first = false;
	put_list(f, "changed, need a restart of the member", &r->restart, &first);
	put_list(f, "node-wide keys changed, not applied (restart the node)", &r->node_keys,
		 &first);
	put_list(f, "applied live", &r->applied, &first);
	put_list(f, "FAILED", &r->failed, &first);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
