/*
 * endpoint_test.c - the nng endpoint (transport/endpoint.c) between two
 * endpoints on 127.0.0.1: a peer connects and delivers, reconnects after
 * the other endpoint restarts, frames that are too large or malformed are
 * refused (and the malformed ones counted) while the endpoint goes on,
 * connections that close mid-header or speak another protocol do not stop
 * the listener,
 * an endpoint closes while senders push frames at it, without a crash, a
 * leak or a hang, a peer that goes away is redialed with backoff and comes
 * back, and connections whose header never comes are closed after the
 * hello timeout, inbound (the listener) and outbound (a link). A plain program on test/lib/tt.h (Criterion cannot run
 * under ThreadSanitizer), registered in the 'unit' and 'tsan' suites.
 *
 * Threads: nng's threads run the router, which calls deliver(); it counts
 * under sink.mu and signals sink.cv, on which the test thread waits with a
 * deadline. Pusher threads (close under traffic) only call tp_peer_*.
 * Every wait has a deadline and every loop a bound: nothing sleeps for
 * luck.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dl_time.h"
#include "test/lib/tt.h"
#include "test/lib/tt_net.h"
#include "transport/transport.h"

TT_MAIN_STATE;

#define WAIT_MS 10000 /* far above what any wait here needs */

/* The hello timeout of the endpoints open_ep() opens (0: the default). */
static uint32_t g_hello_ms;

/* What the receiving endpoint's router delivered. */
struct sink {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t msgs;
	uint64_t bad; /* messages that were not the heartbeat we send */
};

static void sink_init(struct sink *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	dl_cond_init_monotonic(&s->cv);
}

