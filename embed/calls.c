/*
 * calls.c - the embedding API's calls on a running node: appends (the
 * runtime's local proposals, never the network), reads, leadership
 * transfer, status.
 *
 * Threads: a completion runs on the member's actor thread. A blocking call
 * waits on a condition variable (CLOCK_MONOTONIC, common/dl_time.h) for the completion; the
 * waiter is shared by the two threads and reference-counted, so a caller
 * that timed out leaves and the late completion frees it.
 * See embed_internal.h for who owns what.
 */
#include "embed/embed_internal.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dl_time.h"
#include "raft/raft.h"
#include "storage/storage.h"

/* ---- asynchronous appends ------------------------------------------------------ */

struct async_call {
	struct dl_node *node;
	dl_append_fn cb;
	void *arg;
};

static void result_of(const struct rt_propose_result *r, struct dl_append_result *out)
{
	memset(out, 0, sizeof(*out));
	out->code = r->code;
	out->index = r->first_index;
	out->term = r->term;
	out->count = r->n;
	snprintf(out->leader_id, sizeof(out->leader_id), "%s", r->leader_id);
	snprintf(out->leader_addr, sizeof(out->leader_addr), "%s", r->leader_addr);
	if (r->code == DL_ENOTLEADER)
		snprintf(out->message, sizeof(out->message), "%s%s%s%s%s", r->message,
			 r->leader_id[0] ? ": the leader is " : ": no leader known",
			 r->leader_id, r->leader_addr[0] ? " at " : "", r->leader_addr);
	else
		snprintf(out->message, sizeof(out->message), "%s", r->message);
}

static void async_done(void *arg, const struct rt_propose_result *r)
{
	struct async_call *c = arg;
	struct dl_append_result res;
	result_of(r, &res);
	dl_in_callback = c->node;
	c->cb(c->arg, &res);
	dl_in_callback = NULL;
	free(c);
}

/* Checks the entries and posts them; `cb(arg, r)` on the actor thread. */
static int post_append(struct dl_node *n, const char *group, const struct dl_buf *entries,
		       size_t count, rt_propose_fn cb, void *arg)
{
	if (entries == NULL || count == 0 || count > DL_MAX_BATCH)
		return DL_EINVAL;
	/* The same two fields: handed on without a copy (rt_node_propose copies). */
	_Static_assert(sizeof(struct dl_buf) == sizeof(struct rt_buf) &&
			       offsetof(struct dl_buf, data) == offsetof(struct rt_buf, data) &&
			       offsetof(struct dl_buf, len) == offsetof(struct rt_buf, len),
		       "dl_buf is rt_buf");
	char id[DL_NAME_MAX + 1];
	struct rt_node *rt = NULL;
	int rc = dl_member_of(n, group, id, &rt);
	if (rc != 0)
		return rc;
	return rt_node_propose(rt, group, id, (const struct rt_buf *)entries, (uint32_t)count, cb,
			       arg);
}

DL_API int dl_append_async(dl_node *n, const char *group, const struct dl_buf *entries,
			   size_t count, dl_append_fn cb, void *arg)
{
	if (n == NULL || cb == NULL)
		return DL_EINVAL;
	struct async_call *c = malloc(sizeof(*c));
	if (c == NULL)
		return DL_ENOMEM;
	*c = (struct async_call){n, cb, arg};
	int rc = post_append(n, group, entries, count, async_done, c);
	if (rc != 0)
		free(c);
	return rc;
}

/* ---- waiting for a completion ---------------------------------------------------- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	_Atomic int refs; /* the caller and the completion */
	bool done;
	struct dl_append_result res; /* appends */
	int code;                    /* reads */
	struct dl_entry_copy copy;   /* reads: data owned here until taken */
};

static struct waiter *waiter_new(void)
{
	struct waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	pthread_mutex_init(&w->mu, NULL);
	if (dl_cond_init_monotonic(&w->cv) != 0) {
		pthread_mutex_destroy(&w->mu);
		free(w);
		return NULL;
	}
	atomic_init(&w->refs, 2);
	return w;
}

static void waiter_put(struct waiter *w)
{
	/* acq_rel: the last holder sees every write of the other before it
	 * frees (pairs with the other holder's release here). */
	if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(w->copy.data);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

static void waiter_signal(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	waiter_put(w);
}

/* Waits for the completion until timeout_ms; true when it came. Holds
 * w->mu on return (the caller reads the result, then unlocks). */
static bool waiter_wait(struct waiter *w, uint32_t timeout_ms)
{
	struct timespec ts = dl_timespec_at(dl_now_ns() + (uint64_t)timeout_ms * 1000000ull);
	pthread_mutex_lock(&w->mu);
	int rv = 0;
	while (!w->done && rv == 0)
		rv = pthread_cond_timedwait(&w->cv, &w->mu, &ts);
	return w->done;
}

static void append_done(void *arg, const struct rt_propose_result *r)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	result_of(r, &w->res);
	pthread_mutex_unlock(&w->mu);
	waiter_signal(w);
}

