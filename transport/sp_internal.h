/*
 * sp_internal.h - the framing on the wire, shared by both halves of the
 * transport: inbound connections (endpoint.c) and outbound links (link.c).
 *
 * nng's SP over TCP (docs/PROTOCOL.md, "Transport"): each side first sends
 * 0 'S' 'P' 0, its protocol (16 bits, big endian) and two zero bytes; then
 * every message is a 64-bit big-endian length and that many bytes. A REQ
 * peer's message starts with a request word (32 bits, high bit set), which
 * a reply carries back first (after any hops: a "backtrace"). Both halves
 * speak it, so nng's own REQ sockets still talk to our listener.
 *
 * Also the input and output sides both halves read and write with (struct
 * sp_in, struct sp_out).
 */
#ifndef DLEDGER_SP_INTERNAL_H
#define DLEDGER_SP_INTERNAL_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_err.h"
#include "common/dl_time.h"

#define SP_HDR_BYTES  8
#define SP_LEN_BYTES  8
#define SP_WORD_BYTES 4
#define SP_PROTO_REQ  0x30 /* NNG_REQ0_SELF */
#define SP_PROTO_REP  0x31 /* NNG_REP0_SELF */
#define SP_MAX_HOPS   8    /* nng's default NNG_OPT_MAXTTL */

/* The 8-byte header of protocol `proto`. */
static inline void sp_hello(uint8_t h[SP_HDR_BYTES], uint8_t proto)
{
	h[0] = 0, h[1] = 'S', h[2] = 'P', h[3] = 0, h[4] = 0, h[5] = proto, h[6] = 0, h[7] = 0;
}

/* Whether `h` is the header of protocol `proto`. */
static inline bool sp_hello_is(const uint8_t h[SP_HDR_BYTES], uint8_t proto)
{
	return h[0] == 0 && h[1] == 'S' && h[2] == 'P' && h[3] == 0 && h[4] == 0 && h[5] == proto &&
	       h[6] == 0 && h[7] == 0;
}

static inline void sp_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t sp_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static inline void sp_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The length of the backtrace that starts `msg` (words up to and including
 * the first with the high bit set), or 0 when it runs past the end. */
static inline size_t sp_backtrace_len(const uint8_t *msg, size_t len)
{
	size_t bt = 0;
	for (;;) {
		if (bt + SP_WORD_BYTES > len)
			return 0;
		bt += SP_WORD_BYTES;
		if (msg[bt - SP_WORD_BYTES] & 0x80u)
			return bt;
	}
}

/* A growable byte buffer. */
struct obuf {
	uint8_t *buf;
	size_t len, cap;
};

static inline void obuf_free(struct obuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}

/* Room for `more` bytes after len; false when out of memory. */
static inline bool obuf_reserve(struct obuf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return true;
	size_t cap = b->cap < 4096 ? 4096 : b->cap;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *nb = realloc(b->buf, cap);
	if (nb == NULL)
		return false;
	b->buf = nb;
	b->cap = cap;
	return true;
}

/* What one stream has read: a buffer of SP_IN_REST_BYTES at rest, grown
 * for a longer message (up to the caller's limit) and shrunk back when
 * empty, and whether the other side's header came (until then a receive
 * waits only until hello_deadline_ns). The receive callback's: one receive
 * is pending at a time. */
#define SP_IN_REST_BYTES (64u * 1024)

struct sp_in {
	uint8_t *buf;
	size_t len, cap;
	size_t off; /* what sp_in_next() has handed out */
	bool hdr_done;
	uint64_t hello_deadline_ns;
};

static inline bool sp_in_init(struct sp_in *in)
{
	in->cap = SP_IN_REST_BYTES;
	in->len = in->off = 0;
	return (in->buf = malloc(in->cap)) != NULL;
}

static inline void sp_in_free(struct sp_in *in)
{
	free(in->buf);
	in->buf = NULL;
	in->len = in->cap = in->off = 0;
}

/* A new stream: nothing read, its header due within hello_ms. */
static inline void sp_in_start(struct sp_in *in, uint32_t hello_ms)
{
	in->len = in->off = 0;
	in->hdr_done = false;
	in->hello_deadline_ns = dl_now_ns() + (uint64_t)hello_ms * 1000000u;
}

/* Asks for more bytes into the free end of the buffer; until the header
 * came, only until the hello deadline (then NNG_ETIMEDOUT). */
static inline void sp_in_recv(struct sp_in *in, nng_stream *s, nng_aio *aio)
{
	nng_duration ms = NNG_DURATION_INFINITE;
	if (!in->hdr_done) {
		uint64_t now = dl_now_ns();
		ms = now >= in->hello_deadline_ns
		             ? 1
		             : (nng_duration)((in->hello_deadline_ns - now) / 1000000u + 1);
	}
	DL_ASSERT(in->len < in->cap);
	nng_iov iov = {.iov_buf = in->buf + in->len, .iov_len = in->cap - in->len};
	nng_aio_set_iov(aio, 1, &iov);
	nng_aio_set_timeout(aio, ms);
	nng_stream_recv(s, aio);
}

/* Whether a receive that ended with rv (not 0) ended the hello: no header
 * by the deadline. nng 1.5.2's TLS layer does not always report a timed-out
 * receive as NNG_ETIMEDOUT (during a handshake it may abort the TCP
 * receive under it and pass on another error), so the deadline decides. */