static void sink_fini(struct sink *s)
{
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

static int deliver(void *arg, struct tp_frame *f, const struct tp_hdr *h)
{
	(void)f;
	struct sink *s = arg;
	bool ok = h->type == RAFT_MSG_HEARTBEAT && strcmp(h->group, "g") == 0 &&
	          strcmp(h->target, "n1") == 0 && strcmp(h->sender, "n2") == 0;
	pthread_mutex_lock(&s->mu);
	s->msgs++;
	s->bad += !ok;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static uint64_t sink_msgs(struct sink *s)
{
	pthread_mutex_lock(&s->mu);
	uint64_t n = s->msgs;
	pthread_mutex_unlock(&s->mu);
	return n;
}

static struct timespec deadline_in(uint32_t ms)
{
	return dl_timespec_at(dl_now_ns() + (uint64_t)ms * 1000000u);
}

static bool past(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* Waits until the sink holds at least n messages, or `ms` pass. */
static bool sink_wait(struct sink *s, uint64_t n, uint32_t ms)
{
	struct timespec dl = deadline_in(ms);
	pthread_mutex_lock(&s->mu);
	while (s->msgs < n && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0)
		;
	bool ok = s->msgs >= n;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static struct tp_endpoint *open_ep(uint16_t port, struct sink *s, size_t max_frame_bytes)
{
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	struct tp_config cfg;
	tp_config_defaults(&cfg);
	cfg.listen_addr = addr;
	cfg.deliver = deliver;
	cfg.arg = s;
	cfg.reconnect_min_ms = 10;
	cfg.reconnect_max_ms = 100;
	cfg.send_timeout_ms = 500;
	cfg.hello_timeout_ms = g_hello_ms;
	if (max_frame_bytes != 0)
		cfg.max_frame_bytes = max_frame_bytes;
	struct dl_errctx err = {0};
	struct tp_endpoint *ep = NULL;
	/* The port was free when picked; a just-closed listener of ours on
	 * it may take a moment to let go: retry, bounded. */
	struct timespec dl = deadline_in(WAIT_MS);
	int rc;
	for (int attempt = 0; attempt < 1000; attempt++) {
		rc = tp_endpoint_open(&cfg, &ep, &err);
		if (rc == 0 || past(&dl))
			break;
		struct timespec pause = {0, 10 * 1000000L};
		nanosleep(&pause, NULL);
	}
	tt_assert(rc == 0 && ep != NULL, "endpoint on %s: %s", addr, err.msg);
	return ep;
}

static int encode_heartbeat(void *ctx, struct tp_fb *fb)
{
	(void)ctx;
	struct raft_message m = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 3};
	m.heartbeat.commit = 7;
	struct tp_addr a = {.group = "g", .target = "n1", .sender = "n2"};
	return tp_fb_add_raft(fb, &a, &m, NULL, NULL);
}

/* Enqueues and flushes n heartbeats to p; returns how many were taken. */
static uint32_t send_heartbeats(struct tp_peer *p, uint32_t n, bool now)
{
	uint32_t taken = 0;
	for (uint32_t i = 0; i < n; i++)
		taken += tp_peer_enqueue(p, encode_heartbeat, NULL) == 0;
	tp_peer_flush(p, now);
	return taken;
}

/* Sends a heartbeat every few ms until the sink holds `n` messages; a
 * frame sent before the connection is up may be dropped, so send again. */
static bool send_until(struct tp_peer *p, struct sink *s, uint64_t n)
{
	struct timespec dl = deadline_in(WAIT_MS);
	for (uint32_t i = 0; i < 100000 && !past(&dl); i++) {
		send_heartbeats(p, 1, true);
		if (sink_wait(s, n, 20))
			return true;
	}
	return false;
}

/* Two endpoints, a and b, and a's peer towards b, connected. */
struct pair {
	struct sink sa, sb;
	struct tp_endpoint *a, *b;
	uint16_t port_b;
	char addr_b[32];
	struct tp_peer *p;
};

static void pair_open(struct pair *t)
{
	sink_init(&t->sa);
	sink_init(&t->sb);
	uint16_t pa = tt_port();
	t->port_b = tt_port();
	t->a = open_ep(pa, &t->sa, 0);
	t->b = open_ep(t->port_b, &t->sb, 0);
	snprintf(t->addr_b, sizeof(t->addr_b), "127.0.0.1:%u", t->port_b);
	t->p = tp_peer_open(t->a, t->addr_b);
	tt_assert(t->p != NULL, "no peer");
	tt_assert(send_until(t->p, &t->sb, 1), "no delivery within %d ms", WAIT_MS);
}

/* b may be closed already (NULL). */
static void pair_close(struct pair *t)
{
	tp_peer_put(t->p);
	tp_endpoint_close(t->a);
	tp_endpoint_close(t->b);
	sink_fini(&t->sa);
	sink_fini(&t->sb);
}

static void a_peer_connects_and_its_frames_are_delivered(void)
{
	struct pair t;
	pair_open(&t);
	struct tp_peer *p = t.p;
	struct sink *sb = &t.sb;
	tt_assert(tp_peer_open(t.a, t.addr_b) == p, "a second open shares the peer");
	tp_peer_put(p);
	/* Connected: a batch arrives whole, coalesced into few frames. */
	uint64_t before = sink_msgs(sb);
	tt_assert(send_heartbeats(p, 100, false) == 100, "enqueue refused");
	tt_assert(sink_wait(sb, before + 100, WAIT_MS), "got %llu of %llu",
	          (unsigned long long)sink_msgs(sb), (unsigned long long)before + 100);
	struct tp_stats st;
	tp_endpoint_stats(t.b, &st);
	tt_assert(st.msgs_in >= before + 100 && st.decode_errors == 0 && st.frames_in < st.msgs_in,
	          "b: %llu msgs in %llu frames, %llu decode errors",
	          (unsigned long long)st.msgs_in, (unsigned long long)st.frames_in,
	          (unsigned long long)st.decode_errors);
	tp_endpoint_stats(t.a, &st);
	tt_assert(st.peers_connected == 1, "a: %llu peers connected",
	          (unsigned long long)st.peers_connected);
	tt_assert(sb->bad == 0 && t.sa.msgs == 0, "bad %llu, a got %llu",
	          (unsigned long long)sb->bad, (unsigned long long)t.sa.msgs);
	pair_close(&t);
}

static void a_peer_reconnects_after_the_other_endpoint_restarts(void)
{
	struct pair t;
	pair_open(&t);
	struct tp_peer *p = t.p;
	struct sink sb2;
	sink_init(&sb2);
	tp_endpoint_close(t.b);
	t.b = NULL;
	/* While b is down, sends fail or wait; none may block the caller
	 * for good, and none may arrive at the next b twice. */
	for (int i = 0; i < 10; i++)
		send_heartbeats(p, 5, i % 2 == 0);
	struct tp_endpoint *b2 = open_ep(t.port_b, &sb2, 0);
	tt_assert(send_until(p, &sb2, 1), "no delivery after b restarted");
	uint64_t before = sink_msgs(&sb2);
	tt_assert(send_heartbeats(p, 50, true) == 50, "enqueue refused");
	tt_assert(sink_wait(&sb2, before + 50, WAIT_MS), "the reconnected peer lost messages");
	tp_endpoint_close(b2);
	pair_close(&t);
	sink_fini(&sb2);
}

/* A raw REQ socket, as a peer's, dialing `port`: frames go out as given. */
static nng_socket raw_dial(uint16_t port)
{
	nng_socket s;
	tt_assert(nng_req0_open_raw(&s) == 0, "req socket");
	nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 10);
	nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 100);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 1000);
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", port);
	tt_assert(nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK) == 0, "dial %s", url);
	return s;
}

