/*
 * control.c - the control socket server (see control.h for the threads).
 *
 * Every request is a msgpack map with "op"; every reply a map with "ok"
 * and, on failure, "code" (enum dl_err) and "error" (text). A request that
 * cannot be decoded gets an error reply and is counted (bad_requests, in
 * the status reply); the node goes on.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "common/dl_log.h"
#include "control/control_internal.h"
#include "control/ctl_pack.h"


struct ctl_server {
	struct cfg *cfg;      /* borrowed; the server thread's once started */
	struct rt_node *node; /* borrowed */
	struct ctl_state st;
	char state_path[CFG_PATH_MAX + 32];
	char url[CFG_SOCKPATH_MAX + 8];
	nng_socket sock;
	/* The server thread's receive: waited on without a timeout (no
	 * polling while idle); ctl_close() stops it, which ends the wait. */
	nng_aio *rx_aio;
	bool sock_open, listening, thread_started;
	pthread_t thread;
	/* Held while a request is served and while a SIGHUP reload runs
	 * (ctl_reload_signal), so reloads and requests never interleave. */
	pthread_mutex_t lock;
	struct ctl_balancer *balancer; /* leaderBalance: true; else NULL */
	atomic_bool stop; /* relaxed: only asks the thread to return; join orders the rest */
	uint64_t requests, bad_requests;
	struct rt_member_status *rows; /* RT_MAX_MEMBERS, for status */
};

/* ---- open / start / close ----------------------------------------------------- */

/* Whether a node answers on the socket path (a connection is accepted). */
static bool socket_live(const char *url)
{
	nng_socket q;
	if (nng_req0_open(&q) != 0)
		return false;
	bool live = nng_dial(q, url, NULL, 0) == 0;
	nng_close(q);
	return live;
}

int ctl_open(struct cfg *c, struct ctl_server **out, struct dl_errctx *err)
{
	DL_ASSERT(c != NULL && out != NULL);
	DL_ASSERT(c->node.control_socket != NULL && c->node.store_base_dir != NULL);
	*out = NULL;
	struct ctl_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	s->cfg = c;
	atomic_init(&s->stop, false);
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->url, sizeof(s->url), "ipc://%s", c->node.control_socket);
	snprintf(s->state_path, sizeof(s->state_path), "%s/%s", c->node.store_base_dir,
		 CTL_STATE_FILE);
	int rc = DL_OK;
	if (socket_live(s->url)) {
		rc = dl_errf(err, DL_EEXIST, "control socket %s: another node is running there",
			     c->node.control_socket);
		goto err_free;
	}
	rc = ctl_state_load(s->state_path, &s->st, err);
	if (rc == DL_OK)
		rc = ctl_apply_state(s->cfg, &s->st, s->state_path, err);
	if (rc != DL_OK)
		goto err_free;
	s->rows = calloc(RT_MAX_MEMBERS, sizeof(*s->rows));
	if (s->rows == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	*out = s;
	return DL_OK;
err_free:
	ctl_close(s);
	return rc;
}

static void *server_main(void *arg);

/* mkdir -p of the directory holding `path` (with storeType memory nothing
 * else creates storeBaseDir, where the socket lives by default). */
static int make_parent_dirs(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return ENAMETOOLONG;
	char *slash = strrchr(buf, '/');
	if (slash == NULL || slash == buf)
		return 0;
	*slash = '\0';
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return errno;
	return 0;
}

