/*
 * dledger.h - libdledger's embedding API: run a dledger-actors node inside
 * your own program, append to its groups, and be told, in index order, what
 * was committed.
 *
 *   dl_node *n;
 *   char err[256];
 *   if (dl_node_open_file("node0.yaml", NULL, &n, err, sizeof(err)) != DL_OK) ...
 *   struct dl_group_handlers h = {.apply = my_apply, .on_role = my_role,
 *                                 .arg = my_state, .applied_index = my_saved_index};
 *   dl_group_set_handlers(n, "g0", &h);
 *   dl_node_start(n, err, sizeof(err));
 *   struct dl_buf e = {"hello", 5};
 *   struct dl_append_result r;
 *   dl_append(n, "g0", &e, 1, 5000, &r);      // r.index, r.term once committed
 *   ...
 *   dl_node_close(n);
 *
 * A node hosts many groups (one member of each); a group is named by its
 * name alone, since a node holds at most one member of a group.
 *
 * Threads (docs/EMBEDDING.md has the full contract): every function may be
 * called from any thread. Callbacks (apply, role change, append completion)
 * run on the member's actor thread, one member's callbacks one at a time
 * and in order; from a callback only the non-blocking functions may be
 * called (dl_append_async, dl_group_status, dl_node_status,
 * dl_transfer_leader, dl_strerror, dl_role_name); the blocking ones
 * (dl_append, dl_read, dl_group_add, dl_group_remove, dl_node_start,
 * dl_node_close, dl_node_reload) return DL_EINVAL there instead of
 * deadlocking.
 *
 * Errors: every function that can fail returns an enum dl_err code
 * (dledger_err.h; 0 is DL_OK) and, where it takes `errmsg`, writes a
 * message naming the file, line, key or member (may be NULL).
 *
 * Link with `pkg-config --cflags --libs dledger`. Only dl_* symbols are
 * exported from libdledger.so.
 */
#ifndef DLEDGER_DLEDGER_H
#define DLEDGER_DLEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dledger_err.h"
#include "dledger_log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DL_NAME_MAX 64  /* bytes of a group name or member id */
#define DL_ADDR_MAX 300 /* bytes of "host:port" */

/* dl_node_open_args() results besides DL_OK and errors: the flags asked for
 * the usage text (dl_node_args_usage()) or the version (dl_version()). */
#define DL_ARGS_HELP    (-1)
#define DL_ARGS_VERSION (-2)

/* A node: opaque. */
typedef struct dl_node dl_node;

/* Raft roles. */
enum dl_role {
	DL_ROLE_FOLLOWER = 0,
	DL_ROLE_PRECANDIDATE, /* asking whether it could win (pre-vote) */
	DL_ROLE_CANDIDATE,
	DL_ROLE_LEADER,
};

/* Bytes given to the library: copied before the call returns. */
struct dl_buf {
	const void *data;
	size_t len;
};

/* A committed entry as the apply callback sees it: a view into the
 * library's buffer, valid only during the call (copy what you keep). An
 * empty entry with `noop` set is the one a new leader appends at the start
 * of its term (Raft section 5.4.2); it is delivered too, so that applied
 * indexes have no holes. */
struct dl_entry {
	uint64_t index;
	uint64_t term;
	const void *data;
	size_t len;
	bool noop;
};

/* Called on the member's actor thread for every committed entry after
 * `applied_index`, in index order, once per entry per run. Return when the
 * entry is applied: the member does no Raft work while it runs
 * (back-pressure, docs/EMBEDDING.md, "Apply"). */
typedef void (*dl_apply_fn)(void *arg, const char *group, const struct dl_entry *e);

/* Called on the member's actor thread when the member's role or the leader
 * it follows changes (DLedger's RoleChangeHandler). `leader` is the
 * leader's member id, "" while none is known. */
typedef void (*dl_role_fn)(void *arg, const char *group, const char *member, enum dl_role role,
			   uint64_t term, const char *leader);

/* What a group's member calls back. All optional (NULL). */
struct dl_group_handlers {
	dl_apply_fn apply;
	dl_role_fn on_role;
	void *arg; /* passed to both */
	/* The application has applied every entry up to this index (it
	 * persisted it with its state); apply starts at applied_index + 1.
	 * 0: from the first entry. */
	uint64_t applied_index;
};

