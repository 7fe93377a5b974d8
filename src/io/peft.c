/*
** peft.c — adapter_config.json in and out, PEFT's module matching rules,
** and adapter tensor key names (see peft.h).
**
** Invariants of a loaded dorac_peft_config: r >= 1; 0 <= lora_dropout < 1;
** every rank_pattern rank >= 1; every regex in it compiled (cfg->compiled
** holds the compiled forms, in the same order as the entries).
*/
#define _POSIX_C_SOURCE 200809L

#include "io/peft.h"

#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/fsutil.h"
#include "io/json_util.h"

#define PEFT_CONFIG_MAX_BYTES ((size_t)16 << 20)
#define PEFT_MAX_RANK 65536
/* The PEFT release whose LoraConfig key set and layout the writer mirrors. */
#define PEFT_FORMAT_VERSION "0.21.2"

/* Compiled regexes of a loaded config; NULL entries where a selector is a
** list or absent. */
typedef struct peft_compiled {
    pcre2_code *target;  /* target_modules regex, full match */
    pcre2_code *exclude; /* exclude_modules regex, full match */
    pcre2_code **rank;   /* n_rank_pattern entries: (.*\.)?(key)$ anchored at start */
    pcre2_code **alpha;  /* n_alpha_pattern entries */
} peft_compiled;

/* ---- regexes ------------------------------------------------------------ */

/* Compiles pattern (UTF, Unicode properties). For a full match (target and
** exclude selectors) both ends are anchored, as re.fullmatch; for a pattern
** key, "(.*\.)?(" key ")$" is anchored at the start, as re.match. */
static int compile_regex(pcre2_code **out, const char *pattern, bool pattern_key, const char *name,
                         const char *field) {
    *out = NULL;
    char *wrapped = NULL;
    const char *src = pattern;
    if (pattern_key) {
        size_t len = strlen(pattern);
        wrapped = malloc(len + 16);
        if (!wrapped) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
        snprintf(wrapped, len + 16, "(.*\\.)?(%s)$", pattern);
        src = wrapped;
    }
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED | (pattern_key ? 0 : PCRE2_ENDANCHORED);
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts, &errcode, &erroff, NULL);
    free(wrapped);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s': regex '%.80s' does not compile: %s", name, field, pattern,
                           (const char *)msg);
    }
    *out = re;
    return DORAC_OK;
}

static bool regex_matches(const pcre2_code *re, const char *subject) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return false;
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* Matches a pattern that may not be compiled yet (a hand-built config). */
static bool match_maybe_compiled(const pcre2_code *re, const char *pattern, bool pattern_key, const char *subject) {
    if (!dorac_utf8_valid(subject, strlen(subject), NULL)) return false;
    if (re) return regex_matches(re, subject);
    pcre2_code *tmp;
    if (compile_regex(&tmp, pattern, pattern_key, "", "") != DORAC_OK) return false;
    bool m = regex_matches(tmp, subject);
    pcre2_code_free(tmp);
    return m;
}

static void free_compiled(dorac_peft_config *cfg) {
    peft_compiled *c = cfg->compiled;
    if (!c) return;
    pcre2_code_free(c->target);
    pcre2_code_free(c->exclude);
    for (size_t i = 0; c->rank && i < cfg->n_rank_pattern; i++) pcre2_code_free(c->rank[i]);
    for (size_t i = 0; c->alpha && i < cfg->n_alpha_pattern; i++) pcre2_code_free(c->alpha[i]);
    free(c->rank);
    free(c->alpha);
    free(c);
    cfg->compiled = NULL;
}

static int compile_all(dorac_peft_config *cfg, const char *name) {
    peft_compiled *c = calloc(1, sizeof *c);
    if (!c) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
    cfg->compiled = c;
    c->rank = calloc(cfg->n_rank_pattern + 1, sizeof *c->rank);
    c->alpha = calloc(cfg->n_alpha_pattern + 1, sizeof *c->alpha);
    if (!c->rank || !c->alpha) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
    if (cfg->target_modules.kind == DORAC_PEFT_TARGETS_REGEX)
        DORAC_TRY(compile_regex(&c->target, cfg->target_modules.regex, false, name, "target_modules"));
    if (cfg->exclude_modules.kind == DORAC_PEFT_TARGETS_REGEX)
        DORAC_TRY(compile_regex(&c->exclude, cfg->exclude_modules.regex, false, name, "exclude_modules"));
    for (size_t i = 0; i < cfg->n_rank_pattern; i++)
        DORAC_TRY(compile_regex(&c->rank[i], cfg->rank_pattern[i].pattern, true, name, "rank_pattern"));
    for (size_t i = 0; i < cfg->n_alpha_pattern; i++)
        DORAC_TRY(compile_regex(&c->alpha[i], cfg->alpha_pattern[i].pattern, true, name, "alpha_pattern"));
    return DORAC_OK;
}

