/*
 * tls.c - certificates for the endpoint and the client: loading and checking
 * them, and setting up nng listeners and dialers for mutual TLS with our
 * engine (tls_engine.c). See transport.h, "TLS".
 */
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>
#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/tls_internal.h"

#define TLS_FILE_MAX (1u << 20) /* a PEM file bigger than this is refused */

struct tp_tls {
	char *cert_pem, *key_pem, *ca_pem;
	bool has_crl;
	char subject[256];
	uint8_t id[TP_TLS_ID_BYTES]; /* SHA-256 of the three PEMs */
};

const char *tp_role_name(enum tp_role r)
{
	switch (r) {
	case TP_ROLE_NODE: return "node";
	case TP_ROLE_CLIENT: return "client";
	default: return "none";
	}
}

/* The whole file as a NUL-terminated string. */
static int read_pem(const char *what, const char *path, char **out, struct dl_errctx *err)
{
	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return dl_errf(err, DL_ECONFIG, "%s: no file given", what);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return dl_errf(err, DL_EIO, "%s '%s': cannot open: %m", what, path);
	char *buf = malloc(TLS_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		return dl_errf(err, DL_ENOMEM, "out of memory");
	}
	size_t n = fread(buf, 1, TLS_FILE_MAX + 1, f);
	bool bad = ferror(f) != 0;
	fclose(f);
	if (bad) {
		free(buf);
		return dl_errf(err, DL_EIO, "%s '%s': cannot read", what, path);
	}
	if (n > TLS_FILE_MAX) {
		free(buf);
		return dl_errf(err, DL_ECONFIG, "%s '%s': larger than %u bytes", what, path,
			       TLS_FILE_MAX);
	}
	buf[n] = '\0';
	if (strlen(buf) != n || strstr(buf, "-----BEGIN ") == NULL) {
		free(buf);
		return dl_errf(err, DL_ECONFIG, "%s '%s': not a PEM file", what, path);
	}
	*out = buf;
	return 0;
}

static int mbed_err(struct dl_errctx *err, const char *what, const char *path, int rv)
{
	char text[160];
	mbedtls_strerror(rv, text, sizeof(text));
	return dl_errf(err, DL_ECONFIG, "%s '%s': %s", what, path, text);
}

void tp_tls_free(struct tp_tls *t)
{
	if (t == NULL)
		return;
	free(t->cert_pem);
	if (t->key_pem != NULL) {
		/* The private key does not outlive its use in memory we free. */
		memset(t->key_pem, 0, strlen(t->key_pem));
		free(t->key_pem);
	}
	free(t->ca_pem);
	free(t);
}

const char *tp_tls_subject(const struct tp_tls *t) { return t->subject; }

void tp_tls_id(const struct tp_tls *t, uint8_t id[TP_TLS_ID_BYTES])
{
	if (t == NULL)
		memset(id, 0, TP_TLS_ID_BYTES);
	else
		memcpy(id, t->id, TP_TLS_ID_BYTES);
}

/* What identifies the credentials: the three PEMs, each with its length. */
static int tls_make_id(struct tp_tls *t)
{
	mbedtls_sha256_context sha;
	mbedtls_sha256_init(&sha);
	int rv = mbedtls_sha256_starts_ret(&sha, 0);
	const char *parts[3] = {t->cert_pem, t->key_pem, t->ca_pem};
	for (int i = 0; i < 3 && rv == 0; i++) {
		uint64_t n = strlen(parts[i]);
		rv = mbedtls_sha256_update_ret(&sha, (const unsigned char *)&n, sizeof(n));
		if (rv == 0)
			rv = mbedtls_sha256_update_ret(&sha, (const unsigned char *)parts[i], n);
	}
	if (rv == 0)
		rv = mbedtls_sha256_finish_ret(&sha, t->id);
	mbedtls_sha256_free(&sha);
	return rv;
}

