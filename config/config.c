/*
 * config.c - the key table, value parsing, defaults, the completion and
 * validation of groups and of the node, the key/value entry point, and the
 * free functions. The YAML loader (load_yaml.c), the flags (args.c) and the
 * key/value list below all set keys through cfg_set_value() and finish
 * groups through cfg_group_finish(), so the three agree on every rule.
 */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#define GIB (1024ull * 1024 * 1024)
#define MIB (1024ull * 1024)

#define G_OFF(f) offsetof(struct cfg_group, f)
#define N_OFF(f) offsetof(struct cfg_node, f)
#define O_OFF(f) offsetof(struct cfg_group_opts, f)

/* The first CFG_KI_COUNT_NAMED entries are in enum cfg_key_idx order. */
const struct cfg_key cfg_keys[] = {
        {"group", NULL, "--group", CFG_SC_GROUP, CFG_K_GROUPNAME, G_OFF(group), 0, 0, NULL},
        {"id", "selfId", "--id", CFG_SC_GROUP, CFG_K_ID, G_OFF(self_id), 0, 0, NULL},
        {"peers", NULL, "--peers", CFG_SC_GROUP, CFG_K_PEERS, G_OFF(peers), 0, 0, NULL},
        {"preferredLeaderId", NULL, "--preferred-leader-id", CFG_SC_GROUP, CFG_K_OPT_ID,
         G_OFF(preferred_leader_id), 0, 0, NULL},
        {"leaderId", NULL, "--leader-id", CFG_SC_GROUP, CFG_K_OPT_ID, G_OFF(leader_id), 0, 0, NULL},
        {"storeBaseDir", NULL, "--store-base-dir", CFG_SC_BOTH, CFG_K_PATH, O_OFF(store_base_dir),
         0, 0, NULL},
        {"controlSocket", NULL, "--control-socket", CFG_SC_NODE, CFG_K_SOCKPATH,
         N_OFF(control_socket), 0, 0, NULL},
        {"heartBeatTimeIntervalMs", NULL, NULL, CFG_SC_BOTH, CFG_K_U32,
         O_OFF(heart_beat_time_interval_ms), 1, 600000, "milliseconds"},
        {"maxHeartBeatLeak", NULL, NULL, CFG_SC_BOTH, CFG_K_U32, O_OFF(max_heart_beat_leak), 1,
         1000, "heartbeats"},
        {"electionTimeoutMs", NULL, NULL, CFG_SC_BOTH, CFG_K_U32, O_OFF(election_timeout_ms), 1,
         3600000, "milliseconds"},
        {"enableLeaderElector", NULL, NULL, CFG_SC_BOTH, CFG_K_BOOL, O_OFF(enable_leader_elector),
         0, 0, NULL},
        {"diskSpaceRatioToForceClean", NULL, NULL, CFG_SC_BOTH, CFG_K_RATIO,
         O_OFF(disk_space_ratio_to_force_clean), 100, 990, "fraction of the disk"},
        {"diskFullRatio", NULL, NULL, CFG_SC_BOTH, CFG_K_RATIO, O_OFF(disk_full_ratio), 100, 990,
         "fraction of the disk"},
        /* the rest, in documentation order */
        {"metricsAddress", NULL, "--metrics-address", CFG_SC_NODE, CFG_K_OPT_ADDR,
         N_OFF(metrics_address), 0, 0, NULL},
        {"listenAddress", NULL, "--listen-address", CFG_SC_NODE, CFG_K_OPT_ADDR,
         N_OFF(listen_address), 0, 0, NULL},
        {"leaderBalance", NULL, NULL, CFG_SC_NODE, CFG_K_BOOL, N_OFF(leader_balance), 0, 0, NULL},
        {"maxFrameBytes", NULL, NULL, CFG_SC_NODE, CFG_K_BYTES32, N_OFF(max_frame_bytes), 64 * 1024,
         GIB, "bytes"},
        {"logLevel", NULL, "--log-level", CFG_SC_NODE, CFG_K_LOGLEVEL, N_OFF(log_level), 0, 0,
         NULL},
        {"tlsCertFile", NULL, "--tls-cert-file", CFG_SC_NODE, CFG_K_PATH, N_OFF(tls_cert_file), 0,
         0, NULL},
        {"tlsKeyFile", NULL, "--tls-key-file", CFG_SC_NODE, CFG_K_PATH, N_OFF(tls_key_file), 0, 0,
         NULL},
        {"tlsCaFile", NULL, "--tls-ca-file", CFG_SC_NODE, CFG_K_PATH, N_OFF(tls_ca_file), 0, 0,
         NULL},
        {"storeType", NULL, "--store-type", CFG_SC_BOTH, CFG_K_STORE, O_OFF(store_type), 0, 0,
         NULL},
        {"mappedFileSizeForEntryData", NULL, NULL, CFG_SC_BOTH, CFG_K_BYTES,
         O_OFF(mapped_file_size_for_entry_data_bytes), 4096, 64 * GIB, "bytes"},
        {"mappedFileSizeForEntryIndex", NULL, NULL, CFG_SC_BOTH, CFG_K_BYTES,
         O_OFF(mapped_file_size_for_entry_index_bytes), 4096, 64 * GIB, "bytes"},
        {"flushMode", NULL, "--flush-mode", CFG_SC_BOTH, CFG_K_FLUSH, O_OFF(flush_mode), 0, 0,
         NULL},
        {"flushFileIntervalMs", "flushFileInterval", NULL, CFG_SC_BOTH, CFG_K_U32,
         O_OFF(flush_file_interval_ms), 1, 60000, "milliseconds"},
        {"checkPointIntervalMs", "checkPointInterval", NULL, CFG_SC_BOTH, CFG_K_U32,
         O_OFF(check_point_interval_ms), 1, 3600000, "milliseconds"},
        {"fileReservedHours", NULL, NULL, CFG_SC_BOTH, CFG_K_U32, O_OFF(file_reserved_hours), 1,
         876000, "hours"},
        {"enableDiskForceClean", NULL, NULL, CFG_SC_BOTH, CFG_K_BOOL,
         O_OFF(enable_disk_force_clean), 0, 0, NULL},
        {"maxPendingRequestsNum", NULL, NULL, CFG_SC_BOTH, CFG_K_U32,
         O_OFF(max_pending_requests_num), 1, 10000000, "requests"},
        {"maxPendingBytes", NULL, "--max-pending-bytes", CFG_SC_BOTH, CFG_K_BYTES,
         O_OFF(max_pending_bytes), 64 * 1024, 64 * GIB, "bytes"},
        {"maxPushTimeOutMs", NULL, NULL, CFG_SC_BOTH, CFG_K_U32, O_OFF(max_push_time_out_ms), 1,
         600000, "milliseconds"},
        {"maxWaitAckTimeMs", NULL, NULL, CFG_SC_BOTH, CFG_K_U32, O_OFF(max_wait_ack_time_ms), 1,
         3600000, "milliseconds"},
        {"maxLeadershipTransferWaitIndex", NULL, NULL, CFG_SC_BOTH, CFG_K_U64,
         O_OFF(max_leadership_transfer_wait_index), 0, 1ull << 62, "entries"},
        {"leadershipTransferWaitTimeoutMs", "leadershipTransferWaitTimeout", NULL, CFG_SC_BOTH,
         CFG_K_U32, O_OFF(leadership_transfer_wait_timeout_ms), 1, 600000, "milliseconds"},
};
const size_t cfg_n_keys = sizeof(cfg_keys) / sizeof(cfg_keys[0]);