/* ---- loading ------------------------------------------------------------ */

static const json_t *get(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static int read_bool(const json_t *root, const char *key, bool def, bool *out, const char *name) {
    const json_t *v = get(root, key);
    if (!v) {
        *out = def;
        return DORAC_OK;
    }
    if (!json_is_boolean(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be true or false, found %s", name, key,
                           dorac_json_type_name(v));
    *out = json_is_true(v);
    return DORAC_OK;
}

static int read_number(const json_t *root, const char *key, double def, double *out, const char *name) {
    const json_t *v = get(root, key);
    if (!v) {
        *out = def;
        return DORAC_OK;
    }
    if (!json_is_number(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be a number, found %s", name, key,
                           dorac_json_type_name(v));
    *out = json_number_value(v);
    if (!isfinite(*out)) return dorac_error(DORAC_E_FORMAT, "%s: field '%s' is not finite", name, key);
    return DORAC_OK;
}

/* A malloc'd copy of a string field; NULL when absent or null. */
static int read_string_copy(const json_t *root, const char *key, char **out, const char *name) {
    const json_t *v = get(root, key);
    *out = NULL;
    if (!v) return DORAC_OK;
    if (!json_is_string(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be a string, found %s", name, key,
                           dorac_json_type_name(v));
    *out = strdup(json_string_value(v));
    return *out ? DORAC_OK : dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
}

static int read_targets(const json_t *root, const char *key, dorac_peft_targets *t, const char *name) {
    const json_t *v = get(root, key);
    memset(t, 0, sizeof *t);
    if (!v) return DORAC_OK;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        t->regex = strdup(s);
        if (!t->regex) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
        /* PEFT lowercases before comparing with "all-linear" (target_modules only). */
        bool all_linear = strcmp(key, "target_modules") == 0 && strlen(s) == 10;
        for (size_t i = 0; all_linear && i < 10; i++)
            if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) != "all-linear"[i]) all_linear = false;
        t->kind = all_linear ? DORAC_PEFT_TARGETS_ALL_LINEAR : DORAC_PEFT_TARGETS_REGEX;
        return DORAC_OK;
    }
    if (!json_is_array(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be a list of names or a regex string, found %s", name,
                           key, dorac_json_type_name(v));
    size_t n = json_array_size(v);
    t->kind = DORAC_PEFT_TARGETS_LIST;
    t->names = calloc(n + 1, sizeof *t->names);
    if (!t->names) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return dorac_error(DORAC_E_FORMAT, "%s: field '%s'[%zu] must be a string, found %s", name, key, i,
                               dorac_json_type_name(e));
        t->names[i] = strdup(json_string_value(e));
        if (!t->names[i]) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
        t->n_names = i + 1;
    }
    return DORAC_OK;
}

static int read_patterns(const json_t *root, const char *key, bool ranks, dorac_peft_config *cfg, const char *name) {
    const json_t *v = get(root, key);
    if (!v) return DORAC_OK;
    if (!json_is_object(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be an object, found %s", name, key,
                           dorac_json_type_name(v));
    size_t n = json_object_size(v);
    if (ranks) cfg->rank_pattern = calloc(n + 1, sizeof *cfg->rank_pattern);
    else cfg->alpha_pattern = calloc(n + 1, sizeof *cfg->alpha_pattern);
    if (ranks ? !cfg->rank_pattern : !cfg->alpha_pattern) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)v, k, val) {
        char *pattern = strdup(k);
        if (!pattern) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", name);
        if (ranks) {
            if (!json_is_integer(val) || json_integer_value(val) < 1 || json_integer_value(val) > PEFT_MAX_RANK) {
                free(pattern);
                return dorac_error(DORAC_E_FORMAT, "%s: field 'rank_pattern'['%s'] must be an integer in [1, %d]",
                                   name, k, PEFT_MAX_RANK);
            }
            cfg->rank_pattern[cfg->n_rank_pattern].pattern = pattern;
            cfg->rank_pattern[cfg->n_rank_pattern++].rank = (int)json_integer_value(val);
        } else {
            if (!json_is_number(val) || !isfinite(json_number_value(val))) {
                free(pattern);
                return dorac_error(DORAC_E_FORMAT, "%s: field 'alpha_pattern'['%s'] must be a finite number", name, k);
            }
            cfg->alpha_pattern[cfg->n_alpha_pattern].pattern = pattern;
            cfg->alpha_pattern[cfg->n_alpha_pattern++].alpha = json_number_value(val);
        }
    }
    return DORAC_OK;
}

