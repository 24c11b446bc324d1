/*
 * metrics.c - Prometheus text exposition of a node. See metrics.h.
 *
 * Ownership: struct met_server is shared by met_stop() (caller's thread)
 * and the scrape callback (nng's HTTP threads). `mu` guards `node`:
 * met_stop() clears it, so a scrape either finishes against a running node
 * or sees NULL and answers 503. The struct itself belongs to the nng
 * handler, which frees it (met_free) once the server is done with it.
 */
#include "metrics/metrics.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "common/dl_hist.h"
#include "common/dl_log.h"
#include "common/dl_mem.h"
#include "transport/transport.h"

struct met_server {
	pthread_mutex_t mu;
	struct rt_node *node; /* NULL once stopping (mu) */
	nng_http_server *srv;
	nng_http_handler *h;
};

/* ---- text buffer ----------------------------------------------------------------------- */

struct tbuf {
	char *p;
	size_t len, cap;
	bool failed; /* out of memory or over MET_MAX_TEXT_BYTES */
	bool too_big;
};

__attribute__((format(printf, 2, 3))) static void put(struct tbuf *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (int tries = 0; tries < 2; tries++) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = b->cap - b->len;
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t want = b->cap ? b->cap * 2 : 64 * 1024;
		while (want - b->len <= (size_t)n)
			want *= 2;
		if (want > MET_MAX_TEXT_BYTES) {
			b->failed = b->too_big = true;
			return;
		}
		char *q = realloc(b->p, want);
		if (q == NULL) {
			b->failed = true;
			return;
		}
		b->p = q;
		b->cap = want;
	}
	b->failed = true; /* unreachable: the second try always has room */
}