_Static_assert(sizeof(cfg_keys) / sizeof(cfg_keys[0]) <= CFG_N_KEYS, "raise CFG_N_KEYS");

/* DLedger keys we do not take, with the reason, so an operator porting a
 * DLedger config learns why instead of getting "unknown key". */
static const struct {
	const char *name;
	const char *why;
} dledger_unsupported[] = {
        {"minVoteIntervalMs", "elections use electionTimeoutMs, randomized in [T, 2T)"},
        {"maxVoteIntervalMs", "elections use electionTimeoutMs, randomized in [T, 2T)"},
        {"minTakeLeadershipVoteIntervalMs", "leadership transfer starts the election at once"},
        {"maxTakeLeadershipVoteIntervalMs", "leadership transfer starts the election at once"},
        {"preferredLeaderIds", "use preferredLeaderId (one id)"},
        {"dataStorePath", "data lives in <storeBaseDir>/<group>/<id>/data"},
        {"readOnlyDataStoreDirs", "not supported"},
        {"deleteWhen", "old segments are deleted as soon as fileReservedHours passed"},
        {"diskSpaceRatioToCheckExpired", "expiry is always checked"},
        {"peerPushThrottlePoint", "replication is bounded by the in-flight window"},
        {"peerPushQuota", "replication is bounded by the in-flight window"},
        {"enablePushToFollower", "followers are always pushed to"},
        {"isEnableBatchPush", "appends are always batched"},
        {"enableBatchPush", "appends are always batched"},
        {"maxBatchPushSize", "batches are bounded by maxFrameBytes"},
        {"enableSnapshot", "snapshots are not supported"},
        {"snapshotThreshold", "snapshots are not supported"},
        {"maxSnapshotReservedNum", "snapshots are not supported"},
        {"configFilePath", "give the file with --config"},
};

const struct cfg_key *cfg_key_find(const char *name, size_t *idx)
{
	for (size_t i = 0; i < cfg_n_keys; i++) {
		const struct cfg_key *k = &cfg_keys[i];
		if (strcmp(k->name, name) == 0 || (k->alias && strcmp(k->alias, name) == 0)) {
			if (idx != NULL)
				*idx = i;
			return k;
		}
	}
	return NULL;
}