/* True when v is absent, null, false, or an empty string, list or object. */
static bool is_unset(const json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return true;
    if (json_is_string(v)) return json_string_length(v) == 0;
    if (json_is_array(v)) return json_array_size(v) == 0;
    if (json_is_object(v)) return json_object_size(v) == 0;
    return false;
}

static int parse_root(dorac_peft_config *cfg, const json_t *root, const char *name) {
    if (!json_is_object(root))
        return dorac_error(DORAC_E_FORMAT, "%s: an adapter config must be a JSON object, found %s", name,
                           dorac_json_type_name(root));
    const json_t *pt = get(root, "peft_type");
    if (!pt) return dorac_error(DORAC_E_FORMAT, "%s: missing field 'peft_type'", name);
    if (!json_is_string(pt))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'peft_type' must be a string, found %s", name,
                           dorac_json_type_name(pt));
    if (strcmp(json_string_value(pt), "LORA") != 0)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: peft_type '%.40s' is not supported (only LORA)", name,
                           json_string_value(pt));

    /* Fields that change the adapter's math in ways dorac does not implement. */
    static const char *const refused[] = {
        "modules_to_save", "lora_bias",         "use_qalora",       "target_parameters",
        "trainable_token_indices", "layer_replication", "layers_to_transform", "layers_pattern",
        "alora_invocation_tokens", "arrow_config", "use_bdlora",   "kasa_config",
        "velora_config",   "monteclora_config"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (!is_unset(json_object_get(root, refused[i])))
            return dorac_error(DORAC_E_UNSUPPORTED, "%s: field '%s' is set; dorac does not support it", name,
                               refused[i]);

    const json_t *bias = get(root, "bias");
    if (bias && !json_is_string(bias))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'bias' must be a string, found %s", name,
                           dorac_json_type_name(bias));
    if (bias && strcmp(json_string_value(bias), "none") != 0)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: bias '%.40s' is not supported (only \"none\")", name,
                           json_string_value(bias));

    const json_t *r = get(root, "r");
    if (r && (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > PEFT_MAX_RANK))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'r' must be an integer in [1, %d]", name, PEFT_MAX_RANK);
    cfg->r = r ? (int)json_integer_value(r) : 8;
    DORAC_TRY(read_number(root, "lora_alpha", 8.0, &cfg->lora_alpha, name));
    DORAC_TRY(read_number(root, "lora_dropout", 0.0, &cfg->lora_dropout, name));
    if (!(cfg->lora_dropout >= 0 && cfg->lora_dropout < 1))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'lora_dropout' = %g must be in [0, 1)", name, cfg->lora_dropout);
    DORAC_TRY(read_bool(root, "use_dora", false, &cfg->use_dora, name));
    DORAC_TRY(read_bool(root, "use_rslora", false, &cfg->use_rslora, name));
    DORAC_TRY(read_bool(root, "fan_in_fan_out", false, &cfg->fan_in_fan_out, name));
    DORAC_TRY(read_targets(root, "target_modules", &cfg->target_modules, name));
    if (cfg->target_modules.kind == DORAC_PEFT_TARGETS_NONE)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "%s: field 'target_modules' is missing or null; dorac needs explicit targets", name);
    DORAC_TRY(read_targets(root, "exclude_modules", &cfg->exclude_modules, name));
    if (cfg->exclude_modules.kind == DORAC_PEFT_TARGETS_ALL_LINEAR) cfg->exclude_modules.kind = DORAC_PEFT_TARGETS_REGEX;
    DORAC_TRY(read_patterns(root, "rank_pattern", true, cfg, name));
    DORAC_TRY(read_patterns(root, "alpha_pattern", false, cfg, name));
    DORAC_TRY(read_string_copy(root, "base_model_name_or_path", &cfg->base_model_name_or_path, name));
    DORAC_TRY(read_string_copy(root, "task_type", &cfg->task_type, name));
    return compile_all(cfg, name);
}