DL_API int dl_append(dl_node *n, const char *group, const struct dl_buf *entries, size_t count,
		     uint32_t timeout_ms, struct dl_append_result *res)
{
	if (n == NULL || dl_in_callback != NULL)
		return DL_EINVAL;
	struct waiter *w = waiter_new();
	if (w == NULL)
		return DL_ENOMEM;
	int rc = post_append(n, group, entries, count, append_done, w);
	if (rc != 0) {
		waiter_put(w); /* never shared: both references are ours */
		waiter_put(w);
		if (res != NULL) {
			memset(res, 0, sizeof(*res));
			res->code = rc;
			snprintf(res->message, sizeof(res->message), "%s", dl_strerror(rc));
		}
		return rc;
	}
	bool done = waiter_wait(w, timeout_ms);
	rc = done ? w->res.code : DL_ETIMEDOUT;
	if (res != NULL) {
		if (done) {
			*res = w->res;
		} else {
			memset(res, 0, sizeof(*res));
			res->code = DL_ETIMEDOUT;
			snprintf(res->message, sizeof(res->message),
				 "no outcome within %u ms; the entries may still commit", timeout_ms);
		}
	}
	pthread_mutex_unlock(&w->mu);
	waiter_put(w);
	return rc;
}

/* ---- reads ----------------------------------------------------------------------- */

static void read_done(void *arg, int code, uint64_t index, const struct sto_view *v)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	w->code = code;
	if (code == 0) {
		DL_ASSERT(v != NULL);
		w->copy.data = malloc(v->len ? v->len : 1);
		if (w->copy.data == NULL) {
			w->code = DL_ENOMEM;
		} else {
			if (v->len > 0)
				memcpy(w->copy.data, v->data, v->len);
			w->copy.index = index;
			w->copy.term = v->term;
			w->copy.len = v->len;
			w->copy.noop = v->type == RAFT_ENTRY_NOOP;
		}
	}
	pthread_mutex_unlock(&w->mu);
	waiter_signal(w);
}

DL_API int dl_read(dl_node *n, const char *group, uint64_t index, uint32_t timeout_ms,
		   struct dl_entry_copy *out)
{
	if (n == NULL || out == NULL || index == 0 || dl_in_callback != NULL)
		return DL_EINVAL;
	memset(out, 0, sizeof(*out));
	char id[DL_NAME_MAX + 1];
	struct rt_node *rt = NULL;
	int rc = dl_member_of(n, group, id, &rt);
	if (rc != 0)
		return rc;
	struct waiter *w = waiter_new();
	if (w == NULL)
		return DL_ENOMEM;
	/* Past the member's commit index the member itself waits for the
	 * commit, as long as we do (up to its bound). */
	uint32_t wait_ms = timeout_ms < TP_GET_WAIT_MAX_MS ? timeout_ms : TP_GET_WAIT_MAX_MS;
	rc = rt_node_read(rt, group, id, index, wait_ms, read_done, w);
	if (rc != 0) {
		waiter_put(w); /* never shared: both references are ours */
		waiter_put(w);
		return rc;
	}
	bool done = waiter_wait(w, timeout_ms);
	rc = done ? w->code : DL_ETIMEDOUT;
	if (done && rc == 0) {
		*out = w->copy; /* the caller owns data now */
		w->copy.data = NULL;
	}
	pthread_mutex_unlock(&w->mu);
	waiter_put(w);
	return rc;
}

/* ---- leadership and status --------------------------------------------------------- */

DL_API int dl_transfer_leader(dl_node *n, const char *group, const char *to_id)
{
	if (n == NULL || to_id == NULL)
		return DL_EINVAL;
	char id[DL_NAME_MAX + 1];
	struct rt_node *rt = NULL;
	int rc = dl_member_of(n, group, id, &rt);
	if (rc != 0)
		return rc;
	return rt_node_transfer(rt, group, id, to_id);
}

static void status_of(const struct rt_member_status *s, struct dl_member_status *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->group, sizeof(out->group), "%s", s->group);
	snprintf(out->id, sizeof(out->id), "%s", s->id);
	snprintf(out->leader, sizeof(out->leader), "%s", s->leader);
	out->role = (enum dl_role)s->role;
	out->term = s->term;
	out->first_index = s->first_index;
	out->last_index = s->last_index;
	out->commit_index = s->commit_index;
	out->durable_index = s->durable_index;
	out->pending_appends = s->pending_appends;
	out->voter = s->voter;
	out->failed = s->failed;
}

DL_API int dl_group_status(dl_node *n, const char *group, struct dl_member_status *out)
{
	if (n == NULL || out == NULL)
		return DL_EINVAL;
	char id[DL_NAME_MAX + 1];
	struct rt_node *rt = NULL;
	int rc = dl_member_of(n, group, id, &rt);
	if (rc != 0)
		return rc;
	struct rt_member_status *s = malloc(sizeof(*s)); /* large: not on an actor's stack */
	if (s == NULL)
		return DL_ENOMEM;
	rc = rt_node_member_status(rt, group, id, s);
	if (rc == 0)
		status_of(s, out);
	free(s);
	return rc;
}

DL_API size_t dl_node_status(dl_node *n, struct dl_member_status *out, size_t cap, size_t *total)
{
	if (total != NULL)
		*total = 0;
	if (n == NULL || (out == NULL && cap > 0))
		return 0;
	pthread_mutex_lock(&n->mu);
	struct rt_node *rt = n->state == DL_STARTED ? n->rt : NULL;
	pthread_mutex_unlock(&n->mu);
	if (rt == NULL)
		return 0;
	uint32_t all = 0;
	(void)rt_node_status(rt, NULL, 0, &all);
	uint32_t want = cap < all ? (uint32_t)cap : all;
	struct rt_member_status *st = want ? malloc((size_t)want * sizeof(*st)) : NULL;
	if (want > 0 && st == NULL)
		return 0;
	uint32_t k = want ? rt_node_status(rt, st, want, &all) : 0;
	for (uint32_t i = 0; i < k; i++)
		status_of(&st[i], &out[i]);
	free(st);
	if (total != NULL)
		*total = all;
	return k;
}
