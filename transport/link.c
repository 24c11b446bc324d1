/*
 * link.c - an outbound connection that keeps itself up (transport.h,
 * "Links"): an nng stream dialed to a node's listener, speaking SP as a
 * raw REQ peer (sp_internal.h), dialed again with backoff when it is lost
 * or never made. No nng socket, protocol layer or message queue: a read
 * completes into our buffer and its messages go to the link's callback
 * from there; a write leaves from the thread that has it when the
 * connection is idle, else after the write in progress, together with what
 * else queued meanwhile.
 *
 * One connection at a time, each in three steps: the dial (TCP connect,
 * within hello_timeout_ms), the two SP headers (within hello_timeout_ms
 * more, the TLS handshake included: rx_aio's timeout), then traffic.
 * It ends on the first error of either direction (the stream is closed,
 * so the other direction fails too); the callback that finishes last
 * frees the stream and schedules the next dial (conn_over).
 *
 * Ownership:
 *  - cfg, url, the dialer and the three aios: immutable after open;
 *  - the receive state (rx): the receive callback's (one receive pending at a time), set by dial_cb
 *    before the first receive of a connection;
 *  - `sleeping`: the dial aio's owner, which is dial_cb, or while a
 *    connection lives, the callback that ends it (only one at a time);
 *  - everything else (the stream, the send state, up, broken, the two
 *    `active` flags, backoff_ms, stop): `mu`;
 *  - counters: atomics, relaxed (statistics only).
 */
#include "transport/transport.h"

#include "common/dl_log.h"
#include "common/dl_time.h"
#include "transport/sp_internal.h"
#include "transport/tls_internal.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tp_link {
	struct tp_link_config cfg;
	char addr[TP_ADDR_MAX + 1];
	char url[TP_ADDR_MAX + 16];
	nng_stream_dialer *dialer; /* shared (see dialer_get) unless own_dialer */
	bool own_dialer;
	nng_aio *dial_aio, *rx_aio, *tx_aio;
	bool sleeping; /* dial_aio is a backoff pause, not a dial */

	/* receive: rx_cb's */
	struct sp_in rx;

	pthread_mutex_t mu;
	nng_stream *s;  /* the connection (NULL: none) */
	bool broken;    /* s is closed: the connection is over */
	bool up;        /* both headers went across */
	bool was_up;    /* the connection that ended had been up */
	bool rx_active; /* a receive is pending; tx.active: a write */
	bool stop;
	uint32_t backoff_ms;
	uint32_t next_word;
	struct sp_out tx; /* the write in progress and what waits */
};

static void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

#define COUNT(l, field)                                                                            \
	do {                                                                                       \
		if ((l)->cfg.counters != NULL)                                                     \
			count(&(l)->cfg.counters->field);                                          \
	} while (0)

/* ---- dialers: shared, kept for the process's life ------------------------------------
 *
 * nng 1.5.2 frees a TCP dialer when the last of it and the connections it
 * made is released; a connection is released on nng's reaper thread, with
 * an atomic count that ThreadSanitizer cannot see (libnng is not
 * instrumented). Freeing a dialer while a connection it made (a failed
 * dial's, or one that just ended) is still being reaped therefore shows as
 * a race inside nng, a false one, and on any other build nothing is wrong.
 * Dialers are therefore kept, one per (URL, TLS credentials) and shared by
 * every link to that address (nng dials many at once on one dialer; a link
 * never closes it): a few per process. Past DIALERS_MAX distinct ones a link
 * has a dialer of its own, freed with it. */
#define DIALERS_MAX 1024

struct dialer_slot {
	struct dialer_slot *next;
	char url[TP_ADDR_MAX + 16];
	uint8_t tls_id[TP_TLS_ID_BYTES];
	nng_stream_dialer *d;
};

static pthread_mutex_t dialers_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dialer_slot *dialers; /* kept: reachable until the process ends */
static uint32_t n_dialers;

