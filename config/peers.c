/*
 * peers.c - the peers string ("n0-127.0.0.1:10000;n1-[::1]:10001;...") and
 * the names that become directories (group, member id).
 *
 * DLedger splits a member at the first '-' (DLedgerConfig: peerInfo.split("-")[0]),
 * so an id never contains '-' while a host name may: "n1-db-1.example:10001"
 * is id "n1", host "db-1.example". We do the same.
 */
#include "config/peers.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool cfg_name_valid(const char *s, bool is_id)
{
	if (s == NULL)
		return false;
	size_t n = strlen(s);
	if (n == 0 || n > CFG_NAME_MAX)
		return false;
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool ok = isalnum(ch) || ch == '_' || ch == '.' || (ch == '-' && !is_id);
		if (!ok || ch >= 0x80)
			return false;
	}
	return true;
}

int cfg_name_problem(const char *s, bool is_id, char *why, size_t why_len)
{
	size_t n = strlen(s);
	const char *what = is_id ? "id" : "group name";
	if (n == 0) {
		snprintf(why, why_len, "%s must not be empty", what);
		return -1;
	}
	if (n > CFG_NAME_MAX) {
		snprintf(why, why_len, "%s is %zu bytes, more than %d", what, n, CFG_NAME_MAX);
		return -1;
	}
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
		snprintf(why, why_len, "%s '%s' is not allowed (it becomes a directory name)", what,
		         s);
		return -1;
	}
	if (is_id && strchr(s, '-') != NULL) {
		snprintf(why, why_len,
		         "id '%s' contains '-', which separates id from address in peers", s);
		return -1;
	}
	if (!cfg_name_valid(s, is_id)) {
		snprintf(why, why_len,
		         "%s '%.*s' has characters unsafe in a path; allowed: A-Z a-z 0-9 _ .%s",
		         what, CFG_NAME_MAX, s, is_id ? "" : " -");
		return -1;
	}
	return 0;
}

/* RFC 1123 host name: labels of [A-Za-z0-9-], 1..63 bytes, not starting or
 * ending with '-'; total at most CFG_HOST_MAX. */
static bool hostname_valid(const char *h, size_t n)
{
	if (n == 0 || n > CFG_HOST_MAX)
		return false;
	size_t label = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || h[i] == '.') {
			if (label == 0 || label > 63 || h[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		unsigned char ch = (unsigned char)h[i];
		if (!(isalnum(ch) || ch == '-') || ch >= 0x80)
			return false;
		if (label == 0 && ch == '-')
			return false;
		label++;
	}
	return true;
}

static bool looks_numeric(const char *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(isdigit((unsigned char)h[i]) || h[i] == '.'))
			return false;
	return n > 0;
}

/* ":port" (rest, rn bytes) of address s..n: digits only, 1..65535. */
static int parse_port(const char *s, size_t n, const char *rest, size_t rn, uint16_t *port,
                      char *why, size_t why_len)
{
	if (rn < 2 || rest[0] != ':') {
		snprintf(why, why_len, "address '%.*s' has no ':port'", (int)n, s);
		return -1;
	}
	uint32_t p = 0;
	for (size_t i = 1; i < rn; i++) {
		if (!isdigit((unsigned char)rest[i])) {
			snprintf(why, why_len, "address '%.*s': port '%.*s' is not a number",
			         (int)n, s, (int)(rn - 1), rest + 1);
			return -1;
		}
		if (p <= 65535) /* saturate: anything above is out of range anyway */
			p = p * 10 + (uint32_t)(rest[i] - '0');
	}
	if (p < 1 || p > 65535) {
		snprintf(why, why_len, "address '%.*s': port %.*s is out of range 1..65535", (int)n,
		         s, (int)(rn - 1), rest + 1);
		return -1;
	}
	*port = (uint16_t)p;
	return 0;
}

/* The host (NUL-terminated in `host`) is an IPv6 literal (v6: it was in
 * brackets), an IPv4 literal, or a host name. */
