/*
 * client.h - the C client of a dledger group: append entries, read committed
 * entries back, ask for metadata (docs/PROTOCOL.md, client messages).
 *
 * A client is opened on a peers string ("n0-127.0.0.1:10000;n1-...", as in
 * the node's configuration) and one group. It keeps one connection (a link on
 * nng's stream API: transport.h, "Links") per distinct node address, dialed on
 * first use and redialed with backoff in the background when lost; any number
 * of requests are in flight on it at once, matched to their replies by the
 * frame header's request_id.
 *
 * Asynchronous model: dl_client_append_async() submits a request and returns
 * at once; its callback runs exactly once, later, on one of the client's
 * threads (one of nng's threads receiving the connection's reply, the timer
 * thread, or the thread calling dl_client_close()). The blocking calls (dl_client_append,
 * dl_client_get, dl_client_metadata, ...) are built on the same machinery and
 * wait for the answer. Every function may be called from any thread at once,
 * except dl_client_close(), which must be the last call.
 * Callbacks must return quickly and must not call the blocking functions or
 * dl_client_close() (those fail with DL_EINVAL there); they may call
 * dl_client_append_async(), which then never waits for a free slot.
 *
 * Leader redirects: an append goes to the last leader the client learned of
 * (at first the first member of peers). A member that is not the leader
 * answers DL_ENOTLEADER with the leader's id and address when it knows them;
 * the client follows that redirect at once (the id is looked up in peers, else
 * the address from the answer is used), at most max_hops times per request,
 * then fails with DL_ENOTLEADER. When no leader is known, or the named leader
 * cannot be reached, it tries the other members in peers order with a short
 * backoff (backoff_min_ms doubling up to backoff_max_ms) until the request's
 * timeout (DL_ETIMEDOUT). A member that is shutting down (DL_ECLOSED) or whose
 * connection is lost or cannot be made within connect_timeout_ms is skipped
 * the same way; a request bound to one member or address (a read with
 * `member`, node metadata) fails then with DL_ETIMEDOUT. When the timeout
 * passes while the client is looking for a leader (a member was left, as not
 * leader without naming one, unreachable or shutting down, and no leader was
 * named since), the detail says so ("no leader of group G reachable within
 * T ms (last: ...)"), also when an attempt was out at that moment; "no answer
 * from M within T ms" means M was taken for the leader (or was the first
 * member asked) and did not answer.
 *
 * A silent leader: a member whose node is cut off by a partition keeps its
 * TCP connections up, so nothing tells the client it is gone but the
 * timeout. When a request's timeout passes with its request unanswered at a
 * member for at least half the timeout, the client takes that member for
 * down for one timeout: it forgets it as leader, sends new requests to the
 * other members first (they redirect to the leader they know), does not
 * follow a redirect back to it (its followers name it until they elect
 * another, one election timeout), and moves the requests still waiting on
 * it, except those bound to it, to the others at once. An answer from it
 * ends this early; after the timeout it is asked as any other member. So a
 * partitioned leader costs about one request timeout (the requests already
 * sent to it) plus one election timeout (the requests waiting for the new
 * leader, which fail only if that is longer than their own timeout).
 *
 * Because of these retries an append whose answer was lost, or that a
 * silent member committed after all, can be stored twice (at-least-once, as
 * any Raft client without sessions).
 *
 * Threads: replies are read and matched on nng's threads (no thread of ours
 * per connection); per client one timer thread (deadlines, backoff, connect
 * timeouts). All state is guarded by one mutex
 * per client; callbacks run without it.
 *
 * Limits: DL_CLIENT_MAX_INFLIGHT requests in flight (option max_inflight),
 * DL_CLIENT_MAX_CONNS distinct addresses, TP_MAX_ENTRIES entries per append,
 * max_frame_bytes per request or reply.
 */
#ifndef DLEDGER_CLIENT_H
#define DLEDGER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dl_err.h"
#include "transport/codec.h"

#define DL_CLIENT_MAX_INFLIGHT 8192
#define DL_CLIENT_MAX_CONNS    32
#define DL_CLIENT_MAX_HOPS     64
#define DL_CLIENT_NO_WAIT      UINT32_MAX /* dl_client_opts.get_wait_ms */

struct dl_client;

