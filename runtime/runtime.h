/*
 * runtime.h - the node: member actors, their mailboxes and timers, the
 * (group, member id) registry, wired to the Raft core, the store and the
 * transport.
 *
 * Threads:
 *  - one thread per member actor (small stack, rt_node_config.stack_bytes);
 *    it alone touches its Raft core and its store;
 *  - the transport's router thread looks members up in the registry (an
 *    immutable table swapped atomically; no lock on that path) and pushes
 *    into their mailboxes;
 *  - the store's flush thread posts durable reports into the mailboxes;
 *  - any thread may call the rt_node_* functions; adding or removing a
 *    member never pauses the others.
 *
 * Limits: at most RT_MAX_MEMBERS members per node; per member at most
 * max_pending_appends client appends, of max_pending_bytes entry bytes in
 * all, waiting for commit (more get DL_EBUSY at once), and RT_MAILBOX_MAX_MAILS
 * messages waiting in its mailbox (more: a client's get DL_EBUSY, a peer's
 * are dropped; counted in mailbox_full), and RT_MAX_WAITING_GETS (1,024)
 * client reads waiting for the commit to reach their index, each at most
 * TP_GET_WAIT_MAX_MS (more: DL_EBUSY, counted in get_wait_busy).
 */
#ifndef DLEDGER_RUNTIME_H
#define DLEDGER_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dl_err.h"
#include "raft/raft.h"
#include "storage/storage.h"
#include "transport/codec.h"

#define RT_MAX_MEMBERS 4096
/* Messages waiting in one member's mailbox. An actor takes up to 4,096 a
 * pass; a member under the bench's heaviest loads (4 clients x 64 appends
 * in flight, or 64 groups) holds a few hundred at most. The bound is there
 * for a flood (a client pipelining without limit, a stalled actor), so
 * that it costs busy answers, not the node's memory. */
#define RT_MAILBOX_MAX_MAILS 16384

struct rt_node;

struct rt_peer {
	char id[TP_NAME_MAX + 1];
	char addr[TP_ADDR_MAX + 1]; /* "host:port" */
};

/* Called on the actor thread for every committed entry, in index order
 * (embedding API; NULL: none). The view is valid for the call. */
typedef void (*rt_apply_fn)(void *arg, const char *group, const char *id, uint64_t index,
			    const struct sto_view *entry);

/* Called on the actor thread when the member's role or the leader it knows
 * changes (embedding API, DLedger's RoleChangeHandler; NULL: none). `role`
 * is an enum raft_role; `leader` is "" when none is known. */
typedef void (*rt_role_fn)(void *arg, const char *group, const char *id, uint8_t role,
			   uint64_t term, const char *leader);

struct rt_member_config {
	char group[TP_NAME_MAX + 1];
	char self_id[TP_NAME_MAX + 1];
	uint32_t n_peers;                       /* includes self */
	struct rt_peer peers[RAFT_MAX_MEMBERS]; /* order gives raft ids 1..n */
	char preferred_id[TP_NAME_MAX + 1];     /* "" for none */
	char fixed_leader_id[TP_NAME_MAX + 1];  /* enableLeaderElector=false */

	uint32_t heartbeat_ms;   /* heartBeatTimeIntervalMs */
	uint32_t election_ms;    /* base election timeout; randomized to [T, 2T) */
	uint32_t max_pending_appends;
	uint64_t max_pending_bytes; /* entry bytes of those appends (maxPendingBytes) */
	uint32_t max_append_entries;
	uint32_t max_append_bytes;
	uint32_t max_inflight_msgs;

	struct sto_config store; /* base_dir, type, sizes, flush mode, cleaning */
	uint32_t clean_interval_ms; /* how often the actor runs a cleaning pass */

	rt_apply_fn apply;
	void *apply_arg;
	/* With `apply`: the entries up to here were applied before (the
	 * application persisted it); apply starts after it, once committed. */
	uint64_t applied_index;
	rt_role_fn on_role; /* NULL: the node's (rt_node_config.on_role) */
	void *role_arg;
};

/* Defaults for everything but names, peers and store.base_dir. */
void rt_member_config_defaults(struct rt_member_config *mc);

struct tp_tls; /* transport/transport.h */

