/*
 * tls_engine.c - our TLS engine for nng 1.5, over mbedTLS 2.28. See
 * tls_internal.h for why we have one; the contract is nng's
 * <nng/supplemental/tls/engine.h>.
 *
 * It behaves like any mbedTLS engine (TLS 1.2 only: mbedTLS 2.28 has no
 * 1.3; CA chain with an optional CRL; own certificate and key; auth mode;
 * server name checked by the client side) and adds:
 *  - the peer's role, read from its verified certificate once the handshake
 *    is done, stored in the connection and handed to the thread that asks
 *    nng whether the connection is verified (tp_tls_take_role);
 *  - on the client side, a server whose certificate is not a node
 *    certificate fails the handshake: every TLS server of ours is a node, so
 *    a client certificate (or anything else the CA signed) cannot pose as
 *    one;
 *  - every failed handshake is counted by reason (tp_tls_stats) and logged at
 *    WARN, at most one line a second per reason, naming the reason: the
 *    verification flags in words (mbedtls_x509_crt_verify_info), else
 *    mbedtls_strerror, with a hint for the usual causes.
 *
 * Threads: nng calls the conn ops under the connection's lock and the config
 * ops under the config's lock; the shared random generator (ctr_drbg, with
 * MBEDTLS_THREADING_C) and the counters are safe from any thread.
 */
#include "transport/tls_internal.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <nng/supplemental/tls/engine.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dl_log.h"

#define LOG_GAP_NS 1000000000ull /* one line a second per reason */

/* ---- counters and the rate-limited log ------------------------------------- */

static _Atomic uint64_t n_handshakes, n_server_handshakes;
static _Atomic uint64_t n_failures[TP_TLS_FAIL_COUNT];

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t log_last_ns[TP_TLS_FAIL_COUNT];
static uint64_t log_skipped[TP_TLS_FAIL_COUNT];

static const char *const fail_names[TP_TLS_FAIL_COUNT] = {
	[TP_TLS_FAIL_VERIFY] = "verify",
	[TP_TLS_FAIL_NO_CERT] = "no_cert",
	[TP_TLS_FAIL_NOT_TLS] = "not_tls",
	[TP_TLS_FAIL_REFUSED] = "refused_by_peer",
	[TP_TLS_FAIL_NOT_NODE] = "not_node",
	[TP_TLS_FAIL_OTHER] = "other",
};

const char *tp_tls_fail_name(enum tp_tls_fail kind)
{
	return (unsigned)kind < TP_TLS_FAIL_COUNT ? fail_names[kind] : "?";
}

void tp_tls_stats(struct tp_tls_stats *st)
{
	st->handshakes = atomic_load_explicit(&n_handshakes, memory_order_relaxed);
	st->server_handshakes = atomic_load_explicit(&n_server_handshakes, memory_order_relaxed);
	for (int i = 0; i < TP_TLS_FAIL_COUNT; i++)
		st->failures[i] = atomic_load_explicit(&n_failures[i], memory_order_relaxed);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Counts the failure and, at most once a second per kind, logs it. */
static void handshake_failed(enum tp_tls_fail kind, const char *who, const char *why)
{
	atomic_fetch_add_explicit(&n_failures[kind], 1, memory_order_relaxed);
	uint64_t now = now_ns(), skipped;
	pthread_mutex_lock(&log_mu);
	if (log_last_ns[kind] != 0 && now - log_last_ns[kind] < LOG_GAP_NS) {
		log_skipped[kind]++;
		pthread_mutex_unlock(&log_mu);
		return;
	}
	log_last_ns[kind] = now;
	skipped = log_skipped[kind];
	log_skipped[kind] = 0;
	pthread_mutex_unlock(&log_mu);
	char more[96] = "";
	if (skipped > 0)
		snprintf(more, sizeof(more), " (%llu more such failures since the last line)",
			 (unsigned long long)skipped);
	dl_log(DL_LOG_WARN, NULL, NULL, "TLS handshake %s failed (%s): %s%s", who,
	       fail_names[kind], why, more);
}

/* ---- role ----------------------------------------------------------------- */

static _Thread_local enum tp_role tl_role;

enum tp_role tp_tls_take_role(void)
{
	enum tp_role r = tl_role;
	tl_role = TP_ROLE_NONE;
	return r;
}

static bool crt_is_node(const mbedtls_x509_crt *crt)
{
	static const char node_ou[] = TP_TLS_NODE_OU;
	for (const mbedtls_x509_name *n = &crt->subject; n != NULL; n = n->next) {
		if (n->oid.p == NULL || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_ORG_UNIT, &n->oid) != 0)
			continue;
		if (n->val.len == sizeof(node_ou) - 1 &&
		    memcmp(n->val.p, node_ou, sizeof(node_ou) - 1) == 0)
			return true;
	}
	return false;
}

