/*
 * config_internal.h - shared by the files of config/: the key table, value
 * parsing, group and node completion, and error labels. Not for other
 * modules: they include config/config.h only.
 */
#ifndef DLEDGER_CONFIG_INTERNAL_H
#define DLEDGER_CONFIG_INTERNAL_H

#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>

#define CFG_DEFAULT_STORE_BASE_DIR "/tmp/dledgerstore" /* DLedger's default */
#define CFG_DEFAULT_GROUP          "default"           /* DLedger's --group default */

/* Where a key may appear. */
enum cfg_scope {
	CFG_SC_NODE,  /* top level only (node-wide) */
	CFG_SC_GROUP, /* DLedgerConfigs items only (identity of a group member) */
	CFG_SC_BOTH,  /* per group, with a node-wide default at the top level */
};

enum cfg_kind {
	CFG_K_PATH,     /* non-empty string, < CFG_PATH_MAX */
	CFG_K_SOCKPATH, /* non-empty string, <= CFG_SOCKPATH_MAX */
	CFG_K_GROUPNAME,
	CFG_K_ID,
	CFG_K_OPT_ID, /* id, or null/empty for none */
	CFG_K_PEERS,
	CFG_K_U32,
	CFG_K_U64,
	CFG_K_BYTES,   /* u64 with optional K/M/G (KiB/MiB/GiB) suffix */
	CFG_K_BYTES32, /* the same into a uint32_t */
	CFG_K_RATIO,   /* double */
	CFG_K_BOOL,
	CFG_K_STORE,
	CFG_K_FLUSH,
	CFG_K_LOGLEVEL,
	CFG_K_OPT_ADDR, /* host:port, or null/empty/"off" for none */
};

struct cfg_key {
	const char *name;
	const char *alias; /* DLedger's spelling when ours differs; NULL */
	const char *flag;  /* command-line flag; NULL */
	enum cfg_scope scope;
	enum cfg_kind kind;
	/* offset in struct cfg_node (NODE), struct cfg_group (GROUP) or
	 * struct cfg_group_opts (BOTH) */
	size_t off;
	uint64_t min, max; /* numbers; ratios use min/max as thousandths */
	const char *unit;  /* for messages: "milliseconds", "bytes", ... */
};

/* Indexes into cfg_keys[] that the code refers to by name. */
enum cfg_key_idx {
	CFG_KI_GROUP = 0,
	CFG_KI_ID,
	CFG_KI_PEERS,
	CFG_KI_PREFERRED,
	CFG_KI_LEADER_ID,
	CFG_KI_STORE_BASE_DIR,
	CFG_KI_CONTROL_SOCKET,
	CFG_KI_HEARTBEAT,
	CFG_KI_LEAK,
	CFG_KI_ELECTION,
	CFG_KI_ELECTOR,
	CFG_KI_FORCE_CLEAN,
	CFG_KI_DISK_FULL,
	CFG_KI_COUNT_NAMED,
};

extern const struct cfg_key cfg_keys[];
extern const size_t cfg_n_keys;
#define CFG_N_KEYS 40 /* >= cfg_n_keys (checked at start) */

/* The key with this name or alias, or NULL; *idx its index. */
const struct cfg_key *cfg_key_find(const char *name, size_t *idx);

/* "unknown key 'x'" plus a hint: " (did you mean 'y'?)" or why a DLedger key
 * is not supported. Writes into why. */
void cfg_unknown_key(const char *name, const char *const *extra, char *why, size_t why_len);

/* Where an error is: source (file name, or NULL), line (0: none), and
 * whether keys are shown as flags. */
struct cfg_loc {
	const char *src;
	uint32_t line;
	bool flags;
};

/* DL_ECONFIG with "src:line: key 'K': <fmt>" (or "flag '--k'" for flags). */
int cfg_key_err(struct dl_errctx *err, const struct cfg_loc *loc, const struct cfg_key *k,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The same without a key: "src:line: <fmt>". */
int cfg_loc_err(struct dl_errctx *err, const struct cfg_loc *loc, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Parse `val` for key `k` and store it in `base` (the struct the key's
 * offset is relative to). `is_null`: a YAML null (~, null, empty plain).
 * Returns DL_OK, DL_ECONFIG (with a reason in why) or DL_ENOMEM. */
int cfg_set_value(const struct cfg_key *k, void *base, const char *val, bool is_null, char *why,
                  size_t why_len);

/* Built-in defaults; strings NULL. */
void cfg_opts_defaults(struct cfg_group_opts *o);
int cfg_opts_copy(struct cfg_group_opts *dst, const struct cfg_group_opts *src);
void cfg_opts_free(struct cfg_group_opts *o);
void cfg_node_init(struct cfg_node *n);

/* Lines where keys were set (0: not set), to name them in later errors. */
struct cfg_lines {
	uint32_t key[CFG_N_KEYS];
};

/* Complete and validate one group: required keys, names, self in peers,
 * preferred/leader ids, inherited storeBaseDir, derived values. `gl` and
 * `nl` are the lines of the group's and the node's keys (NULL: none);
 * `item_line` names a missing key. */
int cfg_group_finish(struct cfg_group *g, const struct cfg_node *node, const struct cfg_lines *gl,
                     const struct cfg_lines *nl, const char *src, uint32_t item_line, bool flags,
                     struct dl_errctx *err);

/* Resolve the node's storeBaseDir. electionTimeoutMs and diskFullRatio stay
 * 0 in node->defaults: each group derives them from its own values. */
int cfg_node_defaults_finish(struct cfg_node *n, struct dl_errctx *err);

/* After all groups: controlSocket default and the self address. */
int cfg_node_finish(struct cfg *c, const struct cfg_lines *nl, bool flags, struct dl_errctx *err);

/* The error for `g` repeating the group of `o` (item o_pos, 0-based), named
 * at `loc` (the new group's 'group' key). Always DL_ECONFIG. */
int cfg_check_dup(const struct cfg_group *o, const struct cfg_group *g, const struct cfg_loc *loc,
                  size_t o_pos, struct dl_errctx *err);

/* Whether `g` gives this node the same address as `first` does; the error
 * is named at `loc` (the new group's 'peers' key). */
/* g's address for this node against listenAddress (DL_OK when unset). */
int cfg_check_listen(const struct cfg_node *n, const struct cfg_group *g, const struct cfg_loc *loc,
                     struct dl_errctx *err);
int cfg_check_addr(const struct cfg_group *first, const struct cfg_group *g,
                   const struct cfg_loc *loc, struct dl_errctx *err);

#endif
