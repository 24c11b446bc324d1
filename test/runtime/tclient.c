#include "test/runtime/tclient.h"

#include <nng/protocol/reqrep0/req.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/dl_err.h"
#include "common/dl_time.h"
#include "transport/transport.h"

static const struct tp_tls *default_tls;

/* With TLS, before nng_close(): puts off the dialer's next dial by an hour
 * and closes the pipe, protocol first, then transport. nng 1.5.2's tls+tcp
 * transport otherwise closes a socket's pipes transport first, and a
 * message that completed just before restarts a receive that is dropped,
 * so the pipe's teardown (and nng's one reaper thread) waits for good; and
 * closing the pipe starts a redial that the socket's close races. */
static void close_pipe_first(nng_dialer d, uint32_t pipe)
{
	if (nng_dialer_id(d) > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 3600 * 1000);
	if (pipe != 0) {
		nng_pipe p = NNG_PIPE_INITIALIZER;
		p.id = pipe;
		nng_pipe_close(p);
	}
}

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)ev;
	struct tclient *c = arg;
	atomic_store(&c->pipe, nng_pipe_id(p));
}

void tc_use_tls(const struct tp_tls *tls) { default_tls = tls; }

int tc_open(struct tclient *c, const char *addr) { return tc_open_tls(c, addr, default_tls, NULL); }

int tc_open_tls(struct tclient *c, const char *addr, const struct tp_tls *tls, int *nng_rv)
{
	memset(c, 0, sizeof(*c));
	char url[400];
	if (tp_make_url(tls, addr, url, sizeof(url)) != 0)
		return DL_EINVAL;
	if (nng_req0_open_raw(&c->s) != 0)
		return DL_EIO;
	nng_pipe_notify(c->s, NNG_PIPE_EV_ADD_POST, on_pipe, c);
	nng_dialer d = NNG_DIALER_INITIALIZER;
	int rv = nng_dialer_create(&d, c->s, url);
	c->dialer = d;
	c->tls = tls != NULL;
	if (rv == 0 && tls != NULL)
		rv = tp_tls_setup_dialer(tls, d, addr);
	if (rv == 0)
		rv = nng_dialer_start(d, 0);
	if (nng_rv != NULL)
		*nng_rv = rv;
	if (rv != 0) {
		nng_close(c->s);
		return DL_EIO;
	}
	c->next_id = 1;
	return 0;
}

void tc_close(struct tclient *c)
{
	if (c->reply)
		nng_msg_free(c->reply);
	c->reply = NULL;
	if (c->tls)
		close_pipe_first(c->dialer, atomic_load(&c->pipe));
	nng_close(c->s);
}

static int send_frame(struct tclient *c, struct tp_fb *fb, uint64_t id)
{
	nng_msg *m;
	if (nng_msg_alloc(&m, 0) != 0)
		return DL_ENOMEM;
	nng_msg_header_append_u32(m, 0x80000000u | (uint32_t)(id & 0x7fffffff));
	nng_msg_append(m, fb->buf, fb->len);
	if (nng_sendmsg(c->s, m, 0) != 0) {
		nng_msg_free(m);
		return DL_EIO;
	}
	return 0;
}

int tc_send(struct tclient *c, struct tp_fb *fb)
{
	return send_frame(c, fb, c->next_id++);
}

int tc_call(struct tclient *c, struct tp_fb *fb, uint64_t id, struct tp_hdr *h, int timeout_ms)
{
	int rc = send_frame(c, fb, id);
	if (rc != 0)
		return rc;
	return tc_wait(c, id, h, timeout_ms);
}

int tc_wait(struct tclient *c, uint64_t id, struct tp_hdr *h, int timeout_ms)
{
	uint64_t deadline = dl_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = dl_now_ns();
		if (now >= deadline)
			return DL_ETIMEDOUT;
		nng_socket_set_ms(c->s, NNG_OPT_RECVTIMEO, (nng_duration)((deadline - now) / 1000000ull + 1));
		nng_msg *r;
		int rv = nng_recvmsg(c->s, &r, 0);
		if (rv == NNG_ETIMEDOUT)
			return DL_ETIMEDOUT;
		if (rv != 0)
			return DL_EIO;
		size_t off = 0, len = nng_msg_len(r);
		const uint8_t *buf = nng_msg_body(r);
		if (tp_frame_begin(buf, len, &off) == 0 && tp_frame_next(buf, len, &off, h) == 0 &&
		    h->request_id == id) {
			if (c->reply)
				nng_msg_free(c->reply);
			c->reply = r;
			return 0;
		}
		nng_msg_free(r);
	}
}

int tc_append(const char *addr, const char *group, const char *member, const void *data,
	      uint32_t len, uint64_t *index, char *leader, int timeout_ms)
{
	struct tclient c;
	int rc = tc_open(&c, addr);
	if (rc != 0)
		return rc;
	struct tp_fb fb;
	tp_fb_init(&fb, 1 << 20);
	struct raft_entry e = {.data = data, .len = len};
	struct tp_addr a = {.group = group, .target = member, .sender = "", .request_id = 7};
	struct tp_hdr h;
	rc = tp_fb_add_append(&fb, &a, &e, 1);
	if (rc == 0)
		rc = tc_call(&c, &fb, 7, &h, timeout_ms);
	if (rc == 0 && h.type == TP_APPEND_RESP) {
		struct tp_append_resp r;
		rc = tp_decode_append_resp(&h, &r);
		if (rc == 0)
			rc = r.code;
		if (rc == 0)
			*index = r.first_index;
	} else if (rc == 0 && h.type == TP_ERROR) {
		struct tp_error er;
		rc = tp_decode_error(&h, &er);
		if (rc == 0)
			rc = er.code;
		if (leader)
			snprintf(leader, TP_NAME_MAX + 1, "%s", er.leader);
	} else if (rc == 0) {
		rc = DL_EPROTO;
	}
	tp_fb_free(&fb);
	tc_close(&c);
	return rc;
}
