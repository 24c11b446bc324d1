/*
 * node.c - the embedding API's node: opening it from a YAML file, a struct
 * or flags (config/), starting the runtime, the metrics server and the
 * control socket as dledger-actors does, groups at run time, and the
 * trampolines that turn the runtime's callbacks into the API's.
 * See embed_internal.h for who owns what.
 */
#include "embed/embed_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_log.h"
#include "control/control.h"
#include "metrics/metrics.h"
#include "raft/raft.h"
#include "transport/transport.h"

#ifndef DLEDGER_VERSION
#define DLEDGER_VERSION "0.0.0"
#endif

_Thread_local const struct dl_node *dl_in_callback;

/* The public enum and the core's must agree (dl_member_status.role). */
_Static_assert((int)DL_ROLE_FOLLOWER == (int)RAFT_FOLLOWER &&
		       (int)DL_ROLE_PRECANDIDATE == (int)RAFT_PRECANDIDATE &&
		       (int)DL_ROLE_CANDIDATE == (int)RAFT_CANDIDATE &&
		       (int)DL_ROLE_LEADER == (int)RAFT_LEADER,
	       "dl_role follows raft_role");
_Static_assert(DL_NAME_MAX == TP_NAME_MAX && DL_ADDR_MAX == TP_ADDR_MAX, "name limits agree");
_Static_assert(DL_MAX_BATCH == RT_MAX_LOCAL_ENTRIES, "batch limits agree");

DL_API const char *dl_version(void)
{
	return DLEDGER_VERSION;
}

DL_API const char *dl_node_args_usage(void)
{
	return cfg_flags_usage();
}

DL_API const char *dl_role_name(enum dl_role r)
{
	return raft_role_name((uint8_t)r);
}

void dl_msg_copy(char *errmsg, size_t len, const char *msg)
{
	if (errmsg != NULL && len > 0)
		snprintf(errmsg, len, "%s", msg ? msg : "");
}

bool dl_group_name_ok(const char *group)
{
	return group != NULL && group[0] != '\0' && strlen(group) <= DL_NAME_MAX;
}

/* ---- trampolines: the runtime's callbacks into the API's ------------------- */

static void apply_tramp(void *arg, const char *group, const char *id, uint64_t index,
			const struct sto_view *v)
{
	(void)id;
	struct dl_grp *g = arg;
	DL_ASSERT(g->h.apply != NULL && index >= 1);
	struct dl_entry e = {.index = index, .term = v->term, .data = v->data, .len = v->len,
			     .noop = v->type == RAFT_ENTRY_NOOP};
	dl_in_callback = g->node;
	g->h.apply(g->h.arg, group, &e);
	dl_in_callback = NULL;
}

static void role_tramp(void *arg, const char *group, const char *id, uint8_t role, uint64_t term,
		       const char *leader)
{
	struct dl_grp *g = arg;
	DL_ASSERT(g->h.on_role != NULL && role <= RAFT_LEADER);
	dl_in_callback = g->node;
	g->h.on_role(g->h.arg, group, id, (enum dl_role)role, term, leader);
	dl_in_callback = NULL;
}

static void node_role_tramp(void *arg, const char *group, const char *id, uint8_t role,
			    uint64_t term, const char *leader)
{
	struct dl_node *n = arg;
	DL_ASSERT(n->opts.on_role != NULL && role <= RAFT_LEADER);
	dl_in_callback = n;
	n->opts.on_role(n->opts.role_arg, group, id, (enum dl_role)role, term, leader);
	dl_in_callback = NULL;
}

/* ---- the group table ------------------------------------------------------ */

static struct dl_grp *grp_find(struct dl_node *n, const char *group, size_t *pos)
{
	for (size_t i = 0; i < n->n_grps; i++) {
		if (strcmp(n->grps[i]->group, group) == 0) {
			if (pos)
				*pos = i;
			return n->grps[i];
		}
	}
	return NULL;
}