/* Options. A field left 0 (or false) takes the default in brackets. */
struct dl_client_opts {
	uint32_t timeout_ms;         /* per request, redirects and retries included [5000] */
	uint32_t max_hops;           /* leader redirects followed per request [3] */
	uint32_t max_inflight;       /* requests pending at once [256] */
	uint32_t connect_timeout_ms; /* a member not connected by then is skipped [500] */
	uint32_t backoff_min_ms;     /* first pause when no leader is known [10] */
	uint32_t backoff_max_ms;     /* longest pause [200] */
	uint32_t get_max_bytes;      /* cap on one read reply [0: the node's own, 4 MiB] */
	/* A read of an index past the member's commit index waits up to this
	 * long at the member for the commit to reach it, then fails with
	 * DL_ENOTCOMMITTED [0: the member's default, TP_GET_WAIT_DEFAULT_MS,
	 * 1000 ms]; DL_CLIENT_NO_WAIT: fail at once; at most
	 * TP_GET_WAIT_MAX_MS and below timeout_ms (else DL_EINVAL). */
	uint32_t get_wait_ms;
	size_t max_frame_bytes;      /* largest request or reply [TP_DEFAULT_MAX_FRAME_BYTES] */
	bool retry_busy;             /* DL_EBUSY: back off and retry until the timeout
					instead of failing at once [false] */
	/* Mutual TLS (tls+tcp://) with this certificate, its key and the
	 * cluster's CA, all three PEM files or none [plaintext]. Read and
	 * checked by dl_client_open() (DL_ECONFIG naming the file); the nodes'
	 * certificates must be node certificates (OU=dledger-node) naming the
	 * host of their address. A client certificate may append, read and ask
	 * for metadata (docs/OPERATIONS.md, "Securing a cluster"). */
	const char *tls_cert_file;
	const char *tls_key_file;
	const char *tls_ca_file;
};

/* One entry body to append. Borrowed: copied before the call returns. */
struct dl_client_buf {
	const void *data;
	size_t len;
};

/* Opens a client of `group` on the members in `peers`. `group` may be NULL
 * for a client that only asks dl_client_node_metadata(). `opts` may be NULL.
 * No connection is made yet. Returns 0 with *out set, DL_ECONFIG (bad peers
 * string or group name, detail in err), DL_EINVAL (options out of range) or
 * DL_ENOMEM. Free with dl_client_close(). */
int dl_client_open(const char *peers, const char *group, const struct dl_client_opts *opts,
		   struct dl_client **out, struct dl_errctx *err);

/* Fails every pending request with DL_ECLOSED (their callbacks run here),
 * closes the connections, joins the threads, frees. NULL-safe. No other call
 * on `c` may be in progress or follow. */
void dl_client_close(struct dl_client *c);

/* ---- append --------------------------------------------------------------- */

/* The outcome of an append: on success the entries got indexes first_index,
 * first_index+1, ..., first_index+n-1, all in `term`, and are committed. */
struct dl_client_result {
	int code;             /* 0 or an enum dl_err */
	uint64_t first_index; /* 0 on error */
	uint64_t term;
	uint32_t n;
	const char *member;   /* member that answered last ("" if none) */
	const char *detail;   /* why it failed ("" on success); valid during the call */
};

/* Runs once per submitted append, on a client thread (see the top). */
typedef void (*dl_client_append_fn)(void *arg, const struct dl_client_result *r);

/* Submits a batch of 1..TP_MAX_ENTRIES entries (copied before returning).
 * When max_inflight requests are pending, waits for one to finish (up to the
 * timeout: DL_ETIMEDOUT), except on a client thread where it fails with
 * DL_EBUSY at once. Returns 0 when submitted (then `fn` runs exactly once),
 * or an error (DL_EINVAL, DL_ETOOBIG, DL_ENOMEM, DL_EBUSY, DL_ETIMEDOUT,
 * DL_ECLOSED) and `fn` never runs. */
int dl_client_append_async(struct dl_client *c, const struct dl_client_buf *entries, uint32_t n,
			   dl_client_append_fn fn, void *arg, struct dl_errctx *err);