struct rt_node_config {
	char listen_addr[TP_ADDR_MAX + 1];
	size_t max_frame_bytes;
	size_t stack_bytes; /* per actor thread */
	/* Mutual TLS for every connection (tp_tls_load() with a node
	 * certificate; borrowed, must outlive the node); NULL: plaintext. */
	const struct tp_tls *tls;
	/* Role changes of every member without its own on_role (embedding). */
	rt_role_fn on_role;
	void *role_arg;
};
void rt_node_config_defaults(struct rt_node_config *nc);

/* Starts the endpoint and the flush thread. */
int rt_node_start(const struct rt_node_config *nc, struct rt_node **out, struct dl_errctx *err);

/* Opens the member's store (recovery), starts its actor, registers it.
 * DL_EEXIST if (group, id) is already running; DL_ECORRUPT etc. from the
 * store (err names file and offset). */
int rt_node_add(struct rt_node *n, const struct rt_member_config *mc, struct dl_errctx *err);

/* Answers or fails the member's pending requests, stops its actor, closes
 * its store (data stays on disk). DL_ENOTFOUND if not running. */
int rt_node_remove(struct rt_node *n, const char *group, const char *id);

/* Graceful stop: no new requests; pending ones are answered or failed;
 * every store flushed and closed; threads joined. NULL-safe. */
void rt_node_stop(struct rt_node *n);

struct rt_peer_status {
	char id[TP_NAME_MAX + 1];
	uint64_t match_index;
	bool active;
};

struct rt_member_status {
	char group[TP_NAME_MAX + 1];
	char id[TP_NAME_MAX + 1];
	char leader[TP_NAME_MAX + 1];
	char preferred[TP_NAME_MAX + 1];
	uint8_t role;
	uint64_t term;
	uint64_t first_index, last_index, commit_index, durable_index;
	uint32_t pending_appends;
	/* Reads of an index past the commit index waiting for it now, and
	 * those answered DL_ENOTCOMMITTED at their wait's end, or DL_EBUSY
	 * because RT_MAX_WAITING_GETS waited already. */
	uint32_t waiting_gets;
	uint64_t get_wait_timeouts, get_wait_busy;
	uint64_t mailbox_depth;
	uint64_t mailbox_full; /* messages refused: the mailbox held RT_MAILBOX_MAX_MAILS */
	uint64_t appended_entries; /* accepted as leader */
	uint64_t committed_bytes;  /* bodies of client appends committed and acknowledged as leader */
	uint64_t elections, leader_changes;
	bool failed; /* stopped by a storage error; see the log; retries by itself */
	char stopped[TP_REASON_MAX + 1]; /* why, while failed: "disk full", "I/O error", ... */
	/* raft/raft.h, "Voters": false while a store made afresh waits for a
	 * leader to vouch for it; member_resets and promotions as leader. */
	bool voter;
	uint64_t incarnation;
	uint64_t member_resets, promotions;
	/* Damage (logged at ERROR with file, offset and index). */
	uint64_t corrupt_reads;   /* store reads that found damage (sto_info.corrupt_reads) */
	uint64_t send_failures;   /* messages to peers not sent: they could not be encoded
	                           * (an entry they carry is damaged or unreadable here) */
	uint64_t damaged_index;   /* lowest entry a read found damaged here; 0: none. A
	                           * leader that must send it hands leadership to a
	                           * follower that holds it */
	uint64_t damage_handoffs; /* such hand-offs started */
	uint64_t repaired_in_place; /* damaged entries rewritten with a peer's good copy */
	/* Impossible messages (raft/raft.h): refused by the core, and among
	 * them appends that disagreed with committed entries here (logged). */
	uint64_t refused_msgs;
	uint64_t commit_conflicts;
	uint32_t n_peers;
	struct rt_peer_status peers[RAFT_MAX_MEMBERS];
};

/* Snapshot of every member (published by each actor as it goes). Returns
 * how many were written (at most cap); *total tells how many exist. */
uint32_t rt_node_status(struct rt_node *n, struct rt_member_status *out, uint32_t cap,
			uint32_t *total);
/* One member's snapshot; DL_ENOTFOUND. */
int rt_node_member_status(struct rt_node *n, const char *group, const char *id,
			  struct rt_member_status *out);

/* Asks the member (which must lead) to hand leadership to `to_id`. Returns
 * at once; watch the status for the outcome. */
int rt_node_transfer(struct rt_node *n, const char *group, const char *id, const char *to_id);

