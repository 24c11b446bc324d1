/*
 * load_yaml.c - the YAML file into a struct cfg, with libyaml's document
 * API so every node carries its line.
 *
 * Shape (the Multi-DLedger seed):
 *   <node-wide keys and node defaults of per-group keys>
 *   DLedgerConfigs:
 *     - group: g0            # a plain item
 *       ...
 *     - DLedgerConfig:       # or a wrapped one
 *         group: g1
 *
 * The walk follows this fixed shape only (top map, list, item map, scalars),
 * so aliases cannot make it loop or blow up. Tabs in indentation are found
 * before libyaml runs, so the operator gets "tab at line N" rather than a
 * generic scanner error.
 */
#include "config/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#define WRAP_KEY   "DLedgerConfig"
#define GROUPS_KEY "DLedgerConfigs"

#define FLOW_DEPTH_MAX 32 /* libyaml's scanner is quadratic in flow depth */

struct loader {
	const char *src;
	yaml_document_t *doc;
	struct cfg *c;
	struct cfg_lines node_lines;
	struct dl_errctx *err;
	/* group name -> index + 1 (open addressing), so "listed twice" stays
	 * O(1) per item with CFG_MAX_GROUPS groups */
	uint32_t *by_name;
	size_t by_name_cap; /* power of two, > 2 x groups */
};

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot of `name`: holding it, or the empty one where it goes. */
static size_t name_slot(const struct loader *ld, const char *name)
{
	size_t mask = ld->by_name_cap - 1;
	size_t i = (size_t)name_hash(name) & mask;
	for (size_t probes = 0; probes < ld->by_name_cap; probes++, i = (i + 1) & mask) {
		uint32_t v = ld->by_name[i];
		if (v == 0 || strcmp(ld->c->groups[v - 1].group, name) == 0)
			return i;
	}
	DL_ASSERT(0); /* never full: cap > 2 x groups */
	return 0;
}

static uint32_t line_of_node(const yaml_node_t *n)
{
	size_t l = n->start_mark.line + 1;
	return l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
}

static const char *type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE: return "a mapping";
	case YAML_SEQUENCE_NODE: return "a list";
	default: return "a single value";
	}
}

static bool scalar_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* The text of a key node, or NULL after reporting why it is not a name. */
static const char *key_text(struct loader *ld, const yaml_node_t *kn)
{
	struct cfg_loc loc = {ld->src, line_of_node(kn), false};
	if (kn->type != YAML_SCALAR_NODE) {
		cfg_loc_err(ld->err, &loc, "a key must be a plain name, not %s", type_name(kn));
		return NULL;
	}
	const char *v = (const char *)kn->data.scalar.value;
	if (strlen(v) != kn->data.scalar.length || kn->data.scalar.length == 0) {
		cfg_loc_err(ld->err, &loc, "empty key, or a key with a NUL byte");
		return NULL;
	}
	return v;
}

/* Set key `k` from value node `vn` into `base`. */
static int set_from_node(struct loader *ld, const struct cfg_key *k, void *base,
                         const yaml_node_t *vn, uint32_t key_line)
{
	struct cfg_loc loc = {ld->src, key_line, false};
	char why[200];
	if (vn->type != YAML_SCALAR_NODE)
		return cfg_key_err(ld->err, &loc, k, "expected a single value, got %s",
		                   type_name(vn));
	const char *v = (const char *)vn->data.scalar.value;
	if (strlen(v) != vn->data.scalar.length)
		return cfg_key_err(ld->err, &loc, k, "value contains a NUL byte");
	int rc = cfg_set_value(k, base, v, scalar_is_null(vn), why, sizeof(why));
	if (rc == DL_ENOMEM)
		return dl_errf(ld->err, DL_ENOMEM, "out of memory");
	if (rc != DL_OK)
		return cfg_key_err(ld->err, &loc, k, "%s", why);
	return DL_OK;
}

/* Look `name` up for a map at `scope_here` (CFG_SC_NODE: top level,
 * CFG_SC_GROUP: an item); record its line in `lines`, refusing repeats. */
