/*
 * embed_internal.h - what the files of the embedding API share
 * (include/dledger/dledger.h is the public side).
 *
 * The files, lower layers first; each calls only into the files above it:
 *   node.c   opening (file, struct, flags), starting, stopping a node; the
 *            group table; the callbacks' trampolines
 *   calls.c  appends, reads, transfers, status
 *
 * Threads and ownership:
 *  - struct dl_node: `mu` guards the group table (`grps`), `rt` once set
 *    and `state`. `cfg` is the control server's from dl_node_start() on
 *    (control/control.h) and is not touched by us after that; `defaults`
 *    (a second load of the same configuration) stays ours, read only,
 *    for the node-wide defaults of groups added through dl_group_add().
 *  - struct dl_grp: allocated alone so its address is stable; the runtime
 *    holds it as the member's apply and role argument until the member is
 *    removed (rt_node_remove joins the actor), only then is it freed.
 *  - in_callback (thread-local): set while a user callback runs on an
 *    actor thread; blocking calls refuse to run there.
 */
#ifndef DLEDGER_EMBED_INTERNAL_H
#define DLEDGER_EMBED_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "common/dl_err.h"
#include "config/config.h"
#include "dledger/dledger.h"
#include "runtime/runtime.h"

enum dl_state { DL_OPENED = 0, DL_STARTED, DL_CLOSING };

struct dl_grp {
	struct dl_node *node;
	char group[DL_NAME_MAX + 1];
	char id[DL_NAME_MAX + 1];
	struct dl_group_handlers h;
	bool from_api;        /* dl_group_add(): `cg` is ours */
	bool running;         /* added to the runtime */
	struct cfg_group cg;  /* from_api only: the validated group (mc borrows from it) */
};

struct ctl_server;
struct met_server;
struct tp_tls;

struct dl_node {
	pthread_mutex_t mu;
	enum dl_state state;
	struct dl_node_options opts;
	struct cfg cfg;      /* the configuration; the control server's once started */
	struct cfg defaults; /* ours: node-wide defaults for dl_group_add() */
	struct tp_tls *tls;
	struct ctl_server *ctl;
	bool ctl_started;
	struct met_server *met;
	struct rt_node *rt;
	struct dl_grp **grps;
	size_t n_grps, cap_grps;
};

/* Non-NULL while a user callback runs on this thread. */
extern _Thread_local const struct dl_node *dl_in_callback;

/* Copies a message into the caller's buffer (errmsg may be NULL). */
void dl_msg_copy(char *errmsg, size_t len, const char *msg);

/* The member id of this node's member of `group`, into id (DL_NAME_MAX+1).
 * DL_OK, DL_ENOTFOUND, DL_ECLOSED (not started); *rt the runtime node. */
int dl_member_of(struct dl_node *n, const char *group, char *id, struct rt_node **rt);

/* A group name the API can take: non-NULL, 1..DL_NAME_MAX bytes. */
bool dl_group_name_ok(const char *group);

#endif