/* ---- local requests (the embedding API; runtime/local.c) --------------------
 * An append or a read made by the node's own process, posted to the member's
 * mailbox like a client's frame but never through the network. */

struct rt_buf {
	const void *data;
	size_t len;
};

/* The answer to rt_node_propose(), valid for the call. code 0: the n entries
 * are committed at first_index.. in `term`. DL_ENOTLEADER: leader_id and
 * leader_addr name the leader this member knows ("" if none). `message`
 * says more (never NULL). */
struct rt_propose_result {
	int code;
	uint64_t first_index, term;
	uint32_t n;
	const char *leader_id, *leader_addr, *message;
};
typedef void (*rt_propose_fn)(void *arg, const struct rt_propose_result *r);

/* Proposes `count` entries (copied; 1..RT_MAX_LOCAL_ENTRIES) to the member
 * (group, id), which must lead. Returns 0 when `cb` will be called exactly
 * once, on the member's actor thread, when the entries commit or fail; or
 * an error at once and `cb` is never called: DL_ENOTFOUND (no such member),
 * DL_EINVAL (no entries, too many), DL_ETOOBIG (an entry over the store's
 * limit), DL_EBUSY (its mailbox is full), DL_ENOMEM, DL_ECLOSED (the node
 * is stopping). */
#define RT_MAX_LOCAL_ENTRIES 4096
int rt_node_propose(struct rt_node *n, const char *group, const char *id, const struct rt_buf *ents,
		    uint32_t count, rt_propose_fn cb, void *arg);

/* A committed entry read on the actor thread: code 0 and the view (valid for
 * the call), or DL_ENOTCOMMITTED, DL_ECOMPACTED, DL_ECORRUPT, DL_EIO, or
 * DL_ECLOSED when the member stopped first. */
typedef void (*rt_read_fn)(void *arg, int code, uint64_t index, const struct sto_view *v);

/* Reads committed entry `index` of the member (group, id). Past the
 * member's commit index it waits up to wait_ms (at most
 * TP_GET_WAIT_MAX_MS) for the commit to reach it, as a client's read does
 * (DL_ENOTCOMMITTED after that; DL_EBUSY when RT_MAX_WAITING_GETS wait).
 * Returns 0 when `cb` will be called exactly once on the actor thread, or
 * an error at once (DL_ENOTFOUND, DL_EINVAL, DL_EBUSY, DL_ENOMEM,
 * DL_ECLOSED). */
int rt_node_read(struct rt_node *n, const char *group, const char *id, uint64_t index,
		 uint32_t wait_ms, rt_read_fn cb, void *arg);

struct rt_node_stats {
	uint64_t members;
	uint64_t frames_in, msgs_in, frames_out, msgs_out, bytes_in, bytes_out;
	uint64_t decode_errors, unknown_target, dropped_sends, rejected;
	uint64_t not_member; /* peer messages whose sender is not a member of the group */
	/* peer messages refused because their connection's certificate is not a
	 * node's (TLS; docs/OPERATIONS.md, "Securing a cluster") */
	uint64_t not_node;
	/* messages refused because their member's mailbox was full
	 * (RT_MAILBOX_MAX_MAILS): busy to a client, dropped from a peer */
	uint64_t mailbox_full;
	/* TLS: inbound connections up now by role, and those closed at once */
	uint64_t tls_conns_node, tls_conns_client, tls_conns_refused;
	/* Always 0 now: the accept loop and the peers' redials are ours
	 * (transport/endpoint.c, link.c); kept for the metrics' names */
	uint64_t tls_listener_restarts, tls_dialer_restarts;
	/* connections closed for no header or handshake within the hello
	 * timeout (inbound and outbound); outbound connections to peers made,
	 * dials that failed, writes past the send timeout */
	uint64_t hello_timeouts, peer_connects, peer_dial_failures, peer_send_timeouts;
	uint64_t flush_passes, file_syncs;
};
void rt_node_stats(struct rt_node *n, struct rt_node_stats *st);

/* Latency histograms (common/dl_hist.h), valid until rt_node_stop: each
 * fdatasync() of the flush thread, and each client append from proposal
 * to its acknowledgement. */
struct dl_hist;
const struct dl_hist *rt_node_fsync_latency(const struct rt_node *n);
const struct dl_hist *rt_node_commit_latency(const struct rt_node *n);

#endif
