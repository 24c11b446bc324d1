/*
 * args.c - DLedger's command line (one group per process), or --config FILE.
 *
 * DLedger (DLedgerConfig / ServerCommand): --group/-g, --id/-i, --peers/-p,
 * --store-base-dir/-s, --preferred-leader-id, --config-file/-c. We add the
 * flags that map onto our keys one to one, and --set KEY=VALUE for any other
 * per-group or node key. No getopt: it keeps global state and prints on its
 * own, and this must be callable many times (tests) and report through
 * dl_errctx like every other error.
 */
#include "config/config_internal.h"

#include <string.h>

#define ARGS_MAX 256 /* bound on flags in one command line */

enum flag_special {
	FL_KEY = 0,
	FL_CONFIG,
	FL_SET,
	FL_HELP,
	FL_VERSION,
};

struct flag {
	const char *name; /* long form, with "--" */
	char short_name;  /* 0: none */
	enum flag_special special;
	const char *key; /* FL_KEY: the key it sets */
};

static const struct flag flags[] = {
        {"--group", 'g', FL_KEY, "group"},
        {"--id", 'i', FL_KEY, "id"},
        {"--peers", 'p', FL_KEY, "peers"},
        {"--store-base-dir", 's', FL_KEY, "storeBaseDir"},
        {"--store-dir", 0, FL_KEY, "storeBaseDir"},
        {"--preferred-leader-id", 0, FL_KEY, "preferredLeaderId"},
        {"--leader-id", 0, FL_KEY, "leaderId"},
        {"--store-type", 0, FL_KEY, "storeType"},
        {"--flush-mode", 0, FL_KEY, "flushMode"},
        {"--control-socket", 0, FL_KEY, "controlSocket"},
        {"--metrics-address", 0, FL_KEY, "metricsAddress"},
        {"--listen-address", 0, FL_KEY, "listenAddress"},
        {"--log-level", 0, FL_KEY, "logLevel"},
        {"--tls-cert-file", 0, FL_KEY, "tlsCertFile"},
        {"--tls-cert", 0, FL_KEY, "tlsCertFile"},
        {"--tls-key-file", 0, FL_KEY, "tlsKeyFile"},
        {"--tls-key", 0, FL_KEY, "tlsKeyFile"},
        {"--tls-ca-file", 0, FL_KEY, "tlsCaFile"},
        {"--tls-ca", 0, FL_KEY, "tlsCaFile"},
        {"--max-pending-bytes", 0, FL_KEY, "maxPendingBytes"},
        {"--config", 'c', FL_CONFIG, NULL},
        {"--config-file", 0, FL_CONFIG, NULL},
        {"--set", 0, FL_SET, NULL},
        {"--help", 'h', FL_HELP, NULL},
        {"--version", 'V', FL_VERSION, NULL},
};
#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static const char usage[] =
        "Configuration (a YAML file, or one group from flags as DLedger does):\n"
        "  -c, --config FILE            load FILE (alone; alias --config-file)\n"
        "  -g, --group NAME             group name (default: default)\n"
        "  -i, --id ID                  this member's id (required without --config)\n"
        "  -p, --peers PEERS            id-host:port;id-host:port;... (required)\n"
        "  -s, --store-base-dir DIR     storage root (alias --store-dir;\n"
        "                               default /tmp/dledgerstore)\n"
        "      --preferred-leader-id ID member that should lead this group\n"
        "      --leader-id ID           fixed leader (with --set enableLeaderElector=false)\n"
        "      --store-type TYPE        file (default) or memory\n"
        "      --flush-mode MODE        sync (default) or async\n"
        "      --control-socket PATH    default <store-base-dir>/control.sock\n"
        "      --metrics-address H:P    serve metrics there (default off)\n"
        "      --listen-address H:P     where this node listens (default: its address\n"
        "                               in --peers); alone, without --id and --peers:\n"
        "                               a node with no group, to take them later\n"
        "      --log-level LEVEL        error, warn, info (default), debug\n"
        "      --tls-cert-file FILE     this node's certificate: with the next two,\n"
        "                               mutual TLS for every connection (alias --tls-cert)\n"
        "      --tls-key-file FILE      its private key (alias --tls-key)\n"
        "      --tls-ca-file FILE       the cluster's CA certificate (alias --tls-ca)\n"
        "      --max-pending-bytes N    bytes of client appends waiting for commit per\n"
        "                               member (K/M/G suffix; default 64M)\n"
        "      --set KEY=VALUE          any configuration key (docs/OPERATIONS.md)\n"
        "  -h, --help                   this text\n"
        "  -V, --version                the version\n";