static inline bool sp_in_hello_timed_out(const struct sp_in *in, int rv)
{
	return rv != 0 && !in->hdr_done &&
	       (rv == NNG_ETIMEDOUT || dl_now_ns() >= in->hello_deadline_ns);
}

/* The header, once at least SP_HDR_BYTES came (NULL before); the next
 * sp_in_next() starts after it. */
static inline const uint8_t *sp_in_hello(struct sp_in *in)
{
	DL_ASSERT(!in->hdr_done);
	if (in->len < SP_HDR_BYTES)
		return NULL;
	in->hdr_done = true;
	in->off = SP_HDR_BYTES;
	return in->buf;
}

enum sp_next { SP_NEXT_MSG, SP_NEXT_MORE, SP_NEXT_TOO_BIG, SP_NEXT_NOMEM };

/* The next whole message (*msg, *len: without its length prefix), or
 * SP_NEXT_MORE when only part of one is there (the buffer then has room
 * for all of it), SP_NEXT_TOO_BIG when its length passes max_bytes (refused
 * before it is read; end the stream), SP_NEXT_NOMEM. */
static inline enum sp_next sp_in_next(struct sp_in *in, size_t max_bytes, const uint8_t **msg,
                                      size_t *len)
{
	DL_ASSERT(in->hdr_done && in->off <= in->len);
	if (in->len - in->off < SP_LEN_BYTES)
		return SP_NEXT_MORE;
	uint64_t n = sp_get_be64(in->buf + in->off);
	if (n > max_bytes)
		return SP_NEXT_TOO_BIG;
	if (in->len - in->off - SP_LEN_BYTES < n) {
		if (SP_LEN_BYTES + n > in->cap) {
			memmove(in->buf, in->buf + in->off, in->len - in->off);
			in->len -= in->off;
			in->off = 0;
			uint8_t *nb = realloc(in->buf, SP_LEN_BYTES + (size_t)n);
			if (nb == NULL)
				return SP_NEXT_NOMEM;
			in->buf = nb;
			in->cap = SP_LEN_BYTES + (size_t)n;
		}
		return SP_NEXT_MORE;
	}
	*msg = in->buf + in->off + SP_LEN_BYTES;
	*len = (size_t)n;
	in->off += SP_LEN_BYTES + (size_t)n;
	return SP_NEXT_MSG;
}

/* Drops what was handed out (a partial message stays at the front) and
 * shrinks the buffer back to its size at rest when it is empty. */
static inline void sp_in_compact(struct sp_in *in)
{
	memmove(in->buf, in->buf + in->off, in->len - in->off);
	in->len -= in->off;
	in->off = 0;
	if (in->len == 0 && in->cap > SP_IN_REST_BYTES) {
		uint8_t *nb = realloc(in->buf, SP_IN_REST_BYTES);
		if (nb != NULL) {
			in->buf = nb;
			in->cap = SP_IN_REST_BYTES;
		}
	}
}

/* What one stream has to write: `out` collects messages while `wire` is
 * being written (from `off`); when that write is done they swap, so what
 * queued meanwhile leaves in one write. Guarded by its owner's lock. A
 * write runs on the calling thread as far as the socket takes it (nng's TCP
 * and TLS streams write at once when nothing is queued before); its
 * completion comes on one of nng's threads, whose callback calls
 * sp_out_sent(). */
struct sp_out {
	struct obuf out, wire;
	size_t off;
	bool active; /* a write is in progress */
};

static inline void sp_out_free(struct sp_out *o)
{
	obuf_free(&o->out);
	obuf_free(&o->wire);
	o->off = 0;
}

/* Writes the rest of wire (active set). */
static inline void sp_out_write(struct sp_out *o, nng_stream *s, nng_aio *aio)
{
	DL_ASSERT(o->active && o->off < o->wire.len);
	nng_iov iov = {.iov_buf = o->wire.buf + o->off, .iov_len = o->wire.len - o->off};
	nng_aio_set_iov(aio, 1, &iov);
	nng_stream_send(s, aio);
}

/* Swaps what waits into the wire and writes it, or goes idle (also when
 * `stop`: the stream is ending, nothing more is written). */
static inline void sp_out_next(struct sp_out *o, nng_stream *s, nng_aio *aio, bool stop)
{
	o->wire.len = 0;
	o->off = 0;
	if (stop || o->out.len == 0) {
		o->active = false;
		return;
	}
	struct obuf t = o->wire;
	o->wire = o->out;
	o->out = t;
	o->active = true;
	sp_out_write(o, s, aio);
}

/* A write completed `n` bytes: writes the rest, or the next, or goes idle. */
static inline void sp_out_sent(struct sp_out *o, size_t n, nng_stream *s, nng_aio *aio, bool stop)
{
	DL_ASSERT(o->active && o->off + n <= o->wire.len);
	o->off += n;
	if (o->off < o->wire.len && !stop)
		sp_out_write(o, s, aio); /* the rest of a partial write */
	else
		sp_out_next(o, s, aio, stop);
}

/* Starts the stream's life with its 8-byte header of protocol `proto` as
 * the first write. False when out of memory. */
static inline bool sp_out_hello(struct sp_out *o, uint8_t proto, nng_stream *s, nng_aio *aio)
{
	DL_ASSERT(!o->active);
	o->out.len = 0;
	o->wire.len = o->off = 0;
	if (!obuf_reserve(&o->wire, SP_HDR_BYTES))
		return false;
	sp_hello(o->wire.buf, proto);
	o->wire.len = SP_HDR_BYTES;
	o->active = true;
	sp_out_write(o, s, aio);
	return true;
}

#endif