int dorac_peft_config_load_string(dorac_peft_config *cfg, const char *json, size_t n, const char *name) {
    if (!cfg || (!json && n)) return dorac_error(DORAC_E_INVALID, "dorac_peft_config_load_string: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    if (!name) name = "adapter_config.json";
    json_t *root;
    DORAC_TRY(dorac_json_parse(&root, json ? json : "", n, name, 0));
    int rc = parse_root(cfg, root, name);
    json_decref(root);
    if (rc != DORAC_OK) dorac_peft_config_free(cfg);
    return rc;
}

int dorac_peft_config_load(dorac_peft_config *cfg, const char *path) {
    if (!cfg || !path) return dorac_error(DORAC_E_INVALID, "dorac_peft_config_load: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    char *file = NULL, *text = NULL;
    size_t n;
    if (dorac_is_dir(path)) {
        DORAC_TRY(dorac_path_join(&file, path, "adapter_config.json"));
    } else {
        file = strdup(path);
        if (!file) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    }
    int rc = dorac_read_file(file, PEFT_CONFIG_MAX_BYTES, &text, &n);
    if (rc == DORAC_OK) rc = dorac_peft_config_load_string(cfg, text, n, file);
    free(text);
    free(file);
    return rc;
}

static void free_targets(dorac_peft_targets *t) {
    for (size_t i = 0; i < t->n_names; i++) free(t->names[i]);
    free(t->names);
    free(t->regex);
    memset(t, 0, sizeof *t);
}

void dorac_peft_config_free(dorac_peft_config *cfg) {
    if (!cfg) return;
    free_compiled(cfg);
    free_targets(&cfg->target_modules);
    free_targets(&cfg->exclude_modules);
    for (size_t i = 0; i < cfg->n_rank_pattern; i++) free(cfg->rank_pattern[i].pattern);
    for (size_t i = 0; i < cfg->n_alpha_pattern; i++) free(cfg->alpha_pattern[i].pattern);
    free(cfg->rank_pattern);
    free(cfg->alpha_pattern);
    free(cfg->base_model_name_or_path);
    free(cfg->task_type);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- matching ----------------------------------------------------------- */

static bool has_suffix_component(const char *path, const char *name) {
    size_t lp = strlen(path), ln = strlen(name);
    if (lp == ln) return strcmp(path, name) == 0;
    return lp > ln && path[lp - ln - 1] == '.' && strcmp(path + lp - ln, name) == 0;
}

static bool selector_matches(const dorac_peft_targets *t, const pcre2_code *re, const char *path) {
    switch (t->kind) {
    case DORAC_PEFT_TARGETS_LIST:
        for (size_t i = 0; i < t->n_names; i++)
            if (t->names[i] && has_suffix_component(path, t->names[i])) return true;
        return false;
    case DORAC_PEFT_TARGETS_REGEX: return t->regex && match_maybe_compiled(re, t->regex, false, path);
    case DORAC_PEFT_TARGETS_ALL_LINEAR: return !has_suffix_component(path, "lm_head");
    default: return false;
    }
}

bool dorac_peft_targets_module(const dorac_peft_config *cfg, const char *module_path) {
    if (!cfg || !module_path) return false;
    const peft_compiled *c = cfg->compiled;
    if (selector_matches(&cfg->exclude_modules, c ? c->exclude : NULL, module_path)) return false;
    return selector_matches(&cfg->target_modules, c ? c->target : NULL, module_path);
}

int dorac_peft_rank_for(const dorac_peft_config *cfg, const char *module_path) {
    if (!cfg) return 0;
    const peft_compiled *c = cfg->compiled;
    for (size_t i = 0; module_path && i < cfg->n_rank_pattern; i++)
        if (match_maybe_compiled(c ? c->rank[i] : NULL, cfg->rank_pattern[i].pattern, true, module_path))
            return cfg->rank_pattern[i].rank;
    return cfg->r;
}

double dorac_peft_alpha_for(const dorac_peft_config *cfg, const char *module_path) {
    if (!cfg) return 0.0;
    const peft_compiled *c = cfg->compiled;
    for (size_t i = 0; module_path && i < cfg->n_alpha_pattern; i++)
        if (match_maybe_compiled(c ? c->alpha[i] : NULL, cfg->alpha_pattern[i].pattern, true, module_path))
            return cfg->alpha_pattern[i].alpha;
    return cfg->lora_alpha;
}

double dorac_peft_scale_for(const dorac_peft_config *cfg, const char *module_path) {
    double r = dorac_peft_rank_for(cfg, module_path), alpha = dorac_peft_alpha_for(cfg, module_path);
    return cfg->use_rslora ? alpha / sqrt(r) : alpha / r;
}

/* ---- saving ------------------------------------------------------------- */

/* Digits %.*g needs to print v so that it reads back exactly. */
static int shortest_precision(double v) {
    for (int p = 1; p < 17; p++) {
        char buf[40];
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v) return p;
    }
    return 17;
}

/* A number as PEFT would have it: integral values as JSON integers, others
** as reals; *precision grows to print every real exactly and briefly. */
static json_t *number(double v, bool integral_as_int, int *precision) {
    if (integral_as_int && v == floor(v) && fabs(v) < 9007199254740992.0) return json_integer((json_int_t)v);
    int p = shortest_precision(v);
    if (p > *precision) *precision = p;
    return json_real(v);
}

static json_t *targets_json(const dorac_peft_targets *t) {
    if (t->kind == DORAC_PEFT_TARGETS_REGEX || t->kind == DORAC_PEFT_TARGETS_ALL_LINEAR)
        return json_string(t->regex ? t->regex : "all-linear");
    if (t->kind != DORAC_PEFT_TARGETS_LIST) return json_null();
    json_t *a = json_array();
    for (size_t i = 0; a && i < t->n_names; i++) {
        if (json_array_append_new(a, json_string(t->names[i] ? t->names[i] : ""))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *string_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static int check_save_strings(const dorac_peft_config *cfg) {
    const char *single[] = {cfg->base_model_name_or_path, cfg->task_type, cfg->target_modules.regex,
                            cfg->exclude_modules.regex};
    for (size_t i = 0; i < 4; i++)
        if (single[i] && !dorac_utf8_valid(single[i], strlen(single[i]), NULL))
            return dorac_error(DORAC_E_INVALID, "adapter config: a string field is not valid UTF-8");
    const dorac_peft_targets *ts[] = {&cfg->target_modules, &cfg->exclude_modules};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < ts[k]->n_names; i++)
            if (!ts[k]->names[i] || !dorac_utf8_valid(ts[k]->names[i], strlen(ts[k]->names[i]), NULL))
                return dorac_error(DORAC_E_INVALID, "adapter config: a module name is NULL or not valid UTF-8");
    for (size_t i = 0; i < cfg->n_rank_pattern; i++)
        if (!cfg->rank_pattern[i].pattern ||
            !dorac_utf8_valid(cfg->rank_pattern[i].pattern, strlen(cfg->rank_pattern[i].pattern), NULL))
            return dorac_error(DORAC_E_INVALID, "adapter config: a rank_pattern key is NULL or not valid UTF-8");
    for (size_t i = 0; i < cfg->n_alpha_pattern; i++)
        if (!cfg->alpha_pattern[i].pattern ||
            !dorac_utf8_valid(cfg->alpha_pattern[i].pattern, strlen(cfg->alpha_pattern[i].pattern), NULL))
            return dorac_error(DORAC_E_INVALID, "adapter config: an alpha_pattern key is NULL or not valid UTF-8");
    return DORAC_OK;
}

int dorac_peft_config_save(const dorac_peft_config *cfg, const char *dir_or_path) {
    if (!cfg || !dir_or_path) return dorac_error(DORAC_E_INVALID, "dorac_peft_config_save: NULL argument");
    if (cfg->r < 1 || cfg->r > PEFT_MAX_RANK)
        return dorac_error(DORAC_E_INVALID, "%s: r = %d; PEFT needs a rank in [1, %d]", dir_or_path, cfg->r,
                           PEFT_MAX_RANK);
    if (cfg->target_modules.kind == DORAC_PEFT_TARGETS_NONE)
        return dorac_error(DORAC_E_INVALID, "%s: target_modules is empty", dir_or_path);
    if (!isfinite(cfg->lora_alpha) || !(cfg->lora_dropout >= 0 && cfg->lora_dropout < 1))
        return dorac_error(DORAC_E_INVALID, "%s: lora_alpha must be finite and lora_dropout in [0, 1)", dir_or_path);
    DORAC_TRY(check_save_strings(cfg));

    int precision = 1;
    json_t *o = json_object(), *rank = json_object(), *alpha = json_object();
    int bad = !o || !rank || !alpha;
    for (size_t i = 0; !bad && i < cfg->n_rank_pattern; i++)
        bad |= json_object_set_new(rank, cfg->rank_pattern[i].pattern, json_integer(cfg->rank_pattern[i].rank));
    for (size_t i = 0; !bad && i < cfg->n_alpha_pattern; i++)
        bad |= json_object_set_new(alpha, cfg->alpha_pattern[i].pattern,
                                   number(cfg->alpha_pattern[i].alpha, true, &precision));
    if (bad) {
        json_decref(o);
        json_decref(rank);
        json_decref(alpha);
        return dorac_error(DORAC_E_NOMEM, "%s: cannot build the adapter config", dir_or_path);
    }
    /* Every key PEFT 0.21's LoraConfig writes; nulls and defaults as PEFT
    ** writes them for a plain LoRA/DoRA adapter. */
    struct {
        const char *key;
        json_t *value;
    } fields[] = {
        {"alora_invocation_tokens", json_null()},
        {"alpha_pattern", alpha},
        {"arrow_config", json_null()},
        {"auto_mapping", json_null()},
        {"base_model_name_or_path", string_or_null(cfg->base_model_name_or_path)},
        {"bias", json_string("none")},
        {"corda_config", json_null()},
        {"ensure_weight_tying", json_false()},
        {"eva_config", json_null()},
        {"exclude_modules", targets_json(&cfg->exclude_modules)},
        {"fan_in_fan_out", json_boolean(cfg->fan_in_fan_out)},
        {"inference_mode", json_true()},
        {"init_lora_weights", json_true()},
        {"kasa_config", json_null()},
        {"layer_replication", json_null()},
        {"layers_pattern", json_null()},
        {"layers_to_transform", json_null()},
        {"loftq_config", json_object()},
        {"lora_alpha", number(cfg->lora_alpha, true, &precision)},
        {"lora_bias", json_false()},
        {"lora_dropout", number(cfg->lora_dropout, false, &precision)},
        {"lora_ga_config", json_null()},
        {"megatron_config", json_null()},
        {"megatron_core", json_string("megatron.core")},
        {"modules_to_save", json_null()},
        {"monteclora_config", json_null()},
        {"peft_type", json_string("LORA")},
        {"peft_version", json_string(PEFT_FORMAT_VERSION)},
        {"qalora_group_size", json_integer(16)},
        {"r", json_integer(cfg->r)},
        {"rank_pattern", rank},
        {"revision", json_null()},
        {"target_modules", targets_json(&cfg->target_modules)},
        {"target_parameters", json_null()},
        {"task_type", string_or_null(cfg->task_type)},
        {"trainable_token_indices", json_null()},
        {"use_bdlora", json_null()},
        {"use_dora", json_boolean(cfg->use_dora)},
        {"use_qalora", json_false()},
        {"use_rslora", json_boolean(cfg->use_rslora)},
        {"velora_config", json_null()},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        bad |= !fields[i].value || json_object_set_new(o, fields[i].key, fields[i].value);
    char *text = bad ? NULL
                     : json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(precision));
    json_decref(o);
    if (!text) return dorac_error(DORAC_E_NOMEM, "%s: cannot serialise the adapter config", dir_or_path);
    char *path = NULL;
    int rc = dorac_is_dir(dir_or_path) ? dorac_path_join(&path, dir_or_path, "adapter_config.json")
                                       : ((path = strdup(dir_or_path)) ? DORAC_OK
                                                                       : dorac_error(DORAC_E_NOMEM, "cannot allocate"));
    if (rc == DORAC_OK) rc = dorac_atomic_write(path, text, strlen(text));
    free(path);
    free(text);
    return rc;
}

/* ---- tensor keys -------------------------------------------------------- */

#define PEFT_KEY_PREFIX "base_model.model."

static const struct {
    const char *suffix;
    dorac_peft_key_kind kind;
} key_suffixes[] = {
    /* longest first where one suffix ends another */
    {".lora_magnitude_vector.weight", DORAC_PEFT_KEY_MAGNITUDE},
    {".lora_magnitude_vector", DORAC_PEFT_KEY_MAGNITUDE},
    {".lora_A.weight", DORAC_PEFT_KEY_LORA_A},
    {".lora_B.weight", DORAC_PEFT_KEY_LORA_B},
    {".lora_embedding_A", DORAC_PEFT_KEY_EMBEDDING_A},
    {".lora_embedding_B", DORAC_PEFT_KEY_EMBEDDING_B},
};

static const char *suffix_for(dorac_peft_key_kind kind) {
    switch (kind) {
    case DORAC_PEFT_KEY_LORA_A: return ".lora_A.weight";
    case DORAC_PEFT_KEY_LORA_B: return ".lora_B.weight";
    case DORAC_PEFT_KEY_MAGNITUDE: return ".lora_magnitude_vector";
    case DORAC_PEFT_KEY_EMBEDDING_A: return ".lora_embedding_A";
    case DORAC_PEFT_KEY_EMBEDDING_B: return ".lora_embedding_B";
    default: return NULL;
    }
}

int dorac_peft_key(char *out, size_t cap, const char *module_path, dorac_peft_key_kind kind) {
    const char *suffix = suffix_for(kind);
    if (!out || !module_path || !suffix || !module_path[0])
        return dorac_error(DORAC_E_INVALID, "dorac_peft_key: bad arguments");
    int len = snprintf(out, cap, "%s%s%s", PEFT_KEY_PREFIX, module_path, suffix);
    if (len < 0 || (size_t)len >= cap) {
        if (cap) out[0] = '\0';
        return dorac_error(DORAC_E_INVALID, "adapter key for '%s' needs %d bytes, buffer has %zu", module_path,
                           len + 1, cap);
    }
    return DORAC_OK;
}

int dorac_peft_key_parse(const char *key, char *module_out, size_t cap, dorac_peft_key_kind *kind) {
    if (!key || !module_out || !kind || cap == 0)
        return dorac_error(DORAC_E_INVALID, "dorac_peft_key_parse: bad arguments");
    module_out[0] = '\0';
    size_t lp = strlen(PEFT_KEY_PREFIX), lk = strlen(key);
    if (strncmp(key, PEFT_KEY_PREFIX, lp) != 0)
        return dorac_error(DORAC_E_FORMAT, "adapter tensor '%s' does not start with '%s'", key, PEFT_KEY_PREFIX);
    for (size_t i = 0; i < sizeof key_suffixes / sizeof key_suffixes[0]; i++) {
        size_t ls = strlen(key_suffixes[i].suffix);
        if (lk < lp + ls || strcmp(key + lk - ls, key_suffixes[i].suffix) != 0) continue;
        size_t lm = lk - lp - ls;
        if (lm == 0) return dorac_error(DORAC_E_FORMAT, "adapter tensor '%s' has an empty module path", key);
        if (lm + 1 > cap)
            return dorac_error(DORAC_E_INVALID, "adapter tensor '%s': module path needs %zu bytes, buffer has %zu", key,
                               lm + 1, cap);
        memcpy(module_out, key + lp, lm);
        module_out[lm] = '\0';
        *kind = key_suffixes[i].kind;
        return DORAC_OK;
    }
    return dorac_error(DORAC_E_FORMAT,
                       "adapter tensor '%s' is not a lora_A/lora_B weight, lora_magnitude_vector or lora_embedding_A/B",
                       key);
}