static const struct cfg_key *lookup(struct loader *ld, const char *name, uint32_t line,
                                    enum cfg_scope scope_here, struct cfg_lines *lines)
{
	struct cfg_loc loc = {ld->src, line, false};
	size_t ki = 0;
	const struct cfg_key *k = cfg_key_find(name, &ki);
	if (k == NULL) {
		static const char *const extra[] = {GROUPS_KEY, WRAP_KEY, NULL};
		char why[160];
		cfg_unknown_key(name, extra, why, sizeof(why));
		cfg_loc_err(ld->err, &loc, "key '%.60s': %s", name, why);
		return NULL;
	}
	if (scope_here == CFG_SC_NODE && k->scope == CFG_SC_GROUP) {
		cfg_key_err(ld->err, &loc, k,
		            "belongs in a " GROUPS_KEY " item, not at the top level");
		return NULL;
	}
	if (scope_here == CFG_SC_GROUP && k->scope == CFG_SC_NODE) {
		cfg_key_err(ld->err, &loc, k, "is node-wide; put it at the top level");
		return NULL;
	}
	if (lines->key[ki] != 0) {
		cfg_key_err(ld->err, &loc, k, "given twice (first at line %u%s%s%s)",
		            lines->key[ki], k->alias ? "; '" : "", k->alias ? k->alias : "",
		            k->alias ? "' is another name for it" : "");
		return NULL;
	}
	lines->key[ki] = line;
	return k;
}

/* An item, plain or wrapped: the mapping that holds the group's keys. */
static const yaml_node_t *unwrap_item(struct loader *ld, const yaml_node_t *item, size_t pos)
{
	struct cfg_loc loc = {ld->src, line_of_node(item), false};
	if (item->type != YAML_MAPPING_NODE) {
		if (scalar_is_null(item))
			cfg_loc_err(ld->err, &loc, GROUPS_KEY " item %zu is empty", pos);
		else
			cfg_loc_err(ld->err, &loc,
			            GROUPS_KEY " item %zu must be a mapping of keys, got %s", pos,
			            type_name(item));
		return NULL;
	}
	yaml_node_pair_t *p0 = item->data.mapping.pairs.start;
	size_t n = (size_t)(item->data.mapping.pairs.top - p0);
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *kn = yaml_document_get_node(ld->doc, p0[i].key);
		const char *name = key_text(ld, kn);
		if (name == NULL)
			return NULL;
		if (strcmp(name, WRAP_KEY) != 0)
			continue;
		loc.line = line_of_node(kn);
		if (n != 1) {
			cfg_loc_err(ld->err, &loc,
			            "key '" WRAP_KEY "': a wrapped item holds only " WRAP_KEY
			            ", with the group's keys inside it");
			return NULL;
		}
		const yaml_node_t *vn = yaml_document_get_node(ld->doc, p0[i].value);
		if (vn->type != YAML_MAPPING_NODE) {
			cfg_loc_err(ld->err, &loc,
			            "key '" WRAP_KEY "': must hold the group's keys, got %s",
			            scalar_is_null(vn) ? "nothing" : type_name(vn));
			return NULL;
		}
		return vn;
	}
	return item;
}

static int load_item(struct loader *ld, const yaml_node_t *item, size_t pos)
{
	struct cfg *c = ld->c;
	const yaml_node_t *m = unwrap_item(ld, item, pos);
	if (m == NULL)
		return DL_ECONFIG;
	struct cfg_group *g = &c->groups[c->n_groups++];
	g->line = line_of_node(item);
	if (cfg_opts_copy(&g->o, &c->node.defaults) != DL_OK)
		return dl_errf(ld->err, DL_ENOMEM, "out of memory");
	struct cfg_lines gl = {{0}};
	yaml_node_pair_t *p0 = m->data.mapping.pairs.start;
	size_t n = (size_t)(m->data.mapping.pairs.top - p0);
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *kn = yaml_document_get_node(ld->doc, p0[i].key);
		const yaml_node_t *vn = yaml_document_get_node(ld->doc, p0[i].value);
		const char *name = key_text(ld, kn);
		if (name == NULL)
			return DL_ECONFIG;
		uint32_t line = line_of_node(kn);
		const struct cfg_key *k = lookup(ld, name, line, CFG_SC_GROUP, &gl);
		if (k == NULL)
			return DL_ECONFIG;
		void *base = k->scope == CFG_SC_GROUP ? (void *)g : (void *)&g->o;
		int rc = set_from_node(ld, k, base, vn, line);
		if (rc != DL_OK)
			return rc;
	}
	int rc = cfg_group_finish(g, &c->node, &gl, &ld->node_lines, ld->src, g->line, false,
	                          ld->err);
	if (rc != DL_OK)
		return rc;
	struct cfg_loc lg = {ld->src, gl.key[CFG_KI_GROUP], false};
	struct cfg_loc lp = {ld->src, gl.key[CFG_KI_PEERS], false};
	size_t slot = name_slot(ld, g->group);
	uint32_t prev = ld->by_name[slot];
	if (prev != 0)
		return cfg_check_dup(&c->groups[prev - 1], g, &lg, prev - 1, ld->err);
	ld->by_name[slot] = (uint32_t)c->n_groups;
	if (c->n_groups > 1)
		return cfg_check_addr(&c->groups[0], g, &lp, ld->err);
	return DL_OK;
}