static struct dl_grp *grp_new(struct dl_node *n, const char *group, const char *id)
{
	if (n->n_grps == n->cap_grps) {
		size_t cap = n->cap_grps ? n->cap_grps * 2 : 8;
		struct dl_grp **a = realloc(n->grps, cap * sizeof(*a));
		if (a == NULL)
			return NULL;
		n->grps = a;
		n->cap_grps = cap;
	}
	struct dl_grp *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->node = n;
	snprintf(g->group, sizeof(g->group), "%s", group);
	snprintf(g->id, sizeof(g->id), "%s", id);
	n->grps[n->n_grps++] = g;
	return g;
}

static void grp_drop(struct dl_node *n, size_t pos)
{
	DL_ASSERT(pos < n->n_grps);
	struct dl_grp *g = n->grps[pos];
	if (g->from_api)
		cfg_group_free(&g->cg);
	free(g);
	memmove(n->grps + pos, n->grps + pos + 1, (n->n_grps - pos - 1) * sizeof(n->grps[0]));
	n->n_grps--;
}

int dl_member_of(struct dl_node *n, const char *group, char *id, struct rt_node **rt)
{
	if (n == NULL || !dl_group_name_ok(group))
		return DL_EINVAL;
	pthread_mutex_lock(&n->mu);
	*rt = n->state == DL_STARTED ? n->rt : NULL;
	struct dl_grp *g = grp_find(n, group, NULL);
	bool known = g != NULL && g->running;
	if (known)
		snprintf(id, DL_NAME_MAX + 1, "%s", g->id);
	pthread_mutex_unlock(&n->mu);
	if (*rt == NULL)
		return DL_ECLOSED;
	if (known)
		return DL_OK;
	/* A group the control socket added: find it in the runtime's status. */
	uint32_t total = 0;
	(void)rt_node_status(*rt, NULL, 0, &total);
	if (total == 0)
		return DL_ENOTFOUND;
	struct rt_member_status *st = malloc((size_t)total * sizeof(*st));
	if (st == NULL)
		return DL_ENOMEM;
	uint32_t k = rt_node_status(*rt, st, total, NULL);
	int rc = DL_ENOTFOUND;
	for (uint32_t i = 0; i < k && rc != DL_OK; i++) {
		if (strcmp(st[i].group, group) == 0) {
			snprintf(id, DL_NAME_MAX + 1, "%s", st[i].id);
			rc = DL_OK;
		}
	}
	free(st);
	return rc;
}

/* ---- opening -------------------------------------------------------------- */

static void node_free(struct dl_node *n)
{
	if (n == NULL)
		return;
	ctl_close(n->ctl);
	while (n->n_grps > 0)
		grp_drop(n, n->n_grps - 1);
	free(n->grps);
	cfg_free(&n->cfg);
	cfg_free(&n->defaults);
	tp_tls_free(n->tls);
	pthread_mutex_destroy(&n->mu);
	free(n);
}

static int log_level_of(enum cfg_log_level l)
{
	switch (l) {
	case CFG_LOG_ERROR: return DL_LOG_ERROR;
	case CFG_LOG_WARN: return DL_LOG_WARN;
	case CFG_LOG_DEBUG: return DL_LOG_DEBUG;
	default: return DL_LOG_INFO;
	}
}

/* What every way of opening shares, once `n->cfg` and `n->defaults` hold
 * the same configuration: the log level, the TLS files (checked now), the
 * control socket's groups.yaml, the group table. */