static int raw_send(nng_socket s, const void *buf, size_t len)
{
	static uint32_t id = 1;
	nng_msg *m;
	tt_assert(nng_msg_alloc(&m, 0) == 0, "msg");
	tt_assert(nng_msg_header_append_u32(m, 0x80000000u | id++) == 0 &&
	                  nng_msg_append(m, buf, len) == 0,
	          "msg append");
	int rv = nng_sendmsg(s, m, 0);
	if (rv != 0)
		nng_msg_free(m);
	return rv;
}

/* One valid frame of n heartbeats, as a peer sends it. */
static uint8_t *valid_frame(uint32_t n, size_t *len)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	for (uint32_t i = 0; i < n; i++)
		tt_assert(encode_heartbeat(NULL, &fb) == 0, "encode");
	uint8_t *buf = tp_fb_take(&fb, len);
	tp_fb_free(&fb);
	return buf;
}

static uint64_t decode_errors(struct tp_endpoint *ep)
{
	struct tp_stats st;
	tp_endpoint_stats(ep, &st);
	return st.decode_errors;
}

/* Waits until the endpoint counted at least n decode errors. */
static bool errors_reach(struct tp_endpoint *ep, uint64_t n)
{
	struct timespec dl = deadline_in(WAIT_MS);
	struct sink idle;
	sink_init(&idle);
	while (decode_errors(ep) < n && !past(&dl))
		(void)sink_wait(&idle, 1, 5); /* a timed wait on nothing: the poll's pace */
	sink_fini(&idle);
	return decode_errors(ep) >= n;
}

/* Sends `frame` over s until the sink holds n messages (the connection may
 * be coming back after the endpoint closed it). */
static bool raw_send_until(nng_socket s, const uint8_t *frame, size_t len, struct sink *sk,
                           uint64_t n)
{
	struct timespec dl = deadline_in(WAIT_MS);
	for (uint32_t i = 0; i < 100000 && !past(&dl); i++) {
		(void)raw_send(s, frame, len);
		if (sink_wait(sk, n, 20))
			return true;
	}
	return false;
}

