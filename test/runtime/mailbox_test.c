/*
 * The mailbox (runtime/mailbox.h) on its own: several producers and one
 * consumer, the consumer's wake-ups, the bound. A plain program on tt.h,
 * so that it also runs under ThreadSanitizer (meson suite 'tsan').
 *
 * No sleeping for luck: every wait is on a condition, with a deadline, and
 * every loop is bounded.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dl_time.h"
#include "runtime/mailbox.h"
#include "test/lib/tt.h"

TT_MAIN_STATE;

#define PRODUCERS 4
#define PER_PRODUCER 20000u
#define DEADLINE_NS (30ull * 1000000000ull) /* for any one test's waits */

struct item {
	struct mb_node node; /* first: a popped node is the item */
	uint32_t producer;
	uint32_t seq;
};

struct producer {
	struct mailbox *mb;
	struct item *items; /* PER_PRODUCER of them */
	uint32_t id;
	uint32_t accepted;  /* offered and taken, in order: items[0..accepted) */
	uint32_t refused;
	pthread_t thread;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	for (uint32_t i = 0; i < PER_PRODUCER; i++) {
		struct item *it = &p->items[p->accepted];
		it->producer = p->id;
		it->seq = p->accepted;
		if (mb_offer(p->mb, &it->node))
			p->accepted++;
		else
			p->refused++;
	}
	return NULL;
}

static void start_producers(struct producer *ps, struct mailbox *mb)
{
	for (uint32_t k = 0; k < PRODUCERS; k++) {
		ps[k] = (struct producer){.mb = mb, .id = k};
		ps[k].items = calloc(PER_PRODUCER, sizeof(struct item));
		tt_assert(ps[k].items != NULL);
		tt_assert(pthread_create(&ps[k].thread, NULL, produce, &ps[k]) == 0);
	}
}

/* Consumes until `stop` says so (checked after every empty pop), waiting
 * on the mailbox in between; checks per-producer order and counts. */
struct consumed {
	uint32_t next[PRODUCERS]; /* the seq expected next from each producer */
	uint64_t total;
};

static void take(struct consumed *c, struct mb_node *nd)
{
	struct item *it = (struct item *)nd;
	tt_assert(it->producer < PRODUCERS, "producer %u", it->producer);
	tt_assert(it->seq == c->next[it->producer], "producer %u: got %u, want %u", it->producer,
		  it->seq, c->next[it->producer]);
	c->next[it->producer]++;
	c->total++;
}

static void consume_until(struct mailbox *mb, struct consumed *c, uint64_t want)
{
	uint64_t end = dl_now_ns() + DEADLINE_NS;
	while (c->total < want) {
		tt_assert(dl_now_ns() < end, "%llu of %llu messages after 30 s",
			  (unsigned long long)c->total, (unsigned long long)want);
		struct mb_node *nd = mb_pop(mb);
		if (nd != NULL)
			take(c, nd);
		else
			mb_wait(mb, dl_now_ns() + 100000000ull); /* 100 ms, then look again */
	}
}

/* Four producers push 20,000 messages each while one consumer pops: every
 * message arrives exactly once, and each producer's in the order sent. */
static void several_producers_every_message_once_in_order(void)
{
	struct mailbox mb;
	mb_init(&mb, UINT64_MAX);
	struct producer ps[PRODUCERS];
	start_producers(ps, &mb);
	struct consumed c = {{0}};
	consume_until(&mb, &c, (uint64_t)PRODUCERS * PER_PRODUCER);
	for (uint32_t k = 0; k < PRODUCERS; k++) {
		tt_assert(pthread_join(ps[k].thread, NULL) == 0);
		tt_assert(ps[k].accepted == PER_PRODUCER && ps[k].refused == 0);
		tt_assert(c.next[k] == PER_PRODUCER, "producer %u: %u arrived", k, c.next[k]);
		free(ps[k].items);
	}
	tt_assert(mb_pop(&mb) == NULL && mb_empty(&mb), "a message more than was sent");
	tt_assert(atomic_load(&mb.depth) == 0, "depth %llu",
		  (unsigned long long)atomic_load(&mb.depth));
}

struct sleeper {
	struct mailbox *mb;
	uint64_t woke_ns;
	struct mb_node *got;
	pthread_t thread;
};

static void *sleep_for_mail(void *arg)
{
	struct sleeper *s = arg;
	uint64_t end = dl_now_ns() + DEADLINE_NS;
	/* mb_wait may return early (a spurious futex wake-up): wait again, but
	 * never past the deadline. */
	while (s->got == NULL && dl_now_ns() < end) {
		mb_wait(s->mb, end);
		s->got = mb_pop(s->mb);
	}
	s->woke_ns = dl_now_ns();
	return NULL;
}

