/*
 * mailbox.h - an actor's inbox: a lock-free, intrusive, multi-producer
 * single-consumer queue (Vyukov's MPSC node queue) with a futex wake-up.
 *
 * Threads: any number of producers call mb_push(); exactly one consumer
 * (the owning actor thread) calls mb_pop() and mb_wait(). Producers never
 * block and never spin on the consumer; the consumer sleeps only when the
 * queue is empty and is woken only when it sleeps (one futex wake per
 * sleep, not per message): while it runs, `sleeping` is 0 and a push
 * makes no system call. A producer with several mails for one consumer
 * (the router, with a frame's messages to one member) queues them with
 * mb_offer_lazy() and calls mb_wake() once after the last, so the consumer
 * wakes once and finds them all.
 *
 * Why our own queue rather than liburcu's wfcqueue: wfcqueue's atomics are
 * inline assembly that ThreadSanitizer cannot see, so under TSan every mail
 * handed from the router to an actor would be reported as a data race, and
 * the TSan run of the runtime is part of our test command. Ours is C11
 * atomics. Measured with bench/mailbox_bench.c on the 2-core machine:
 * wfcqueue is faster under contention (about 200 against 70 million
 * push+pop per second with 4 producers; with one producer ours is faster,
 * 160 against 123 without the depth counter, 87 with it), and both are
 * some hundred times faster than an actor consumes mail (well under a
 * million messages per second), so the queue is never the bottleneck.
 *
 * Bound: mb_offer() refuses a node when `max_depth` nodes are queued (the
 * caller answers busy or drops, and counts it); mb_push() never refuses and
 * is for the few mails an owner must always get (its durable report and its
 * stop mail, one of each at most in the queue), which may take the depth
 * past the bound by those few. The depth is reserved before a node is
 * linked and released after it is popped, so more than max_depth offered
 * nodes are never queued at once.
 */
#ifndef DLEDGER_RT_MAILBOX_H
#define DLEDGER_RT_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct mb_node {
	_Atomic(struct mb_node *) next;
};

struct mailbox {
	_Atomic(struct mb_node *) head; /* producers swap themselves in here */
	struct mb_node *tail;           /* consumer only */
	struct mb_node stub;
	_Atomic uint32_t sleeping;      /* futex word: 1 while the consumer sleeps */
	_Atomic uint64_t depth;         /* queued and reserved nodes (metrics, the bound) */
	_Atomic uint64_t wakes;         /* futex wake-ups made by producers (tests, metrics) */
	uint64_t max_depth;             /* set at init, read only */
};

/* `max_depth` >= 1: the most nodes mb_offer() lets wait at once. */
void mb_init(struct mailbox *mb, uint64_t max_depth);

/* Any thread. Never blocks. `n` must not be in any queue. Never refuses:
 * only for mail of which few can be queued at once (see "Bound"). */
void mb_push(struct mailbox *mb, struct mb_node *n);

/* Any thread. Never blocks. Like mb_push(), but returns false, and does not
 * queue `n` (the caller still owns it), when max_depth nodes are queued. */
bool mb_offer(struct mailbox *mb, struct mb_node *n);

/* Any thread: like mb_offer() but never wakes the consumer; the node is
 * seen at its next wake-up. For mail that only matters once the actor
 * runs anyway (a heartbeat answer while idle). */
bool mb_offer_lazy(struct mailbox *mb, struct mb_node *n);

/* Any thread: wakes the consumer if it sleeps (or is about to: it then
 * returns from mb_wait at once); nothing when it runs. Never blocks. For
 * after mb_offer_lazy() of mail that matters now. */
void mb_wake(struct mailbox *mb);

/* Consumer only. Returns the oldest node or NULL when empty (or when a
 * producer is between its two steps: the node shows up on a later pop). */
struct mb_node *mb_pop(struct mailbox *mb);

/* Consumer only: sleep until a push or until `deadline_ns` on
 * CLOCK_MONOTONIC (0: no deadline). Returns at once if mail is waiting. */
void mb_wait(struct mailbox *mb, uint64_t deadline_ns);

/* Consumer only: true when nothing is queued. */
bool mb_empty(struct mailbox *mb);

#endif