/* Options of a node. NULL or zeroed: the defaults. */
struct dl_node_options {
	/* Do not serve the control socket (controlSocket) even though the
	 * configuration names one; dledger-ctl's status, add-group, ... then
	 * cannot reach this node. Default: served, as by dledger-actors. */
	bool no_control_socket;
	/* Role changes of every member that has no on_role of its own, the
	 * groups added through the control socket included. */
	dl_role_fn on_role;
	void *role_arg;
};

/* A configuration key and its value, as in the YAML file (docs/
 * OPERATIONS.md, "Configuration"): "storeType" = "memory", ... */
struct dl_kv {
	const char *key;
	const char *value;
};

/* One member of one group (a DLedgerConfigs item). */
struct dl_group_config {
	const char *group;               /* group */
	const char *id;                  /* id: this node's member */
	const char *peers;               /* peers: "n0-127.0.0.1:10000;n1-..." */
	const char *preferred_leader_id; /* preferredLeaderId; NULL: none */
	const struct dl_kv *keys;        /* any other per-group key; may be NULL */
	size_t n_keys;
};

/* A node from a struct (the same keys and checks as the YAML file). */
struct dl_node_config {
	const char *store_base_dir; /* storeBaseDir; NULL: /tmp/dledgerstore */
	const struct dl_kv *keys;   /* any other node-wide key; may be NULL */
	size_t n_keys;
	const struct dl_group_config *groups;
	size_t n_groups;
};

/* ---- a node's life ------------------------------------------------------- */

/* Opens a node from a YAML file (the format dledger-actors reads), from a
 * struct, or from dledger-actors' command line (argv[0] skipped). Nothing
 * runs yet: set the groups' handlers, then dl_node_start(). The groups the
 * control socket added earlier (<storeBaseDir>/groups.yaml) are applied on
 * top, as dledger-actors does. DL_ECONFIG names the file, line and key,
 * or the TLS file (tlsCertFile, tlsKeyFile, tlsCaFile) that does not check out;
 * DL_EEXIST: a live node already serves the control socket; DL_EIO,
 * DL_ENOMEM. On failure *out is NULL. */
DL_API int dl_node_open_file(const char *path, const struct dl_node_options *opts, dl_node **out,
			     char *errmsg, size_t errmsg_len);
DL_API int dl_node_open(const struct dl_node_config *cfg, const struct dl_node_options *opts,
			dl_node **out, char *errmsg, size_t errmsg_len);
/* Also DL_ARGS_HELP and DL_ARGS_VERSION (then *out is NULL). */
DL_API int dl_node_open_args(int argc, char *const *argv, const struct dl_node_options *opts,
			     dl_node **out, char *errmsg, size_t errmsg_len);
/* Usage text of the flags dl_node_open_args() knows. Never NULL. */
DL_API const char *dl_node_args_usage(void);
/* The library's version ("0.1.0"). */
DL_API const char *dl_version(void);

/* The handlers of a group of the configuration; before dl_node_start()
 * only (DL_EBUSY after). `h` is copied. DL_ENOTFOUND: no such group. */
DL_API int dl_group_set_handlers(dl_node *n, const char *group, const struct dl_group_handlers *h);

/* Starts the endpoint (the node's address, from its groups' peers), every
 * member, the metrics server (metricsAddress) and the control socket.
 * DL_EEXIST (the address is in use), DL_EIO, DL_EBUSY (the metrics port is
 * in use), DL_ECORRUPT and the store's other errors (a member that cannot
 * start stops the start: nothing keeps running). Once only. */
DL_API int dl_node_start(dl_node *n, char *errmsg, size_t errmsg_len);

/* Reloads the configuration file (dledger-ctl reload; SIGHUP of
 * dledger-actors): groups added to or removed from it start or stop. The
 * report, or why nothing changed (a node not opened from a file), goes to
 * the log. DL_EINVAL when the node is not started or has no control
 * socket. */
DL_API int dl_node_reload(dl_node *n);

/* Stops everything (pending appends are answered: committed, or
 * DL_ECLOSED), flushes and closes the stores, frees the node. NULL-safe. */
DL_API void dl_node_close(dl_node *n);

/* ---- groups at run time -------------------------------------------------- */

/* Adds a member (before or after dl_node_start; started at once after it).
 * Its self address must be the node's. Groups added here are not written
 * to groups.yaml: the application adds them again at its next start (with
 * its handlers). DL_ECONFIG (a bad key), DL_EEXIST, DL_ECORRUPT, ...;
 * DL_ECOMPACTED: applied_index is below the log's first entry. */
DL_API int dl_group_add(dl_node *n, const struct dl_group_config *g,
			const struct dl_group_handlers *h, char *errmsg, size_t errmsg_len);