bool tp_tls_pem_is_node(const char *pem)
{
	mbedtls_x509_crt crt;
	mbedtls_x509_crt_init(&crt);
	bool node = mbedtls_x509_crt_parse(&crt, (const unsigned char *)pem, strlen(pem) + 1) == 0 &&
		    crt_is_node(&crt);
	mbedtls_x509_crt_free(&crt);
	return node;
}

/* ---- the shared random generator ------------------------------------------- */

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

/* ---- configuration ---------------------------------------------------------- */

struct own_cert {
	struct own_cert *next;
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
};

struct nng_tls_engine_config {
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	mbedtls_x509_crl crl;
	struct own_cert *own; /* the ssl config points into these: never moved */
	char *server_name;
	bool server;
};

static int cfg_init(nng_tls_engine_config *c, nng_tls_mode mode)
{
	c->server = mode == NNG_TLS_MODE_SERVER;
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_x509_crl_init(&c->crl);
	if (mbedtls_ssl_config_defaults(&c->conf,
					c->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
					MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
		mbedtls_ssl_config_free(&c->conf);
		return NNG_ENOMEM;
	}
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &drbg);
	/* nng's defaults: a server asks for nothing, a client verifies. */
	mbedtls_ssl_conf_authmode(&c->conf, c->server ? MBEDTLS_SSL_VERIFY_NONE
						      : MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	return 0;
}

static void cfg_fini(nng_tls_engine_config *c)
{
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_x509_crl_free(&c->crl);
	while (c->own != NULL) {
		struct own_cert *o = c->own;
		c->own = o->next;
		mbedtls_x509_crt_free(&o->crt);
		mbedtls_pk_free(&o->key);
		free(o);
	}
	free(c->server_name);
}

static int cfg_server(nng_tls_engine_config *c, const char *name)
{
	char *dup = strdup(name);
	if (dup == NULL)
		return NNG_ENOMEM;
	free(c->server_name);
	c->server_name = dup;
	return 0;
}

static int cfg_auth(nng_tls_engine_config *c, nng_tls_auth_mode mode)
{
	switch (mode) {
	case NNG_TLS_AUTH_MODE_NONE:
		mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
		return 0;
	case NNG_TLS_AUTH_MODE_OPTIONAL:
		mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
		return 0;
	case NNG_TLS_AUTH_MODE_REQUIRED:
		mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
		return 0;
	}
	return NNG_EINVAL;
}

static int cfg_ca_chain(nng_tls_engine_config *c, const char *certs, const char *crl)
{
	/* PEM: the length counts the terminating NUL. A positive result is
	 * the number of certificates that did not parse: refuse those too. */
	if (mbedtls_x509_crt_parse(&c->ca, (const unsigned char *)certs, strlen(certs) + 1) != 0)
		return NNG_EINVAL;
	bool have_crl = false;
	if (crl != NULL) {
		if (mbedtls_x509_crl_parse(&c->crl, (const unsigned char *)crl, strlen(crl) + 1) != 0)
			return NNG_EINVAL;
		have_crl = true;
	}
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, have_crl ? &c->crl : NULL);
	return 0;
}

