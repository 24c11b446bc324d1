/*
 * node.c - the node: rt_node_* (start, add, remove, stop, status, stats).
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/dl_hist.h"
#include "common/dl_log.h"

void rt_member_config_defaults(struct rt_member_config *mc)
{
	memset(mc, 0, sizeof(*mc));
	mc->heartbeat_ms = 100;
	mc->election_ms = 1000;
	mc->max_pending_appends = 10000;
	mc->max_pending_bytes = 64ull * 1024 * 1024;
	mc->max_append_entries = 1024;
	mc->max_append_bytes = 1024 * 1024;
	mc->max_inflight_msgs = 64;
	mc->clean_interval_ms = 10000;
	sto_config_defaults(&mc->store);
}

void rt_node_config_defaults(struct rt_node_config *nc)
{
	memset(nc, 0, sizeof(*nc));
	nc->max_frame_bytes = TP_DEFAULT_MAX_FRAME_BYTES;
	nc->stack_bytes = 256 * 1024;
}

/* "127.x.y.z:port", "[::1]:port" or "localhost:port": only this machine can
 * connect. */
static bool addr_is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]:", 6) == 0 ||
	       strncmp(addr, "localhost:", 10) == 0;
}

int rt_node_start(const struct rt_node_config *nc, struct rt_node **out, struct dl_errctx *err)
{
	*out = NULL;
	struct rt_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	n->cfg = *nc;
	if (getrandom(&n->grid_seed, sizeof(n->grid_seed), GRND_NONBLOCK) != sizeof(n->grid_seed))
		n->grid_seed = dl_now_ns() * 0x9e3779b97f4a7c15ull;
	if (n->cfg.stack_bytes < 64 * 1024)
		n->cfg.stack_bytes = 64 * 1024;
	pthread_mutex_init(&n->mu, NULL);
	struct sto_flusher_config fc;
	sto_flusher_config_defaults(&fc);
	fc.max_stores = RT_MAX_MEMBERS;
	dl_hist_init(&n->fsync_latency);
	dl_hist_init(&n->commit_latency);
	fc.sync_latency = &n->fsync_latency;
	int rc = sto_flusher_start(&fc, &n->flusher, err);
	if (rc != 0)
		goto err_free;
	struct tp_config tc;
	tp_config_defaults(&tc);
	tc.listen_addr = nc->listen_addr;
	tc.max_frame_bytes = nc->max_frame_bytes;
	tc.tls = nc->tls;
	tc.deliver = rt_deliver;
	tc.on_conn = rt_on_conn;
	tc.arg = n;
	rc = tp_endpoint_open(&tc, &n->ep, err);
	if (rc != 0)
		goto err_flusher;
	if (nc->tls != NULL) {
		dl_log(DL_LOG_INFO, NULL, NULL,
		       "node listening on %s with mutual TLS (certificate %s); Raft only from "
		       "node certificates (OU=%s)",
		       nc->listen_addr, tp_tls_subject(nc->tls), TP_TLS_NODE_OU);
	} else {
		dl_log(DL_LOG_INFO, NULL, NULL, "node listening on %s", nc->listen_addr);
		if (!addr_is_loopback(nc->listen_addr))
			dl_log(DL_LOG_WARN, NULL, NULL,
			       "listening on %s without TLS: anyone who can reach this address can "
			       "send Raft messages and client requests; set tlsCertFile, tlsKeyFile "
			       "and tlsCaFile (docs/OPERATIONS.md, \"Securing a cluster\")",
			       nc->listen_addr);
	}
	*out = n;
	return 0;

err_flusher:
	sto_flusher_stop(n->flusher);
err_free:
	pthread_mutex_destroy(&n->mu);
	free(n);
	return rc;
}

