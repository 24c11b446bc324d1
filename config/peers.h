/*
 * peers.h - DLedger's peers string ("n0-127.0.0.1:10000;n1-[::1]:10001") and
 * the names that become directories (group names, member ids).
 *
 * Apart from the rest of config/ so that the C client, which needs the peers
 * string and nothing else of the configuration, links this alone (the
 * library dl-peers; docs/ARCHITECTURE.md, "Modules").
 *
 * Threads: none; every function is re-entrant.
 */
#ifndef DLEDGER_CONFIG_PEERS_H
#define DLEDGER_CONFIG_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dl_err.h"

#define CFG_MAX_MEMBERS    9 /* == RAFT_MAX_MEMBERS (raft/raft.h) */
#define CFG_NAME_MAX       64  /* bytes of a group name or a member id */
#define CFG_HOST_MAX       253 /* bytes of a host name (RFC 1035) */
#define CFG_ADDR_STR_MAX   (CFG_HOST_MAX + 9) /* "[host]:65535" + NUL */

/* One member of a peers string. `host` is without brackets ("::1"). */
struct cfg_peer {
	char *id;
	char *host;
	uint16_t port;
};

/* A parsed peers string: "id-host:port;id-host:port;...". */
struct cfg_peers {
	char *raw; /* the string as given */
	uint32_t n_members;
	struct cfg_peer members[CFG_MAX_MEMBERS];
};

/* Parse a peers string: members separated by ';' (one trailing ';' and
 * spaces around members allowed), each "id-address" where the id is what
 * comes before the first '-' (ids may not contain '-'; host names may), and
 * the address is "host:port", "a.b.c.d:port" or "[ipv6]:port"; ports
 * 1..65535; at most CFG_MAX_MEMBERS members; ids unique; addresses unique.
 * Errors name the member ("member 2 'n1-...': ..."), not a key. On success
 * the caller frees `*out` with cfg_peers_free(); on failure it is zeroed. */
int cfg_parse_peers(const char *s, struct cfg_peers *out, struct dl_errctx *err);

/* Index of `id` in `p`, or -1. */
int cfg_peers_find(const struct cfg_peers *p, const char *id);

/* "host:port" or "[v6]:port" into `buf` (CFG_ADDR_STR_MAX is enough).
 * Returns the length, or -1 if it did not fit. */
int cfg_format_addr(const char *host, uint16_t port, char *buf, size_t size);

/* Whether `s` is a valid group name (id_rule false) or member id (true):
 * 1..CFG_NAME_MAX bytes of [A-Za-z0-9_.-] (no '-' in an id), not "." or "..". */
bool cfg_name_valid(const char *s, bool is_id);

void cfg_peers_free(struct cfg_peers *p);

/* 0 when `s` is a valid name (cfg_name_valid()), else -1 with the reason
 * in `why` ("id 'n-1' contains '-', ..."). */
int cfg_name_problem(const char *s, bool is_id, char *why, size_t why_len);
/* "host:port", "a.b.c.d:port" or "[v6]:port" (the first `n` bytes of `s`)
 * into `host` (without brackets) and `*port`: 0, or -1 with the reason in
 * `why`. */
int cfg_parse_addr(const char *s, size_t n, char *host, size_t host_size, uint16_t *port, char *why,
                   size_t why_len);
/* Whether two addresses are the same: IP addresses compared as addresses,
 * host names without case. */
bool cfg_addr_equal(const char *h1, uint16_t p1, const char *h2, uint16_t p2);

#endif