static int cfg_own_cert(nng_tls_engine_config *c, const char *cert, const char *key,
			const char *pass)
{
	struct own_cert *o = calloc(1, sizeof(*o));
	if (o == NULL)
		return NNG_ENOMEM;
	mbedtls_x509_crt_init(&o->crt);
	mbedtls_pk_init(&o->key);
	size_t pass_len = pass != NULL ? strlen(pass) : 0;
	if (mbedtls_x509_crt_parse(&o->crt, (const unsigned char *)cert, strlen(cert) + 1) != 0 ||
	    mbedtls_pk_parse_key(&o->key, (const unsigned char *)key, strlen(key) + 1,
				 (const unsigned char *)pass, pass_len) != 0 ||
	    mbedtls_pk_check_pair(&o->crt.pk, &o->key) != 0 ||
	    mbedtls_ssl_conf_own_cert(&c->conf, &o->crt, &o->key) != 0) {
		mbedtls_x509_crt_free(&o->crt);
		mbedtls_pk_free(&o->key);
		free(o);
		return NNG_EINVAL;
	}
	o->next = c->own;
	c->own = o;
	return 0;
}

static int cfg_version(nng_tls_engine_config *c, nng_tls_version min, nng_tls_version max)
{
	(void)c;
	/* TLS 1.2 is the one version we speak (mbedTLS 2.28). */
	if (min > NNG_TLS_1_2 || max < NNG_TLS_1_2)
		return NNG_ENOTSUP;
	return 0;
}

/* ---- connections ---------------------------------------------------------- */

struct nng_tls_engine_conn {
	void *tls; /* nng's connection: the argument of nng_tls_engine_send/recv */
	mbedtls_ssl_context ssl;
	bool server;
	bool done;     /* handshake finished and accepted */
	int failed;    /* the nng error a failed handshake returned; 0: none */
	enum tp_role role;
	char who[96];  /* "with SERVER" or "of an inbound connection", for the log */
};

static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
	struct nng_tls_engine_conn *c = arg;
	size_t n = len;
	int rv = nng_tls_engine_send(c->tls, buf, &n);
	if (rv == NNG_EAGAIN)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	if (rv != 0)
		return MBEDTLS_ERR_NET_SEND_FAILED;
	return (int)n;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
	struct nng_tls_engine_conn *c = arg;
	size_t n = len;
	int rv = nng_tls_engine_recv(c->tls, buf, &n);
	if (rv == NNG_EAGAIN)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (rv != 0)
		return MBEDTLS_ERR_NET_RECV_FAILED;
	return (int)n;
}