static int node_open_common(struct dl_node *n, struct dl_errctx *err)
{
	dl_log_set_level((enum dl_log_level)log_level_of(n->cfg.node.log_level));
	if (n->cfg.node.tls_cert_file != NULL) {
		int rc = tp_tls_load(n->cfg.node.tls_cert_file, n->cfg.node.tls_key_file,
				     n->cfg.node.tls_ca_file, true, &n->tls, err);
		if (rc != 0) {
			char msg[sizeof(err->msg)];
			snprintf(msg, sizeof(msg), "%s", err->msg[0] ? err->msg : dl_strerror(rc));
			return dl_errf(err, DL_ECONFIG, "TLS (tlsCertFile, tlsKeyFile, tlsCaFile): %s",
				       msg);
		}
	}
	if (!n->opts.no_control_socket) {
		/* Refuses a socket a live node holds; applies groups.yaml. */
		int rc = ctl_open(&n->cfg, &n->ctl, err);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < n->cfg.n_groups; i++)
		if (grp_new(n, n->cfg.groups[i].group, n->cfg.groups[i].self_id) == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
	return DL_OK;
}

enum src_kind { SRC_FILE, SRC_BUFFER, SRC_ARGS };

struct src {
	enum src_kind kind;
	const char *path;
	const char *buf;
	size_t len;
	int argc;
	char *const *argv;
};

static int src_load(const struct src *s, struct cfg *out, struct dl_errctx *err)
{
	switch (s->kind) {
	case SRC_FILE: return cfg_load_file(s->path, out, err);
	case SRC_BUFFER: return cfg_load_buffer(s->path, s->buf, s->len, out, err);
	default: return cfg_from_args(s->argc, s->argv, out, err);
	}
}

static int node_open(const struct src *s, const struct dl_node_options *opts, dl_node **out,
		     char *errmsg, size_t errmsg_len)
{
	if (out == NULL)
		return DL_EINVAL;
	*out = NULL;
	struct dl_errctx err = {{0}};
	struct dl_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return DL_ENOMEM;
	pthread_mutex_init(&n->mu, NULL);
	if (opts != NULL)
		n->opts = *opts;
	int rc = src_load(s, &n->cfg, &err);
	if (rc == 0)
		rc = src_load(s, &n->defaults, &err);
	if (rc == 0)
		rc = node_open_common(n, &err);
	if (rc != 0) {
		dl_msg_copy(errmsg, errmsg_len, err.msg[0] ? err.msg : dl_strerror(rc));
		node_free(n);
		return rc;
	}
	dl_msg_copy(errmsg, errmsg_len, "");
	*out = n;
	return DL_OK;
}

DL_API int dl_node_open_file(const char *path, const struct dl_node_options *opts, dl_node **out,
			     char *errmsg, size_t errmsg_len)
{
	if (path == NULL) {
		dl_msg_copy(errmsg, errmsg_len, "no configuration file given");
		return DL_EINVAL;
	}
	struct src s = {.kind = SRC_FILE, .path = path};
	return node_open(&s, opts, out, errmsg, errmsg_len);
}

DL_API int dl_node_open_args(int argc, char *const *argv, const struct dl_node_options *opts,
			     dl_node **out, char *errmsg, size_t errmsg_len)
{
	if (argv == NULL || argc < 1 || out == NULL)
		return DL_EINVAL;
	*out = NULL;
	/* --help and --version leave nothing open. */
	struct cfg probe;
	struct dl_errctx err = {{0}};
	int rc = cfg_from_args(argc, argv, &probe, &err);
	if (rc == CFG_HELP || rc == CFG_VERSION)
		return rc == CFG_HELP ? DL_ARGS_HELP : DL_ARGS_VERSION;
	if (rc != 0) {
		dl_msg_copy(errmsg, errmsg_len, err.msg[0] ? err.msg : dl_strerror(rc));
		return rc;
	}
	cfg_free(&probe);
	struct src s = {.kind = SRC_ARGS, .argc = argc, .argv = argv};
	return node_open(&s, opts, out, errmsg, errmsg_len);
}

/* ---- a struct as the YAML the loader checks --------------------------------- */

struct ybuf {
	char *p;
	size_t len, cap;
	bool bad; /* out of memory */
};

static void yb_put(struct ybuf *b, const char *s, size_t n)
{
	if (b->bad)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->bad = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void yb_str(struct ybuf *b, const char *s)
{
	yb_put(b, s, strlen(s));
}

/* A key is a plain YAML key ([A-Za-z0-9_]); a value any printable text
 * (single-quoted, quotes doubled), so no value can become structure. */
static int yb_kv(struct ybuf *b, const char *indent, const char *key, const char *value,
		 struct dl_errctx *err)
{
	if (key == NULL || key[0] == '\0' || value == NULL)
		return dl_errf(err, DL_EINVAL, "a key or value is NULL or empty");
	for (const char *c = key; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= '0' && *c <= '9') || *c == '_'))
			return dl_errf(err, DL_ECONFIG, "key '%.64s': not a configuration key", key);
	for (const char *c = value; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return dl_errf(err, DL_ECONFIG, "key '%s': the value has a control character",
				       key);
	yb_str(b, indent);
	yb_str(b, key);
	yb_str(b, ": '");
	for (const char *c = value; *c; c++) {
		if (*c == '\'')
			yb_str(b, "''");
		else
			yb_put(b, c, 1);
	}
	yb_str(b, "'\n");
	return 0;
}

static int yb_group(struct ybuf *b, const struct dl_group_config *g, struct dl_errctx *err)
{
	if (g->group == NULL || g->id == NULL || g->peers == NULL)
		return dl_errf(err, DL_ECONFIG, "a group needs group, id and peers");
	if (g->n_keys > 0 && g->keys == NULL)
		return dl_errf(err, DL_EINVAL, "n_keys without keys");
	yb_str(b, "  - ");
	int rc = yb_kv(b, "", "group", g->group, err);
	if (rc == 0)
		rc = yb_kv(b, "    ", "id", g->id, err);
	if (rc == 0)
		rc = yb_kv(b, "    ", "peers", g->peers, err);
	if (rc == 0 && g->preferred_leader_id != NULL)
		rc = yb_kv(b, "    ", "preferredLeaderId", g->preferred_leader_id, err);
	for (size_t k = 0; rc == 0 && k < g->n_keys; k++)
		rc = yb_kv(b, "    ", g->keys[k].key, g->keys[k].value, err);
	return rc;
}

static int yb_config(struct ybuf *b, const struct dl_node_config *c, struct dl_errctx *err)
{
	if ((c->n_keys > 0 && c->keys == NULL) || (c->n_groups > 0 && c->groups == NULL))
		return dl_errf(err, DL_EINVAL, "a count without its array");
	int rc = 0;
	if (c->store_base_dir != NULL)
		rc = yb_kv(b, "", "storeBaseDir", c->store_base_dir, err);
	for (size_t k = 0; rc == 0 && k < c->n_keys; k++)
		rc = yb_kv(b, "", c->keys[k].key, c->keys[k].value, err);
	yb_str(b, c->n_groups ? "DLedgerConfigs:\n" : "DLedgerConfigs: []\n");
	for (size_t i = 0; rc == 0 && i < c->n_groups; i++)
		rc = yb_group(b, &c->groups[i], err);
	if (rc == 0 && b->bad)
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
	return rc;
}

DL_API int dl_node_open(const struct dl_node_config *cfg, const struct dl_node_options *opts,
			dl_node **out, char *errmsg, size_t errmsg_len)
{
	if (cfg == NULL || out == NULL)
		return DL_EINVAL;
	*out = NULL;
	struct ybuf b = {0};
	struct dl_errctx err = {{0}};
	int rc = yb_config(&b, cfg, &err);
	if (rc != 0) {
		dl_msg_copy(errmsg, errmsg_len, err.msg);
		free(b.p);
		return rc;
	}
	struct src s = {.kind = SRC_BUFFER, .path = "dl_node_config", .buf = b.p, .len = b.len};
	rc = node_open(&s, opts, out, errmsg, errmsg_len);
	free(b.p);
	return rc;
}

DL_API int dl_group_set_handlers(dl_node *n, const char *group, const struct dl_group_handlers *h)
{
	if (n == NULL || h == NULL || !dl_group_name_ok(group))
		return DL_EINVAL;
	pthread_mutex_lock(&n->mu);
	struct dl_grp *g = grp_find(n, group, NULL);
	int rc = g == NULL ? DL_ENOTFOUND : n->state != DL_OPENED ? DL_EBUSY : DL_OK;
	if (rc == DL_OK)
		g->h = *h;
	pthread_mutex_unlock(&n->mu);
	return rc;
}

/* ---- starting ----------------------------------------------------------------- */

/* Starts one member of the table; its rt config borrows from `c` and `cg`. */
static int grp_start(struct dl_node *n, struct dl_grp *g, const struct cfg *c,
		     const struct cfg_group *cg, struct dl_errctx *err)
{
	DL_ASSERT(!g->running && n->rt != NULL);
	struct rt_member_config mc;
	ctl_member_config(c, cg, &mc);
	if (g->h.apply != NULL) {
		mc.apply = apply_tramp;
		mc.apply_arg = g;
		mc.applied_index = g->h.applied_index;
	}
	if (g->h.on_role != NULL) {
		mc.on_role = role_tramp;
		mc.role_arg = g;
	}
	int rc = rt_node_add(n->rt, &mc, err);
	if (rc == 0)
		g->running = true;
	return rc;
}

/* Every member: the configuration's, then those added before the start. */
static int start_members(struct dl_node *n, struct dl_errctx *err)
{
	for (size_t i = 0; i < n->n_grps; i++) {
		struct dl_grp *g = n->grps[i];
		const struct cfg *c = g->from_api ? &n->defaults : &n->cfg;
		const struct cfg_group *cg = &g->cg;
		if (!g->from_api) {
			cg = NULL;
			for (size_t k = 0; k < n->cfg.n_groups && cg == NULL; k++)
				if (strcmp(n->cfg.groups[k].group, g->group) == 0)
					cg = &n->cfg.groups[k];
			DL_ASSERT(cg != NULL);
		}
		memset(err, 0, sizeof(*err));
		int rc = grp_start(n, g, c, cg, err);
		if (rc != 0) {
			/* A member that cannot start (a damaged store) stops the
			 * node: running without it would hide the damage. */
			char msg[sizeof(err->msg)];
			snprintf(msg, sizeof(msg), "%s", err->msg[0] ? err->msg : dl_strerror(rc));
			dl_log(DL_LOG_ERROR, g->group, g->id, "cannot start: %s", msg);
			return dl_errf(err, rc, "%s/%s: cannot start: %s", g->group, g->id, msg);
		}
	}
	return 0;
}

static int node_start_locked(struct dl_node *n, struct dl_errctx *err)
{
	if (n->cfg.node.self_host == NULL)
		return dl_errf(err, DL_ECONFIG, "no group gives this node's address");
	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	cfg_format_addr(n->cfg.node.self_host, n->cfg.node.self_port, nc.listen_addr,
			sizeof(nc.listen_addr));
	if (n->cfg.node.max_frame_bytes != 0)
		nc.max_frame_bytes = n->cfg.node.max_frame_bytes;
	nc.tls = n->tls;
	if (n->opts.on_role != NULL) {
		nc.on_role = node_role_tramp;
		nc.role_arg = n;
	}
	int rc = rt_node_start(&nc, &n->rt, err);
	if (rc != 0) {
		dl_log(DL_LOG_ERROR, NULL, NULL, "cannot start: %s", err->msg);
		return rc;
	}
	if (n->cfg.node.metrics_address != NULL) {
		rc = met_start(n->cfg.node.metrics_address, n->rt, &n->met, err);
		if (rc != 0) {
			dl_log(DL_LOG_ERROR, NULL, NULL, "cannot serve metrics: %s", err->msg);
			return rc;
		}
	}
	dl_log(DL_LOG_INFO, NULL, NULL, "libdledger %s: %zu groups from %s", DLEDGER_VERSION,
	       n->cfg.n_groups, n->cfg.source ? n->cfg.source : "flags");
	rc = start_members(n, err);
	if (rc != 0)
		return rc;
	/* From here the control thread owns `n->cfg` until ctl_close(). */
	if (n->ctl != NULL) {
		rc = ctl_start(n->ctl, n->rt, err);
		if (rc != 0) {
			dl_log(DL_LOG_ERROR, NULL, NULL, "cannot start: %s", err->msg);
			return rc;
		}
		n->ctl_started = true;
	}
	return 0;
}

DL_API int dl_node_start(dl_node *n, char *errmsg, size_t errmsg_len)
{
	if (n == NULL || dl_in_callback != NULL)
		return DL_EINVAL;
	pthread_mutex_lock(&n->mu);
	struct dl_errctx err = {{0}};
	int rc = n->state != DL_OPENED || n->rt != NULL ? DL_EINVAL : node_start_locked(n, &err);
	struct rt_node *failed_rt = NULL;
	struct met_server *failed_met = NULL;
	if (rc == 0) {
		n->state = DL_STARTED;
	} else if (n->rt != NULL) {
		/* Nothing keeps running after a failed start; stopped below,
		 * unlocked, since a member's callback may be waiting for `mu`. */
		failed_rt = n->rt;
		failed_met = n->met;
		n->rt = NULL;
		n->met = NULL;
		n->state = DL_CLOSING;
		for (size_t i = 0; i < n->n_grps; i++)
			n->grps[i]->running = false;
	}
	pthread_mutex_unlock(&n->mu);
	if (failed_rt != NULL) {
		ctl_close(n->ctl);
		n->ctl = NULL;
		met_stop(failed_met);
		rt_node_stop(failed_rt);
	}
	dl_msg_copy(errmsg, errmsg_len, rc == 0 ? "" : err.msg[0] ? err.msg : dl_strerror(rc));
	return rc;
}

DL_API int dl_node_reload(dl_node *n)
{
	if (n == NULL || dl_in_callback != NULL)
		return DL_EINVAL;
	pthread_mutex_lock(&n->mu);
	/* The control server says why when there is no file to reload. */
	bool ok = n->state == DL_STARTED && n->ctl_started;
	struct ctl_server *ctl = n->ctl;
	pthread_mutex_unlock(&n->mu);
	if (!ok)
		return DL_EINVAL;
	/* Serialized with the control socket's requests, on this thread. */
	ctl_reload_signal(ctl);
	return DL_OK;
}

DL_API void dl_node_close(dl_node *n)
{
	if (n == NULL)
		return;
	if (dl_in_callback != NULL) {
		/* Joining the actor we run on would never return. */
		dl_log(DL_LOG_ERROR, NULL, NULL,
		       "dl_node_close called from a callback: ignored (docs/EMBEDDING.md)");
		return;
	}
	pthread_mutex_lock(&n->mu);
	n->state = DL_CLOSING;
	struct rt_node *rt = n->rt;
	n->rt = NULL;
	pthread_mutex_unlock(&n->mu);
	/* The order of dledger-actors: control socket, metrics, members. */
	ctl_close(n->ctl);
	n->ctl = NULL;
	met_stop(n->met);
	n->met = NULL;
	rt_node_stop(rt); /* joins every actor: no callback runs after this */
	node_free(n);
}

/* ---- groups at run time --------------------------------------------------------- */

static int group_build(struct dl_node *n, const struct dl_group_config *gc, struct cfg_group *out,
		       struct dl_errctx *err)
{
	if (gc->group == NULL || gc->id == NULL || gc->peers == NULL)
		return dl_errf(err, DL_ECONFIG, "a group needs group, id and peers");
	if (gc->n_keys > 0 && gc->keys == NULL)
		return dl_errf(err, DL_EINVAL, "n_keys without keys");
	if (gc->n_keys > 60)
		return dl_errf(err, DL_ECONFIG, "too many keys (at most 60)");
	struct cfg_kv kv[64];
	size_t k = 0;
	kv[k++] = (struct cfg_kv){"group", gc->group};
	kv[k++] = (struct cfg_kv){"id", gc->id};
	kv[k++] = (struct cfg_kv){"peers", gc->peers};
	if (gc->preferred_leader_id != NULL)
		kv[k++] = (struct cfg_kv){"preferredLeaderId", gc->preferred_leader_id};
	for (size_t i = 0; i < gc->n_keys; i++) {
		if (gc->keys[i].key == NULL || gc->keys[i].value == NULL)
			return dl_errf(err, DL_EINVAL, "a key or value is NULL");
		kv[k++] = (struct cfg_kv){gc->keys[i].key, gc->keys[i].value};
	}
	/* n->defaults is ours alone: the control thread never sees it. */
	int rc = cfg_group_from_kv(&n->defaults.node, kv, k, out, err);
	if (rc != 0)
		return rc;
	rc = cfg_check_new_group(&n->defaults, out, err);
	if (rc != 0)
		cfg_group_free(out);
	return rc;
}

DL_API int dl_group_add(dl_node *n, const struct dl_group_config *gc,
			const struct dl_group_handlers *h, char *errmsg, size_t errmsg_len)
{
	if (n == NULL || gc == NULL || dl_in_callback != NULL)
		return DL_EINVAL;
	struct dl_errctx err = {{0}};
	pthread_mutex_lock(&n->mu);
	struct cfg_group cg;
	memset(&cg, 0, sizeof(cg));
	int rc = n->state == DL_CLOSING ? DL_ECLOSED : group_build(n, gc, &cg, &err);
	struct dl_grp *g = NULL;
	if (rc == 0 && grp_find(n, cg.group, NULL) != NULL)
		rc = dl_errf(&err, DL_EEXIST, "group '%s' is already on this node", cg.group);
	if (rc == 0 && (g = grp_new(n, cg.group, cg.self_id)) == NULL)
		rc = dl_errf(&err, DL_ENOMEM, "out of memory");
	if (rc == 0) {
		g->from_api = true;
		g->cg = cg; /* the table owns it now */
		memset(&cg, 0, sizeof(cg));
		if (h != NULL)
			g->h = *h;
		if (n->state == DL_STARTED) {
			rc = grp_start(n, g, &n->defaults, &g->cg, &err);
			if (rc != 0) {
				size_t pos = 0;
				(void)grp_find(n, g->group, &pos);
				grp_drop(n, pos);
			}
		}
	}
	cfg_group_free(&cg);
	pthread_mutex_unlock(&n->mu);
	dl_msg_copy(errmsg, errmsg_len, rc == 0 ? "" : err.msg[0] ? err.msg : dl_strerror(rc));
	return rc;
}

DL_API int dl_group_remove(dl_node *n, const char *group)
{
	if (n == NULL || !dl_group_name_ok(group) || dl_in_callback != NULL)
		return DL_EINVAL;
	char id[DL_NAME_MAX + 1];
	struct rt_node *rt = NULL;
	int rc = dl_member_of(n, group, id, &rt);
	if (rc != 0)
		return rc;
	/* Joins the member's actor: none of its callbacks runs after this. */
	rc = rt_node_remove(rt, group, id);
	pthread_mutex_lock(&n->mu);
	size_t pos = 0;
	struct dl_grp *g = grp_find(n, group, &pos);
	if (g != NULL && strcmp(g->id, id) == 0)
		grp_drop(n, pos);
	pthread_mutex_unlock(&n->mu);
	return rc;
}
