/*
 * tclient.h - a minimal blocking client for tests: one raw REQ socket,
 * one request at a time, replies matched by request id.
 */
#ifndef DLEDGER_TEST_TCLIENT_H
#define DLEDGER_TEST_TCLIENT_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stdint.h>

#include "transport/codec.h"

struct tclient {
	nng_socket s;
	_Atomic uint32_t pipe; /* with TLS closed before the socket (tclient.c) */
	nng_dialer dialer;
	bool tls;
	uint64_t next_id;
	nng_msg *reply; /* last reply, owned */
};

struct tp_tls;

/* Dials addr (blocking). With TLS (tc_use_tls) the dial fails when the
 * handshake does: DL_EIO, the nng error in *nng_rv if asked. */
int tc_open(struct tclient *c, const char *addr);
/* The credentials tc_open() (and so tc_append()) dials with from now on;
 * NULL: plaintext. Borrowed. */
void tc_use_tls(const struct tp_tls *tls);
/* tc_open() with this TLS setup (NULL: plaintext); *nng_rv (may be NULL)
 * gets nng's result of the dial. */
int tc_open_tls(struct tclient *c, const char *addr, const struct tp_tls *tls, int *nng_rv);
void tc_close(struct tclient *c);
/* Sends the frame in fb (request id `id`), waits up to timeout_ms for the
 * reply with that id; *h is its first message (body in c->reply). */
int tc_call(struct tclient *c, struct tp_fb *fb, uint64_t id, struct tp_hdr *h, int timeout_ms);

/* Waits up to timeout_ms for the reply with request id `id` to a frame sent
 * before (tc_send); replies with other ids are dropped. */
int tc_wait(struct tclient *c, uint64_t id, struct tp_hdr *h, int timeout_ms);

/* Sends the frame in fb and waits for nothing (a peer's one-way frame). */
int tc_send(struct tclient *c, struct tp_fb *fb);

/* Appends one entry to (group, member) at addr. Returns 0 and the index,
 * or a dl_err code (DL_ENOTLEADER with *leader filled when known). */
int tc_append(const char *addr, const char *group, const char *member, const void *data,
	      uint32_t len, uint64_t *index, char *leader, int timeout_ms);

#endif