static int conn_init(nng_tls_engine_conn *c, void *tls, nng_tls_engine_config *cfg)
{
	c->tls = tls;
	c->server = cfg->server;
	if (c->server)
		snprintf(c->who, sizeof(c->who), "of an inbound connection");
	else
		snprintf(c->who, sizeof(c->who), "with %.80s",
			 cfg->server_name ? cfg->server_name : "(no server name)");
	mbedtls_ssl_init(&c->ssl);
	if (mbedtls_ssl_setup(&c->ssl, &cfg->conf) != 0) {
		mbedtls_ssl_free(&c->ssl);
		return NNG_ENOMEM;
	}
	if (!c->server && cfg->server_name != NULL &&
	    mbedtls_ssl_set_hostname(&c->ssl, cfg->server_name) != 0) {
		mbedtls_ssl_free(&c->ssl);
		return NNG_ENOMEM;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	return 0;
}

static void conn_fini(nng_tls_engine_conn *c) { mbedtls_ssl_free(&c->ssl); }

static void conn_close(nng_tls_engine_conn *c) { (void)mbedtls_ssl_close_notify(&c->ssl); }

static const char *alert_name(unsigned char a)
{
	switch (a) {
	case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE: return "handshake failure";
	case MBEDTLS_SSL_ALERT_MSG_NO_CERT: return "no certificate";
	case MBEDTLS_SSL_ALERT_MSG_BAD_CERT: return "bad certificate";
	case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT: return "unsupported certificate";
	case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED: return "certificate revoked";
	case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED: return "certificate expired";
	case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN: return "certificate unknown";
	case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA: return "unknown CA";
	case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED: return "access denied";
	case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION: return "protocol version";
	case MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY: return "insufficient security";
	case MBEDTLS_SSL_ALERT_MSG_DECODE_ERROR: return "decode error";
	default: return "other";
	}
}

/* Words for a failed handshake, and the counter it goes to. */
static enum tp_tls_fail explain(nng_tls_engine_conn *c, int rv, char *buf, size_t cap)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
	const char *whose = c->server ? "the client's" : "the server's";
	if (rv == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
		char info[384];
		if (mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags) < 0)
			snprintf(info, sizeof(info), "flags 0x%x", (unsigned)flags);
		/* verify_info ends each reason with a newline: join them. */
		for (char *p = info; *p != '\0'; p++)
			if (*p == '\n')
				*p = p[1] != '\0' ? ';' : '\0';
		snprintf(buf, cap, "%s certificate did not verify: %s", whose, info);
		return TP_TLS_FAIL_VERIFY;
	}
	char err[160];
	mbedtls_strerror(rv, err, sizeof(err));
	switch (rv) {
	case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
		snprintf(buf, cap, "the client sent no certificate (mutual TLS requires one): %s",
			 err);
		return TP_TLS_FAIL_NO_CERT;
	case MBEDTLS_ERR_SSL_INVALID_RECORD:
	case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO:
	case MBEDTLS_ERR_SSL_BAD_HS_SERVER_HELLO:
	case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
		snprintf(buf, cap, "the peer does not speak TLS (a plaintext peer on a TLS port?): %s",
			 err);
		return TP_TLS_FAIL_NOT_TLS;
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: {
		/* mbedTLS 2.x keeps the alert's description in in_msg[1]. */
		unsigned char a = c->ssl.in_msg != NULL ? c->ssl.in_msg[1] : 0;
		snprintf(buf, cap, "the peer refused the handshake with alert %u (%s): "
				   "it does not accept our certificate, or we are not in its CA",
			 a, alert_name(a));
		return TP_TLS_FAIL_REFUSED;
	}
	default:
		snprintf(buf, cap, "%s (-0x%04x)", err, (unsigned)-rv);
		return TP_TLS_FAIL_OTHER;
	}
}

static int conn_handshake(nng_tls_engine_conn *c)
{
	if (c->failed != 0)
		return c->failed;
	if (c->done)
		return 0;
	int rv = mbedtls_ssl_handshake(&c->ssl);
	if (rv == MBEDTLS_ERR_SSL_WANT_READ || rv == MBEDTLS_ERR_SSL_WANT_WRITE)
		return NNG_EAGAIN;
	char why[512];
	if (rv != 0) {
		enum tp_tls_fail kind = explain(c, rv, why, sizeof(why));
		handshake_failed(kind, c->who, why);
		/* Every failure is NNG_EPEERAUTH: nng 1.5.2's listener pauses
		 * its accept loop for 100 ms after most other errors (so a
		 * stream of plaintext connections could keep it paused), and
		 * after NNG_ECLOSED it stops for good (endpoint.c, "nng 1.5.2's
		 * accept and dial loops"). */
		c->failed = NNG_EPEERAUTH;
		return c->failed;
	}
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->ssl);
	bool verified = peer != NULL && mbedtls_ssl_get_verify_result(&c->ssl) == 0;
	c->role = !verified ? TP_ROLE_NONE : crt_is_node(peer) ? TP_ROLE_NODE : TP_ROLE_CLIENT;
	if (!c->server && verified && c->role != TP_ROLE_NODE) {
		/* Every TLS server of ours is a node. */
		mbedtls_ssl_send_alert_message(&c->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
					       MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED);
		snprintf(why, sizeof(why),
			 "the server's certificate is valid but not a node certificate "
			 "(subject OU is not %s)", TP_TLS_NODE_OU);
		handshake_failed(TP_TLS_FAIL_NOT_NODE, c->who, why);
		c->failed = NNG_EPEERAUTH;
		return c->failed;
	}
	c->done = true;
	atomic_fetch_add_explicit(&n_handshakes, 1, memory_order_relaxed);
	if (c->server)
		atomic_fetch_add_explicit(&n_server_handshakes, 1, memory_order_relaxed);
	return 0;
}