static void oversize_and_malformed_frames_are_refused_and_the_endpoint_goes_on(void)
{
	enum { MAX = 64 * 1024 };
	struct sink sb;
	sink_init(&sb);
	uint16_t pb = tt_port();
	struct tp_endpoint *b = open_ep(pb, &sb, MAX);
	nng_socket s = raw_dial(pb);
	size_t vlen;
	uint8_t *valid = valid_frame(1, &vlen);
	tt_assert(raw_send_until(s, valid, vlen, &sb, 1), "a valid raw frame is not delivered");

	/* Not msgpack, or not our version: refused whole, counted. */
	uint64_t errs = decode_errors(b);
	const uint8_t garbage[] = {0xc1, 0xc1, 0xc1, 0xc1};
	const uint8_t bad_version[] = {0x7f, 0x96, 0x07};
	tt_assert(raw_send(s, garbage, sizeof(garbage)) == 0, "send");
	tt_assert(raw_send(s, bad_version, sizeof(bad_version)) == 0, "send");
	tt_assert(errors_reach(b, errs + 2), "%llu decode errors, want %llu",
	          (unsigned long long)decode_errors(b), (unsigned long long)errs + 2);
	/* A frame whose second message is cut short: the first is delivered,
	 * the rest refused and counted. */
	size_t two_len;
	uint8_t *two = valid_frame(2, &two_len);
	uint64_t msgs = sink_msgs(&sb);
	errs = decode_errors(b);
	tt_assert(raw_send(s, two, two_len - 3) == 0, "send");
	tt_assert(errors_reach(b, errs + 1), "a truncated frame is not counted");
	tt_assert(sink_wait(&sb, msgs + 1, WAIT_MS) && sink_msgs(&sb) == msgs + 1,
	          "the sound first message of a cut frame: %llu delivered",
	          (unsigned long long)(sink_msgs(&sb) - msgs));

	/* Over max_frame_bytes: never delivered (nng refuses it before our
	 * router sees it, and drops that connection); the endpoint goes on
	 * and the peer's connection comes back. */
	size_t big_len = 2 * MAX;
	uint8_t *big = calloc(1, big_len);
	tt_assert(big != NULL, "oom");
	memcpy(big, valid, vlen); /* a valid start: only its size is wrong */
	msgs = sink_msgs(&sb);
	(void)raw_send(s, big, big_len);
	tt_assert(raw_send_until(s, valid, vlen, &sb, msgs + 1), "no delivery after an oversize frame");
	tt_assert(sb.bad == 0, "a refused frame was delivered");
	struct tp_stats st;
	tp_endpoint_stats(b, &st);
	tt_assert(st.bytes_in < 2 * (uint64_t)MAX, "%llu bytes in: the oversize frame got in",
	          (unsigned long long)st.bytes_in);

	free(big);
	free(two);
	free(valid);
	nng_close(s);
	tp_endpoint_close(b);
	sink_fini(&sb);
}

/* A TCP connection to 127.0.0.1:port that sends `len` bytes of `buf` and
 * closes (a plain socket: no nng in the way). */
static void tcp_send_close(uint16_t port, const void *buf, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	tt_assert(fd >= 0, "socket");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && len > 0)
		(void)send(fd, buf, len, MSG_NOSIGNAL);
	close(fd);
}

/* The listener's accept loop is ours: connections that close before or
 * during the SP header, or send another protocol's header, end only
 * themselves (nng 1.5.2's own loop could end for good on such a close). */
static void connections_that_close_mid_header_or_speak_another_protocol_do_not_stop_the_listener(void)
{
	struct sink sb;
	sink_init(&sb);
	uint16_t pb = tt_port();
	struct tp_endpoint *b = open_ep(pb, &sb, 0);
	const uint8_t pair_hdr[8] = {0, 'S', 'P', 0, 0, 0x10, 0, 0}; /* PAIR0 */
	const uint8_t half_hdr[3] = {0, 'S', 'P'};
	for (int i = 0; i < 200; i++) {
		tcp_send_close(pb, NULL, 0);
		tcp_send_close(pb, half_hdr, sizeof(half_hdr));
		tcp_send_close(pb, pair_hdr, sizeof(pair_hdr));
	}
	nng_socket s = raw_dial(pb);
	size_t vlen;
	uint8_t *valid = valid_frame(1, &vlen);
	tt_assert(raw_send_until(s, valid, vlen, &sb, 1), "no delivery after 600 bad connections");
	tt_assert(sb.bad == 0, "a bad connection delivered");
	free(valid);
	nng_close(s);
	tp_endpoint_close(b);
	sink_fini(&sb);
}