/* Between dl_client_cork(c) and dl_client_uncork(c), the requests this
 * thread submits to `c` wait and leave together, at the latest when it
 * uncorks (earlier if the connection comes up or an answer makes room and
 * sends what waits), packed into
 * as few frames as possible: a burst then costs the node one receive, not
 * one per request (callbacks get this on their own: what they submit leaves
 * after the reply frame that ran them). Not nested; on a client thread both
 * are no-ops. A thread corks at most one client at a time. */
void dl_client_cork(struct dl_client *c);
void dl_client_uncork(struct dl_client *c);

/* Blocking: appends one entry and waits until it is committed. Returns 0 with
 * its index and term (either pointer may be NULL), or the error with a detail
 * in err, e.g. DL_ENOTLEADER "not leader after 3 hops (last tried n1 at
 * 127.0.0.1:10001)", DL_ETIMEDOUT, DL_ENOTFOUND (no such group on the node),
 * DL_EBUSY, DL_ETOOBIG. */
int dl_client_append(struct dl_client *c, const void *data, size_t len, uint64_t *index,
		     uint64_t *term, struct dl_errctx *err);

/* Blocking batch: entry i got index *first_index + i; all are in *term. */
int dl_client_append_batch(struct dl_client *c, const struct dl_client_buf *entries, uint32_t n,
			   uint64_t *first_index, uint64_t *term, struct dl_errctx *err);

/* ---- read ------------------------------------------------------------------- */

/* Called per entry, in index order, no-op entries included (see
 * dl_client_read() to tell them apart). `data` is valid during the call. A
 * non-zero return stops the read, and dl_client_get() returns that value. */
typedef int (*dl_client_entry_fn)(void *arg, uint64_t index, uint64_t term, const void *data,
				  size_t len);

/* Reads the committed entries [index, to] (to >= index >= 1). From `member`
 * only when given (e.g. to read from a follower); with member NULL or "",
 * from the leader last learned of (else the first member), trying the others
 * when one cannot be reached. A reply cut short by size is continued from
 * where it stopped. An index past the member's commit index waits there up
 * to get_wait_ms (dl_client_opts) for the commit to reach it, so a read
 * from a follower right after an acknowledged append returns the entry.
 * Errors: DL_ENOTCOMMITTED (an index in the range is still past that
 * member's commit index after the wait; the entries before it were handed
 * to `fn`), DL_EBUSY (too many reads wait at that member already),
 * DL_ECOMPACTED (index below the first one kept), DL_ENOTFOUND (no such group
 * or member), DL_ETIMEDOUT, DL_EINVAL. */
int dl_client_get(struct dl_client *c, uint64_t index, uint64_t to, const char *member,
		  dl_client_entry_fn fn, void *arg, struct dl_errctx *err);

/* One committed entry as read. `data` is valid during the callback only. */
struct dl_client_entry {
	uint64_t index;
	uint64_t term;
	uint8_t type; /* enum raft_entry_type: RAFT_ENTRY_NORMAL, or RAFT_ENTRY_NOOP
			 (empty, appended by each new leader) */
	const void *data;
	size_t len;
};
typedef int (*dl_client_read_fn)(void *arg, const struct dl_client_entry *e);

/* dl_client_get() with the entry's type: the same reads, errors and stop
 * rule, one struct per entry. */
int dl_client_read(struct dl_client *c, uint64_t index, uint64_t to, const char *member,
		   dl_client_read_fn fn, void *arg, struct dl_errctx *err);

/* ---- metadata ------------------------------------------------------------------ */

/* The group as `member` (or, with NULL/"", the leader last learned of, else
 * any member that answers) knows it: its view of term, leader, indexes and
 * members. */
int dl_client_metadata(struct dl_client *c, const char *member, struct tp_group_meta *out,
		       struct dl_errctx *err);

/* Every group hosted by the node at `addr` ("host:port"; need not be in
 * peers), one row per member on that node. *rows is malloc'ed (free() it;
 * NULL when *n is 0). */
int dl_client_node_metadata(struct dl_client *c, const char *addr, struct tp_group_meta **rows,
			    uint32_t *n, struct dl_errctx *err);

/* The members of the client's peers string, in order: id and "host:port". */
uint32_t dl_client_members(const struct dl_client *c);
const char *dl_client_member_id(const struct dl_client *c, uint32_t i);
const char *dl_client_member_addr(const struct dl_client *c, uint32_t i);

#endif