static int load_groups(struct loader *ld, const yaml_node_t *list, uint32_t key_line)
{
	struct cfg_loc loc = {ld->src, key_line, false};
	if (list == NULL) {
		loc.line = 1;
		return cfg_loc_err(ld->err, &loc,
		                   "key '" GROUPS_KEY
		                   "': missing; list this node's groups under " GROUPS_KEY ":");
	}
	if (list->type != YAML_SEQUENCE_NODE)
		return cfg_loc_err(ld->err, &loc,
		                   "key '" GROUPS_KEY "': must be a list of groups (items start "
		                   "with '- '), got %s",
		                   scalar_is_null(list) ? "nothing" : type_name(list));
	yaml_node_item_t *i0 = list->data.sequence.items.start;
	size_t n = (size_t)(list->data.sequence.items.top - i0);
	if (n == 0)
		return DL_OK; /* groups come later (add-group); listenAddress says where */
	if (n > CFG_MAX_GROUPS)
		return cfg_loc_err(ld->err, &loc, "key '" GROUPS_KEY "': more than %d groups",
		                   CFG_MAX_GROUPS);
	ld->c->groups = calloc(n, sizeof(*ld->c->groups));
	for (ld->by_name_cap = 16; ld->by_name_cap <= 2 * n; ld->by_name_cap *= 2)
		;
	ld->by_name = calloc(ld->by_name_cap, sizeof(*ld->by_name));
	if (ld->c->groups == NULL || ld->by_name == NULL)
		return dl_errf(ld->err, DL_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int rc = load_item(ld, yaml_document_get_node(ld->doc, i0[i]), i + 1);
		if (rc != DL_OK)
			return rc;
	}
	DL_ASSERT(ld->c->n_groups == n);
	return DL_OK;
}

static int load_root(struct loader *ld, const yaml_node_t *root)
{
	struct cfg *c = ld->c;
	struct cfg_loc loc = {ld->src, line_of_node(root), false};
	if (root->type != YAML_MAPPING_NODE)
		return cfg_loc_err(
		        ld->err, &loc,
		        "the top level must be a mapping of keys (storeBaseDir:, " GROUPS_KEY
		        ":, ...), got %s",
		        type_name(root));
	const yaml_node_t *list = NULL;
	uint32_t list_line = 0;
	yaml_node_pair_t *p0 = root->data.mapping.pairs.start;
	size_t n = (size_t)(root->data.mapping.pairs.top - p0);
	for (size_t i = 0; i < n; i++) {
		const yaml_node_t *kn = yaml_document_get_node(ld->doc, p0[i].key);
		const yaml_node_t *vn = yaml_document_get_node(ld->doc, p0[i].value);
		const char *name = key_text(ld, kn);
		if (name == NULL)
			return DL_ECONFIG;
		loc.line = line_of_node(kn);
		if (strcmp(name, GROUPS_KEY) == 0) {
			if (list != NULL)
				return cfg_loc_err(ld->err, &loc,
				                   "key '" GROUPS_KEY "': given twice (first at "
				                   "line %u)",
				                   list_line);
			list = vn;
			list_line = loc.line;
			continue;
		}
		if (strcmp(name, WRAP_KEY) == 0)
			return cfg_loc_err(ld->err, &loc,
			                   "key '" WRAP_KEY "': belongs inside the " GROUPS_KEY
			                   " list (- " WRAP_KEY ": ...)");
		const struct cfg_key *k = lookup(ld, name, loc.line, CFG_SC_NODE, &ld->node_lines);
		if (k == NULL)
			return DL_ECONFIG;
		void *base = k->scope == CFG_SC_NODE ? (void *)&c->node : (void *)&c->node.defaults;
		int rc = set_from_node(ld, k, base, vn, loc.line);
		if (rc != DL_OK)
			return rc;
	}
	int rc = cfg_node_defaults_finish(&c->node, ld->err);
	if (rc != DL_OK)
		return rc;
	rc = load_groups(ld, list, list_line);
	if (rc != DL_OK)
		return rc;
	return cfg_node_finish(c, &ld->node_lines, false, ld->err);
}

