/*
 * timer.c - the timer thread: deadlines, backoff ends, connect timeouts,
 * members taken for down when silent (client_internal.h has
 * the order of the files and which thread owns what).
 */
#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "common/dl_time.h"

static void timeout_detail(struct dl_client *c, struct op *op)
{
	uint32_t ms = c->o.timeout_ms;
	char who[TP_NAME_MAX + TP_ADDR_MAX + 8];
	if (op->id[0])
		snprintf(who, sizeof(who), "%s at %s", op->id, op->addr);
	else
		snprintf(who, sizeof(who), "%s", op->addr);
	bool waiting = op->state == OP_BACKOFF || (op->state == OP_PARKED && !op->conn->up);
	/* Still looking for a leader (op->last is cleared when one is named):
	 * the deadline may fall while an attempt is out, but what the caller
	 * learns is that none was found, whichever state the op is in. */
	bool searching = !op->pinned && op->last[0] != '\0';
	const char *what = op->kind == OP_APPEND ? "leader" : "member";
	if (op->state == OP_SENT && searching)
		cl_detailf(op->detail, "no %s of group %s reachable within %u ms (last: %s; then "
			"no answer yet from %s)", what, c->group, ms, op->last, who);
	else if (op->state == OP_SENT)
		cl_detailf(op->detail, "no answer from %s within %u ms", who, ms);
	else if (op->state == OP_PARKED && op->conn->up)
		cl_detailf(op->detail, "no answer from %s within %u ms (queued behind %u requests)",
			who, ms, op->conn->n_sent);
	else if (waiting && searching)
		cl_detailf(op->detail, "no %s of group %s reachable within %u ms (last: %s)", what,
			c->group, ms, op->last);
	else if (op->state == OP_PARKED)
		cl_detailf(op->detail, "cannot connect to %s within %u ms", who, ms);
	else if (op->last[0])
		cl_detailf(op->detail, "no answer within %u ms (last: %s)", ms, op->last);
	else
		cl_detailf(op->detail, "no answer within %u ms", ms);
}

/* The deadline of `op` passed with its request unanswered at its member.
 * If the attempt was out for half the timeout or more, the member is taken
 * for down for one timeout (a leader cut off by a partition keeps its TCP
 * connections, so nng reports nothing): the client forgets it as leader,
 * asks the others first, does not follow them back to it (they name it
 * until they elect another), and moves the requests waiting on it,
 * unless bound to it, to the others now rather than at their deadlines.
 * An answer from it ends the suspicion early. */
static void suspect_silent(struct dl_client *c, struct op *op, uint64_t now)
{
	struct conn *cn = op->conn;
	DL_ASSERT(op->state == OP_SENT && cn != NULL);
	DL_ASSERT(op->sent_ns != 0 && cn->c == c);
	if (op->pinned || now < op->sent_ns + ms_ns(c->o.timeout_ms) / 2)
		return; /* asked only just now: that tells nothing */
	cn->suspect_until_ns = now + ms_ns(c->o.timeout_ms);
	cl_hint_drop(c, cn->addr);
	char why[64];
	snprintf(why, sizeof(why), "another request got no answer within %u ms",
		 c->o.timeout_ms);
	for (uint32_t i = 0; i < c->cap; i++) {
		struct op *o = &c->ops[i];
		if (o == op || o->conn != cn || o->pinned || o->fail_rc != 0 ||
		    (o->state != OP_SENT && o->state != OP_PARKED))
			continue;
		int rc = cl_retry_later(c, o, now, why);
		if (rc != 0)
			cl_fail_later(c, o, rc);
	}
}

/* An op about to be sent again whose member was taken for down since it
 * was picked goes to the next member instead. */
static int avoid_suspect(struct dl_client *c, struct op *op, uint64_t now)
{
	if (op->pinned || c->peers.n_members == 0 || !cl_addr_suspect(c, op->addr, now))
		return 0;
	int next = cl_member_after(c, op->peer, now);
	if (cl_addr_suspect(c, c->addrs[next], now))
		return 0; /* all are: ask it anyway */
	cl_set_target_peer(c, op, next);
	return cl_new_attempt(c, op);
}

/* One op's due work (under mu). Returns true when it finished into `cp`. */
static bool timer_op(struct dl_client *c, struct op *op, uint64_t now, struct completion *cp)
{
	DL_ASSERT(op->state == OP_SENT || op->state == OP_PARKED || op->state == OP_BACKOFF);
	DL_ASSERT(op->state == OP_BACKOFF || op->conn != NULL);
	int rc = 0;
	if (op->fail_rc != 0) {
		rc = op->fail_rc;
	} else if (now >= op->deadline_ns) {
		timeout_detail(c, op);
		if (op->state == OP_SENT)
			suspect_silent(c, op, now);
		rc = DL_ETIMEDOUT;
	} else if (op->state == OP_BACKOFF && now >= op->wake_ns) {
		rc = avoid_suspect(c, op, now);
		if (rc == 0)
			rc = cl_transmit(c, op, now);
	} else if (op->state == OP_PARKED && !op->conn->up && now >= op->wake_ns) {
		op->conn->failed = true;
		if (op->pinned) { /* no one else to ask */
			if (op->id[0])
				cl_detailf(op->detail, "cannot connect to %s at %s within %u ms",
					op->id, op->addr, c->o.connect_timeout_ms);
			else
				cl_detailf(op->detail, "cannot connect to %s within %u ms", op->addr,
					c->o.connect_timeout_ms);
			rc = DL_ETIMEDOUT;
		} else {
			rc = cl_retry_later(c, op, now, "cannot connect");
		}
	}
	if (rc == 0)
		return false;
	cl_op_finish(c, op, rc, NULL, NULL, cp);
	return true;
}

void *cl_timer_main(void *arg)
{
	struct dl_client *c = arg;
	cl_tl_client = c;
	pthread_mutex_lock(&c->mu);
	while (!c->closing) {
		c->timer_wake_ns = 0;
		c->kick_min_ns = NO_WAKE;
		uint64_t next = NO_WAKE;
		for (uint32_t i = 0; i < c->cap; i++) {
			struct op *op = &c->ops[i];
			if (op->state != OP_SENT && op->state != OP_PARKED &&
			    op->state != OP_BACKOFF)
				continue;
			struct completion cp;
			if (timer_op(c, op, now_ns(), &cp)) {
				pthread_mutex_unlock(&c->mu);
				cl_run_completion(&cp);
				pthread_mutex_lock(&c->mu);
				continue;
			}
			uint64_t w = op->deadline_ns;
			if (op->state == OP_BACKOFF ||
			    (op->state == OP_PARKED && !op->conn->up))
				w = min_u64(w, op->wake_ns);
			next = min_u64(next, w);
		}
		next = min_u64(next, c->kick_min_ns);
		if (c->closing)
			break;
		if (next <= now_ns())
			continue;
		c->timer_wake_ns = next;
		if (next == NO_WAKE) {
			pthread_cond_wait(&c->timer_cv, &c->mu);
		} else {
			struct timespec ts = dl_timespec_at(next);
			pthread_cond_timedwait(&c->timer_cv, &c->mu, &ts);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}
