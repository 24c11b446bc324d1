/*
 * mailbox.c - see mailbox.h. Ownership: `tail` belongs to the consumer;
 * `head`, each node's `next`, `sleeping` and `depth` are shared through
 * atomics, with the orders explained at each use.
 */
#include "runtime/mailbox.h"

#include <errno.h>
#include <linux/futex.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/dl_err.h"
#include "common/dl_time.h"

void mb_init(struct mailbox *mb, uint64_t max_depth)
{
	DL_ASSERT(max_depth >= 1);
	mb->max_depth = max_depth;
	atomic_store_explicit(&mb->stub.next, NULL, memory_order_relaxed);
	atomic_store_explicit(&mb->head, &mb->stub, memory_order_relaxed);
	mb->tail = &mb->stub;
	atomic_store_explicit(&mb->sleeping, 0, memory_order_relaxed);
	atomic_store_explicit(&mb->depth, 0, memory_order_relaxed);
	atomic_store_explicit(&mb->wakes, 0, memory_order_relaxed);
}

static void push_node(struct mailbox *mb, struct mb_node *n)
{
	atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
	/* acq_rel: release publishes n's contents to the consumer that will
	 * reach n through prev->next; acquire orders us after the previous
	 * producer's store of prev. */
	struct mb_node *prev = atomic_exchange_explicit(&mb->head, n, memory_order_acq_rel);
	/* release: pairs with the consumer's acquire load of next in mb_pop. */
	atomic_store_explicit(&prev->next, n, memory_order_release);
}

static void futex_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Reserves one place of the bound: false when max_depth are taken. Relaxed:
 * the depth orders nothing; the queue's own atomics publish the nodes. */
static bool reserve(struct mailbox *mb)
{
	uint64_t d = atomic_fetch_add_explicit(&mb->depth, 1, memory_order_relaxed);
	if (d < mb->max_depth)
		return true;
	atomic_fetch_sub_explicit(&mb->depth, 1, memory_order_relaxed);
	return false;
}

void mb_wake(struct mailbox *mb)
{
	/* seq_cst: the pushes before and this load must not be reordered
	 * against the consumer's store of sleeping=1 and its emptiness check
	 * (Dekker): either it sees our nodes or we see it asleep. */
	if (atomic_load_explicit(&mb->sleeping, memory_order_seq_cst) == 1 &&
	    atomic_exchange_explicit(&mb->sleeping, 0, memory_order_seq_cst) == 1) {
		atomic_fetch_add_explicit(&mb->wakes, 1, memory_order_relaxed);
		futex_wake(&mb->sleeping);
	}
}

void mb_push(struct mailbox *mb, struct mb_node *n)
{
	atomic_fetch_add_explicit(&mb->depth, 1, memory_order_relaxed);
	push_node(mb, n);
	mb_wake(mb);
}

bool mb_offer(struct mailbox *mb, struct mb_node *n)
{
	if (!reserve(mb))
		return false;
	push_node(mb, n);
	mb_wake(mb);
	return true;
}

bool mb_offer_lazy(struct mailbox *mb, struct mb_node *n)
{
	if (!reserve(mb))
		return false;
	push_node(mb, n);
	return true;
}

struct mb_node *mb_pop(struct mailbox *mb)
{
	struct mb_node *tail = mb->tail;
	/* acquire: pairs with the producer's release store of next. */
	struct mb_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (tail == &mb->stub) {
		if (next == NULL)
			return NULL;
		mb->tail = next;
		tail = next;
		next = atomic_load_explicit(&next->next, memory_order_acquire);
	}
	if (next != NULL) {
		DL_ASSERT(tail != &mb->stub);
		mb->tail = next;
		atomic_fetch_sub_explicit(&mb->depth, 1, memory_order_relaxed);
		return tail;
	}
	struct mb_node *head = atomic_load_explicit(&mb->head, memory_order_acquire);
	if (tail != head)
		return NULL; /* a producer is between exchange and link */
	/* tail is the last node: put the stub behind it so tail can go. */
	push_node(mb, &mb->stub);
	next = atomic_load_explicit(&tail->next, memory_order_acquire);
	if (next != NULL) {
		mb->tail = next;
		atomic_fetch_sub_explicit(&mb->depth, 1, memory_order_relaxed);
		return tail;
	}
	return NULL;
}

bool mb_empty(struct mailbox *mb)
{
	struct mb_node *tail = mb->tail;
	return tail == &mb->stub &&
	       atomic_load_explicit(&tail->next, memory_order_acquire) == NULL &&
	       atomic_load_explicit(&mb->head, memory_order_acquire) == &mb->stub;
}

void mb_wait(struct mailbox *mb, uint64_t deadline_ns)
{
	atomic_store_explicit(&mb->sleeping, 1, memory_order_seq_cst);
	/* seq_cst: see mb_wake. */
	if (!mb_empty(mb)) {
		atomic_store_explicit(&mb->sleeping, 0, memory_order_relaxed);
		return;
	}
	struct timespec ts, *tsp = NULL;
	if (deadline_ns != 0) {
		uint64_t now = dl_now_ns();
		if (deadline_ns <= now) {
			atomic_store_explicit(&mb->sleeping, 0, memory_order_relaxed);
			return;
		}
		uint64_t d = deadline_ns - now;
		ts.tv_sec = (time_t)(d / 1000000000ull);
		ts.tv_nsec = (long)(d % 1000000000ull);
		tsp = &ts;
	}
	/* Sleeps only while the word is still 1: a push that cleared it
	 * before we got here makes this return at once. */
	syscall(SYS_futex, (uint32_t *)&mb->sleeping, FUTEX_WAIT_PRIVATE, 1, tsp, NULL, 0);
	atomic_store_explicit(&mb->sleeping, 0, memory_order_relaxed);
}