/* Case-insensitive edit distance, bounded input (key names are short). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	if (na > 64 || nb > 64)
		return 1000;
	size_t prev[65], cur[65];
	for (size_t j = 0; j <= nb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= na; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t sub = prev[j - 1] + (tolower((unsigned char)a[i - 1]) !=
			                            tolower((unsigned char)b[j - 1]));
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (nb + 1) * sizeof(size_t));
	}
	return prev[nb];
}

static void consider(const char *name, const char *cand, const char **best, size_t *best_d)
{
	size_t d = edit_distance(name, cand);
	size_t la = strlen(name), lb = strlen(cand);
	size_t lim = (la < lb ? la : lb) / 3;
	if (lim < 2)
		lim = 2;
	if (d <= lim && d < *best_d) {
		*best = cand;
		*best_d = d;
	}
}

void cfg_unknown_key(const char *name, const char *const *extra, char *why, size_t why_len)
{
	for (size_t i = 0; i < sizeof(dledger_unsupported) / sizeof(dledger_unsupported[0]); i++) {
		if (strcmp(dledger_unsupported[i].name, name) == 0) {
			snprintf(why, why_len, "DLedger key not supported here: %s",
			         dledger_unsupported[i].why);
			return;
		}
	}
	const char *best = NULL;
	size_t best_d = (size_t)-1;
	for (size_t i = 0; i < cfg_n_keys; i++) {
		consider(name, cfg_keys[i].name, &best, &best_d);
		if (cfg_keys[i].alias)
			consider(name, cfg_keys[i].alias, &best, &best_d);
	}
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
		consider(name, extra[i], &best, &best_d);
	if (best != NULL)
		snprintf(why, why_len, "unknown key (did you mean '%s'?)", best);
	else
		snprintf(why, why_len, "unknown key");
}

static size_t loc_prefix(char *buf, size_t size, const struct cfg_loc *loc)
{
	int n = 0;
	if (loc != NULL && loc->src != NULL && loc->line > 0)
		n = snprintf(buf, size, "%s:%u: ", loc->src, loc->line);
	else if (loc != NULL && loc->src != NULL)
		n = snprintf(buf, size, "%s: ", loc->src);
	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

int cfg_key_err(struct dl_errctx *err, const struct cfg_loc *loc, const struct cfg_key *k,
                const char *fmt, ...)
{
	if (err == NULL)
		return DL_ECONFIG;
	char *b = err->msg;
	size_t size = sizeof(err->msg);
	size_t n = loc_prefix(b, size, loc);
	int m;
	if (loc != NULL && loc->flags && k->flag != NULL)
		m = snprintf(b + n, size - n, "flag '%s': ", k->flag);
	else
		m = snprintf(b + n, size - n, "key '%s': ", k->name);
	if (m > 0)
		n += (size_t)m < size - n ? (size_t)m : size - n - 1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b + n, size - n, fmt, ap);
	va_end(ap);
	return DL_ECONFIG;
}

int cfg_loc_err(struct dl_errctx *err, const struct cfg_loc *loc, const char *fmt, ...)
{
	if (err == NULL)
		return DL_ECONFIG;
	size_t n = loc_prefix(err->msg, sizeof(err->msg), loc);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg + n, sizeof(err->msg) - n, fmt, ap);
	va_end(ap);
	return DL_ECONFIG;
}

/* ---- values ---- */

static int parse_u64(const char *v, uint64_t *out, size_t *used)
{
	uint64_t x = 0;
	size_t i = 0;
	if (!isdigit((unsigned char)v[0]))
		return -1;
	for (; isdigit((unsigned char)v[i]); i++) {
		uint64_t d = (uint64_t)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -2;
		x = x * 10 + d;
	}
	*out = x;
	*used = i;
	return 0;
}

static int set_number(const struct cfg_key *k, void *field, const char *val, char *why,
                      size_t why_len)
{
	uint64_t x = 0;
	size_t used = 0;
	int rc = parse_u64(val, &x, &used);
	const char *unit = k->unit ? k->unit : "";
	bool bytes = k->kind == CFG_K_BYTES || k->kind == CFG_K_BYTES32;
	if (rc == 0 && bytes && val[used] != '\0') {
		static const struct {
			const char *s;
			uint64_t mul;
		} sfx[] = {{"k", 1024},  {"KiB", 1024}, {"m", MIB},
		           {"MiB", MIB}, {"g", GIB},    {"GiB", GIB}};
		uint64_t mul = 0;
		for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++)
			if (strcasecmp(val + used, sfx[i].s) == 0)
				mul = sfx[i].mul;
		if (mul == 0) {
			snprintf(why, why_len,
			         "expected a size in bytes (optionally with k, m, g or KiB, "
			         "MiB, GiB), got '%.40s'",
			         val);
			return DL_ECONFIG;
		}
		if (x > UINT64_MAX / mul)
			rc = -2;
		else
			x *= mul;
	} else if (rc == 0 && val[used] != '\0') {
		rc = -1;
	}
	if (rc == -1) {
		snprintf(why, why_len, "expected a non-negative integer (%s), got '%.40s'", unit,
		         val);
		return DL_ECONFIG;
	}
	if (rc == -2 || x < k->min || x > k->max) {
		snprintf(why, why_len, "%.40s is out of range %llu..%llu (%s)", val,
		         (unsigned long long)k->min, (unsigned long long)k->max, unit);
		return DL_ECONFIG;
	}
	DL_ASSERT(x <= k->max);
	if (k->kind == CFG_K_U64 || k->kind == CFG_K_BYTES)
		*(uint64_t *)field = x;
	else
		*(uint32_t *)field = (uint32_t)x; /* max fits: see the table */
	return DL_OK;
}

static int set_ratio(const struct cfg_key *k, double *field, const char *val, char *why,
                     size_t why_len)
{
	char *end = NULL;
	errno = 0;
	double d = strtod(val, &end);
	if (val[0] == '\0' || isspace((unsigned char)val[0]) || *end != '\0' || errno != 0 ||
	    !isfinite(d)) {
		snprintf(why, why_len, "expected a number such as 0.85, got '%.40s'", val);
		return DL_ECONFIG;
	}
	double lo = (double)k->min / 1000.0, hi = (double)k->max / 1000.0;
	if (d < lo || d > hi) {
		snprintf(why, why_len, "%.40s is out of range %.2f..%.2f (%s)", val, lo, hi,
		         k->unit);
		return DL_ECONFIG;
	}
	*field = d;
	return DL_OK;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* Index of `v` in `names` (case-insensitive), or -1. */
static int pick(const char *v, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v, names[i]) == 0)
			return (int)i;
	return -1;
}