/* A connection that ends (the peer's close_notify, EOF) or breaks (a bad
 * record) is NNG_ECONNRESET, never NNG_ECLOSED: during the negotiation nng
 * 1.5.2 hands the error to the listener's accept, which stops for good on
 * NNG_ECLOSED and pauses 100 ms on most others (see conn_handshake). */
static int conn_recv(nng_tls_engine_conn *c, uint8_t *buf, size_t *szp)
{
	int rv = mbedtls_ssl_read(&c->ssl, buf, *szp);
	if (rv == MBEDTLS_ERR_SSL_WANT_READ || rv == MBEDTLS_ERR_SSL_WANT_WRITE)
		return NNG_EAGAIN;
	if (rv <= 0)
		return NNG_ECONNRESET;
	*szp = (size_t)rv;
	return 0;
}

static int conn_send(nng_tls_engine_conn *c, const uint8_t *buf, size_t *szp)
{
	int rv = mbedtls_ssl_write(&c->ssl, buf, *szp);
	if (rv == MBEDTLS_ERR_SSL_WANT_READ || rv == MBEDTLS_ERR_SSL_WANT_WRITE)
		return NNG_EAGAIN;
	if (rv < 0)
		return NNG_ECONNRESET;
	*szp = (size_t)rv;
	return 0;
}

/* nng calls this for NNG_OPT_TLS_VERIFIED, on the asking thread: the role
 * goes to that thread's tl_role (tls_internal.h). */
static bool conn_verified(nng_tls_engine_conn *c)
{
	bool v = c->done && c->role != TP_ROLE_NONE;
	tl_role = v ? c->role : TP_ROLE_NONE;
	return v;
}

/* ---- registration --------------------------------------------------------- */

static nng_tls_engine_config_ops config_ops = {
	.size = sizeof(nng_tls_engine_config),
	.init = cfg_init,
	.fini = cfg_fini,
	.server = cfg_server,
	.auth = cfg_auth,
	.ca_chain = cfg_ca_chain,
	.own_cert = cfg_own_cert,
	.version = cfg_version,
};

static nng_tls_engine_conn_ops conn_ops = {
	.size = sizeof(nng_tls_engine_conn),
	.init = conn_init,
	.fini = conn_fini,
	.close = conn_close,
	.handshake = conn_handshake,
	.recv = conn_recv,
	.send = conn_send,
	.verified = conn_verified,
};

static const nng_tls_engine engine = {
	.version = NNG_TLS_ENGINE_VERSION,
	.config_ops = &config_ops,
	.conn_ops = &conn_ops,
	.name = "dledger-mbedtls",
	.description = "dledger-actors: mbed TLS " MBEDTLS_VERSION_STRING " with peer roles",
	.fips_mode = false,
};

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc;

static void do_register(void)
{
	/* nng's first use initializes it, and that resets the TLS engine to
	 * its built-in one: initialize nng first (nng_tls_engine_name() does),
	 * then register ours. */
	(void)nng_tls_engine_name();
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	static const char pers[] = "dledger-actors tls";
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const unsigned char *)pers, sizeof(pers) - 1) != 0) {
		register_rc = NNG_ENOMEM;
		return;
	}
	register_rc = nng_tls_engine_register(&engine);
	if (register_rc == 0 && strcmp(nng_tls_engine_name(), engine.name) != 0)
		register_rc = NNG_ENOTSUP;
}

int tp_tls_engine_register(void)
{
	pthread_once(&register_once, do_register);
	return register_rc;
}