int rt_node_add(struct rt_node *n, const struct rt_member_config *mc, struct dl_errctx *err)
{
	pthread_mutex_lock(&n->mu);
	int rc;
	struct rt_actor *a = NULL;
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	uint32_t pos;
	if (atomic_load_explicit(&n->closing, memory_order_relaxed)) {
		rc = dl_errf(err, DL_ECLOSED, "node is stopping");
		goto out;
	}
	if (rt_table_find(t, mc->group, mc->self_id, &pos) != NULL) {
		rc = dl_errf(err, DL_EEXIST, "%s/%s is already running", mc->group, mc->self_id);
		goto out;
	}
	uint32_t count = t ? t->n : 0;
	if (count >= RT_MAX_MEMBERS) {
		rc = dl_errf(err, DL_EBUSY, "node already runs %d members", RT_MAX_MEMBERS);
		goto out;
	}
	rc = rt_actor_new(n, mc, &a, err);
	if (rc != 0)
		goto out;
	struct rt_table *nt = malloc(sizeof(*nt) + (count + 1) * sizeof(nt->a[0]));
	if (nt == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto out;
	}
	nt->n = count + 1;
	DL_ASSERT(pos <= count);
	for (uint32_t i = 0, k = 0; i < nt->n; i++)
		nt->a[i] = i == pos ? a : t->a[k++];
	rc = rt_actor_start(n, a, err);
	if (rc != 0) {
		free(nt);
		goto out;
	}
	rt_table_swap(n, nt);
	a = NULL;
	dl_log(DL_LOG_INFO, mc->group, mc->self_id, "started (%u members, preferred leader %s)",
	       mc->n_peers, mc->preferred_id[0] ? mc->preferred_id : "none");
out:
	pthread_mutex_unlock(&n->mu);
	if (a != NULL)
		rt_actor_stop(a);
	return rc;
}

/* Takes the actor out of the table; returns it (the caller stops it). */
static struct rt_actor *unregister(struct rt_node *n, const char *group, const char *id)
{
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	uint32_t pos;
	struct rt_actor *a = rt_table_find(t, group, id, &pos);
	if (a == NULL)
		return NULL;
	struct rt_table *nt = malloc(sizeof(*nt) + t->n * sizeof(nt->a[0]));
	if (nt == NULL)
		return NULL;
	DL_ASSERT(t->n >= 1 && pos < t->n && t->a[pos] == a);
	nt->n = t->n - 1;
	for (uint32_t i = 0, k = 0; i < t->n; i++)
		if (i != pos)
			nt->a[k++] = t->a[i];
	rt_table_swap(n, nt);
	return a;
}

int rt_node_remove(struct rt_node *n, const char *group, const char *id)
{
	pthread_mutex_lock(&n->mu);
	struct rt_actor *a = unregister(n, group, id);
	pthread_mutex_unlock(&n->mu);
	if (a == NULL)
		return DL_ENOTFOUND;
	rt_actor_stop(a);
	return 0;
}