static void family(struct tbuf *b, const char *name, const char *type, const char *help)
{
	put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the exposition format asks (\\, \", \n). */
static void put_label(struct tbuf *b, const char *v)
{
	for (const char *c = v; *c != '\0'; c++) {
		if (*c == '\\' || *c == '"')
			put(b, "\\%c", *c);
		else if (*c == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *c);
	}
}

/* ---- per member ------------------------------------------------------------------------ */

enum mfield {
	MF_ROLE,
	MF_TERM,
	MF_FIRST,
	MF_LAST,
	MF_COMMIT,
	MF_DURABLE,
	MF_APPENDED,
	MF_COMMITTED_BYTES,
	MF_ELECTIONS,
	MF_LEADER_CHANGES,
	MF_PENDING,
	MF_MAILBOX,
	MF_FAILED,
	MF_CORRUPT_READS,
	MF_SEND_FAILURES,
	MF_DAMAGED_INDEX,
	MF_DAMAGE_HANDOFFS,
	MF_REPAIRED_IN_PLACE,
	MF_REFUSED_MSGS,
	MF_COMMIT_CONFLICTS,
	MF_WAITING_GETS,
	MF_GET_WAIT_TIMEOUTS,
	MF_GET_WAIT_BUSY,
};

static const struct {
	enum mfield f;
	const char *name, *type, *help;
} member_metrics[] = {
        {MF_ROLE, "dledger_member_role", "gauge",
         "Raft role of the member: 0 follower, 1 pre-candidate, 2 candidate, 3 leader."},
        {MF_TERM, "dledger_member_term", "gauge", "Current Raft term of the member."},
        {MF_FIRST, "dledger_member_first_index", "gauge", "First log index still stored."},
        {MF_LAST, "dledger_member_last_index", "gauge", "Last log index stored."},
        {MF_COMMIT, "dledger_member_commit_index", "gauge", "Highest index known committed."},
        {MF_DURABLE, "dledger_member_durable_index", "gauge",
         "Highest index synced to disk on this member."},
        {MF_APPENDED, "dledger_member_appended_entries_total", "counter",
         "Client entries accepted while leading."},
        {MF_COMMITTED_BYTES, "dledger_member_committed_bytes_total", "counter",
         "Body bytes of client appends committed and acknowledged while leading."},
        {MF_ELECTIONS, "dledger_member_elections_total", "counter",
         "Elections this member started."},
        {MF_LEADER_CHANGES, "dledger_member_leader_changes_total", "counter",
         "Times the member saw the group's leader change."},
        {MF_PENDING, "dledger_member_pending_appends", "gauge",
         "Client appends waiting for commit."},
        {MF_MAILBOX, "dledger_member_mailbox_depth", "gauge",
         "Messages queued in the member actor's mailbox."},
        {MF_FAILED, "dledger_member_failed", "gauge",
         "1 when the member was stopped by a storage error, else 0."},
        {MF_CORRUPT_READS, "dledger_member_corrupt_reads_total", "counter",
         "Store reads that found a damaged entry or index record (logged with file, offset and "
         "index)."},
        {MF_SEND_FAILURES, "dledger_member_send_failures_total", "counter",
         "Messages to peers not sent because they could not be encoded (an entry they carry is "
         "damaged or unreadable here)."},
        {MF_DAMAGED_INDEX, "dledger_member_damaged_index", "gauge",
         "Lowest log index a read found damaged on this member, 0 if none."},
        {MF_DAMAGE_HANDOFFS, "dledger_member_damage_handoffs_total", "counter",
         "Leadership hand-offs started because an entry to send was damaged here."},
        {MF_REPAIRED_IN_PLACE, "dledger_member_entries_repaired_in_place_total", "counter",
         "Damaged entries rewritten in place with a good copy from a peer."},
        {MF_REFUSED_MSGS, "dledger_member_refused_messages_total", "counter",
         "Raft messages no correct member can send (a term far above ours, a second leader of "
         "a term, an append disagreeing with committed entries), refused."},
        {MF_COMMIT_CONFLICTS, "dledger_member_commit_conflicts_total", "counter",
         "Leader appends refused because they disagreed with entries held here as committed."},
        {MF_WAITING_GETS, "dledger_member_waiting_gets", "gauge",
         "Client reads of an index past the commit index waiting for the commit to reach it."},
        {MF_GET_WAIT_TIMEOUTS, "dledger_member_get_wait_timeouts_total", "counter",
         "Waiting reads answered 'not committed' because their wait ended first."},
        {MF_GET_WAIT_BUSY, "dledger_member_get_wait_busy_total", "counter",
         "Reads answered busy because the most reads a member lets wait were waiting."},
};

static uint64_t member_value(const struct rt_member_status *s, enum mfield f)
{
	switch (f) {
	case MF_ROLE: return s->role;
	case MF_TERM: return s->term;
	case MF_FIRST: return s->first_index;
	case MF_LAST: return s->last_index;
	case MF_COMMIT: return s->commit_index;
	case MF_DURABLE: return s->durable_index;
	case MF_APPENDED: return s->appended_entries;
	case MF_COMMITTED_BYTES: return s->committed_bytes;
	case MF_ELECTIONS: return s->elections;
	case MF_LEADER_CHANGES: return s->leader_changes;
	case MF_PENDING: return s->pending_appends;
	case MF_MAILBOX: return s->mailbox_depth;
	case MF_FAILED: return s->failed ? 1 : 0;
	case MF_CORRUPT_READS: return s->corrupt_reads;
	case MF_SEND_FAILURES: return s->send_failures;
	case MF_DAMAGED_INDEX: return s->damaged_index;
	case MF_DAMAGE_HANDOFFS: return s->damage_handoffs;
	case MF_REPAIRED_IN_PLACE: return s->repaired_in_place;
	case MF_REFUSED_MSGS: return s->refused_msgs;
	case MF_COMMIT_CONFLICTS: return s->commit_conflicts;
	case MF_WAITING_GETS: return s->waiting_gets;
	case MF_GET_WAIT_TIMEOUTS: return s->get_wait_timeouts;
	case MF_GET_WAIT_BUSY: return s->get_wait_busy;
	}
	return 0;
}

static void render_members(struct tbuf *b, const struct rt_member_status *st, uint32_t n)
{
	for (size_t k = 0; k < sizeof(member_metrics) / sizeof(member_metrics[0]); k++) {
		family(b, member_metrics[k].name, member_metrics[k].type, member_metrics[k].help);
		for (uint32_t i = 0; i < n; i++) {
			put(b, "%s{group=\"", member_metrics[k].name);
			put_label(b, st[i].group);
			put(b, "\",id=\"");
			put_label(b, st[i].id);
			put(b, "\"} %" PRIu64 "\n", member_value(&st[i], member_metrics[k].f));
		}
	}
}

/* ---- per node -------------------------------------------------------------------------- */

static void put_one(struct tbuf *b, const char *name, const char *type, const char *help,
                    uint64_t v)
{
	family(b, name, type, help);
	put(b, "%s %" PRIu64 "\n", name, v);
}

static void render_hist(struct tbuf *b, const char *name, const char *help, const struct dl_hist *h)
{
	struct dl_hist_snap s;
	dl_hist_read(h, &s);
	family(b, name, "histogram", help);
	uint64_t cum = 0;
	for (unsigned i = 0; i < DL_HIST_BUCKETS; i++) {
		cum += s.bucket[i];
		uint64_t us = dl_hist_bound_us(i);
		put(b, "%s_bucket{le=\"%" PRIu64 ".%06" PRIu64 "\"} %" PRIu64 "\n", name,
		    us / 1000000u, us % 1000000u, cum);
	}
	put(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, s.count);
	put(b, "%s_sum %.9f\n", name, (double)s.sum_ns / 1e9);
	put(b, "%s_count %" PRIu64 "\n", name, s.count);
}

/* Resident set (bytes) and threads of this process; 0 when unreadable. */
static void proc_self(uint64_t *rss_bytes, uint64_t *threads)
{
	*rss_bytes = *threads = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		unsigned long long size = 0, resident = 0;
		if (fscanf(f, "%llu %llu", &size, &resident) == 2)
			*rss_bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	f = fopen("/proc/self/status", "r");
	if (f != NULL) {
		char line[256];
		unsigned long long t = 0;
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "Threads: %llu", &t) == 1) {
				*threads = t;
				break;
			}
		fclose(f);
	}
}