int ctl_start(struct ctl_server *s, struct rt_node *n, struct dl_errctx *err)
{
	DL_ASSERT(s != NULL && n != NULL && !s->thread_started);
	const char *path = s->cfg->node.control_socket;
	s->node = n;
	int e = make_parent_dirs(path);
	if (e != 0)
		return dl_errf(err, DL_EIO, "control socket %s: cannot create its directory: %s",
			       path, strerror(e));
	struct stat sb;
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode))
			return dl_errf(err, DL_EEXIST, "control socket %s: exists and is not a socket",
				       path);
		if (socket_live(s->url))
			return dl_errf(err, DL_EEXIST, "control socket %s: another node is running there",
				       path);
		if (unlink(path) != 0)
			return dl_errf(err, DL_EIO, "control socket %s: %s", path, strerror(errno));
		dl_log(DL_LOG_INFO, NULL, NULL, "control socket %s: removed a stale one", path);
	}
	int rv = nng_rep0_open(&s->sock);
	if (rv != 0)
		return dl_errf(err, DL_EIO, "control socket: %s", nng_strerror(rv));
	s->sock_open = true;
	nng_listener l;
	rv = nng_listener_create(&l, s->sock, s->url);
	if (rv == 0)
		rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
	if (rv == 0) {
		/* nng applies the permissions after bind(): until then the
		 * socket would have the umask's mode, open to anyone who can
		 * reach the directory. Created 0600 from the start instead. (The
		 * umask is the process's: a file another thread creates in
		 * these microseconds is only more private.) */
		mode_t old = umask(0177);
		rv = nng_listener_start(l, 0);
		umask(old);
	}
	if (rv == 0 && chmod(path, 0600) != 0) /* nng sets it too; make sure */
		rv = NNG_ESYSERR + errno;
	if (rv == 0)
		rv = nng_aio_alloc(&s->rx_aio, NULL, NULL);
	if (rv != 0)
		return dl_errf(err, DL_EIO, "control socket %s: %s", path, nng_strerror(rv));
	s->listening = true;
	if (pthread_create(&s->thread, NULL, server_main, s) != 0)
		return dl_errf(err, DL_ENOMEM, "control socket: cannot start its thread");
	s->thread_started = true;
	dl_log(DL_LOG_INFO, NULL, NULL, "control socket %s (mode 0600)", path);
	if (s->cfg->node.leader_balance && s->cfg->node.self_host != NULL) {
		char addr[CFG_ADDR_STR_MAX];
		cfg_format_addr(s->cfg->node.self_host, s->cfg->node.self_port, addr, sizeof(addr));
		/* A round every 5 heartbeats of the node defaults, at least 500 ms. */
		uint32_t period_ms = 5 * s->cfg->node.defaults.heart_beat_time_interval_ms;
		int rc = ctl_balance_start(n, &s->cfg->node, addr, period_ms < 500 ? 500 : period_ms,
					   &s->balancer, err);
		if (rc != DL_OK)
			return rc;
	}
	return DL_OK;
}

void ctl_close(struct ctl_server *s)
{
	if (s == NULL)
		return;
	ctl_balance_stop(s->balancer);
	if (s->thread_started) {
		atomic_store_explicit(&s->stop, true, memory_order_relaxed);
		nng_aio_stop(s->rx_aio); /* its wait ends; later receives fail at once */
		pthread_join(s->thread, NULL);
	}
	if (s->rx_aio != NULL)
		nng_aio_free(s->rx_aio);
	if (s->sock_open)
		nng_close(s->sock); /* no receive is pending: the thread is gone */
	if (s->listening)
		unlink(s->cfg->node.control_socket);
	ctl_state_free(&s->st);
	pthread_mutex_destroy(&s->lock);
	free(s->rows);
	free(s);
}

/* ---- msgpack helpers ---------------------------------------------------------- */

static void pk_ku64(msgpack_packer *pk, const char *k, uint64_t v)
{
	ctl_pack_str(pk, k);
	msgpack_pack_uint64(pk, v);
}

static void pk_error(msgpack_packer *pk, int code, const char *msg)
{
	msgpack_pack_map(pk, 3);
	ctl_pack_str(pk, "ok");
	msgpack_pack_false(pk);
	pk_ku64(pk, "code", (uint64_t)code);
	ctl_pack_kstr(pk, "error", msg[0] ? msg : dl_strerror(code));
}

static void pk_ok(msgpack_packer *pk, uint32_t extra)
{
	msgpack_pack_map(pk, 1 + extra);
	ctl_pack_str(pk, "ok");
	msgpack_pack_true(pk);
}

/* ---- status --------------------------------------------------------------------- */

static const char *role_name(uint8_t role)
{
	switch (role) {
	case RAFT_LEADER: return "leader";
	case RAFT_CANDIDATE: return "candidate";
	case RAFT_PRECANDIDATE: return "precandidate";
	default: return "follower";
	}
}