static int check_host(const char *s, size_t n, const char *host, size_t hn, bool v6, char *why,
                      size_t why_len)
{
	unsigned char a[16];
	if (v6) {
		if (inet_pton(AF_INET6, host, a) == 1)
			return 0;
		snprintf(why, why_len, "address '%.*s': '%s' is not an IPv6 address", (int)n, s,
		         host);
		return -1;
	}
	if (looks_numeric(host, hn)) {
		if (inet_pton(AF_INET, host, a) == 1)
			return 0;
		snprintf(why, why_len, "address '%.*s': '%s' is not an IPv4 address", (int)n, s,
		         host);
		return -1;
	}
	if (hostname_valid(host, hn))
		return 0;
	snprintf(why, why_len, "address '%.*s': '%s' is not a valid host name", (int)n, s, host);
	return -1;
}

int cfg_parse_addr(const char *s, size_t n, char *host, size_t host_size, uint16_t *port, char *why,
                   size_t why_len)
{
	DL_ASSERT(host_size > CFG_HOST_MAX);
	const char *hs = s, *rest;
	size_t hn;
	bool v6 = n > 0 && s[0] == '[';
	if (n == 0) {
		snprintf(why, why_len, "empty address; expected host:port");
		return -1;
	}
	if (v6) {
		const char *close = memchr(s, ']', n);
		if (close == NULL) {
			snprintf(why, why_len, "'[' without ']' in address '%.*s'", (int)n, s);
			return -1;
		}
		hs = s + 1;
		hn = (size_t)(close - hs);
		rest = close + 1;
	} else {
		const char *colon = memchr(s, ':', n);
		if (colon == NULL) {
			snprintf(why, why_len, "address '%.*s' has no ':port'", (int)n, s);
			return -1;
		}
		if (memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)) != NULL) {
			snprintf(why, why_len,
			         "address '%.*s': an IPv6 address must be in brackets, as in "
			         "[::1]:10000",
			         (int)n, s);
			return -1;
		}
		hn = (size_t)(colon - s);
		rest = colon;
	}
	if (hn == 0 || hn > CFG_HOST_MAX) {
		snprintf(why, why_len, "address '%.*s': host is empty or too long", (int)n, s);
		return -1;
	}
	memcpy(host, hs, hn);
	host[hn] = '\0';
	if (check_host(s, n, host, hn, v6, why, why_len) != 0)
		return -1;
	return parse_port(s, n, rest, n - (size_t)(rest - s), port, why, why_len);
}