/* A tab in a line's leading whitespace: YAML forbids tabs for indentation,
 * and libyaml refuses them there even on blank and comment lines (with a
 * generic scanner error). Tabs elsewhere ("key:\tvalue", before a trailing
 * comment) are fine. Stricter than YAML only inside multi-line quoted or
 * block scalars, which no key of ours uses. Returns the line or 0. */
static uint32_t find_indent_tab(const char *buf, size_t len, const char **content)
{
	uint32_t line = 1;
	size_t i = 0;
	while (i < len) {
		bool tab = false;
		size_t j = i;
		while (j < len && (buf[j] == ' ' || buf[j] == '\t'))
			tab |= buf[j++] == '\t';
		if (tab) {
			*content = buf + j;
			return line;
		}
		while (j < len && buf[j] != '\n')
			j++;
		i = j + 1;
		line++;
	}
	return 0;
}

/* Line where '[' / '{' nesting first passes FLOW_DEPTH_MAX, or 0. Quotes
 * and comments are skipped roughly (a quote opens a scalar only after a
 * separator); a miss can only refuse an absurd file or let libyaml see it. */
static uint32_t find_deep_flow(const char *buf, size_t len)
{
	uint32_t line = 1, depth = 0;
	char quote = 0, prev = '\n';
	for (size_t i = 0; i < len; prev = buf[i], i++) {
		char ch = buf[i];
		if (ch == '\n')
			line++;
		if (quote != 0) {
			if (quote == '"' && ch == '\\' && i + 1 < len)
				i++;
			else if (ch == quote)
				quote = 0;
			continue;
		}
		bool after_sep = strchr(" \t\n[{,:", prev) != NULL;
		if ((ch == '\'' || ch == '"') && after_sep) {
			quote = ch;
		} else if (ch == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) {
			while (i + 1 < len && buf[i + 1] != '\n')
				i++;
		} else if (ch == '[' || ch == '{') {
			if (++depth > FLOW_DEPTH_MAX)
				return line;
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

static int report_tab(const char *src, const char *buf, size_t len, uint32_t line,
                      const char *content, struct dl_errctx *err)
{
	struct cfg_loc loc = {src, line, false};
	const char *end = buf + len;
	const char *p = content;
	if (p < end && *p == '-') /* "- key:" */
		for (p++; p < end && (*p == ' ' || *p == '\t'); p++)
			;
	const char *k = p;
	while (p < end && (isalnum((unsigned char)*p) || *p == '_'))
		p++;
	if (p > k && p < end && *p == ':' && p - k <= 64)
		return cfg_loc_err(err, &loc,
		                   "key '%.*s': tab character used for indentation at line %u; "
		                   "YAML allows only spaces",
		                   (int)(p - k), k, line);
	return cfg_loc_err(err, &loc,
	                   "tab character used for indentation at line %u; YAML allows only "
	                   "spaces",
	                   line);
}

/* libyaml's own error, with the line (reader errors give a byte offset). */
static int report_yaml(const char *src, const char *buf, const yaml_parser_t *p,
                       struct dl_errctx *err)
{
	if (p->error == YAML_MEMORY_ERROR)
		return dl_errf(err, DL_ENOMEM, "out of memory while parsing YAML");
	size_t line = p->problem_mark.line + 1;
	if (p->error == YAML_READER_ERROR) {
		line = 1;
		for (size_t i = 0; i < p->problem_offset; i++)
			line += buf[i] == '\n';
	}
	struct cfg_loc loc = {src, line > UINT32_MAX ? UINT32_MAX : (uint32_t)line, false};
	const char *problem = p->problem ? p->problem : "unknown problem";
	if (p->context != NULL)
		return cfg_loc_err(err, &loc, "YAML syntax error: %s %s (from line %zu)", problem,
		                   p->context, p->context_mark.line + 1);
	return cfg_loc_err(err, &loc, "YAML syntax error: %s", problem);
}

static int parse_doc(const char *name, const char *buf, size_t len, struct cfg *out,
                     struct dl_errctx *err)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	int rc = DL_ECONFIG;
	if (!yaml_parser_initialize(&parser))
		return dl_errf(err, DL_ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = report_yaml(name, buf, &parser, err);
		goto err_parser;
	}
	const yaml_node_t *root = yaml_document_get_root_node(&doc);
	struct cfg_loc loc = {name, 1, false};
	if (root == NULL) {
		rc = cfg_loc_err(err, &loc, "empty configuration; expected " GROUPS_KEY ":");
		goto err_doc;
	}
	if (!yaml_parser_load(&parser, &extra)) {
		rc = report_yaml(name, buf, &parser, err);
		goto err_doc;
	}
	const yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
	if (extra_root != NULL) {
		loc.line = line_of_node(extra_root);
		yaml_document_delete(&extra);
		rc = cfg_loc_err(err, &loc,
		                 "a second YAML document ('---'); put everything "
		                 "in one");
		goto err_doc;
	}
	yaml_document_delete(&extra);
	struct loader ld = {.src = name, .doc = &doc, .c = out, .err = err};
	rc = load_root(&ld, root);
	free(ld.by_name);
err_doc:
	yaml_document_delete(&doc);
err_parser:
	yaml_parser_delete(&parser);
	return rc;
}

int cfg_load_buffer(const char *name, const char *buf, size_t len, struct cfg *out,
                    struct dl_errctx *err)
{
	DL_ASSERT(out != NULL && name != NULL);
	memset(out, 0, sizeof(*out));
	cfg_node_init(&out->node);
	int rc;
	if (len > CFG_FILE_MAX_BYTES) {
		rc = dl_errf(err, DL_ECONFIG, "%s: %zu bytes, larger than %u", name, len,
		             CFG_FILE_MAX_BYTES);
		goto err_free;
	}
	const char *content = NULL;
	uint32_t tab_line = find_indent_tab(buf, len, &content);
	if (tab_line != 0) {
		rc = report_tab(name, buf, len, tab_line, content, err);
		goto err_free;
	}
	uint32_t deep_line = find_deep_flow(buf, len);
	if (deep_line != 0) {
		struct cfg_loc loc = {name, deep_line, false};
		rc = cfg_loc_err(err, &loc, "more than %d nested [ ] or { } levels",
		                 FLOW_DEPTH_MAX);
		goto err_free;
	}
	out->source = strdup(name);
	if (out->source == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	rc = parse_doc(out->source, buf, len, out, err);
	if (rc != DL_OK)
		goto err_free;
	DL_ASSERT(out->node.self_host != NULL);
	return DL_OK;

err_free:
	cfg_free(out);
	return rc;
}

static int read_file(const char *path, char **buf, size_t *len, struct dl_errctx *err)
{
	int rc = DL_EIO;
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return dl_errf(err, DL_EIO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = dl_errf(err, DL_EIO, "%s: not a regular file", path);
		goto err_close;
	}
	if ((uint64_t)st.st_size > CFG_FILE_MAX_BYTES) {
		rc = dl_errf(err, DL_ECONFIG, "%s: %lld bytes, larger than %u", path,
		             (long long)st.st_size, CFG_FILE_MAX_BYTES);
		goto err_close;
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (*buf == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_close;
	}
	*len = fread(*buf, 1, (size_t)st.st_size, f);
	if (ferror(f)) {
		rc = dl_errf(err, DL_EIO, "%s: read error: %s", path, strerror(errno));
		goto err_buf;
	}
	(*buf)[*len] = '\0';
	fclose(f);
	return DL_OK;

err_buf:
	free(*buf);
	*buf = NULL;
err_close:
	fclose(f);
	return rc;
}

int cfg_load_file(const char *path, struct cfg *out, struct dl_errctx *err)
{
	DL_ASSERT(path != NULL && out != NULL);
	memset(out, 0, sizeof(*out));
	char *buf = NULL;
	size_t len = 0;
	int rc = read_file(path, &buf, &len, err);
	if (rc != DL_OK)
		return rc;
	rc = cfg_load_buffer(path, buf, len, out, err);
	free(buf);
	return rc;
}