static void pk_member(msgpack_packer *pk, const struct rt_member_status *m)
{
	bool lead = m->role == RAFT_LEADER;
	msgpack_pack_map(pk, 22);
	ctl_pack_kstr(pk, "group", m->group);
	ctl_pack_kstr(pk, "id", m->id);
	char stopped[128];
	snprintf(stopped, sizeof(stopped), "stopped: %s", m->stopped);
	ctl_pack_kstr(pk, "role", m->failed ? stopped : role_name(m->role));
	ctl_pack_str(pk, "voter");
	if (m->voter)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	pk_ku64(pk, "term", m->term);
	ctl_pack_kstr(pk, "leader", m->leader);
	pk_ku64(pk, "first", m->first_index);
	pk_ku64(pk, "last", m->last_index);
	pk_ku64(pk, "committed", m->commit_index);
	pk_ku64(pk, "durable", m->durable_index);
	pk_ku64(pk, "pending", m->pending_appends);
	ctl_pack_kstr(pk, "preferred", m->preferred);
	ctl_pack_str(pk, "failed");
	if (m->failed)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	pk_ku64(pk, "corrupt_reads", m->corrupt_reads);
	pk_ku64(pk, "send_failures", m->send_failures);
	pk_ku64(pk, "damaged_index", m->damaged_index);
	pk_ku64(pk, "damage_handoffs", m->damage_handoffs);
	pk_ku64(pk, "repaired_in_place", m->repaired_in_place);
	pk_ku64(pk, "refused_msgs", m->refused_msgs);
	pk_ku64(pk, "commit_conflicts", m->commit_conflicts);
	pk_ku64(pk, "mailbox_full", m->mailbox_full);
	/* Followers of a leader only: the others do not track match indexes. */
	uint32_t nf = 0;
	for (uint32_t i = 0; lead && i < m->n_peers; i++)
		nf += strcmp(m->peers[i].id, m->id) != 0;
	ctl_pack_str(pk, "followers");
	msgpack_pack_array(pk, nf);
	for (uint32_t i = 0; lead && i < m->n_peers; i++) {
		const struct rt_peer_status *p = &m->peers[i];
		if (strcmp(p->id, m->id) == 0)
			continue;
		msgpack_pack_map(pk, 4);
		ctl_pack_kstr(pk, "id", p->id);
		pk_ku64(pk, "match", p->match_index);
		pk_ku64(pk, "lag", m->last_index > p->match_index ? m->last_index - p->match_index : 0);
		ctl_pack_str(pk, "active");
		if (p->active)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
	}
}

static void op_status(struct ctl_server *s, msgpack_packer *pk)
{
	uint32_t total = 0;
	uint32_t n = rt_node_status(s->node, s->rows, RT_MAX_MEMBERS, &total);
	DL_ASSERT(n <= RT_MAX_MEMBERS);
	uint64_t leaders = 0;
	for (uint32_t i = 0; i < n; i++)
		leaders += s->rows[i].role == RAFT_LEADER;
	pk_ok(pk, 4);
	pk_ku64(pk, "leaders", leaders);
	pk_ku64(pk, "requests", s->requests);
	pk_ku64(pk, "bad_requests", s->bad_requests);
	ctl_pack_str(pk, "members");
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++)
		pk_member(pk, &s->rows[i]);
}

/* ---- add-group / remove-group ---------------------------------------------------- */

/* Moves the request's keys (req->rec) into the state once it records them. */
static int op_add(struct ctl_server *s, struct ctl_req *req, msgpack_packer *pk,
		  struct dl_errctx *err)
{
	struct ctl_rec *r = &req->rec;
	struct cfg_group g = {0};
	int rc = DL_OK;
	const char *name = ctl_rec_get(r, "group");
	ssize_t k = name != NULL ? ctl_cfg_find(s->cfg, name) : -1;
	if (k >= 0)
		rc = dl_errf(err, DL_EEXIST, "group '%s' already runs on this node (member '%s')",
			     name, s->cfg->groups[k].self_id);
	if (rc == DL_OK)
		rc = ctl_group_of_rec(s->cfg, r, &g, err);
	if (rc == DL_OK)
		rc = ctl_check_no_other_member(s->cfg, &g, err);
	if (rc != DL_OK)
		goto out;
	struct rt_member_config mc;
	ctl_member_config(s->cfg, &g, &mc);
	char dir[CFG_PATH_MAX];
	ctl_member_dir(s->cfg, &g, dir, sizeof(dir));
	bool resumed = access(dir, F_OK) == 0;
	rc = rt_node_add(s->node, &mc, err);
	if (rc != DL_OK)
		goto out;
	/* mc borrows g's strings; cfg_add_group moves the pointers, not the
	 * strings, so the running member keeps valid ones. */
	rc = cfg_add_group(s->cfg, &g, err);
	if (rc != DL_OK) {
		rt_node_remove(s->node, mc.group, mc.self_id);
		goto out;
	}
	rc = ctl_state_note_added(&s->st, r);
	if (rc == DL_OK)
		rc = ctl_state_save(s->state_path, &s->st, err);
	if (rc != DL_OK) {
		dl_errf(err, rc, "added, but not recorded in %s: %s", s->state_path,
			err->msg[0] ? err->msg : dl_strerror(rc));
		goto out;
	}
	dl_log(DL_LOG_INFO, mc.group, mc.self_id, "added at run time%s",
	       resumed ? " (resuming from its data)" : "");
	pk_ok(pk, 1);
	ctl_pack_str(pk, "resumed");
	if (resumed)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
out:
	cfg_group_free(&g);
	return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 ? 0 : -1;
}