/* Close under traffic: pushers feed a's peer towards b until told to stop;
 * b closes under them, then a with frames still queued for the dead b. */
struct pusher {
	pthread_t thread;
	struct tp_peer *p;
	_Atomic bool *stop;
	uint64_t taken, refused;
};

static void *push_main(void *arg)
{
	struct pusher *ps = arg;
	for (uint32_t i = 0; i < 10000000 && !atomic_load_explicit(ps->stop, memory_order_relaxed);
	     i++) {
		uint32_t t = send_heartbeats(ps->p, 8, i % 2 == 0);
		ps->taken += t;
		ps->refused += 8 - t;
	}
	return NULL;
}

static void an_endpoint_closes_while_senders_push_frames_at_it(void)
{
	enum { PUSHERS = 4 };
	struct pair t;
	pair_open(&t);
	struct sink *sb = &t.sb;
	_Atomic bool stop = false;
	struct pusher ps[PUSHERS];
	for (int i = 0; i < PUSHERS; i++) {
		ps[i] = (struct pusher){.p = tp_peer_open(t.a, t.addr_b), .stop = &stop};
		tt_assert(pthread_create(&ps[i].thread, NULL, push_main, &ps[i]) == 0, "thread");
	}
	/* Traffic flows: wait for it, then close b under it. */
	uint64_t base = sink_msgs(sb);
	tt_assert(sink_wait(sb, base + 2000, WAIT_MS), "no traffic");
	tp_endpoint_close(t.b);
	t.b = NULL;
	uint64_t after_close = sink_msgs(sb);
	/* The pushers go on against a dead peer: its queue fills and the
	 * excess is refused and counted, nothing blocks. */
	struct tp_stats st;
	struct timespec dl = deadline_in(WAIT_MS);
	struct sink idle;
	sink_init(&idle);
	do {
		(void)sink_wait(&idle, 1, 5);
		tp_endpoint_stats(t.a, &st);
	} while (st.dropped_sends == 0 && !past(&dl));
	sink_fini(&idle);
	tt_assert(st.dropped_sends > 0, "nothing dropped towards a closed endpoint");
	tt_assert(sink_msgs(sb) == after_close, "delivered after close");
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	uint64_t taken = 0;
	for (int i = 0; i < PUSHERS; i++) {
		pthread_join(ps[i].thread, NULL);
		taken += ps[i].taken;
		tp_peer_put(ps[i].p);
	}
	tt_assert(taken > 0 && sb->bad == 0, "taken %llu, bad %llu", (unsigned long long)taken,
	          (unsigned long long)sb->bad);
	/* a still holds frames queued for the dead b: closing drops them,
	 * within the send timeout, and frees everything (LeakSanitizer). */
	send_heartbeats(t.p, 100, false);
	pair_close(&t);
}

static uint64_t ns_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)(t.tv_sec - t0->tv_sec) * 1000000000ull + (uint64_t)t.tv_nsec -
	       (uint64_t)t0->tv_nsec;
}

static struct tp_stats ep_stats(struct tp_endpoint *ep)
{
	struct tp_stats st;
	tp_endpoint_stats(ep, &st);
	return st;
}

/* Waits until a's peer has failed `n` dials in all; false at the deadline. */
static bool dial_failures_reach(struct tp_endpoint *a, uint64_t n)
{
	struct timespec dl = deadline_in(WAIT_MS);
	for (uint32_t i = 0; i < 100000 && !past(&dl); i++) {
		if (ep_stats(a).peer_dial_failures >= n)
			return true;
		struct timespec pause = {0, 2 * 1000000L};
		nanosleep(&pause, NULL);
	}
	return false;
}

