/*
 * ops.c - op slots: release and completion, the per-connection queue links
 * (the window counts live in the conn), targets and the leader hint, and
 * encoding a request (client_internal.h has the order of the files and who
 * owns what; everything here runs under the client's `mu`, except
 * cl_encode_req() on a NEW op, which only its submitter touches).
 */
#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

void cl_detailf(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, DETAIL_MAX, fmt, ap);
	va_end(ap);
}

/* ---- slots ---------------------------------------------------------------------- */

void cl_op_release(struct dl_client *c, struct op *op)
{
	DL_ASSERT(op->state != OP_FREE);
	DL_ASSERT(c->n_active > 0 && op->slot < c->cap && &c->ops[op->slot] == op);
	free(op->req);
	op->req = NULL;
	op->state = OP_FREE;
	op->next_free = c->free_head;
	c->free_head = op->slot;
	c->n_active--;
	DL_ASSERT(c->n_active < c->cap);
	pthread_cond_signal(&c->slot_cv);
}

/* Frees the slot and fills `cp` for the callback (run it without `mu`).
 * `msg` (may be NULL) goes to the callback. */
void cl_op_finish(struct dl_client *c, struct op *op, int rc, nng_msg *msg,
		      const struct tp_hdr *h, struct completion *cp)
{
	cl_op_detach(c, op);
	memset(cp, 0, sizeof(*cp));
	cp->kind = op->kind;
	cp->rc = rc;
	memcpy(cp->detail, rc != 0 ? op->detail : "", rc != 0 ? DETAIL_MAX : 1);
	snprintf(cp->member, sizeof(cp->member), "%s", op->id);
	cp->msg = msg;
	if (h)
		cp->h = *h;
	cp->done = op->done;
	cp->append_fn = op->append_fn;
	cp->arg = op->arg;
	cl_op_release(c, op);
}

void cl_run_completion(struct completion *cp)
{
	if (cp->append_fn) {
		struct dl_client_result r = {.code = cp->rc, .member = cp->member,
					     .detail = cp->detail};
		if (cp->rc == 0) {
			r.first_index = cp->ar.first_index;
			r.term = cp->ar.term;
			r.n = cp->ar.n;
		}
		cp->append_fn(cp->arg, &r);
		if (cp->msg)
			nng_msg_free(cp->msg);
		return;
	}
	DL_ASSERT(cp->done != NULL);
	cp->done(cp->arg, cp);
}

/* ---- targets ------------------------------------------------------------------------ */

void cl_set_target(struct dl_client *c, struct op *op, const char *id, const char *addr,
		       int peer)
{
	DL_ASSERT(peer < (int)c->peers.n_members);
	snprintf(op->id, sizeof(op->id), "%s", id);
	snprintf(op->addr, sizeof(op->addr), "%s", addr);
	op->peer = peer;
}

void cl_set_target_peer(struct dl_client *c, struct op *op, int i)
{
	DL_ASSERT(i >= 0 && (uint32_t)i < c->peers.n_members);
	cl_set_target(c, op, c->peers.members[i].id, c->addrs[i], i);
}

void cl_hint_set(struct dl_client *c, const char *id, const char *addr, int peer)
{
	c->hint = true;
	c->hint_peer = peer;
	snprintf(c->hint_id, sizeof(c->hint_id), "%s", id);
	snprintf(c->hint_addr, sizeof(c->hint_addr), "%s", addr);
}

/* Forgets the leader if it is the member at `addr`. */
void cl_hint_drop(struct dl_client *c, const char *addr)
{
	if (c->hint && strcmp(c->hint_addr, addr) == 0)
		c->hint = false;
}

/* ---- encoding ------------------------------------------------------------------------- */

/* Appends `n` bodies of an earlier encoding of this op (views into `old`). */
static int entries_from_frame(const uint8_t *old, size_t old_len, uint32_t n,
			      struct raft_entry *ents)
{
	size_t off = 0;
	struct tp_hdr h;
	uint32_t got = 0;
	int rc = tp_frame_begin(old, old_len, &off);
	if (rc == 0)
		rc = tp_frame_next(old, old_len, &off, &h);
	if (rc == 0)
		rc = tp_decode_append(&h, ents, n, &got);
	if (rc == 0 && got != n)
		rc = DL_EPROTO;
	return rc;
}

/* Encodes the op's request for its target and rid into op->req. For an
 * append, the bodies come from `bufs` the first time and from the previous
 * encoding after. */