static int op_remove(struct ctl_server *s, const struct ctl_req *req, msgpack_packer *pk,
		     struct dl_errctx *err)
{
	const char *group = req->group, *id = req->id;
	bool delete_data = req->delete_data;
	ssize_t k = ctl_cfg_find(s->cfg, group);
	if (k < 0 || strcmp(s->cfg->groups[k].self_id, id) != 0)
		return dl_errf(err, DL_ENOTFOUND, "this node has no member '%s' of group '%s'", id,
			       group);
	char dir[CFG_PATH_MAX];
	ctl_member_dir(s->cfg, &s->cfg->groups[k], dir, sizeof(dir));
	int rc = rt_node_remove(s->node, group, id);
	if (rc != DL_OK && rc != DL_ENOTFOUND) /* not running (failed): still drop it */
		return dl_errf(err, rc, "cannot stop the member: %s", dl_strerror(rc));
	ctl_cfg_drop(s->cfg, (size_t)k);
	rc = ctl_state_note_removed(&s->st, group, id);
	if (rc == DL_OK)
		rc = ctl_state_save(s->state_path, &s->st, err);
	if (rc != DL_OK)
		return dl_errf(err, rc, "removed, but not recorded in %s: %s", s->state_path,
			       err->msg[0] ? err->msg : dl_strerror(rc));
	if (delete_data && access(dir, F_OK) == 0 &&
	    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return dl_errf(err, DL_EIO, "removed, but deleting %s failed: %s", dir,
			       strerror(errno));
	dl_log(DL_LOG_INFO, group, id, "removed at run time%s", delete_data ? ", data deleted" : "");
	pk_ok(pk, 1);
	ctl_pack_kstr(pk, "data", delete_data ? "deleted" : dir);
	return DL_OK;
}

/* ---- transfer-leader ------------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int op_transfer(struct ctl_server *s, const struct ctl_req *req, msgpack_packer *pk,
		       struct dl_errctx *err)
{
	const char *group = req->group, *to = req->to;
	uint64_t timeout_ms = req->timeout_ms;
	ssize_t k = ctl_cfg_find(s->cfg, group);
	if (k < 0)
		return dl_errf(err, DL_ENOTFOUND, "this node has no member of group '%s'", group);
	const char *self = s->cfg->groups[k].self_id;
	if (cfg_peers_find(&s->cfg->groups[k].peers, to) < 0)
		return dl_errf(err, DL_EINVAL, "'%s' is not a member of group '%s'", to, group);
	struct rt_member_status *st = &s->rows[0];
	int rc = rt_node_member_status(s->node, group, self, st);
	if (rc != DL_OK)
		return dl_errf(err, rc, "member '%s' of '%s' is not running", self, group);
	if (st->role != RAFT_LEADER && strcmp(st->leader, to) != 0)
		return dl_errf(err, DL_ENOTLEADER,
			       "member '%s' on this node does not lead group '%s'; %s%s%s", self,
			       group, st->leader[0] ? "the leader is '" : "no leader is known",
			       st->leader, st->leader[0] ? "': ask its node" : "");
	uint64_t t0 = now_ms(), term0 = st->term;
	if (strcmp(st->leader, to) != 0 && (rc = rt_node_transfer(s->node, group, self, to)) != 0)
		return dl_errf(err, rc, "transfer refused: %s", dl_strerror(rc));
	/* Done when our member names `to` as the leader (it learns so from the
	 * new leader's first message). */
	for (;;) {
		rc = rt_node_member_status(s->node, group, self, st);
		if (rc != DL_OK)
			return dl_errf(err, rc, "member '%s' of '%s' went away", self, group);
		bool to_leads = strcmp(st->leader, to) == 0 &&
				(strcmp(to, self) != 0 || st->role == RAFT_LEADER);
		if (to_leads)
			break;
		if (now_ms() - t0 >= timeout_ms)
			return dl_errf(err, DL_ETIMEDOUT,
				       "'%s' does not lead '%s' after %" PRIu64 " ms: leader '%s', "
				       "term %" PRIu64 " (was %" PRIu64 ")",
				       to, group, timeout_ms, st->leader[0] ? st->leader : "none",
				       st->term, term0);
		struct timespec ts = {0, 5 * 1000000};
		nanosleep(&ts, NULL);
	}
	pk_ok(pk, 3);
	ctl_pack_kstr(pk, "leader", st->leader);
	pk_ku64(pk, "term", st->term);
	pk_ku64(pk, "elapsed_ms", now_ms() - t0);
	return DL_OK;
}

