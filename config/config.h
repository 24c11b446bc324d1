/*
 * config.h - the node's configuration: a YAML file or DLedger-style flags
 * into validated structs (the peers string parser is config/peers.h).
 *
 * Input is either a YAML file in the Multi-DLedger shape (node-wide keys at
 * the top level, one item per group under `DLedgerConfigs:`, items plain or
 * wrapped as `DLedgerConfig: {...}`), DLedger's command-line flags for one
 * group, or a flat key/value list (the control socket's add-group). Every
 * path goes through the same key table, so a key means the same thing
 * everywhere; docs/OPERATIONS.md ("Configuration") lists the keys.
 *
 * Errors: DL_ECONFIG (or DL_ENOMEM, DL_EIO for an unreadable file) with a
 * message in the caller's `struct dl_errctx` that names the source, the line
 * and the key: "examples/bad.yaml:7: key 'peers': self id 'n3' is not in
 * peers". The node exits with status 2 on DL_ECONFIG (DESIGN.md section 7).
 *
 * Threads: none. Every function is re-entrant; a `struct cfg` is plain data
 * owned by its caller.
 *
 * Limits: CFG_MAX_MEMBERS members per group (the Raft core's
 * RAFT_MAX_MEMBERS), CFG_MAX_GROUPS groups per node, CFG_NAME_MAX bytes per
 * group name or member id, CFG_FILE_MAX_BYTES per config file.
 */
#ifndef DLEDGER_CONFIG_H
#define DLEDGER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dl_err.h"
#include "config/peers.h"

#define CFG_MAX_GROUPS     65536
#define CFG_PATH_MAX       4096
#define CFG_MEMBER_DIR_MAX 960 /* <storeBaseDir>/<group>/<id>: the store's STO_DIR_MAX */
#define CFG_SOCKPATH_MAX   107 /* sizeof(sockaddr_un.sun_path) - 1 */
#define CFG_FILE_MAX_BYTES (4u << 20)

/* cfg_from_args() results besides DL_OK and DL_ECONFIG: the flags asked for
 * the usage text or the version. `out` is then left empty; the caller prints
 * and exits 0. Negative so they never collide with a dl_err code. */
enum cfg_args_rc {
	CFG_HELP = -1,
	CFG_VERSION = -2,
};

enum cfg_store_type {
	CFG_STORE_FILE = 0, /* "file" (also "mmap"): the mmap segment store */
	CFG_STORE_MEMORY,   /* "memory": volatile, for tests and benchmarks */
};

enum cfg_flush_mode {
	CFG_FLUSH_SYNC = 0, /* an entry counts toward commit once durable */
	CFG_FLUSH_ASYNC,    /* once in the page cache; flushed periodically */
};

/* The levels of common/dl_log.h, by name. */
enum cfg_log_level {
	CFG_LOG_ERROR = 0,
	CFG_LOG_WARN,
	CFG_LOG_INFO,
	CFG_LOG_DEBUG,
};

/* The per-group keys that also have a node-wide default. Each field names
 * its YAML key. In a cfg_group every field is resolved after a successful
 * load. In cfg_node.defaults, election_timeout_ms and disk_full_ratio are 0
 * unless given at the top level: each group derives them from its own
 * heartbeat and force-clean values. */
struct cfg_group_opts {
	enum cfg_store_type store_type;                  /* storeType */
	char *store_base_dir;                            /* storeBaseDir */
	uint64_t mapped_file_size_for_entry_data_bytes;  /* mappedFileSizeForEntryData */
	uint64_t mapped_file_size_for_entry_index_bytes; /* mappedFileSizeForEntryIndex */
	uint32_t heart_beat_time_interval_ms;            /* heartBeatTimeIntervalMs */
	uint32_t max_heart_beat_leak;                    /* maxHeartBeatLeak */
	uint32_t election_timeout_ms;                    /* electionTimeoutMs */
	bool enable_leader_elector;                      /* enableLeaderElector */
	enum cfg_flush_mode flush_mode;                  /* flushMode */
	uint32_t flush_file_interval_ms;                 /* flushFileIntervalMs */
	uint32_t check_point_interval_ms;                /* checkPointIntervalMs */
	uint32_t file_reserved_hours;                    /* fileReservedHours */
	double disk_space_ratio_to_force_clean;          /* diskSpaceRatioToForceClean */
	double disk_full_ratio;                          /* diskFullRatio */
	bool enable_disk_force_clean;                    /* enableDiskForceClean */
	uint32_t max_pending_requests_num;               /* maxPendingRequestsNum */
	uint64_t max_pending_bytes;                      /* maxPendingBytes */
	uint32_t max_push_time_out_ms;                   /* maxPushTimeOutMs */
	uint32_t max_wait_ack_time_ms;                   /* maxWaitAckTimeMs */
	uint64_t max_leadership_transfer_wait_index;     /* maxLeadershipTransferWaitIndex */
	uint32_t leadership_transfer_wait_timeout_ms;    /* leadershipTransferWaitTimeoutMs */
};