static int dialer_make(const struct tp_link *l, nng_stream_dialer **out)
{
	int rv = nng_stream_dialer_alloc(out, l->url);
	/* nng's sockets turn Nagle off; its streams leave it on, and small
	 * frames would then wait for the peer's delayed ACK (40 ms). */
	if (rv == 0)
		rv = nng_stream_dialer_set_bool(*out, NNG_OPT_TCP_NODELAY, true);
	if (rv == 0)
		rv = nng_stream_dialer_set_bool(*out, NNG_OPT_TCP_KEEPALIVE, true);
	if (rv == 0 && l->cfg.tls != NULL)
		rv = tp_tls_setup_stream_dialer(l->cfg.tls, *out, l->addr);
	if (rv != 0 && *out != NULL) {
		nng_stream_dialer_free(*out);
		*out = NULL;
	}
	return rv;
}

/* The shared dialer for the link's URL and credentials (made on first
 * use), or one of its own (l->own_dialer). Returns 0 or an nng error. */
static int dialer_get(struct tp_link *l)
{
	uint8_t id[TP_TLS_ID_BYTES];
	tp_tls_id(l->cfg.tls, id);
	pthread_mutex_lock(&dialers_mu);
	struct dialer_slot *ds = dialers;
	while (ds != NULL &&
	       (strcmp(ds->url, l->url) != 0 || memcmp(ds->tls_id, id, sizeof(id)) != 0))
		ds = ds->next;
	int rv = 0;
	if (ds == NULL && n_dialers < DIALERS_MAX && (ds = calloc(1, sizeof(*ds))) != NULL) {
		if ((rv = dialer_make(l, &ds->d)) != 0) {
			free(ds);
			pthread_mutex_unlock(&dialers_mu);
			return rv;
		}
		snprintf(ds->url, sizeof(ds->url), "%s", l->url);
		memcpy(ds->tls_id, id, sizeof(id));
		ds->next = dialers;
		dialers = ds;
		n_dialers++;
	}
	pthread_mutex_unlock(&dialers_mu);
	if (ds != NULL) {
		l->dialer = ds->d;
		return 0;
	}
	l->own_dialer = true;
	return dialer_make(l, &l->dialer);
}

/* ---- dialing ------------------------------------------------------------------------ */

static void dial_start(struct tp_link *l)
{
	l->sleeping = false;
	nng_aio_set_timeout(l->dial_aio, (nng_duration)l->cfg.hello_timeout_ms);
	nng_stream_dialer_dial(l->dialer, l->dial_aio);
}

/* The next dial after a pause: reconnect_min_ms after a connection that
 * had been up (the node restarted, say), else the backoff, which doubles
 * up to reconnect_max_ms. Only with the dial aio idle. */
static void dial_later(struct tp_link *l, bool was_up)
{
	pthread_mutex_lock(&l->mu);
	bool stop = l->stop;
	uint32_t ms = l->cfg.reconnect_min_ms;
	if (!was_up) {
		ms = l->backoff_ms;
		uint32_t next = l->backoff_ms * 2;
		l->backoff_ms = next > l->cfg.reconnect_max_ms ? l->cfg.reconnect_max_ms : next;
	}
	pthread_mutex_unlock(&l->mu);
	DL_ASSERT(ms >= l->cfg.reconnect_min_ms && ms <= l->cfg.reconnect_max_ms);
	if (stop)
		return;
	l->sleeping = true;
	nng_sleep_aio((nng_duration)ms, l->dial_aio);
}

/* The connection's stream is gone from both directions: free it, drop what
 * waited to be written on it and dial again. Called once per connection,
 * by the callback that saw the second direction end. */