static void render_node(struct tbuf *b, struct rt_node *node, uint64_t leaders)
{
	struct rt_node_stats ns;
	rt_node_stats(node, &ns);
	put_one(b, "dledger_members", "gauge", "Members running on this node.", ns.members);
	put_one(b, "dledger_leaders", "gauge", "Members of this node that lead their group.",
	        leaders);
	put_one(b, "dledger_frames_received_total", "counter", "Transport frames received.",
	        ns.frames_in);
	put_one(b, "dledger_frames_sent_total", "counter", "Transport frames sent.", ns.frames_out);
	put_one(b, "dledger_messages_received_total", "counter",
	        "Messages received (a frame carries one or more).", ns.msgs_in);
	put_one(b, "dledger_messages_sent_total", "counter", "Messages sent.", ns.msgs_out);
	put_one(b, "dledger_received_bytes_total", "counter", "Frame bytes received.", ns.bytes_in);
	put_one(b, "dledger_sent_bytes_total", "counter", "Frame bytes sent.", ns.bytes_out);
	put_one(b, "dledger_decode_errors_total", "counter",
	        "Frames or messages that failed to decode.", ns.decode_errors);
	put_one(b, "dledger_unknown_group_frames_total", "counter",
	        "Messages for a group or member not running on this node.", ns.unknown_target);
	put_one(b, "dledger_not_member_messages_total", "counter",
	        "Peer messages refused because their sender is not a member of the group.",
	        ns.not_member);
	put_one(b, "dledger_mailbox_full_messages_total", "counter",
	        "Messages refused because their member's mailbox was full (busy to a client, "
	        "dropped from a peer).",
	        ns.mailbox_full);
	put_one(b, "dledger_not_node_messages_total", "counter",
	        "Peer messages refused because their connection's certificate is not a node "
	        "certificate (TLS).",
	        ns.not_node);
	family(b, "dledger_tls_connections", "gauge",
	       "Inbound TLS connections open now, by the role of their certificate.");
	put(b, "dledger_tls_connections{role=\"node\"} %" PRIu64 "\n", ns.tls_conns_node);
	put(b, "dledger_tls_connections{role=\"client\"} %" PRIu64 "\n", ns.tls_conns_client);
	put_one(b, "dledger_tls_connections_refused_total", "counter",
	        "Inbound TLS connections closed at once (not verified, or too many open).",
	        ns.tls_conns_refused);
	put_one(b, "dledger_tls_listener_restarts_total", "counter",
	        "Always 0: the listener's accept loop is ours (kept so that no series disappears).",
	        ns.tls_listener_restarts);
	put_one(b, "dledger_tls_dialer_restarts_total", "counter",
	        "Always 0: peers redial with a backoff of ours, no nng dialer loop to restart "
	        "(kept so that no series disappears).",
	        ns.tls_dialer_restarts);
	put_one(b, "dledger_hello_timeouts_total", "counter",
	        "Connections closed because their TLS handshake or SP header did not come "
	        "within the hello timeout (inbound and outbound).",
	        ns.hello_timeouts);
	put_one(b, "dledger_peer_connects_total", "counter",
	        "Outbound connections to peers made (the first and each redial).",
	        ns.peer_connects);
	put_one(b, "dledger_peer_dial_failures_total", "counter",
	        "Outbound dials to peers that failed (refused, timed out); each redialed after "
	        "a backoff.",
	        ns.peer_dial_failures);
	put_one(b, "dledger_peer_send_timeouts_total", "counter",
	        "Outbound connections to peers closed because a write did not finish within "
	        "the send timeout.",
	        ns.peer_send_timeouts);
	struct tp_tls_stats ts;
	tp_tls_stats(&ts);
	put_one(b, "dledger_tls_handshakes_total", "counter", "TLS handshakes completed.",
	        ts.handshakes);
	family(b, "dledger_tls_handshake_failures_total", "counter",
	       "TLS handshakes that failed, by reason (each also logged).");
	for (int i = 0; i < TP_TLS_FAIL_COUNT; i++)
		put(b, "dledger_tls_handshake_failures_total{reason=\"%s\"} %" PRIu64 "\n",
		    tp_tls_fail_name((enum tp_tls_fail)i), ts.failures[i]);
	put_one(b, "dledger_dropped_sends_total", "counter",
	        "Sends dropped (peer queue full or send timed out).", ns.dropped_sends);
	put_one(b, "dledger_rejected_messages_total", "counter",
	        "Messages refused by the runtime (member stopping, out of memory).", ns.rejected);
	put_one(b, "dledger_flush_passes_total", "counter",
	        "Group-commit passes of the flush thread.", ns.flush_passes);
	put_one(b, "dledger_fsyncs_total", "counter", "fdatasync() calls of the flush thread.",
	        ns.file_syncs);
	uint64_t rss, threads;
	proc_self(&rss, &threads);
	put_one(b, "dledger_process_resident_memory_bytes", "gauge",
	        "Resident memory of the node process (/proc/self/statm).", rss);
	put_one(b, "dledger_process_threads", "gauge",
	        "Threads of the node process (/proc/self/status).", threads);
	render_hist(b, "dledger_fsync_duration_seconds",
	            "Duration of each fdatasync() of the flush thread.",
	            rt_node_fsync_latency(node));
	render_hist(b, "dledger_commit_latency_seconds",
	            "Time from a client append's proposal to its acknowledgement.",
	            rt_node_commit_latency(node));
}