const char *cfg_flags_usage(void)
{
	return usage;
}

/* One flag occurrence: the key it sets (or a special) and its value. */
struct arg {
	const struct flag *f;
	const struct cfg_key *k;
	size_t ki;
	const char *value;
	size_t value_len; /* --set: bytes of KEY before '=' */
};

static const struct flag *find_flag(const char *a, size_t n)
{
	for (size_t i = 0; i < N_FLAGS; i++) {
		if (n == 2 && a[0] == '-' && a[1] == flags[i].short_name && a[1] != 0)
			return &flags[i];
		if (strlen(flags[i].name) == n && strncmp(flags[i].name, a, n) == 0)
			return &flags[i];
	}
	return NULL;
}

static int unknown_flag(const char *a, size_t n, struct dl_errctx *err)
{
	/* Suggest the flag whose name starts the same way, if any. */
	for (size_t i = 0; i < N_FLAGS && n > 3; i++)
		if (strncmp(flags[i].name, a, n < 6 ? n : 6) == 0)
			return dl_errf(err, DL_ECONFIG, "unknown flag '%.*s' (did you mean '%s'?)",
			               (int)(n > 60 ? 60 : n), a, flags[i].name);
	return dl_errf(err, DL_ECONFIG, "unknown flag '%.*s' (see --help)", (int)(n > 60 ? 60 : n),
	               a);
}

/* --set KEY=VALUE: find the key. */
static int resolve_set(struct arg *a, struct dl_errctx *err)
{
	const char *eq = strchr(a->value, '=');
	if (eq == NULL || eq == a->value)
		return dl_errf(err, DL_ECONFIG, "flag '--set': expected KEY=VALUE, got '%.60s'",
		               a->value);
	char name[80];
	size_t n = (size_t)(eq - a->value);
	if (n >= sizeof(name))
		return dl_errf(err, DL_ECONFIG, "flag '--set': unknown key '%.60s'", a->value);
	memcpy(name, a->value, n);
	name[n] = '\0';
	a->k = cfg_key_find(name, &a->ki);
	if (a->k == NULL) {
		char why[160];
		cfg_unknown_key(name, NULL, why, sizeof(why));
		return dl_errf(err, DL_ECONFIG, "flag '--set': key '%s': %s", name, why);
	}
	a->value = eq + 1;
	return DL_OK;
}

/* argv into args[]; CFG_HELP / CFG_VERSION as soon as seen. */
static int scan(int argc, char *const *argv, struct arg *args, size_t *n_args,
                struct dl_errctx *err)
{
	size_t n = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			return dl_errf(err, DL_ECONFIG, "unexpected argument '%.60s' (see --help)",
			               a);
		const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
		size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
		const struct flag *f = find_flag(a, name_len);
		if (f == NULL)
			return unknown_flag(a, name_len, err);
		if (f->special == FL_HELP)
			return CFG_HELP;
		if (f->special == FL_VERSION)
			return CFG_VERSION;
		if (n == ARGS_MAX)
			return dl_errf(err, DL_ECONFIG, "more than %d flags", ARGS_MAX);
		struct arg *ar = &args[n++];
		memset(ar, 0, sizeof(*ar));
		ar->f = f;
		if (eq != NULL) {
			ar->value = eq + 1;
		} else if (i + 1 < argc) {
			ar->value = argv[++i];
		} else {
			return dl_errf(err, DL_ECONFIG, "flag '%s': needs a value", f->name);
		}
		if (f->special == FL_KEY) {
			ar->k = cfg_key_find(f->key, &ar->ki);
			DL_ASSERT(ar->k != NULL);
		} else if (f->special == FL_SET) {
			int rc = resolve_set(ar, err);
			if (rc != DL_OK)
				return rc;
		}
	}
	*n_args = n;
	return DL_OK;
}

static const char *label(const struct arg *a)
{
	return a->f->special == FL_SET ? "--set" : a->f->name;
}