int cl_encode_req(struct dl_client *c, struct op *op, const struct dl_client_buf *bufs)
{
	struct tp_fb fb;
	tp_fb_init(&fb, c->o.max_frame_bytes);
	struct tp_addr a = {.group = c->group, .target = op->id, .sender = "",
			    .request_id = op->rid};
	struct raft_entry stack[16];
	struct raft_entry *ents = stack;
	int rc = 0;
	switch (op->kind) {
	case OP_APPEND:
		if (op->n_entries > 16)
			ents = malloc(op->n_entries * sizeof(*ents));
		if (ents == NULL) {
			rc = DL_ENOMEM;
			break;
		}
		if (bufs != NULL) {
			for (uint32_t i = 0; i < op->n_entries; i++)
				ents[i] = (struct raft_entry){.data = bufs[i].data,
							      .len = (uint32_t)bufs[i].len};
		} else {
			rc = entries_from_frame(op->req, op->req_len, op->n_entries, ents);
		}
		if (rc == 0)
			rc = tp_fb_add_append(&fb, &a, ents, op->n_entries);
		if (ents != stack)
			free(ents);
		break;
	case OP_GET: rc = tp_fb_add_get(&fb, &a, &op->get); break;
	case OP_META: rc = tp_fb_add_metadata(&fb, &a); break;
	case OP_NODE_META:
		a.group = "";
		rc = tp_fb_add_metadata(&fb, &a);
		break;
	}
	if (rc == 0) {
		free(op->req);
		op->req = tp_fb_take(&fb, &op->req_len);
		DL_ASSERT(op->req != NULL && op->req_len > 0);
	} else {
		cl_detailf(op->detail, "cannot encode the request: %s", dl_strerror(rc));
	}
	tp_fb_free(&fb);
	return rc;
}

/* A new attempt: a new request id, so an answer to the old one is dropped. */
int cl_new_attempt(struct dl_client *c, struct op *op)
{
	DL_ASSERT(op->slot < c->cap && op->state != OP_FREE);
	c->seq++;
	op->rid = (c->seq << SLOT_BITS) | op->slot;
	DL_ASSERT((op->rid & SLOT_MASK) == op->slot);
	return cl_encode_req(c, op, NULL);
}

/* ---- per-connection queue and window ---------------------------------------------- */

void cl_wq_push(struct dl_client *c, struct conn *cn, struct op *op)
{
	DL_ASSERT(op->state == OP_NEW && op->conn == cn);
	DL_ASSERT(op->slot < c->cap && (cn->wq_tail == NO_SLOT) == (cn->wq_head == NO_SLOT));
	op->wq_next = NO_SLOT;
	op->wq_prev = cn->wq_tail;
	if (cn->wq_tail != NO_SLOT)
		c->ops[cn->wq_tail].wq_next = op->slot;
	else
		cn->wq_head = op->slot;
	cn->wq_tail = op->slot;
}

static void wq_remove(struct dl_client *c, struct conn *cn, struct op *op)
{
	DL_ASSERT(op->state == OP_PARKED && op->conn == cn);
	DL_ASSERT(cn->wq_head != NO_SLOT && cn->wq_tail != NO_SLOT);
	if (op->wq_prev != NO_SLOT)
		c->ops[op->wq_prev].wq_next = op->wq_next;
	else
		cn->wq_head = op->wq_next;
	if (op->wq_next != NO_SLOT)
		c->ops[op->wq_next].wq_prev = op->wq_prev;
	else
		cn->wq_tail = op->wq_prev;
	op->wq_prev = op->wq_next = NO_SLOT;
}

/* Takes the op off its connection (window or queue): it is NEW again,
 * in the hands of the caller, which gives it its next state. */
void cl_op_detach(struct dl_client *c, struct op *op)
{
	DL_ASSERT(op->state != OP_FREE && op->slot < c->cap);
	if (op->state == OP_SENT) {
		DL_ASSERT(op->conn != NULL && op->conn->n_sent > 0);
		DL_ASSERT(op->conn->n_sent <= CONN_WINDOW);
		op->conn->n_sent--;
	} else if (op->state == OP_PARKED) {
		wq_remove(c, op->conn, op);
	}
	if (op->state == OP_SENT || op->state == OP_PARKED || op->state == OP_BACKOFF)
		op->state = OP_NEW;
	DL_ASSERT(op->state == OP_NEW);
}