/* ---- reload ------------------------------------------------------------------------ */

static void pk_strs(msgpack_packer *pk, const char *key, const struct ctl_strs *l)
{
	ctl_pack_str(pk, key);
	msgpack_pack_array(pk, (uint32_t)l->n);
	for (size_t i = 0; i < l->n; i++)
		ctl_pack_str(pk, l->v[i]);
}

/* Runs with s->lock held. */
static int op_reload(struct ctl_server *s, msgpack_packer *pk, struct dl_errctx *err)
{
	struct ctl_reload r;
	int rc = ctl_reload_run(s->cfg, &s->st, s->state_path, s->node, &r, err);
	if (rc != DL_OK) {
		dl_log(DL_LOG_WARN, NULL, NULL, "reload refused, nothing changed: %s", err->msg);
		return rc;
	}
	char *text = ctl_reload_text(s->cfg->source, &r);
	dl_log(DL_LOG_INFO, NULL, NULL, "%s", text ? text : "reload done");
	pk_ok(pk, 8);
	ctl_pack_kstr(pk, "report", text ? text : "");
	pk_strs(pk, "added", &r.added);
	pk_strs(pk, "removed", &r.removed);
	pk_strs(pk, "unchanged", &r.unchanged);
	pk_strs(pk, "restart", &r.restart);
	pk_strs(pk, "node_keys", &r.node_keys);
	pk_strs(pk, "applied", &r.applied);
	pk_strs(pk, "failed", &r.failed);
	free(text);
	ctl_reload_free(&r);
	return DL_OK;
}

void ctl_reload_signal(struct ctl_server *s)
{
	DL_ASSERT(s != NULL && s->thread_started);
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	struct dl_errctx err = {{0}};
	pthread_mutex_lock(&s->lock);
	(void)op_reload(s, &pk, &err); /* logs its report or why it refused */
	pthread_mutex_unlock(&s->lock);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- the server thread ------------------------------------------------------------ */

static int run(struct ctl_server *s, struct ctl_req *req, msgpack_packer *pk,
	       struct dl_errctx *err)
{
	switch (req->op) {
	case CTL_OP_STATUS: op_status(s, pk); return DL_OK;
	case CTL_OP_ADD: return op_add(s, req, pk, err);
	case CTL_OP_REMOVE: return op_remove(s, req, pk, err);
	case CTL_OP_TRANSFER: return op_transfer(s, req, pk, err);
	case CTL_OP_RELOAD: return op_reload(s, pk, err);
	}
	DL_ASSERT(false && "op checked by ctl_req_decode");
	return DL_EINVAL;
}

static void serve(struct ctl_server *s, const void *buf, size_t len, msgpack_packer *pk)
{
	struct dl_errctx err = {{0}};
	struct ctl_req req;
	int rc = ctl_req_decode(buf, len, &req, &err);
	if (rc == DL_OK)
		rc = run(s, &req, pk, &err);
	ctl_req_free(&req);
	if (rc == DL_EPROTO || rc == DL_ETOOBIG) {
		s->bad_requests++;
		dl_log(DL_LOG_WARN, NULL, NULL, "control: %s (%" PRIu64 " bad requests)", err.msg,
		       s->bad_requests);
	}
	if (rc != DL_OK)
		pk_error(pk, rc, err.msg);
}

static void *server_main(void *arg)
{
	struct ctl_server *s = arg;
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
		nng_recv_aio(s->sock, s->rx_aio);
		nng_aio_wait(s->rx_aio);
		int rv = nng_aio_result(s->rx_aio);
		if (rv == NNG_ECANCELED || rv == NNG_ECLOSED)
			break;
		if (rv != 0)
			continue;
		nng_msg *m = nng_aio_get_msg(s->rx_aio);
		s->requests++;
		msgpack_sbuffer_clear(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		pthread_mutex_lock(&s->lock);
		serve(s, nng_msg_body(m), nng_msg_len(m), &pk);
		pthread_mutex_unlock(&s->lock);
		nng_msg_clear(m);
		if (nng_msg_append(m, sb.data, sb.size) != 0 || nng_sendmsg(s->sock, m, 0) != 0)
			nng_msg_free(m);
	}
	msgpack_sbuffer_destroy(&sb);
	return NULL;
}