static void conn_over(struct tp_link *l)
{
	pthread_mutex_lock(&l->mu);
	DL_ASSERT(l->broken && !l->rx_active && !l->tx.active);
	if (l->stop) {
		/* tp_link_close() frees it, after the dialer (see link_free) */
		pthread_mutex_unlock(&l->mu);
		return;
	}
	nng_stream *s = l->s;
	l->s = NULL;
	bool was_up = l->was_up;
	l->tx.out.len = 0;
	l->tx.wire.len = l->tx.off = 0;
	pthread_mutex_unlock(&l->mu);
	nng_stream_free(s);
	dial_later(l, was_up);
}

/* Ends the connection (caller holds mu): closing the stream fails what is
 * pending on it, so both callbacks run once more and see `broken`. */
static void conn_break_locked(struct tp_link *l)
{
	if (!l->broken && l->s != NULL) {
		l->broken = true;
		nng_stream_close(l->s);
	}
}

/* ---- sending --------------------------------------------------------------------------- */

static void tx_cb(void *arg)
{
	struct tp_link *l = arg;
	int rv = nng_aio_result(l->tx_aio);
	pthread_mutex_lock(&l->mu);
	DL_ASSERT(l->tx.active);
	if (rv != 0) {
		/* A write not done within send_timeout_ms, or the connection
		 * failed: the stream's framing is lost either way. */
		if (rv == NNG_ETIMEDOUT)
			COUNT(l, send_timeouts);
		conn_break_locked(l);
		l->tx.active = false;
	} else {
		sp_out_sent(&l->tx, nng_aio_count(l->tx_aio), l->s, l->tx_aio, l->broken);
	}
	bool over = l->broken && !l->tx.active && !l->rx_active;
	pthread_mutex_unlock(&l->mu);
	if (over)
		conn_over(l);
}