/* One member of one group hosted by this node (a DLedgerConfigs item). */
struct cfg_group {
	char *group;               /* group */
	char *self_id;             /* id */
	struct cfg_peers peers;    /* peers */
	uint32_t self_index;       /* peers.members[self_index].id == self_id */
	char *preferred_leader_id; /* preferredLeaderId; NULL: none */
	char *leader_id;           /* leaderId; set iff !o.enable_leader_elector */
	struct cfg_group_opts o;
	uint32_t line; /* line of the item in the file; 0 if not from a file */
};

/* Node-wide settings. */
struct cfg_node {
	char *store_base_dir;           /* storeBaseDir; default /tmp/dledgerstore */
	char *control_socket;           /* controlSocket; default <storeBaseDir>/control.sock */
	char *metrics_address;          /* metricsAddress "host:port"; NULL: off */
	/* listenAddress "host:port": where this node listens; NULL: this
	 * node's address in its groups' peers. Required when the node starts
	 * with no group; when it has groups, they must agree with it. */
	char *listen_address;
	bool leader_balance;            /* leaderBalance */
	uint32_t max_frame_bytes;       /* maxFrameBytes */
	enum cfg_log_level log_level;   /* logLevel */
	/* Mutual TLS: all three or none (checked); NULL: plaintext. */
	char *tls_cert_file;            /* tlsCertFile: this node's certificate (PEM) */
	char *tls_key_file;             /* tlsKeyFile: its private key (PEM, unencrypted) */
	char *tls_ca_file;              /* tlsCaFile: the cluster's CA (PEM, optional CRLs) */
	struct cfg_group_opts defaults; /* the top-level per-group keys */
	/* This node's address, the same in every group and listenAddress
	 * (checked): where the node endpoint listens. */
	char *self_host;
	uint16_t self_port;
};

struct cfg {
	char *source; /* the file path, or "flags" */
	struct cfg_node node;
	struct cfg_group *groups;
	size_t n_groups;
};

/* A key and its value, for cfg_group_from_kv(). Both borrowed. */
struct cfg_kv {
	const char *key;
	const char *value;
};

/* Load and validate a YAML file. On success `*out` holds the configuration
 * (free it with cfg_free()); on failure `*out` is left empty (zeroed) and
 * `err` names file, line and key. `*out` is overwritten, not freed first.
 * Returns DL_OK, DL_ECONFIG, DL_EIO (unreadable file) or DL_ENOMEM. */
int cfg_load_file(const char *path, struct cfg *out, struct dl_errctx *err);

/* The same from a buffer; `name` stands for the file in messages. */
int cfg_load_buffer(const char *name, const char *buf, size_t len, struct cfg *out,
                    struct dl_errctx *err);

/* DLedger's command line: --group/-g, --id/-i, --peers/-p,
 * --store-base-dir/-s (alias --store-dir), --preferred-leader-id,
 * --store-type, --flush-mode, --control-socket, --metrics-address,
 * --log-level, --tls-cert-file, --tls-key-file, --tls-ca-file (aliases
 * --tls-cert, --tls-key, --tls-ca), --listen-address (alone, without
 * --id and --peers: a node with no group yet), or --config/-c FILE (alias
 * --config-file) alone, which loads
 * the file. Values as "--flag VALUE" or "--flag=VALUE". argv[0] is skipped.
 * Returns DL_OK, DL_ECONFIG, CFG_HELP (--help/-h), CFG_VERSION (--version),
 * or what cfg_load_file() returns; `*out` as for cfg_load_file(). */
int cfg_from_args(int argc, char *const *argv, struct cfg *out, struct dl_errctx *err);

/* Usage text of the flags cfg_from_args() knows, for --help. Never NULL. */
const char *cfg_flags_usage(void);

/* One group from a flat key/value list with the YAML keys of a
 * DLedgerConfigs item (group, id, peers, preferredLeaderId, and every
 * per-group key). Keys not given take `node`'s defaults (the built-in ones
 * when `node` is NULL). Errors say "key 'K': ...". On success `*out` is
 * owned by the caller (cfg_group_free()); on failure it is left zeroed. */
int cfg_group_from_kv(const struct cfg_node *node, const struct cfg_kv *kv, size_t n_kv,
                      struct cfg_group *out, struct dl_errctx *err);

/* Whether `g` may join the groups of `c`: not the same group twice, and the
 * same self address as the others and as listenAddress. DL_OK or
 * DL_ECONFIG. */
int cfg_check_new_group(const struct cfg *c, const struct cfg_group *g, struct dl_errctx *err);

/* Append `g` to `c` after cfg_check_new_group(). Takes ownership of `*g`'s
 * contents on success (and zeroes `*g`); on failure the caller still owns
 * them. DL_OK, DL_ECONFIG or DL_ENOMEM. */
int cfg_add_group(struct cfg *c, struct cfg_group *g, struct dl_errctx *err);

const char *cfg_store_type_name(enum cfg_store_type t);
const char *cfg_flush_mode_name(enum cfg_flush_mode m);
const char *cfg_log_level_name(enum cfg_log_level l);

/* Free what the struct owns and zero it. Safe on NULL, on a zeroed struct,
 * on a half-built one, and twice. */
void cfg_free(struct cfg *c);
void cfg_group_free(struct cfg_group *g);

#endif