void rt_node_stop(struct rt_node *n)
{
	if (n == NULL)
		return;
	atomic_store_explicit(&n->closing, true, memory_order_relaxed);
	struct rt_node_stats st;
	rt_node_stats(n, &st);
	dl_log(DL_LOG_INFO, NULL, NULL,
	       "node stopping: frames in %llu out %llu, messages in %llu out %llu, decode errors "
	       "%llu, unknown group or member %llu, rejected %llu, dropped sends %llu, not a "
	       "member %llu, not a node %llu, mailbox full %llu",
	       (unsigned long long)st.frames_in, (unsigned long long)st.frames_out,
	       (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out,
	       (unsigned long long)st.decode_errors, (unsigned long long)st.unknown_target,
	       (unsigned long long)st.rejected, (unsigned long long)st.dropped_sends,
	       (unsigned long long)st.not_member, (unsigned long long)st.not_node,
	       (unsigned long long)st.mailbox_full);
	tp_endpoint_quiesce(n->ep);
	pthread_mutex_lock(&n->mu);
	struct rt_table *t = atomic_exchange_explicit(&n->table, NULL, memory_order_seq_cst);
	pthread_mutex_unlock(&n->mu);
	if (t != NULL) {
		/* Stop all actors at once, then wait for each. */
		for (uint32_t i = 0; i < t->n; i++)
			rt_actor_signal_stop(t->a[i]);
		for (uint32_t i = 0; i < t->n; i++)
			rt_actor_stop(t->a[i]);
		free(t);
	}
	tp_endpoint_close(n->ep);
	sto_flusher_stop(n->flusher);
	pthread_mutex_destroy(&n->mu);
	dl_log(DL_LOG_INFO, NULL, NULL, "node stopped");
	free(n);
}

uint32_t rt_node_status(struct rt_node *n, struct rt_member_status *out, uint32_t cap,
			uint32_t *total)
{
	pthread_mutex_lock(&n->mu);
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	uint32_t k = 0, count = t ? t->n : 0;
	for (uint32_t i = 0; i < count && k < cap; i++) {
		pthread_mutex_lock(&t->a[i]->st_mu);
		out[k++] = t->a[i]->st;
		pthread_mutex_unlock(&t->a[i]->st_mu);
	}
	pthread_mutex_unlock(&n->mu);
	if (total)
		*total = count;
	return k;
}

int rt_node_member_status(struct rt_node *n, const char *group, const char *id,
			  struct rt_member_status *out)
{
	pthread_mutex_lock(&n->mu);
	struct rt_actor *a = rt_table_find(atomic_load_explicit(&n->table, memory_order_relaxed), group,
					id, NULL);
	if (a != NULL) {
		pthread_mutex_lock(&a->st_mu);
		*out = a->st;
		pthread_mutex_unlock(&a->st_mu);
	}
	pthread_mutex_unlock(&n->mu);
	return a != NULL ? 0 : DL_ENOTFOUND;
}

int rt_node_transfer(struct rt_node *n, const char *group, const char *id, const char *to_id)
{
	pthread_mutex_lock(&n->mu);
	int rc = 0;
	struct rt_actor *a = rt_table_find(atomic_load_explicit(&n->table, memory_order_relaxed), group,
					id, NULL);
	raft_id target = a ? rt_member_rid(a, to_id) : 0;
	if (a == NULL)
		rc = DL_ENOTFOUND;
	else if (target == 0)
		rc = DL_EINVAL;
	if (rc == 0) {
		struct mail *m = calloc(1, sizeof(*m));
		if (m == NULL) {
			rc = DL_ENOMEM;
		} else {
			m->kind = MAIL_TRANSFER;
			m->target = target;
			if (!mb_offer(&a->mb, &m->node)) {
				free(m);
				rc = DL_EBUSY;
			}
		}
	}
	pthread_mutex_unlock(&n->mu);
	return rc;
}

void rt_node_stats(struct rt_node *n, struct rt_node_stats *st)
{
	memset(st, 0, sizeof(*st));
	struct tp_stats ts;
	tp_endpoint_stats(n->ep, &ts);
	st->frames_in = ts.frames_in;
	st->msgs_in = ts.msgs_in;
	st->frames_out = ts.frames_out;
	st->msgs_out = ts.msgs_out;
	st->bytes_in = ts.bytes_in;
	st->bytes_out = ts.bytes_out;
	st->decode_errors = ts.decode_errors;
	st->unknown_target = ts.unknown_target;
	st->dropped_sends = ts.dropped_sends;
	st->rejected = ts.rejected;
	st->not_member = atomic_load_explicit(&n->not_member, memory_order_relaxed);
	st->not_node = atomic_load_explicit(&n->not_node, memory_order_relaxed);
	st->mailbox_full = atomic_load_explicit(&n->mailbox_full, memory_order_relaxed);
	st->tls_conns_node = ts.conns_node;
	st->tls_conns_client = ts.conns_client;
	st->tls_conns_refused = ts.conns_refused;
	st->tls_listener_restarts = ts.listener_restarts;
	st->tls_dialer_restarts = ts.dialer_restarts;
	st->hello_timeouts = ts.hello_timeouts;
	st->peer_connects = ts.peer_connects;
	st->peer_dial_failures = ts.peer_dial_failures;
	st->peer_send_timeouts = ts.peer_send_timeouts;
	struct sto_flusher_stats fs;
	sto_flusher_get_stats(n->flusher, &fs);
	st->flush_passes = fs.passes;
	st->file_syncs = fs.file_syncs;
	pthread_mutex_lock(&n->mu);
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	st->members = t ? t->n : 0;
	pthread_mutex_unlock(&n->mu);
}

const struct dl_hist *rt_node_fsync_latency(const struct rt_node *n)
{
	return &n->fsync_latency;
}

const struct dl_hist *rt_node_commit_latency(const struct rt_node *n)
{
	return &n->commit_latency;
}

/* ---- local requests (local.c carries them out on the actor) ------------------ */

/* Offers a local request to the member's mailbox; frees it on failure. */
static int local_post(struct rt_node *n, const char *group, const char *id, struct rt_local *l)
{
	pthread_mutex_lock(&n->mu);
	int rc = 0;
	struct rt_actor *a = NULL;
	if (atomic_load_explicit(&n->closing, memory_order_relaxed))
		rc = DL_ECLOSED;
	else if ((a = rt_table_find(atomic_load_explicit(&n->table, memory_order_relaxed), group,
				    id, NULL)) == NULL)
		rc = DL_ENOTFOUND;
	else if (!mb_offer(&a->mb, &l->mail.node)) {
		atomic_fetch_add_explicit(&a->mailbox_full, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&n->mailbox_full, 1, memory_order_relaxed);
		rc = DL_EBUSY;
	}
	/* Under n->mu the actor cannot be removed between the find and the
	 * offer; once offered, the actor answers it (even when stopping). */
	pthread_mutex_unlock(&n->mu);
	if (rc != 0)
		free(l);
	return rc;
}

int rt_node_propose(struct rt_node *n, const char *group, const char *id, const struct rt_buf *ents,
		    uint32_t count, rt_propose_fn cb, void *arg)
{
	if (n == NULL || group == NULL || id == NULL || cb == NULL || count == 0 ||
	    count > RT_MAX_LOCAL_ENTRIES || ents == NULL)
		return DL_EINVAL;
	size_t bytes = 0;
	for (uint32_t i = 0; i < count; i++) {
		if (ents[i].data == NULL && ents[i].len > 0)
			return DL_EINVAL;
		if (ents[i].len > UINT32_MAX / 2) /* the store's limit is checked on the actor */
			return DL_ETOOBIG;
		bytes += ents[i].len;
	}
	size_t head = sizeof(struct rt_local) + (size_t)count * sizeof(struct raft_entry);
	struct rt_local *l = malloc(head + bytes);
	if (l == NULL)
		return DL_ENOMEM;
	*l = (struct rt_local){.mail = {.kind = MAIL_PROPOSE}, .propose_cb = cb, .arg = arg,
			       .n = count, .bytes = bytes,
			       .ents = (struct raft_entry *)(l + 1)};
	uint8_t *body = (uint8_t *)l + head;
	for (uint32_t i = 0; i < count; i++) {
		if (ents[i].len > 0)
			memcpy(body, ents[i].data, ents[i].len);
		l->ents[i] = (struct raft_entry){.type = RAFT_ENTRY_NORMAL, .data = body,
						 .len = (uint32_t)ents[i].len};
		body += ents[i].len;
	}
	DL_ASSERT(body == (uint8_t *)l + head + bytes);
	return local_post(n, group, id, l);
}

int rt_node_read(struct rt_node *n, const char *group, const char *id, uint64_t index,
		 uint32_t wait_ms, rt_read_fn cb, void *arg)
{
	if (n == NULL || group == NULL || id == NULL || cb == NULL || index == 0 ||
	    wait_ms > TP_GET_WAIT_MAX_MS)
		return DL_EINVAL;
	struct rt_local *l = malloc(sizeof(*l));
	if (l == NULL)
		return DL_ENOMEM;
	*l = (struct rt_local){.mail = {.kind = MAIL_READ}, .read_cb = cb, .arg = arg,
			       .index = index, .wait_ms = wait_ms};
	return local_post(n, group, id, l);
}
