/*
 * control_internal.h - shared by the files of the control module only.
 *
 * The files, lower first; each uses only the ones above it in this list,
 * so dependencies point one way (control.c -> reload.c -> groups.c ->
 * state.c):
 *   state.c    groups.yaml: its records, load, atomic save; UTF-8 checks
 *   groups.c   the node's set of groups (groups.h): find, drop, a
 *              member's config and directory, groups.yaml applied on top
 *              of a config
 *   request.c  decoding and checking a control request (no node, no cfg)
 *   reload.c   config reload: the file re-read, members made to follow it
 *   balance.c  leaderBalance: its own thread, the C client and rt_node_*
 *   ctl_client.c  the client side of the control socket (ctl_client.h),
 *              for dledger-ctl and the tests; uses none of the above
 *   control.c  the socket server: its thread, the ops, open/start/close
 */
#ifndef DLEDGER_CONTROL_INTERNAL_H
#define DLEDGER_CONTROL_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "control/control.h"
#include "control/groups.h"

/* One group of groups.yaml: its keys as given ("group" and "id" among them).
 * Owns every string. */
struct ctl_rec {
	uint32_t n_kv;
	char *key[CTL_MAX_KV];
	char *val[CTL_MAX_KV];
};

struct ctl_state {
	struct ctl_rec *removed; /* dropped from the config file's groups */
	size_t n_removed;
	struct ctl_rec *added; /* then added; at most one per group */
	size_t n_added;
};

void ctl_rec_free(struct ctl_rec *r);
const char *ctl_rec_get(const struct ctl_rec *r, const char *key);
/* Copies key[0..klen) and val[0..vlen). DL_ETOOBIG past CTL_MAX_KV. */
int ctl_rec_add(struct ctl_rec *r, const char *key, size_t klen, const char *val, size_t vlen);

/* The UTF-8 sequence at s (n > 0 bytes left): its length, with its code
 * point in *cp, or 0 when it is not valid UTF-8 (a stray or missing
 * continuation byte, an overlong form, a surrogate, past U+10FFFF).
 * Strings of the control protocol are msgpack str, UTF-8 by definition,
 * and groups.yaml can hold nothing else (YAML is Unicode text). */
size_t ctl_utf8_next(const char *s, size_t n, uint32_t *cp);
bool ctl_utf8_valid(const char *s, size_t n);

/* A missing file is an empty state. DL_ECONFIG names the file and line. */
int ctl_state_load(const char *path, struct ctl_state *st, struct dl_errctx *err);
/* Atomically: temp file, fsync, rename, fsync of the directory. */
int ctl_state_save(const char *path, const struct ctl_state *st, struct dl_errctx *err);
void ctl_state_free(struct ctl_state *st);

/* Takes ownership of `*r` on success (replaces an earlier record of the
 * group). */
int ctl_state_note_added(struct ctl_state *st, struct ctl_rec *r);
/* Drops the group's added record and records the removal. */
int ctl_state_note_removed(struct ctl_state *st, const char *group, const char *id);

/* ---- a request, decoded (request.c) ----
 * serve() first decodes and checks a request on its own, with neither the
 * node nor the config (so that the control fuzz target, test/fuzz/, can
 * feed this layer alone), then carries it out. */
enum ctl_op { CTL_OP_STATUS = 0, CTL_OP_ADD, CTL_OP_REMOVE, CTL_OP_TRANSFER, CTL_OP_RELOAD };

struct ctl_req {
	enum ctl_op op;
	char group[CFG_NAME_MAX + 1]; /* remove-group, transfer-leader */
	char id[CFG_NAME_MAX + 1];    /* remove-group */
	char to[CFG_NAME_MAX + 1];    /* transfer-leader */
	bool delete_data;             /* remove-group */
	uint64_t timeout_ms;          /* transfer-leader: <= CTL_MAX_WAIT_MS */
	struct ctl_rec rec;           /* add-group: its keys, owned */
};

/* Decodes a request of `len` bytes: one msgpack map with "op" and that
 * op's fields (docs/OPERATIONS.md, "Control socket"). DL_OK, DL_ETOOBIG
 * (over CTL_MAX_REQUEST_BYTES) or DL_EPROTO, with `err` saying why; `*out`
 * is then empty. Free a decoded request with ctl_req_free(). */
int ctl_req_decode(const void *buf, size_t len, struct ctl_req *out, struct dl_errctx *err);
void ctl_req_free(struct ctl_req *r);


/* What a reload did. Every list owns its strings. */
struct ctl_strs {
	char **v;
	size_t n;
};
struct ctl_reload {
	struct ctl_strs added;     /* "group/id" started */
	struct ctl_strs removed;   /* "group/id" stopped, data kept */
	struct ctl_strs unchanged; /* "group/id" */
	struct ctl_strs restart;   /* "group/id: key, key" changed; need remove+add or a restart */
	struct ctl_strs node_keys; /* node-wide keys that changed and were not applied */
	struct ctl_strs applied;   /* node-wide keys that changed and were applied live */
	struct ctl_strs failed;    /* "group/id: reason" could not be started */
};
void ctl_reload_free(struct ctl_reload *r);

/* Re-reads c->source, applies groups.yaml on top (`st`), and makes the
 * running members of `n` and c's groups follow it: starts the new members,
 * stops the vanished ones (data kept). On any error before that (flags
 * mode, unreadable or invalid file, a bad groups.yaml against the new file,
 * a changed node address) nothing changes and `err` says why. Caller holds
 * whatever serializes use of `c`. */
int ctl_reload_run(struct cfg *c, const struct ctl_state *st, const char *state_path,
		   struct rt_node *n, struct ctl_reload *out, struct dl_errctx *err);
/* The report as one line ("reload of F: added ...; removed ..."), malloc'ed
 * (NULL on out of memory). */
char *ctl_reload_text(const char *source, const struct ctl_reload *r);

/* Leader balance (balance.c): a thread that moves leaderships of groups
 * without a preferred leader from this node to the least-loaded node. */
struct ctl_balancer;
/* `self_addr` is this node's "host:port"; `period_ms` between rounds; `node`
 * gives the TLS files (the balancer asks the other nodes with this node's
 * certificate). */
int ctl_balance_start(struct rt_node *n, const struct cfg_node *node, const char *self_addr,
		      uint32_t period_ms, struct ctl_balancer **out, struct dl_errctx *err);
/* Stops and joins the thread, frees. NULL-safe. */
void ctl_balance_stop(struct ctl_balancer *b);

#endif