int cfg_format_addr(const char *host, uint16_t port, char *buf, size_t size)
{
	bool v6 = strchr(host, ':') != NULL;
	int n = snprintf(buf, size, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
	if (n < 0 || (size_t)n >= size)
		return -1;
	return n;
}

bool cfg_addr_equal(const char *h1, uint16_t p1, const char *h2, uint16_t p2)
{
	if (p1 != p2)
		return false;
	unsigned char a[16], b[16];
	if (inet_pton(AF_INET6, h1, a) == 1 && inet_pton(AF_INET6, h2, b) == 1)
		return memcmp(a, b, 16) == 0;
	if (inet_pton(AF_INET, h1, a) == 1 && inet_pton(AF_INET, h2, b) == 1)
		return memcmp(a, b, 4) == 0;
	return strcasecmp(h1, h2) == 0;
}

void cfg_peers_free(struct cfg_peers *p)
{
	if (p == NULL)
		return;
	free(p->raw);
	for (uint32_t i = 0; i < CFG_MAX_MEMBERS; i++) {
		free(p->members[i].id);
		free(p->members[i].host);
	}
	memset(p, 0, sizeof(*p));
}

int cfg_peers_find(const struct cfg_peers *p, const char *id)
{
	if (p == NULL || id == NULL)
		return -1;
	for (uint32_t i = 0; i < p->n_members; i++)
		if (p->members[i].id != NULL && strcmp(p->members[i].id, id) == 0)
			return (int)i;
	return -1;
}

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && isspace((unsigned char)(*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* One "id-address" member into out->members[out->n_members]. */
static int parse_member(const char *m, size_t n, uint32_t pos, struct cfg_peers *out,
                        struct dl_errctx *err)
{
	char why[200];
	char id[CFG_NAME_MAX + 1];
	char host[CFG_HOST_MAX + 1];
	uint16_t port = 0;
	const char *dash = memchr(m, '-', n);
	if (dash == NULL || dash == m)
		return dl_errf(err, DL_ECONFIG, "member %u '%.*s': expected id-host:port", pos,
		               (int)n, m);
	size_t idn = (size_t)(dash - m);
	if (idn > CFG_NAME_MAX)
		return dl_errf(err, DL_ECONFIG, "member %u: id is longer than %d bytes", pos,
		               CFG_NAME_MAX);
	memcpy(id, m, idn);
	id[idn] = '\0';
	if (cfg_name_problem(id, true, why, sizeof(why)) != 0)
		return dl_errf(err, DL_ECONFIG, "member %u '%.*s': %s", pos, (int)n, m, why);
	const char *addr = dash + 1;
	size_t an = n - idn - 1;
	if (cfg_parse_addr(addr, an, host, sizeof(host), &port, why, sizeof(why)) != 0)
		return dl_errf(err, DL_ECONFIG, "member %u '%s': %s", pos, id, why);
	for (uint32_t i = 0; i < out->n_members; i++) {
		const struct cfg_peer *o = &out->members[i];
		if (strcmp(o->id, id) == 0)
			return dl_errf(err, DL_ECONFIG, "duplicate id '%s' (members %u and %u)", id,
			               i + 1, pos);
		if (cfg_addr_equal(o->host, o->port, host, port))
			return dl_errf(err, DL_ECONFIG,
			               "members '%s' and '%s' have the same address %.*s", o->id,
			               id, (int)an, addr);
	}
	struct cfg_peer *p = &out->members[out->n_members];
	p->id = strdup(id);
	p->host = strdup(host);
	if (p->id == NULL || p->host == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	p->port = port;
	out->n_members++;
	return DL_OK;
}

int cfg_parse_peers(const char *s, struct cfg_peers *out, struct dl_errctx *err)
{
	DL_ASSERT(out != NULL);
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return dl_errf(err, DL_ECONFIG, "no peers given");
	int rc = DL_ECONFIG;
	size_t len = strlen(s);
	const char *p = s;
	const char *end = s + len;
	uint32_t pos = 0;
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *stop = semi ? semi : end;
		const char *m = p;
		size_t n = (size_t)(stop - p);
		trim(&m, &n);
		pos++;
		if (n == 0) {
			/* One trailing ';' is fine (DLedger's split drops it). */
			bool last = semi == NULL || semi + 1 == end;
			if (!(last && semi != NULL && pos > 1)) {
				rc = dl_errf(err, DL_ECONFIG, "member %u is empty (stray ';'?)",
				             pos);
				goto err_free;
			}
			break;
		}
		if (out->n_members == CFG_MAX_MEMBERS) {
			rc = dl_errf(err, DL_ECONFIG, "more than %d members", CFG_MAX_MEMBERS);
			goto err_free;
		}
		rc = parse_member(m, n, pos, out, err);
		if (rc != DL_OK)
			goto err_free;
		p = semi ? semi + 1 : end;
	}
	if (out->n_members == 0) {
		rc = dl_errf(err, DL_ECONFIG, "no members (expected id-host:port;...)");
		goto err_free;
	}
	out->raw = strdup(s);
	if (out->raw == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	DL_ASSERT(out->n_members >= 1 && out->n_members <= CFG_MAX_MEMBERS);
	return DL_OK;

err_free:
	cfg_peers_free(out);
	return rc;
}