int tp_tls_load(const char *cert_file, const char *key_file, const char *ca_file, bool node,
		struct tp_tls **out, struct dl_errctx *err)
{
	*out = NULL;
	int rv = tp_tls_engine_register();
	if (rv != 0)
		return dl_errf(err, DL_EIO, "TLS: cannot register the TLS engine with nng: %s",
			       nng_strerror(rv));
	struct tp_tls *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	int rc;
	if ((rc = read_pem("certificate", cert_file, &t->cert_pem, err)) != 0 ||
	    (rc = read_pem("key", key_file, &t->key_pem, err)) != 0 ||
	    (rc = read_pem("CA file", ca_file, &t->ca_pem, err)) != 0) {
		tp_tls_free(t);
		return rc;
	}
	t->has_crl = strstr(t->ca_pem, "-----BEGIN X509 CRL-----") != NULL;

	mbedtls_x509_crt crt, ca;
	mbedtls_x509_crl crl;
	mbedtls_pk_context key;
	mbedtls_x509_crt_init(&crt);
	mbedtls_x509_crt_init(&ca);
	mbedtls_x509_crl_init(&crl);
	mbedtls_pk_init(&key);
	rc = 0;
	if ((rv = mbedtls_x509_crt_parse(&crt, (const unsigned char *)t->cert_pem,
					 strlen(t->cert_pem) + 1)) != 0) {
		rc = rv < 0 ? mbed_err(err, "certificate", cert_file, rv)
			    : dl_errf(err, DL_ECONFIG, "certificate '%s': %d certificates in it do "
						       "not parse", cert_file, rv);
		goto out;
	}
	if ((rv = mbedtls_pk_parse_key(&key, (const unsigned char *)t->key_pem,
				       strlen(t->key_pem) + 1, NULL, 0)) != 0) {
		rc = rv == MBEDTLS_ERR_PK_PASSWORD_REQUIRED
			? dl_errf(err, DL_ECONFIG, "key '%s': encrypted keys are not supported",
				  key_file)
			: mbed_err(err, "key", key_file, rv);
		goto out;
	}
	if ((rv = mbedtls_pk_check_pair(&crt.pk, &key)) != 0) {
		rc = dl_errf(err, DL_ECONFIG, "key '%s' is not the key of certificate '%s'", key_file,
			     cert_file);
		goto out;
	}
	if ((rv = mbedtls_x509_crt_parse(&ca, (const unsigned char *)t->ca_pem,
					 strlen(t->ca_pem) + 1)) != 0) {
		rc = rv < 0 ? mbed_err(err, "CA file", ca_file, rv)
			    : dl_errf(err, DL_ECONFIG, "CA file '%s': %d certificates in it do not "
						       "parse", ca_file, rv);
		goto out;
	}
	if (t->has_crl &&
	    (rv = mbedtls_x509_crl_parse(&crl, (const unsigned char *)t->ca_pem,
					 strlen(t->ca_pem) + 1)) != 0) {
		rc = mbed_err(err, "CRL in CA file", ca_file, rv);
		goto out;
	}
	uint32_t flags = 0;
	if (mbedtls_x509_crt_verify(&crt, &ca, t->has_crl ? &crl : NULL, NULL, &flags, NULL,
				    NULL) != 0) {
		char info[384];
		if (mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags) < 0)
			snprintf(info, sizeof(info), "flags 0x%x", (unsigned)flags);
		for (char *p = info; *p != '\0'; p++)
			if (*p == '\n')
				*p = p[1] != '\0' ? ';' : '\0';
		rc = dl_errf(err, DL_ECONFIG, "certificate '%s' does not verify against CA file "
					      "'%s': %s", cert_file, ca_file, info);
		goto out;
	}
	if (mbedtls_x509_dn_gets(t->subject, sizeof(t->subject), &crt.subject) < 0)
		snprintf(t->subject, sizeof(t->subject), "?");
	if (node && !tp_tls_pem_is_node(t->cert_pem)) {
		rc = dl_errf(err, DL_ECONFIG, "certificate '%s' (%s) is not a node certificate: its "
					      "subject has no OU=%s", cert_file, t->subject,
			     TP_TLS_NODE_OU);
		goto out;
	}
	if (tls_make_id(t) != 0)
		rc = dl_errf(err, DL_ENOMEM, "cannot hash the credentials");
