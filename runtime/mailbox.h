/*
 * mailbox.h - an actor's inbox: a lock-free, intrusive, multi-producer
 * single-consumer queue (Vyukov's MPSC node queue) with a futex wake-up.
 *
 * Threads: any number of producers call mb_push(); exactly one consumer
 * (the owning actor thread) calls mb_pop() and mb_wait(). Producers never
 * block and never spin on the consumer; the consumer sleeps only when the
 * queue is empty and is woken only when it sleeps (one futex wake per
 * sleep, not per message).
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
	_Atomic uint64_t depth;         /* approximate, for metrics */
};

void mb_init(struct mailbox *mb);

/* Any thread. Never blocks. `n` must not be in any queue. */
void mb_push(struct mailbox *mb, struct mb_node *n);

/* Any thread: like mb_push() but never wakes the consumer; the node is
 * seen at its next wake-up. For mail that only matters once the actor
 * runs anyway (a heartbeat answer while idle). */
void mb_push_lazy(struct mailbox *mb, struct mb_node *n);

/* Consumer only. Returns the oldest node or NULL when empty (or when a
 * producer is between its two steps: the node shows up on a later pop). */
struct mb_node *mb_pop(struct mailbox *mb);

/* Consumer only: sleep until a push or until `deadline_ns` on
 * CLOCK_MONOTONIC (0: no deadline). Returns at once if mail is waiting. */
void mb_wait(struct mailbox *mb, uint64_t deadline_ns);

/* Consumer only: true when nothing is queued. */
bool mb_empty(struct mailbox *mb);

#endif