static const char *const store_names[] = {"file", "memory"};
static const char *const flush_names[] = {"sync", "async"};
static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* set_enum() stores through an int pointer. */
_Static_assert(sizeof(enum cfg_store_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_flush_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_log_level) == sizeof(int), "enum size");

const char *cfg_store_type_name(enum cfg_store_type t)
{
	return (unsigned)t < 2 ? store_names[t] : "?";
}

const char *cfg_flush_mode_name(enum cfg_flush_mode m)
{
	return (unsigned)m < 2 ? flush_names[m] : "?";
}

const char *cfg_log_level_name(enum cfg_log_level l)
{
	return (unsigned)l < 4 ? level_names[l] : "?";
}

static int set_enum(const struct cfg_key *k, void *field, const char *val, char *why,
                    size_t why_len)
{
	int i = -1;
	const char *allowed = "";
	switch (k->kind) {
	case CFG_K_STORE:
		i = pick(val, store_names, 2);
		if (strcasecmp(val, "mmap") == 0) /* the mmap file store is "file" */
			i = CFG_STORE_FILE;
		allowed = "file (or mmap), memory";
		break;
	case CFG_K_FLUSH:
		i = pick(val, flush_names, 2);
		allowed = "sync, async";
		break;
	case CFG_K_LOGLEVEL:
		i = pick(val, level_names, 4);
		if (strcasecmp(val, "warning") == 0)
			i = CFG_LOG_WARN;
		allowed = "error, warn, info, debug";
		break;
	default: DL_ASSERT(0);
	}
	if (i < 0) {
		snprintf(why, why_len, "'%.40s' is not one of: %s", val, allowed);
		return DL_ECONFIG;
	}
	*(int *)field = i; /* every enum field here is int-sized */
	return DL_OK;
}

static int set_string(char **field, const char *val, char *why, size_t why_len)
{
	char *s = strdup(val);
	if (s == NULL) {
		snprintf(why, why_len, "out of memory");
		return DL_ENOMEM;
	}
	free(*field);
	*field = s;
	return DL_OK;
}

static int set_text(const struct cfg_key *k, char **field, const char *val, bool is_null, char *why,
                    size_t why_len)
{
	size_t n = strlen(val);
	switch (k->kind) {
	case CFG_K_PATH:
	case CFG_K_SOCKPATH: {
		size_t max = k->kind == CFG_K_PATH ? CFG_PATH_MAX - 2 * CFG_NAME_MAX - 64
		                                   : CFG_SOCKPATH_MAX;
		if (is_null || n == 0) {
			snprintf(why, why_len, "must not be empty");
			return DL_ECONFIG;
		}
		if (n > max) {
			snprintf(why, why_len, "path is %zu bytes, more than %zu%s", n, max,
			         k->kind == CFG_K_SOCKPATH ? " (unix socket path limit)" : "");
			return DL_ECONFIG;
		}
		break;
	}
	case CFG_K_GROUPNAME:
	case CFG_K_ID:
		if (is_null) {
			snprintf(why, why_len, "must not be empty");
			return DL_ECONFIG;
		}
		if (cfg_name_problem(val, k->kind == CFG_K_ID, why, why_len) != 0)
			return DL_ECONFIG;
		break;
	case CFG_K_OPT_ID:
		if (is_null || n == 0) {
			free(*field);
			*field = NULL;
			return DL_OK;
		}
		if (cfg_name_problem(val, true, why, why_len) != 0)
			return DL_ECONFIG;
		break;
	case CFG_K_OPT_ADDR: {
		if (is_null || n == 0 || strcasecmp(val, "off") == 0 ||
		    strcasecmp(val, "false") == 0) {
			free(*field);
			*field = NULL;
			return DL_OK;
		}
		char host[CFG_HOST_MAX + 1];
		uint16_t port;
		if (cfg_parse_addr(val, n, host, sizeof(host), &port, why, why_len) != 0)
			return DL_ECONFIG;
		break;
	}
	default: DL_ASSERT(0);
	}
	return set_string(field, val, why, why_len);
}

int cfg_set_value(const struct cfg_key *k, void *base, const char *val, bool is_null, char *why,
                  size_t why_len)
{
	DL_ASSERT(k != NULL && base != NULL && val != NULL);
	void *field = (char *)base + k->off;
	bool number = k->kind == CFG_K_U32 || k->kind == CFG_K_U64 || k->kind == CFG_K_BYTES ||
	              k->kind == CFG_K_BYTES32 || k->kind == CFG_K_RATIO || k->kind == CFG_K_BOOL;
	if (is_null && (number || k->kind == CFG_K_PEERS || k->kind == CFG_K_STORE ||
	                k->kind == CFG_K_FLUSH || k->kind == CFG_K_LOGLEVEL)) {
		snprintf(why, why_len, "has no value");
		return DL_ECONFIG;
	}
	switch (k->kind) {
	case CFG_K_U32:
	case CFG_K_U64:
	case CFG_K_BYTES:
	case CFG_K_BYTES32: return set_number(k, field, val, why, why_len);
	case CFG_K_RATIO: return set_ratio(k, field, val, why, why_len);
	case CFG_K_BOOL:
		if (parse_bool(val, field) != 0) {
			snprintf(why, why_len, "expected true or false, got '%.40s'", val);
			return DL_ECONFIG;
		}
		return DL_OK;
	case CFG_K_STORE:
	case CFG_K_FLUSH:
	case CFG_K_LOGLEVEL: return set_enum(k, field, val, why, why_len);
	case CFG_K_PEERS: {
		struct cfg_peers p;
		struct dl_errctx e;
		int rc = cfg_parse_peers(val, &p, &e);
		if (rc != DL_OK) {
			snprintf(why, why_len, "%s", e.msg);
			return rc;
		}
		cfg_peers_free(field);
		memcpy(field, &p, sizeof(p));
		return DL_OK;
	}
	default: return set_text(k, field, val, is_null, why, why_len);
	}
}