/* b goes away: a's peer redials with a backoff that doubles from 10 ms to
 * 100 ms (open_ep), so six failed dials take at least 10 + 20 + 40 + 80 +
 * 100 ms (a lower bound, safe on a loaded machine); b comes back on the
 * same port: the peer is up again and delivers within the bound. */
static void a_peer_that_goes_away_is_redialed_with_backoff_and_comes_back(void)
{
	struct pair t;
	pair_open(&t);
	struct tp_stats st = ep_stats(t.a);
	tt_assert(st.peers_connected == 1 && st.peer_connects == 1, "connected %llu, connects %llu",
	          (unsigned long long)st.peers_connected, (unsigned long long)st.peer_connects);
	uint64_t f0 = st.peer_dial_failures;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tp_endpoint_close(t.b);
	t.b = NULL;
	tt_assert(dial_failures_reach(t.a, f0 + 6), "the peer did not redial (%llu failures)",
	          (unsigned long long)ep_stats(t.a).peer_dial_failures);
	uint64_t ms = ns_since(&t0) / 1000000u;
	tt_assert(ms >= 240, "6 redials in %llu ms: no backoff", (unsigned long long)ms);
	st = ep_stats(t.a);
	tt_assert(st.peers_connected == 0, "still %llu connected", (unsigned long long)st.peers_connected);
	/* While it is down, sends are dropped and counted, never blocked. */
	uint64_t dropped = st.dropped_sends;
	send_heartbeats(t.p, 5, true);
	tt_assert(ep_stats(t.a).dropped_sends == dropped + 5, "sends to a down peer not dropped");

	struct sink sb2;
	sink_init(&sb2);
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct tp_endpoint *b2 = open_ep(t.port_b, &sb2, 0);
	tt_assert(send_until(t.p, &sb2, 1), "no delivery after b came back");
	ms = ns_since(&t1) / 1000000u;
	/* The backoff is at most 100 ms; a second covers a busy machine. */
	tt_assert(ms < 5000, "reconnected only after %llu ms", (unsigned long long)ms);
	st = ep_stats(t.a);
	tt_assert(st.peers_connected == 1 && st.peer_connects == 2, "connected %llu, connects %llu",
	          (unsigned long long)st.peers_connected, (unsigned long long)st.peer_connects);
	tp_endpoint_close(b2);
	pair_close(&t);
	sink_fini(&sb2);
}