out:
	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crt_free(&ca);
	mbedtls_x509_crl_free(&crl);
	mbedtls_pk_free(&key);
	if (rc != 0) {
		tp_tls_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int tp_make_url(const struct tp_tls *t, const char *addr, char *url, size_t cap)
{
	size_t n = strlen(addr);
	if (n == 0 || n > TP_ADDR_MAX || strchr(addr, ':') == NULL || strchr(addr, '/') != NULL)
		return DL_EINVAL;
	int w = snprintf(url, cap, "%s://%s", t != NULL ? "tls+tcp" : "tcp", addr);
	return w > 0 && (size_t)w < cap ? 0 : DL_EINVAL;
}

/* A config with our certificate, the CA and auth mode REQUIRED. */
static int make_config(const struct tp_tls *t, nng_tls_mode mode, const char *server_name,
		       nng_tls_config **out)
{
	nng_tls_config *c;
	int rv = nng_tls_config_alloc(&c, mode);
	if (rv != 0)
		return rv;
	if ((rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	    (rv = nng_tls_config_ca_chain(c, t->ca_pem, t->has_crl ? t->ca_pem : NULL)) != 0 ||
	    (rv = nng_tls_config_own_cert(c, t->cert_pem, t->key_pem, NULL)) != 0 ||
	    (server_name != NULL && (rv = nng_tls_config_server_name(c, server_name)) != 0)) {
		nng_tls_config_free(c);
		return rv;
	}
	*out = c;
	return 0;
}

/* The host of "host:port" or "[v6]:port", as the certificate names it.
 * False when `addr` has no port. */
static bool addr_host(const char *addr, char host[TP_ADDR_MAX + 1])
{
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || (size_t)(colon - addr) > TP_ADDR_MAX)
		return false;
	const char *h = addr;
	size_t len = (size_t)(colon - addr);
	if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
		h++;
		len -= 2;
	}
	memcpy(host, h, len);
	host[len] = '\0';
	return true;
}

/* A client config for the node at `addr`: server name = its host. */
static int dialer_config(const struct tp_tls *t, const char *addr, nng_tls_config **out)
{
	char host[TP_ADDR_MAX + 1];
	if (!addr_host(addr, host))
		return NNG_EADDRINVAL;
	return make_config(t, NNG_TLS_MODE_CLIENT, host, out);
}

int tp_tls_setup_dialer(const struct tp_tls *t, nng_dialer d, const char *addr)
{
	nng_tls_config *c;
	int rv = dialer_config(t, addr, &c);
	if (rv != 0)
		return rv;
	rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, c);
	nng_tls_config_free(c); /* the dialer holds it */
	return rv;
}

int tp_tls_setup_stream_dialer(const struct tp_tls *t, nng_stream_dialer *d, const char *addr)
{
	nng_tls_config *c;
	int rv = dialer_config(t, addr, &c);
	if (rv != 0)
		return rv;
	rv = nng_stream_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, c);
	nng_tls_config_free(c); /* the dialer holds it */
	return rv;
}

int tp_tls_setup_stream_listener(const struct tp_tls *t, nng_stream_listener *l)
{
	nng_tls_config *c;
	int rv = make_config(t, NNG_TLS_MODE_SERVER, NULL, &c);
	if (rv != 0)
		return rv;
	rv = nng_stream_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, c);
	nng_tls_config_free(c); /* the listener holds it */
	return rv;
}

enum tp_role tp_tls_stream_role(nng_stream *s)
{
	(void)tp_tls_take_role(); /* nothing stale */
	bool verified = false;
	if (nng_stream_get_bool(s, NNG_OPT_TLS_VERIFIED, &verified) != 0 || !verified) {
		(void)tp_tls_take_role();
		return TP_ROLE_NONE;
	}
	return tp_tls_take_role();
}
