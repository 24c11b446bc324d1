/*
 * ctl_client.h - the client side of a node's control socket (control.h,
 * docs/OPERATIONS.md "Control socket"): one msgpack request, one reply,
 * over ipc://<controlSocket>. Used by dledger-ctl and the tests; it uses
 * nothing else of the control module but ctl_pack.h.
 *
 * No threads of its own: each call opens a socket, dials, sends, waits for
 * the reply and closes, on the caller's thread. Bounded: the send and the
 * wait for the reply each take at most timeout_ms; a reply is decoded only
 * after ctl_mp_bounded() (a node's reply is input like any other).
 */
#ifndef DLEDGER_CTL_CLIENT_H
#define DLEDGER_CTL_CLIENT_H

#include <msgpack.h>
#include <nng/nng.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dl_err.h"

/* A reply. `map` is the decoded reply (a msgpack map), or NULL when none
 * came or it did not decode; its strings point into the received message,
 * so they live until ctl_reply_free(). */
struct ctl_reply {
	const msgpack_object *map;
	nng_msg *m;         /* private */
	msgpack_unpacked u; /* private */
};

/* Starts a request in `sb` (initialised here; the caller destroys it): a
 * map holding "op" and `n_more` other fields, which the caller packs next. */
void ctl_request_begin(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t n_more, const char *op);

/* Sends req[0..len) to the node whose control socket is the file `path`
 * and waits for its reply into `r` (free it with ctl_reply_free() whatever
 * this returns). Returns DL_OK when the reply says "ok"; otherwise err
 * says why:
 *  - DL_EIO or DL_ETIMEDOUT, r->map NULL: no socket, "cannot reach a node
 *    at control socket PATH: ...", or "control socket PATH: ..." when the
 *    send or the wait for the reply fails;
 *  - DL_EPROTO, r->map NULL: "control socket PATH: undecodable reply";
 *  - an error reply, r->map set: its "code" (DL_EPROTO if none) and its
 *    "error" text as it came. */
int ctl_client_call(const char *path, const void *req, size_t len, uint32_t timeout_ms,
		    struct ctl_reply *r, struct dl_errctx *err);

/* NULL-safe; safe on a reply that ctl_client_call() left empty. */
void ctl_reply_free(struct ctl_reply *r);

/* The unsigned integer at `key` of `map`, 0 when absent or of another type. */
uint64_t ctl_reply_u64(const msgpack_object *map, const char *key);
/* The string at `key` into buf (cut to fit), "" when absent; returns buf. */
const char *ctl_reply_str(const msgpack_object *map, const char *key, char *buf, size_t cap);

#endif