static int apply(const struct arg *a, void *base, struct dl_errctx *err)
{
	struct cfg_loc loc = {NULL, 0, a->f->special == FL_KEY};
	char why[200];
	int rc = cfg_set_value(a->k, base, a->value, false, why, sizeof(why));
	if (rc == DL_ENOMEM)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	if (rc != DL_OK)
		return cfg_key_err(err, &loc, a->k, "%s", why);
	return DL_OK;
}

/* One group from the flags (no --config). */
static int build(const struct arg *args, size_t n, struct cfg *out, struct dl_errctx *err)
{
	struct cfg_lines seen = {{0}};
	struct cfg_loc loc = {NULL, 0, true};
	int rc;
	for (size_t i = 0; i < n; i++) {
		if (seen.key[args[i].ki] != 0)
			return cfg_key_err(err, &loc, args[i].k, "given twice");
		seen.key[args[i].ki] = 1;
		if (args[i].k->scope == CFG_SC_GROUP)
			continue;
		void *base = args[i].k->scope == CFG_SC_NODE ? (void *)&out->node
		                                             : (void *)&out->node.defaults;
		if ((rc = apply(&args[i], base, err)) != DL_OK)
			return rc;
	}
	size_t lki = 0;
	bool no_group = cfg_key_find("listenAddress", &lki) != NULL && seen.key[lki] != 0 &&
	                seen.key[CFG_KI_ID] == 0 && seen.key[CFG_KI_PEERS] == 0 &&
	                seen.key[CFG_KI_GROUP] == 0;
	if (!no_group && (seen.key[CFG_KI_ID] == 0 || seen.key[CFG_KI_PEERS] == 0))
		return cfg_key_err(err, &loc,
		                   &cfg_keys[seen.key[CFG_KI_ID] ? CFG_KI_PEERS : CFG_KI_ID],
		                   "missing; give --id and --peers, or --config FILE (or "
		                   "--listen-address alone for a node with no group yet)");
	if ((rc = cfg_node_defaults_finish(&out->node, err)) != DL_OK)
		return rc;
	if (no_group) /* groups come later, through the control socket */
		return cfg_node_finish(out, NULL, true, err);
	out->groups = calloc(1, sizeof(*out->groups));
	if (out->groups == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	struct cfg_group *g = &out->groups[out->n_groups++];
	if (cfg_opts_copy(&g->o, &out->node.defaults) != DL_OK)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (args[i].k->scope == CFG_SC_GROUP && (rc = apply(&args[i], g, err)) != DL_OK)
			return rc;
	if (g->group == NULL && (g->group = strdup(CFG_DEFAULT_GROUP)) == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	rc = cfg_group_finish(g, &out->node, &seen, NULL, NULL, 0, true, err);
	if (rc != DL_OK)
		return rc;
	return cfg_node_finish(out, NULL, true, err);
}

int cfg_from_args(int argc, char *const *argv, struct cfg *out, struct dl_errctx *err)
{
	DL_ASSERT(out != NULL && argc >= 0);
	memset(out, 0, sizeof(*out));
	struct arg args[ARGS_MAX];
	size_t n = 0;
	int rc = scan(argc, argv, args, &n, err);
	if (rc != DL_OK)
		return rc;
	const struct arg *config = NULL;
	for (size_t i = 0; i < n; i++)
		if (args[i].f->special == FL_CONFIG)
			config = &args[i];
	if (config != NULL) {
		for (size_t i = 0; i < n; i++)
			if (&args[i] != config)
				return dl_errf(err, DL_ECONFIG,
				               "flag '%s' cannot be combined with '%s'; put "
				               "everything in the file",
				               config->f->name, label(&args[i]));
		return cfg_load_file(config->value, out, err);
	}
	if (n == 0)
		return dl_errf(err, DL_ECONFIG,
		               "no configuration: give --config FILE, or --id and --peers "
		               "(see --help)");
	cfg_node_init(&out->node);
	out->source = strdup("flags");
	if (out->source == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	rc = build(args, n, out, err);
	if (rc != DL_OK)
		goto err_free;
	/* One group, or none with --listen-address alone. */
	DL_ASSERT(out->n_groups <= 1 && out->node.self_host != NULL);
	return DL_OK;

err_free:
	cfg_free(out);
	return rc;
}