/* ---- defaults ---- */

void cfg_opts_defaults(struct cfg_group_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->store_type = CFG_STORE_FILE;
	o->store_base_dir = NULL; /* the node's */
	o->mapped_file_size_for_entry_data_bytes = GIB;
	o->mapped_file_size_for_entry_index_bytes = 32ull * 5 * MIB; /* DLedger: 32 B x 5 Mi */
	o->heart_beat_time_interval_ms = 2000;
	o->max_heart_beat_leak = 3;
	o->election_timeout_ms = 0; /* derived: heartbeat x leak */
	o->enable_leader_elector = true;
	o->flush_mode = CFG_FLUSH_SYNC;
	o->flush_file_interval_ms = 10;
	o->check_point_interval_ms = 3000;
	o->file_reserved_hours = 72;
	o->disk_space_ratio_to_force_clean = 0.85;
	o->disk_full_ratio = 0; /* derived: force clean + 0.05, at most 0.95 */
	o->enable_disk_force_clean = true;
	o->max_pending_requests_num = 10000;
	o->max_pending_bytes = 64 * MIB;
	o->max_push_time_out_ms = 1000;
	o->max_wait_ack_time_ms = 2500;
	o->max_leadership_transfer_wait_index = 1000;
	o->leadership_transfer_wait_timeout_ms = 1000;
}

int cfg_opts_copy(struct cfg_group_opts *dst, const struct cfg_group_opts *src)
{
	*dst = *src;
	dst->store_base_dir = NULL;
	if (src->store_base_dir != NULL) {
		dst->store_base_dir = strdup(src->store_base_dir);
		if (dst->store_base_dir == NULL)
			return DL_ENOMEM;
	}
	return DL_OK;
}

void cfg_opts_free(struct cfg_group_opts *o)
{
	if (o == NULL)
		return;
	free(o->store_base_dir);
	o->store_base_dir = NULL;
}

void cfg_node_init(struct cfg_node *n)
{
	memset(n, 0, sizeof(*n));
	n->leader_balance = false;
	n->max_frame_bytes = 16u << 20;
	n->log_level = CFG_LOG_INFO;
	cfg_opts_defaults(&n->defaults);
}

/* ---- completion and validation ---- */

static uint32_t line_of(const struct cfg_lines *gl, const struct cfg_lines *nl, size_t ki,
                        uint32_t item_line)
{
	if (gl != NULL && gl->key[ki] != 0)
		return gl->key[ki];
	if (nl != NULL && nl->key[ki] != 0)
		return nl->key[ki];
	return item_line;
}

/* electionTimeoutMs and diskFullRatio: derive when not given, then check
 * against heartBeatTimeIntervalMs and diskSpaceRatioToForceClean. */
static int opts_derive(struct cfg_group_opts *o, const struct cfg_lines *gl,
                       const struct cfg_lines *nl, const char *src, uint32_t item_line, bool flags,
                       struct dl_errctx *err)
{
	struct cfg_loc loc = {src, 0, flags};
	if (o->election_timeout_ms == 0) {
		/* DLedger: a follower starts an election once no heartbeat came
		 * for maxHeartBeatLeak x heartBeatTimeIntervalMs. */
		uint64_t t = (uint64_t)o->heart_beat_time_interval_ms * o->max_heart_beat_leak;
		o->election_timeout_ms = t > 3600000 ? 3600000 : (uint32_t)t;
	}
	if (o->election_timeout_ms <= o->heart_beat_time_interval_ms) {
		bool el = line_of(gl, nl, CFG_KI_ELECTION, 0) != 0;
		size_t ki = el ? CFG_KI_ELECTION : CFG_KI_LEAK;
		loc.line = line_of(gl, nl, ki, item_line);
		return cfg_key_err(err, &loc, &cfg_keys[ki],
		                   "election timeout %u ms must be longer than "
		                   "heartBeatTimeIntervalMs %u ms",
		                   o->election_timeout_ms, o->heart_beat_time_interval_ms);
	}
	if (o->disk_full_ratio == 0) {
		double r = o->disk_space_ratio_to_force_clean + 0.05; /* DLedger */
		o->disk_full_ratio = r > 0.95 ? 0.95 : r;
	}
	if (o->disk_full_ratio < o->disk_space_ratio_to_force_clean) {
		bool df = line_of(gl, nl, CFG_KI_DISK_FULL, 0) != 0;
		size_t ki = df ? CFG_KI_DISK_FULL : CFG_KI_FORCE_CLEAN;
		loc.line = line_of(gl, nl, ki, item_line);
		return cfg_key_err(err, &loc, &cfg_keys[ki],
		                   "diskFullRatio %.2f is below diskSpaceRatioToForceClean %.2f",
		                   o->disk_full_ratio, o->disk_space_ratio_to_force_clean);
	}
	return DL_OK;
}