/* A TCP connection to 127.0.0.1:port that sends nothing (the fd). */
static int tcp_connect(uint16_t port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	tt_assert(fd >= 0, "socket");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	tt_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
	struct timeval tv = {.tv_sec = WAIT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Reads until the peer closes; the bytes read, or -1 on a timeout. */
static long read_to_eof(int fd)
{
	uint8_t buf[256];
	long total = 0;
	for (int i = 0; i < 1000; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0)
			return total;
		if (n < 0)
			return -1;
		total += n;
	}
	return -1;
}

/* A connection that never sends its SP header (or never finishes a TLS
 * handshake: the same receive) is closed after the hello timeout and
 * counted; a connection that does speak is not affected. */
static void an_inbound_connection_without_a_header_is_closed_after_the_hello_timeout(void)
{
	struct sink sb;
	sink_init(&sb);
	g_hello_ms = 200;
	uint16_t pb = tt_port();
	struct tp_endpoint *b = open_ep(pb, &sb, 0);
	g_hello_ms = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int fd = tcp_connect(pb);
	const uint8_t half_hdr[3] = {0, 'S', 'P'}; /* and then nothing */
	tt_assert(send(fd, half_hdr, sizeof(half_hdr), MSG_NOSIGNAL) == 3, "send");
	long n = read_to_eof(fd);
	uint64_t ms = ns_since(&t0) / 1000000u;
	close(fd);
	tt_assert(n == 8, "read %ld bytes before the close (the listener's header is 8)", n);
	tt_assert(ms >= 190, "closed after %llu ms, before the hello timeout",
	          (unsigned long long)ms);
	struct tp_stats st = ep_stats(b);
	tt_assert(st.hello_timeouts == 1 && st.conns_refused == 0, "hello timeouts %llu, refused %llu",
	          (unsigned long long)st.hello_timeouts, (unsigned long long)st.conns_refused);
	/* A REQ socket that speaks at once still gets through. */
	nng_socket s = raw_dial(pb);
	size_t vlen;
	uint8_t *valid = valid_frame(1, &vlen);
	tt_assert(raw_send_until(s, valid, vlen, &sb, 1), "no delivery");
	free(valid);
	nng_close(s);
	tp_endpoint_close(b);
	sink_fini(&sb);
}

struct link_watch {
	pthread_mutex_t mu;
	uint32_t ups, downs;
};

static void link_state(void *arg, bool up)
{
	struct link_watch *w = arg;
	pthread_mutex_lock(&w->mu);
	if (up)
		w->ups++;
	else
		w->downs++;
	pthread_mutex_unlock(&w->mu);
}

/* A listener that accepts TCP connections (the kernel does, from its
 * backlog) but never answers: a link's handshake times out, the link
 * counts it, closes the connection and dials again, without ever being
 * up. */
static void a_link_to_a_listener_that_never_answers_times_out_and_redials(void)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	tt_assert(lfd >= 0, "socket");
	uint16_t port = tt_port();
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	tt_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 64) == 0,
	          "listen on %u", port);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	struct link_watch w = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct tp_link_counters lc;
	memset(&lc, 0, sizeof(lc));
	struct tp_link_config cfg = {
		.addr = addr, .max_frame_bytes = 1 << 20, .queue_bytes = 1 << 20,
		.send_timeout_ms = 1000, .reconnect_min_ms = 10, .reconnect_max_ms = 50,
		.hello_timeout_ms = 100, .on_state = link_state, .arg = &w, .counters = &lc,
	};
	struct tp_link *l = NULL;
	struct dl_errctx err = {0};
	tt_assert(tp_link_open(&cfg, &l, &err) == 0, "link: %s", err.msg);
	struct timespec dl = deadline_in(WAIT_MS);
	for (uint32_t i = 0; i < 100000 && !past(&dl) &&
	     atomic_load(&lc.hello_timeouts) < 3; i++) {
		struct timespec pause = {0, 5 * 1000000L};
		nanosleep(&pause, NULL);
	}
	uint8_t b = 1;
	struct tp_iov iov = {&b, 1};
	tt_assert(tp_link_send(l, &iov, 1) == DL_ECLOSED, "a link that is not up took a send");
	tp_link_close(l);
	close(lfd);
	tt_assert(atomic_load(&lc.hello_timeouts) >= 3, "%llu hello timeouts",
	          (unsigned long long)atomic_load(&lc.hello_timeouts));
	tt_assert(atomic_load(&lc.connects) == 0 && w.ups == 0 && w.downs == 0,
	          "up %u times against a silent listener", w.ups);
}

int main(void)
{
	static const struct tt_test tests[] = {
		TT_T(a_peer_connects_and_its_frames_are_delivered),
		TT_T(a_peer_reconnects_after_the_other_endpoint_restarts),
		TT_T(oversize_and_malformed_frames_are_refused_and_the_endpoint_goes_on),
		TT_T(connections_that_close_mid_header_or_speak_another_protocol_do_not_stop_the_listener),
		TT_T(an_endpoint_closes_while_senders_push_frames_at_it),
		TT_T(a_peer_that_goes_away_is_redialed_with_backoff_and_comes_back),
		TT_T(an_inbound_connection_without_a_header_is_closed_after_the_hello_timeout),
		TT_T(a_link_to_a_listener_that_never_answers_times_out_and_redials),
	};
	return tt_run("transport-endpoint", tests, TT_COUNT(tests));
}