int tp_link_send(struct tp_link *l, const struct tp_iov *parts, size_t n_parts)
{
	size_t body = 0;
	for (size_t i = 0; i < n_parts; i++)
		body += parts[i].len;
	size_t n = SP_LEN_BYTES + SP_WORD_BYTES + body;
	int rc = 0;
	pthread_mutex_lock(&l->mu);
	if (!l->up || l->broken || l->stop) {
		rc = DL_ECLOSED;
	} else if (l->tx.out.len > 0 && l->tx.out.len + n > l->cfg.queue_bytes) {
		rc = DL_EBUSY; /* the node does not keep up: the caller drops or retries */
	} else if (!obuf_reserve(&l->tx.out, n)) {
		rc = DL_ENOMEM;
	} else {
		uint8_t *p = l->tx.out.buf + l->tx.out.len;
		sp_put_be64(p, SP_WORD_BYTES + body);
		/* A raw REQ's request word, high bit set; the node echoes it
		 * to clients, who match replies on the frame's request_id. */
		sp_put_be32(p + SP_LEN_BYTES, 0x80000000u | (l->next_word++ & 0x7fffffffu));
		p += SP_LEN_BYTES + SP_WORD_BYTES;
		for (size_t i = 0; i < n_parts; i++) {
			memcpy(p, parts[i].buf, parts[i].len);
			p += parts[i].len;
		}
		l->tx.out.len += n;
		if (!l->tx.active) /* idle: this thread writes it */
			sp_out_next(&l->tx, l->s, l->tx_aio, l->broken);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* ---- receiving --------------------------------------------------------------------------- */

/* The listener's header came: check it; the connection is up. */
static bool link_hello(struct tp_link *l, const uint8_t *h)
{
	if (!sp_hello_is(h, SP_PROTO_REP)) {
		COUNT(l, protocol_errors); /* not a node's listener */
		return false;
	}
	pthread_mutex_lock(&l->mu);
	bool up = l->up = !l->broken && !l->stop;
	if (up)
		l->backoff_ms = l->cfg.reconnect_min_ms;
	pthread_mutex_unlock(&l->mu);
	if (up) {
		COUNT(l, connects);
		l->cfg.on_state(l->cfg.arg, true);
	}
	return true;
}

/* Cuts what the buffer holds into messages and hands each to on_msg,
 * without the request word(s); keeps a partial one, growing the buffer for
 * it (up to max_frame_bytes). False: end the connection. */
static bool link_parse(struct tp_link *l)
{
	if (!l->rx.hdr_done) {
		const uint8_t *h = sp_in_hello(&l->rx);
		if (h == NULL)
			return true;
		if (!link_hello(l, h))
			return false;
	}
	for (uint32_t guard = 0; guard < (1u << 24); guard++) {
		const uint8_t *msg = NULL;
		size_t len = 0;
		enum sp_next r = sp_in_next(&l->rx, l->cfg.max_frame_bytes, &msg, &len);
		if (r == SP_NEXT_MORE)
			break;
		if (r != SP_NEXT_MSG) {
			if (r == SP_NEXT_TOO_BIG)
				COUNT(l, protocol_errors);
			return false;
		}
		size_t bt = sp_backtrace_len(msg, len);
		if (bt == 0) {
			COUNT(l, protocol_errors);
			return false;
		}
		if (l->cfg.on_msg != NULL && bt / SP_WORD_BYTES <= SP_MAX_HOPS)
			l->cfg.on_msg(l->cfg.arg, msg + bt, len - bt);
	}
	sp_in_compact(&l->rx);
	return true;
}

/* The receive callback: on nng's threads; messages go to on_msg from here. */
static void rx_cb(void *arg)
{
	struct tp_link *l = arg;
	int rv = nng_aio_result(l->rx_aio);
	bool ok = rv == 0;
	if (sp_in_hello_timed_out(&l->rx, rv))
		COUNT(l, hello_timeouts);
	if (ok) {
		l->rx.len += nng_aio_count(l->rx_aio);
		DL_ASSERT(l->rx.len <= l->rx.cap);
		ok = link_parse(l);
	}
	pthread_mutex_lock(&l->mu);
	if (ok && !l->broken && !l->stop) {
		sp_in_recv(&l->rx, l->s, l->rx_aio);
		pthread_mutex_unlock(&l->mu);
		return;
	}
	conn_break_locked(l);
	bool was_up = l->up;
	l->was_up = was_up;
	l->up = false;
	l->rx_active = false;
	bool over = !l->tx.active;
	pthread_mutex_unlock(&l->mu);
	if (was_up)
		l->cfg.on_state(l->cfg.arg, false);
	if (over)
		conn_over(l);
}

/* A dial finished, or a pause before the next one. */
static void dial_cb(void *arg)
{
	struct tp_link *l = arg;
	int rv = nng_aio_result(l->dial_aio);
	pthread_mutex_lock(&l->mu);
	bool stop = l->stop;
	pthread_mutex_unlock(&l->mu);
	if (l->sleeping) {
		l->sleeping = false;
		if (!stop)
			dial_start(l);
		return;
	}
	/* nng 1.5.2's TCP dialer can finish a dial with 0 and no stream: after
	 * a dial timed out, the connect still running under it may complete
	 * into the next dial of the same dialer without its connection (seen
	 * under the chaos suite's one-way drops: a NULL stream crashed in
	 * nng_stream_send). That is a failed dial too. */
	nng_stream *s = rv == 0 ? nng_aio_get_output(l->dial_aio, 0) : NULL;
	if (rv != 0 || s == NULL) {
		if (rv == 0)
			dl_log(DL_LOG_WARN, NULL, NULL,
			       "%s: nng finished a dial with no connection; dialing again", l->url);
		if (!stop) {
			COUNT(l, dial_failures);
			if (rv == NNG_ETIMEDOUT)
				COUNT(l, hello_timeouts);
			dial_later(l, false);
		}
		return;
	}
	pthread_mutex_lock(&l->mu);
	if (l->stop) {
		pthread_mutex_unlock(&l->mu);
		nng_stream_free(s);
		return;
	}
	DL_ASSERT(l->s == NULL && !l->rx_active && !l->tx.active);
	l->s = s;
	l->broken = l->up = l->was_up = false;
	sp_in_start(&l->rx, l->cfg.hello_timeout_ms);
	l->rx_active = true;
	bool ok = sp_out_hello(&l->tx, SP_PROTO_REQ, s, l->tx_aio);
	DL_ASSERT(ok); /* its buffer was reserved at open, and only grows */
	sp_in_recv(&l->rx, s, l->rx_aio);
	pthread_mutex_unlock(&l->mu);
}

/* ---- the link ----------------------------------------------------------------------------- */

/* An own dialer goes before the stream it made (see "dialers"). */
static void link_free(struct tp_link *l)
{
	nng_aio_free(l->dial_aio);
	nng_aio_free(l->rx_aio);
	nng_aio_free(l->tx_aio);
	if (l->own_dialer)
		nng_stream_dialer_free(l->dialer);
	nng_stream_free(l->s); /* a connection that ended while closing, or NULL */
	sp_in_free(&l->rx);
	sp_out_free(&l->tx);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

int tp_link_open(const struct tp_link_config *cfg, struct tp_link **out, struct dl_errctx *err)
{
	*out = NULL;
	DL_ASSERT(cfg->on_state != NULL && cfg->max_frame_bytes > 0);
	DL_ASSERT(cfg->reconnect_min_ms > 0 && cfg->reconnect_min_ms <= cfg->reconnect_max_ms);
	struct tp_link *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	l->cfg = *cfg;
	snprintf(l->addr, sizeof(l->addr), "%s", cfg->addr);
	l->cfg.addr = l->addr;
	if (l->cfg.hello_timeout_ms == 0)
		l->cfg.hello_timeout_ms = TP_DEFAULT_HELLO_TIMEOUT_MS;
	l->backoff_ms = cfg->reconnect_min_ms;
	pthread_mutex_init(&l->mu, NULL);
	int rc = tp_make_url(cfg->tls, cfg->addr, l->url, sizeof(l->url));
	if (rc != 0) {
		dl_errf(err, rc, "not an address: '%s'", cfg->addr);
		goto err;
	}
	rc = DL_ENOMEM;
	if (!sp_in_init(&l->rx) || !obuf_reserve(&l->tx.wire, SP_HDR_BYTES) ||
	    nng_aio_alloc(&l->dial_aio, dial_cb, l) != 0 ||
	    nng_aio_alloc(&l->rx_aio, rx_cb, l) != 0 || nng_aio_alloc(&l->tx_aio, tx_cb, l) != 0) {
		dl_errf(err, rc, "out of memory");
		goto err;
	}
	/* Every write must be done within send_timeout_ms (it stays set). */
	nng_aio_set_timeout(l->tx_aio, (nng_duration)l->cfg.send_timeout_ms);
	int rv = dialer_get(l);
	if (rv != 0) {
		rc = dl_errf(err, DL_EINVAL, "cannot dial %s: %s", l->url, nng_strerror(rv));
		goto err;
	}
	dial_start(l);
	*out = l;
	return 0;
err:
	link_free(l);
	return rc;
}

void tp_link_close(struct tp_link *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	conn_break_locked(l);
	pthread_mutex_unlock(&l->mu);
	/* The connection's callbacks first (the last of them may still start
	 * a pause on dial_aio; `stop` keeps it from dialing), then the dial's. */
	nng_aio_stop(l->rx_aio);
	nng_aio_stop(l->tx_aio);
	nng_aio_stop(l->dial_aio);
	link_free(l);
}

bool tp_link_up(struct tp_link *l)
{
	pthread_mutex_lock(&l->mu);
	bool up = l->up;
	pthread_mutex_unlock(&l->mu);
	return up;
}

const char *tp_link_addr(const struct tp_link *l)
{
	return l->addr;
}