/* Waits (bounded) until the consumer announced it sleeps. */
static void wait_asleep(struct mailbox *mb)
{
	uint64_t end = dl_now_ns() + DEADLINE_NS;
	while (atomic_load(&mb->sleeping) == 0) {
		tt_assert(dl_now_ns() < end, "the consumer never went to sleep");
		struct timespec ts = {0, 100000}; /* poll the condition every 0.1 ms */
		nanosleep(&ts, NULL);
	}
}

static bool joined_within_10s(pthread_t th)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	return pthread_timedjoin_np(th, NULL, &until) == 0;
}

/* A consumer asleep without a deadline wakes on a push, within a bounded
 * wait; a deadline alone wakes it too, not before it. */
static void a_sleeping_consumer_wakes_on_push(void)
{
	struct mailbox mb;
	mb_init(&mb, 16);
	struct sleeper s = {.mb = &mb};
	tt_assert(pthread_create(&s.thread, NULL, sleep_for_mail, &s) == 0);
	wait_asleep(&mb);
	struct item it = {.producer = 0, .seq = 0};
	uint64_t pushed = dl_now_ns();
	tt_assert(mb_offer(&mb, &it.node));
	tt_assert(joined_within_10s(s.thread), "the consumer did not wake within 10 s of the push");
	tt_assert(s.got == &it.node, "woke without the message");
	double ms = (double)(s.woke_ns - pushed) / 1e6;
	fprintf(stderr, "woke %.3f ms after the push\n", ms);
	tt_assert(ms < 1000.0, "woke %.0f ms after the push", ms);

	uint64_t t0 = dl_now_ns();
	mb_wait(&mb, t0 + 50000000ull); /* empty: sleeps until the deadline */
	uint64_t slept = dl_now_ns() - t0;
	tt_assert(slept >= 50000000ull || !mb_empty(&mb), "returned after %llu ns",
		  (unsigned long long)slept);
	tt_assert(slept < 10000000000ull, "slept %llu ns past a 50 ms deadline",
		  (unsigned long long)slept);
}

struct drainer {
	struct mailbox *mb;
	uint32_t first_drain; /* nodes popped after the first wake with mail */
	pthread_t thread;
};

static void *drain_after_wake(void *arg)
{
	struct drainer *d = arg;
	uint64_t end = dl_now_ns() + DEADLINE_NS;
	while (d->first_drain == 0 && dl_now_ns() < end) {
		mb_wait(d->mb, end);
		while (mb_pop(d->mb) != NULL)
			d->first_drain++;
	}
	return NULL;
}

/* The router's rule for a frame's messages to one member: queued lazily,
 * one mb_wake() after the last. A sleeping consumer costs one futex wake
 * for the lot and finds them all when it wakes; a running one costs none,
 * whatever is pushed. */
static void a_run_of_lazy_offers_costs_one_wake_and_a_running_consumer_none(void)
{
	struct mailbox mb;
	mb_init(&mb, 16);
	struct drainer d = {.mb = &mb};
	tt_assert(pthread_create(&d.thread, NULL, drain_after_wake, &d) == 0);
	wait_asleep(&mb);
	struct item it[10];
	for (uint32_t i = 0; i < 10; i++) {
		it[i] = (struct item){.producer = 0, .seq = i};
		tt_assert(mb_offer_lazy(&mb, &it[i].node));
	}
	tt_assert(atomic_load(&mb.wakes) == 0, "a lazy offer woke the consumer");
	mb_wake(&mb);
	tt_assert(atomic_load(&mb.wakes) == 1, "one wake for the run");
	tt_assert(joined_within_10s(d.thread), "the consumer did not wake within 10 s of the wake");
	tt_assert(d.first_drain == 10, "woke to %u of the 10 mails", d.first_drain);

	/* This thread is the consumer now, and it runs: no futex wake. */
	mb_wake(&mb);
	for (uint32_t i = 0; i < 10; i++) {
		tt_assert(i % 2 ? mb_offer(&mb, &it[i].node) : (mb_push(&mb, &it[i].node), true));
		mb_wake(&mb);
	}
	tt_assert(atomic_load(&mb.wakes) == 1, "%llu wakes of a running consumer",
		  (unsigned long long)atomic_load(&mb.wakes) - 1);
	for (uint32_t i = 0; i < 10; i++) {
		struct item *got = (struct item *)mb_pop(&mb);
		tt_assert(got == &it[i], "mail %u in order", i);
	}
	tt_assert(mb_empty(&mb));
}