int met_render(struct rt_node *node, char **text, size_t *len)
{
	*text = NULL;
	*len = 0;
	uint32_t total = 0;
	(void)rt_node_status(node, NULL, 0, &total);
	/* Members may be added meanwhile: room for a few more; any beyond
	 * are left out of this scrape. */
	uint32_t cap = total + 16 > RT_MAX_MEMBERS ? RT_MAX_MEMBERS : total + 16;
	struct rt_member_status *st = calloc(cap, sizeof(*st));
	if (st == NULL)
		return DL_ENOMEM;
	uint32_t n = rt_node_status(node, st, cap, &total);
	assert(n <= cap);
	_Static_assert(RAFT_LEADER == 3, "dledger_member_role documents 3 as leader");
	uint64_t leaders = 0;
	for (uint32_t i = 0; i < n; i++)
		leaders += st[i].role == RAFT_LEADER && !st[i].failed;
	struct tbuf b = {0};
	render_members(&b, st, n);
	free(st);
	render_node(&b, node, leaders);
	if (b.failed) {
		free(b.p);
		return b.too_big ? DL_ETOOBIG : DL_ENOMEM;
	}
	*text = b.p;
	*len = b.len;
	return DL_OK;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

static void met_free(void *arg)
{
	struct met_server *m = arg;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static int respond(nng_aio *aio, uint16_t status, const char *ctype, const void *body, size_t len)
{
	nng_http_res *res = NULL;
	int rv = nng_http_res_alloc(&res);
	if (rv == 0)
		rv = nng_http_res_set_status(res, status);
	if (rv == 0)
		rv = nng_http_res_set_header(res, "Content-Type", ctype);
	if (rv == 0)
		rv = nng_http_res_copy_data(res, body, len);
	if (rv != 0) {
		nng_http_res_free(res);
		return rv;
	}
	nng_aio_set_output(aio, 0, res);
	return 0;
}

static void on_scrape(nng_aio *aio)
{
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	struct met_server *m = nng_http_handler_get_data(h);
	char *text = NULL;
	size_t len = 0;
	int rc = DL_ECLOSED;
	pthread_mutex_lock(&m->mu);
	if (m->node != NULL)
		rc = met_render(m->node, &text, &len);
	pthread_mutex_unlock(&m->mu);
	int rv;
	if (rc == DL_OK) {
		rv = respond(aio, NNG_HTTP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8",
		             text, len);
	} else {
		const char *why = dl_strerror(rc);
		if (rc != DL_ECLOSED)
			dl_log(DL_LOG_WARN, NULL, NULL, "metrics scrape failed: %s", why);
		rv = respond(aio,
		             rc == DL_ECLOSED ? NNG_HTTP_STATUS_SERVICE_UNAVAILABLE
		                              : NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR,
		             "text/plain; charset=utf-8", why, strlen(why));
	}
	free(text);
	nng_aio_finish(aio, rv);
	dl_trim_after(len);
}

/* "host:port" with a port in 1..65535 -> "http://host:port". */
static int make_url(const char *addr, char *url, size_t cap, struct dl_errctx *err)
{
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	if (colon == NULL || colon == addr)
		return dl_errf(err, DL_EINVAL, "metricsAddress \"%s\": expected host:port",
		               addr ? addr : "");
	char *end = NULL;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port == 0 || port > 65535)
		return dl_errf(err, DL_EINVAL, "metricsAddress \"%s\": bad port", addr);
	if ((size_t)snprintf(url, cap, "http://%s", addr) >= cap)
		return dl_errf(err, DL_EINVAL, "metricsAddress \"%s\": too long", addr);
	return DL_OK;
}

static int nng_to_dl(int rv)
{
	switch (rv) {
	case NNG_EADDRINUSE: return DL_EBUSY;
	case NNG_EADDRINVAL: return DL_EINVAL;
	case NNG_ENOMEM: return DL_ENOMEM;
	default: return DL_EIO;
	}
}

int met_start(const char *addr, struct rt_node *node, struct met_server **out,
              struct dl_errctx *err)
{
	*out = NULL;
	assert(node != NULL && out != NULL);
	char url_text[300];
	int rc = make_url(addr, url_text, sizeof(url_text), err);
	if (rc != DL_OK)
		return rc;
	nng_url *url = NULL;
	int rv = nng_url_parse(&url, url_text);
	if (rv != 0)
		return dl_errf(err, DL_EINVAL, "metricsAddress \"%s\": %s", addr, nng_strerror(rv));
	struct met_server *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		nng_url_free(url);
		return dl_errf(err, DL_ENOMEM, "metrics server");
	}
	pthread_mutex_init(&m->mu, NULL);
	m->node = node;
	const char *step = "handler";
	rv = nng_http_handler_alloc(&m->h, "/metrics", on_scrape);
	if (rv != 0)
		goto err_m;
	/* From here the handler owns m (met_free). */
	rv = nng_http_handler_set_data(m->h, m, met_free);
	if (rv != 0)
		goto err_m;
	(void)nng_http_handler_collect_body(m->h, true, 0); /* GET: no body */
	step = "server";
	rv = nng_http_server_hold(&m->srv, url);
	if (rv != 0)
		goto err_h;
	rv = nng_http_server_add_handler(m->srv, m->h);
	if (rv != 0) {
		nng_http_server_release(m->srv);
		goto err_h;
	}
	step = "listen";
	rv = nng_http_server_start(m->srv);
	if (rv != 0)
		goto err_srv;
	nng_url_free(url);
	dl_log(DL_LOG_INFO, NULL, NULL, "metrics at http://%s/metrics", addr);
	*out = m;
	return DL_OK;

err_srv:
	/* The server frees the handler it holds (and so m) when released. */
	nng_http_server_release(m->srv);
	nng_url_free(url);
	return dl_errf(err, nng_to_dl(rv), "metricsAddress \"%s\": %s: %s", addr, step,
	               nng_strerror(rv));
err_h:
	nng_http_handler_free(m->h); /* frees m */
	nng_url_free(url);
	return dl_errf(err, nng_to_dl(rv), "metricsAddress \"%s\": %s: %s", addr, step,
	               nng_strerror(rv));
err_m:
	if (m->h != NULL)
		nng_http_handler_free(m->h);
	pthread_mutex_destroy(&m->mu);
	free(m);
	nng_url_free(url);
	return dl_errf(err, nng_to_dl(rv), "metrics %s: %s", step, nng_strerror(rv));
}

void met_stop(struct met_server *m)
{
	if (m == NULL)
		return;
	nng_http_server *srv = m->srv;
	pthread_mutex_lock(&m->mu);
	m->node = NULL; /* a scrape from now on answers 503 */
	pthread_mutex_unlock(&m->mu);
	nng_http_server_stop(srv);
	nng_http_server_release(srv); /* drops the handler, which frees m */
}