static int group_ids(struct cfg_group *g, const struct cfg_lines *gl, const char *src,
                     uint32_t item_line, bool flags, struct dl_errctx *err)
{
	struct cfg_loc loc = {src, item_line, flags};
	static const size_t required[] = {CFG_KI_GROUP, CFG_KI_ID, CFG_KI_PEERS};
	bool missing[3] = {g->group == NULL, g->self_id == NULL, g->peers.n_members == 0};
	for (size_t i = 0; i < 3; i++)
		if (missing[i])
			return cfg_key_err(err, &loc, &cfg_keys[required[i]],
			                   "missing; every group needs group, id and peers");
	loc.line = line_of(gl, NULL, CFG_KI_PEERS, item_line);
	int self = cfg_peers_find(&g->peers, g->self_id);
	if (self < 0)
		return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_PEERS],
		                   "self id '%s' is not in peers", g->self_id);
	g->self_index = (uint32_t)self;
	if (g->preferred_leader_id != NULL &&
	    cfg_peers_find(&g->peers, g->preferred_leader_id) < 0) {
		loc.line = line_of(gl, NULL, CFG_KI_PREFERRED, item_line);
		return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_PREFERRED], "'%s' is not in peers",
		                   g->preferred_leader_id);
	}
	if (g->o.enable_leader_elector && g->leader_id != NULL) {
		loc.line = line_of(gl, NULL, CFG_KI_LEADER_ID, item_line);
		return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_LEADER_ID],
		                   "only meaningful with enableLeaderElector: false");
	}
	if (!g->o.enable_leader_elector) {
		loc.line = line_of(gl, NULL, CFG_KI_LEADER_ID, item_line);
		if (g->leader_id == NULL)
			return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_LEADER_ID],
			                   "missing; enableLeaderElector: false needs a fixed "
			                   "leaderId");
		if (cfg_peers_find(&g->peers, g->leader_id) < 0)
			return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_LEADER_ID],
			                   "'%s' is not in peers", g->leader_id);
	}
	return DL_OK;
}

int cfg_group_finish(struct cfg_group *g, const struct cfg_node *node, const struct cfg_lines *gl,
                     const struct cfg_lines *nl, const char *src, uint32_t item_line, bool flags,
                     struct dl_errctx *err)
{
	DL_ASSERT(g != NULL);
	int rc = group_ids(g, gl, src, item_line, flags, err);
	if (rc != DL_OK)
		return rc;
	if (g->o.store_base_dir == NULL) {
		const char *d = node && node->store_base_dir ? node->store_base_dir
		                                             : CFG_DEFAULT_STORE_BASE_DIR;
		g->o.store_base_dir = strdup(d);
		if (g->o.store_base_dir == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
	}
	size_t dir_len = strlen(g->o.store_base_dir) + strlen(g->group) + strlen(g->self_id) + 2;
	if (dir_len > CFG_MEMBER_DIR_MAX) {
		uint32_t line = gl && gl->key[CFG_KI_STORE_BASE_DIR] ? gl->key[CFG_KI_STORE_BASE_DIR]
		                : nl && nl->key[CFG_KI_STORE_BASE_DIR] ? nl->key[CFG_KI_STORE_BASE_DIR]
		                                                       : item_line;
		struct cfg_loc loc = {src, line, flags};
		return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_STORE_BASE_DIR],
		                   "the directory of %s/%s under it would be %zu bytes long, at most "
		                   "%d",
		                   g->group, g->self_id, dir_len, CFG_MEMBER_DIR_MAX);
	}
	rc = opts_derive(&g->o, gl, nl, src, item_line, flags, err);
	if (rc != DL_OK)
		return rc;
	DL_ASSERT(g->self_index < g->peers.n_members);
	DL_ASSERT(g->o.election_timeout_ms > g->o.heart_beat_time_interval_ms);
	return DL_OK;
}