/* With a bound of 8, eight offers are taken and the ninth refused (lazy
 * too); mb_push still goes in; nothing below the bound is lost, the order
 * is kept, and after a pop an offer is taken again. */
static void offers_past_the_bound_are_refused_and_none_below_lost(void)
{
	enum { BOUND = 8 };
	struct mailbox mb;
	mb_init(&mb, BOUND);
	struct item it[BOUND + 3];
	for (uint32_t i = 0; i < BOUND + 3; i++)
		it[i] = (struct item){.producer = 0, .seq = i};
	for (uint32_t i = 0; i < BOUND; i++)
		tt_assert(mb_offer(&mb, &it[i].node), "offer %u refused below the bound", i);
	tt_assert(!mb_offer(&mb, &it[BOUND].node), "offer past the bound taken");
	tt_assert(!mb_offer_lazy(&mb, &it[BOUND].node), "lazy offer past the bound taken");
	mb_push(&mb, &it[BOUND].node); /* the owner's own mail: never refused */
	struct consumed c = {{0}};
	consume_until(&mb, &c, BOUND + 1);
	tt_assert(mb_pop(&mb) == NULL);
	tt_assert(mb_offer(&mb, &it[BOUND + 1].node), "refused after the mailbox drained");
	tt_assert(mb_pop(&mb) == &it[BOUND + 1].node);
	tt_assert(atomic_load(&mb.depth) == 0);
}

/* Four producers offer into a bound of 64 while the consumer drains: what
 * was taken arrives exactly once and in order, what was refused never
 * does, and the depth stays at the bound. */
static void concurrent_offers_respect_the_bound(void)
{
	enum { BOUND = 64 };
	struct mailbox mb;
	mb_init(&mb, BOUND);
	struct producer ps[PRODUCERS];
	start_producers(ps, &mb);
	struct consumed c = {{0}};
	uint64_t max_depth = 0, end = dl_now_ns() + DEADLINE_NS;
	uint32_t joined = 0;
	bool done[PRODUCERS] = {false};
	/* Drain until every producer has finished and the queue is empty. */
	for (;;) {
		tt_assert(dl_now_ns() < end, "not drained after 30 s");
		uint64_t d = atomic_load(&mb.depth);
		max_depth = d > max_depth ? d : max_depth;
		struct mb_node *nd = mb_pop(&mb);
		if (nd != NULL) {
			take(&c, nd);
			continue;
		}
		for (uint32_t k = 0; k < PRODUCERS; k++) {
			if (!done[k] && pthread_tryjoin_np(ps[k].thread, NULL) == 0) {
				done[k] = true;
				joined++;
			}
		}
		if (joined == PRODUCERS && mb_empty(&mb))
			break;
	}
	uint64_t accepted = 0, refused = 0;
	for (uint32_t k = 0; k < PRODUCERS; k++) {
		tt_assert(c.next[k] == ps[k].accepted, "producer %u: %u taken, %u arrived", k,
			  ps[k].accepted, c.next[k]);
		accepted += ps[k].accepted;
		refused += ps[k].refused;
		free(ps[k].items);
	}
	fprintf(stderr, "bound %d: %llu taken, %llu refused, depth at most %llu\n", BOUND,
		(unsigned long long)accepted, (unsigned long long)refused,
		(unsigned long long)max_depth);
	tt_assert(accepted + refused == (uint64_t)PRODUCERS * PER_PRODUCER);
	tt_assert(c.total == accepted);
	/* A refused offer counts itself for an instant before it takes itself
	 * back (mailbox.c, reserve), so the depth seen may pass the bound by
	 * the producers in that instant, never by more. */
	tt_assert(max_depth <= BOUND + PRODUCERS, "depth %llu past the bound",
		  (unsigned long long)max_depth);
	tt_assert(atomic_load(&mb.depth) == 0);
}

int main(void)
{
	static const struct tt_test tests[] = {
		TT_T(several_producers_every_message_once_in_order),
		TT_T(a_sleeping_consumer_wakes_on_push),
		TT_T(a_run_of_lazy_offers_costs_one_wake_and_a_running_consumer_none),
		TT_T(offers_past_the_bound_are_refused_and_none_below_lost),
		TT_T(concurrent_offers_respect_the_bound),
	};
	return tt_run("mailbox", tests, TT_COUNT(tests));
}