/* Stops the member (its data stays on disk). When it returns, no callback
 * of the group runs any more. DL_ENOTFOUND. */
DL_API int dl_group_remove(dl_node *n, const char *group);

/* ---- appends and reads --------------------------------------------------- */

/* The outcome of an append. code DL_OK: the `count` entries are committed
 * at index .. index + count - 1, in `term`. DL_ENOTLEADER: leader_id and
 * leader_addr name the leader this member knows ("" if none): append
 * there. */
struct dl_append_result {
	int code;
	uint64_t index;
	uint64_t term;
	uint32_t count;
	char leader_id[DL_NAME_MAX + 1];
	char leader_addr[DL_ADDR_MAX + 1];
	char message[256];
};

/* Completion of dl_append_async(), on the member's actor thread; `r` is
 * valid for the call. */
typedef void (*dl_append_fn)(void *arg, const struct dl_append_result *r);

/* Most entries per append. */
#define DL_MAX_BATCH 4096

/* Appends `count` entries (1..DL_MAX_BATCH; their bytes are copied) to the
 * group through this node's member, which must lead; never through the
 * network. DL_OK: `cb` will be called exactly once (commit, or an error:
 * DL_ENOTLEADER, DL_EBUSY when max_pending_appends/maxPendingBytes are
 * reached, DL_ETOOBIG, DL_ECLOSED). Any other return: refused at once and
 * `cb` is not called (DL_ENOTFOUND, DL_EINVAL, DL_EBUSY: the member's
 * mailbox is full, DL_ECLOSED: not started or stopping). */
DL_API int dl_append_async(dl_node *n, const char *group, const struct dl_buf *entries,
			   size_t count, dl_append_fn cb, void *arg);

/* The same, waiting up to timeout_ms for the outcome, which it returns and
 * writes to *res (may be NULL). DL_ETIMEDOUT: no outcome in time; the
 * entries may still commit. */
DL_API int dl_append(dl_node *n, const char *group, const struct dl_buf *entries, size_t count,
		     uint32_t timeout_ms, struct dl_append_result *res);

/* A committed entry, copied: free data with free(). */
struct dl_entry_copy {
	uint64_t index;
	uint64_t term;
	void *data; /* malloc'd (never NULL on success, even when len is 0) */
	size_t len;
	bool noop;
};

/* Reads committed entry `index` from this node's member of the group
 * (leader or follower). An index the member has not committed yet is waited
 * for, up to timeout_ms (at most 60 s of it): a follower learns a commit
 * about 1 ms and one round trip after its leader, so a read right after an
 * acknowledged append finds the entry. DL_ENOTCOMMITTED or DL_ETIMEDOUT:
 * not committed here within timeout_ms (0: do not wait); DL_EBUSY: 1,024
 * reads already wait at this member; DL_ECOMPACTED; DL_ECORRUPT;
 * DL_ENOTFOUND; DL_ECLOSED: the group was removed meanwhile. */
DL_API int dl_read(dl_node *n, const char *group, uint64_t index, uint32_t timeout_ms,
		   struct dl_entry_copy *out);

/* ---- leadership and status ----------------------------------------------- */

/* Asks this node's member, which must lead, to hand leadership to member
 * `to_id`. Returns at once; watch dl_group_status() or the role callback.
 * DL_ENOTFOUND, DL_EINVAL (not a member), DL_EBUSY. */
DL_API int dl_transfer_leader(dl_node *n, const char *group, const char *to_id);

/* A member's state as last published by its actor (at most ~10 ms old). */
struct dl_member_status {
	char group[DL_NAME_MAX + 1];
	char id[DL_NAME_MAX + 1];
	char leader[DL_NAME_MAX + 1]; /* "" while none is known */
	enum dl_role role;
	uint64_t term;
	uint64_t first_index, last_index;
	uint64_t commit_index;  /* committed, as this member knows */
	uint64_t durable_index; /* on its disk */
	uint32_t pending_appends;
	bool voter;
	bool failed; /* stopped by a storage error; retries by itself */
};

DL_API int dl_group_status(dl_node *n, const char *group, struct dl_member_status *out);
/* Every member of the node: writes up to `cap`, returns how many were
 * written; *total (may be NULL) gets how many there are. */
DL_API size_t dl_node_status(dl_node *n, struct dl_member_status *out, size_t cap,
			     size_t *total);

DL_API const char *dl_role_name(enum dl_role r);

#ifdef __cplusplus
}
#endif

#endif
