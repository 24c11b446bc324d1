/*
 * control.h - the node's control socket and its run-time group changes.
 *
 * An nng rep0 socket on ipc://<controlSocket> (mode 0600) answers msgpack
 * requests from dledger-ctl: status, add-group, remove-group,
 * transfer-leader, reload (docs/OPERATIONS.md, "Control socket", has the shapes).
 * Groups added or removed at run time are recorded in
 * <storeBaseDir>/groups.yaml (rewritten atomically on every change) and
 * applied on top of the config file at the next start: first the
 * `removed` members are dropped from the file's groups, then the `added`
 * ones are added.
 *
 * Threads: one server thread, started by ctl_start(). From then on only
 * code holding the server's lock (the server thread serving a request, or
 * ctl_reload_signal()) touches the `struct cfg` handed to ctl_open() (it
 * adds and drops groups there) until ctl_close() joins it; the caller must
 * not use the cfg in between. It calls the rt_node_* functions, which any thread may call.
 * Requests are served one at a time, under a lock that ctl_reload_signal()
 * (SIGHUP, on main) takes too; a transfer-leader waits (bounded by
 * CTL_MAX_WAIT_MS) on the server thread. With leaderBalance, a balancer
 * thread (balance.c) reads member status and asks for transfers through
 * the rt_node_* functions only; it never touches the cfg.
 *
 * Limits: CTL_MAX_REQUEST_BYTES per request, CTL_MAX_KV keys per add-group.
 */
#ifndef DLEDGER_CONTROL_H
#define DLEDGER_CONTROL_H

#include <stdint.h>

#include "common/dl_err.h"
#include "config/config.h"
#include "runtime/runtime.h"

#define CTL_MAX_REQUEST_BYTES (64u << 10)
#define CTL_MAX_KV            64
#define CTL_MAX_WAIT_MS       60000u
#define CTL_STATE_FILE        "groups.yaml"

struct ctl_server;

/* The member's runtime configuration from a validated config group. The
 * strings in `mc->store` borrow from `c` and `g`. */
void ctl_member_config(const struct cfg *c, const struct cfg_group *g,
		       struct rt_member_config *mc);

/* Refuses (DL_EEXIST) when a live node answers on the control socket, then
 * reads <storeBaseDir>/groups.yaml if it exists and applies it to `c`
 * (borrowed until ctl_close()). DL_ECONFIG names groups.yaml and the key
 * when the file is bad or an added group no longer fits the config. */
int ctl_open(struct cfg *c, struct ctl_server **out, struct dl_errctx *err);

/* Removes a stale socket file, listens, and starts the server thread,
 * which serves `n`. Call once the configured members run. */
int ctl_start(struct ctl_server *s, struct rt_node *n, struct dl_errctx *err);

/* SIGHUP: the "reload" op (docs/OPERATIONS.md, "Reload"), run on the
 * caller's thread under the lock the server thread holds while serving a
 * request, so it never interleaves with one. Logs the report, or why
 * nothing changed. Call only after ctl_start() succeeded. */
void ctl_reload_signal(struct ctl_server *s);

/* Stops the server thread, closes and unlinks the socket, frees. NULL-safe;
 * safe when ctl_start() was not called or failed. */
void ctl_close(struct ctl_server *s);

#endif