int cfg_node_defaults_finish(struct cfg_node *n, struct dl_errctx *err)
{
	if (n->defaults.store_base_dir == NULL) {
		n->defaults.store_base_dir = strdup(CFG_DEFAULT_STORE_BASE_DIR);
		if (n->defaults.store_base_dir == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
	}
	free(n->store_base_dir);
	n->store_base_dir = strdup(n->defaults.store_base_dir);
	if (n->store_base_dir == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	/* electionTimeoutMs and diskFullRatio stay 0 (derived) here: each group
	 * derives and checks them from its own values, naming the node's line
	 * when the culprit was set at the top level. */
	return DL_OK;
}

int cfg_node_finish(struct cfg *c, const struct cfg_lines *nl, bool flags, struct dl_errctx *err)
{
	struct cfg_node *n = &c->node;
	DL_ASSERT(n->store_base_dir != NULL);
	if (n->control_socket == NULL) {
		size_t len = strlen(n->store_base_dir) + sizeof("/control.sock");
		struct cfg_loc loc = {c->source, nl ? nl->key[CFG_KI_STORE_BASE_DIR] : 0, flags};
		if (len - 1 > CFG_SOCKPATH_MAX)
			return cfg_key_err(err, &loc, &cfg_keys[CFG_KI_CONTROL_SOCKET],
			                   "default '%.60s/control.sock' is longer than a unix "
			                   "socket path may be (%d bytes); set controlSocket",
			                   n->store_base_dir, CFG_SOCKPATH_MAX);
		n->control_socket = malloc(len);
		if (n->control_socket == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
		snprintf(n->control_socket, len, "%s/control.sock", n->store_base_dir);
	}
	/* TLS: all three files or none (docs/OPERATIONS.md, "Securing a
	 * cluster"); the files themselves are read when the node starts. */
	const char *tls_set = n->tls_cert_file ? "tlsCertFile"
	                      : n->tls_key_file ? "tlsKeyFile"
	                      : n->tls_ca_file  ? "tlsCaFile"
	                                        : NULL;
	const char *tls_missing = !n->tls_cert_file ? "tlsCertFile"
	                          : !n->tls_key_file ? "tlsKeyFile"
	                          : !n->tls_ca_file  ? "tlsCaFile"
	                                             : NULL;
	if (tls_set != NULL && tls_missing != NULL) {
		size_t ki = 0; /* set by cfg_key_find, which finds every key of the table */
		const struct cfg_key *k = cfg_key_find(tls_set, &ki);
		struct cfg_loc loc = {flags ? NULL : c->source, nl ? nl->key[ki] : 0, flags};
		return cfg_key_err(err, &loc, k,
		                   "TLS needs tlsCertFile, tlsKeyFile and tlsCaFile together; %s is "
		                   "missing",
		                   tls_missing);
	}
	free(n->self_host);
	n->self_host = NULL;
	n->self_port = 0;
	size_t lki = 0;
	const struct cfg_key *lk = cfg_key_find("listenAddress", &lki);
	DL_ASSERT(lk != NULL);
	struct cfg_loc lloc = {flags ? NULL : c->source, nl ? nl->key[lki] : 0, flags};
	if (c->n_groups == 0 && n->listen_address == NULL) {
		if (lloc.line == 0 && !flags)
			lloc.line = 1;
		return cfg_key_err(err, &lloc, lk,
		                   "missing; a node with no group needs the address it listens "
		                   "on (host:port), to take groups later (dledger-ctl add-group)");
	}
	if (c->n_groups > 0) {
		const struct cfg_group *g = &c->groups[0];
		const struct cfg_peer *self = &g->peers.members[g->self_index];
		int rc = cfg_check_listen(n, g, &lloc, err);
		if (rc != DL_OK)
			return rc;
		n->self_host = strdup(self->host);
		if (n->self_host == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
		n->self_port = self->port;
	} else {
		char host[CFG_HOST_MAX + 1];
		uint16_t port;
		char why[200];
		if (cfg_parse_addr(n->listen_address, strlen(n->listen_address), host, sizeof(host),
		                   &port, why, sizeof(why)) != 0)
			return cfg_key_err(err, &lloc, lk, "%s", why); /* checked when set */
		n->self_host = strdup(host);
		if (n->self_host == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
		n->self_port = port;
	}
	DL_ASSERT(n->self_host != NULL);
	return DL_OK;
}

int cfg_check_listen(const struct cfg_node *n, const struct cfg_group *g, const struct cfg_loc *loc,
                     struct dl_errctx *err)
{
	if (n->listen_address == NULL)
		return DL_OK;
	char host[CFG_HOST_MAX + 1];
	uint16_t port;
	char why[200];
	size_t ki = 0;
	const struct cfg_key *lk = cfg_key_find("listenAddress", &ki);
	DL_ASSERT(lk != NULL);
	if (cfg_parse_addr(n->listen_address, strlen(n->listen_address), host, sizeof(host), &port,
	                   why, sizeof(why)) != 0)
		return cfg_key_err(err, loc, lk, "%s", why);
	const struct cfg_peer *me = &g->peers.members[g->self_index];
	if (cfg_addr_equal(host, port, me->host, me->port))
		return DL_OK;
	char a[CFG_ADDR_STR_MAX];
	cfg_format_addr(me->host, me->port, a, sizeof(a));
	return cfg_key_err(err, loc, lk,
	                   "this node listens on %s, but group '%s' gives it (id '%s') the "
	                   "address %s in its peers; they must be the same",
	                   n->listen_address, g->group, g->self_id, a);
}

int cfg_check_dup(const struct cfg_group *o, const struct cfg_group *g, const struct cfg_loc *loc,
                  size_t o_pos, struct dl_errctx *err)
{
	DL_ASSERT(strcmp(o->group, g->group) == 0);
	if (strcmp(o->self_id, g->self_id) == 0)
		return cfg_key_err(err, loc, &cfg_keys[CFG_KI_GROUP],
		                   "group '%s' with id '%s' is listed twice (first at item %zu, "
		                   "line %u)",
		                   g->group, g->self_id, o_pos + 1, o->line);
	return cfg_key_err(err, loc, &cfg_keys[CFG_KI_GROUP],
	                   "group '%s' is already on this node as id '%s' (line %u); a node "
	                   "hosts one member per group",
	                   g->group, o->self_id, o->line);
}

int cfg_check_addr(const struct cfg_group *f, const struct cfg_group *g, const struct cfg_loc *loc,
                   struct dl_errctx *err)
{
	const struct cfg_peer *me = &g->peers.members[g->self_index];
	const struct cfg_peer *fm = &f->peers.members[f->self_index];
	if (cfg_addr_equal(fm->host, fm->port, me->host, me->port))
		return DL_OK;
	char a[CFG_ADDR_STR_MAX], b[CFG_ADDR_STR_MAX];
	cfg_format_addr(me->host, me->port, a, sizeof(a));
	cfg_format_addr(fm->host, fm->port, b, sizeof(b));
	return cfg_key_err(err, loc, &cfg_keys[CFG_KI_PEERS],
	                   "this node is %s ('%s') here but %s ('%s' of group '%s', line %u); "
	                   "every group must give this node the same address",
	                   a, g->self_id, b, f->self_id, f->group, f->line);
}

/* ---- key/value entry point ---- */

int cfg_group_from_kv(const struct cfg_node *node, const struct cfg_kv *kv, size_t n_kv,
                      struct cfg_group *out, struct dl_errctx *err)
{
	DL_ASSERT(out != NULL);
	memset(out, 0, sizeof(*out));
	struct cfg_lines seen = {{0}};
	char why[200];
	struct cfg_loc loc = {NULL, 0, false};
	struct cfg_group_opts defaults;
	cfg_opts_defaults(&defaults);
	int rc = cfg_opts_copy(&out->o, node ? &node->defaults : &defaults);
	if (rc != DL_OK)
		goto err_free;
	for (size_t i = 0; i < n_kv; i++) {
		size_t ki = 0;
		const struct cfg_key *k = kv[i].key ? cfg_key_find(kv[i].key, &ki) : NULL;
		if (k == NULL) {
			cfg_unknown_key(kv[i].key ? kv[i].key : "", NULL, why, sizeof(why));
			rc = dl_errf(err, DL_ECONFIG, "key '%.60s': %s", kv[i].key ? kv[i].key : "",
			             why);
			goto err_free;
		}
		if (k->scope == CFG_SC_NODE) {
			rc = cfg_key_err(err, &loc, k, "node-wide; not settable per group");
			goto err_free;
		}
		if (seen.key[ki]) {
			rc = cfg_key_err(err, &loc, k, "given twice");
			goto err_free;
		}
		seen.key[ki] = 1;
		void *base = k->scope == CFG_SC_GROUP ? (void *)out : (void *)&out->o;
		const char *v = kv[i].value ? kv[i].value : "";
		rc = cfg_set_value(k, base, v, kv[i].value == NULL, why, sizeof(why));
		if (rc != DL_OK) {
			cfg_key_err(err, &loc, k, "%s", why);
			goto err_free;
		}
	}
	rc = cfg_group_finish(out, node, &seen, NULL, NULL, 0, false, err);
	if (rc != DL_OK)
		goto err_free;
	return DL_OK;

err_free:
	cfg_group_free(out);
	return rc;
}

int cfg_check_new_group(const struct cfg *c, const struct cfg_group *g, struct dl_errctx *err)
{
	DL_ASSERT(c != NULL && g != NULL);
	struct cfg_loc loc = {NULL, 0, false};
	for (size_t i = 0; i < c->n_groups; i++) /* O(n): one add-group at a time */
		if (strcmp(c->groups[i].group, g->group) == 0)
			return cfg_check_dup(&c->groups[i], g, &loc, i, err);
	int rc = cfg_check_listen(&c->node, g, &loc, err);
	if (rc != DL_OK || c->n_groups == 0)
		return rc;
	return cfg_check_addr(&c->groups[0], g, &loc, err);
}

int cfg_add_group(struct cfg *c, struct cfg_group *g, struct dl_errctx *err)
{
	int rc = cfg_check_new_group(c, g, err);
	if (rc != DL_OK)
		return rc;
	if (c->n_groups >= CFG_MAX_GROUPS)
		return dl_errf(err, DL_ECONFIG, "more than %d groups on one node", CFG_MAX_GROUPS);
	char *self_host = NULL;
	if (c->n_groups == 0) {
		self_host = strdup(g->peers.members[g->self_index].host);
		if (self_host == NULL)
			return dl_errf(err, DL_ENOMEM, "out of memory");
	}
	struct cfg_group *ng = realloc(c->groups, (c->n_groups + 1) * sizeof(*ng));
	if (ng == NULL) {
		free(self_host);
		return dl_errf(err, DL_ENOMEM, "out of memory");
	}
	c->groups = ng;
	if (self_host != NULL) {
		free(c->node.self_host);
		c->node.self_host = self_host;
		c->node.self_port = g->peers.members[g->self_index].port;
	}
	c->groups[c->n_groups++] = *g;
	memset(g, 0, sizeof(*g));
	return DL_OK;
}

/* ---- free ---- */

void cfg_group_free(struct cfg_group *g)
{
	if (g == NULL)
		return;
	free(g->group);
	free(g->self_id);
	free(g->preferred_leader_id);
	free(g->leader_id);
	cfg_peers_free(&g->peers);
	cfg_opts_free(&g->o);
	memset(g, 0, sizeof(*g));
}

void cfg_free(struct cfg *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_groups; i++)
		cfg_group_free(&c->groups[i]);
	free(c->groups);
	free(c->source);
	free(c->node.store_base_dir);
	free(c->node.control_socket);
	free(c->node.metrics_address);
	free(c->node.listen_address);
	free(c->node.tls_cert_file);
	free(c->node.tls_key_file);
	free(c->node.tls_ca_file);
	free(c->node.self_host);
	cfg_opts_free(&c->node.defaults);
	memset(c, 0, sizeof(*c));
}
