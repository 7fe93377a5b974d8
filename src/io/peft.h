/*
** peft.h — PEFT LoRA/DoRA adapters: adapter_config.json and the tensor key
** names of adapter_model.safetensors.
**
** Loading accepts what PEFT 0.21 writes for a LoRA adapter (peft_type
** "LORA"), with or without DoRA and rsLoRA. Fields that would change the
** adapter's math in ways dorac does not implement are refused with
** DORAC_E_UNSUPPORTED naming the field: bias other than "none", a non-empty
** modules_to_save, lora_bias, use_qalora, target_parameters,
** trainable_token_indices, layer_replication, layers_to_transform,
** layers_pattern, alora_invocation_tokens and the variant configs
** (arrow_config, use_bdlora, kasa_config, velora_config, monteclora_config).
** Initialisation-only fields (init_lora_weights, loftq/eva/corda/lora_ga
** configs) and bookkeeping (inference_mode, revision, peft_version, ...) are
** ignored.
**
** Module matching follows PEFT (peft/tuners/tuners_utils.py
** check_target_module_exists and peft/utils/other.py get_pattern_key):
**   - target_modules as a list: a module path matches when it equals an
**     entry or ends with "." + entry;
**   - target_modules as a string: re.fullmatch(pattern, path), done with
**     PCRE2 anchored at both ends; Python-only regex syntax is not
**     translated (PCRE2 accepts the common subset, including (?P<name>...));
**   - "all-linear" (any case) is kept as DORAC_PEFT_TARGETS_ALL_LINEAR: the
**     caller knows which modules are linear (PEFT excludes the output head);
**   - exclude_modules, list or string, removes matches the same way;
**   - rank_pattern / alpha_pattern: the first key k, in file order, with
**     re.match(r"(.*\.)?(k)$", path) gives the value; else r / lora_alpha.
** Module paths are those of the base model, e.g.
** "model.layers.0.self_attn.q_proj" (no "base_model.model." prefix).
*/
#ifndef DORAC_IO_PEFT_H
#define DORAC_IO_PEFT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum dorac_peft_targets_kind {
    DORAC_PEFT_TARGETS_NONE = 0,   /* no target_modules (only for exclude_modules) */
    DORAC_PEFT_TARGETS_LIST,       /* names, matched exactly or as a ".name" suffix */
    DORAC_PEFT_TARGETS_REGEX,      /* one pattern, full match */
    DORAC_PEFT_TARGETS_ALL_LINEAR  /* "all-linear" */
} dorac_peft_targets_kind;

/* A module selector: a list of names or one regex. */
typedef struct dorac_peft_targets {
    dorac_peft_targets_kind kind;
    char **names;   /* LIST: n_names owned strings, in file order */
    size_t n_names;
    char *regex;    /* REGEX (or the original spelling for ALL_LINEAR): owned */
} dorac_peft_targets;

typedef struct dorac_peft_rank_entry {
    char *pattern; /* a regex key of rank_pattern, owned */
    int rank;      /* > 0 */
} dorac_peft_rank_entry;

typedef struct dorac_peft_alpha_entry {
    char *pattern; /* a regex key of alpha_pattern, owned */
    double alpha;
} dorac_peft_alpha_entry;

typedef struct dorac_peft_config {
    int r;                          /* default rank, >= 1 */
    double lora_alpha;              /* default alpha; PEFT's default is 8 */
    dorac_peft_targets target_modules;
    dorac_peft_targets exclude_modules; /* kind NONE when absent */
    bool use_dora;
    bool use_rslora;                /* scale = alpha / sqrt(r) instead of alpha / r */
    bool fan_in_fan_out;            /* weights stored (in, out), as GPT-2's Conv1D */
    double lora_dropout;            /* in [0, 1) */
    dorac_peft_rank_entry *rank_pattern;   /* in file order: the first match wins */
    size_t n_rank_pattern;
    dorac_peft_alpha_entry *alpha_pattern; /* in file order */
    size_t n_alpha_pattern;
    char *base_model_name_or_path;  /* owned; NULL when null */
    char *task_type;                /* owned, e.g. "CAUSAL_LM"; NULL when null */
    void *compiled;                 /* private: compiled regexes, or NULL */
} dorac_peft_config;

/* Loads path, an adapter_config.json or a folder holding one. *cfg is zeroed
** first; on failure it holds nothing to free. Free a loaded config with
** dorac_peft_config_free. DORAC_E_FORMAT for bad JSON, a missing or
** mistyped field or a regex that does not compile (naming the field);
** DORAC_E_UNSUPPORTED for a peft_type other than LORA or a refused field. */
int dorac_peft_config_load(dorac_peft_config *cfg, const char *path);

/* The same from n bytes of JSON in memory; name is used in messages. */
int dorac_peft_config_load_string(dorac_peft_config *cfg, const char *json, size_t n, const char *name);

/* Writes cfg as adapter_config.json (path is a folder, which must exist, or
** a file name), atomically. The file has every key PEFT 0.21's LoraConfig
** writes, in PEFT's layout (sorted keys, 2-space indent, no final newline),
** with inference_mode true as PeftModel.save_pretrained writes it, so
** PeftModel.from_pretrained reads it. A cfg built by hand needs r,
** lora_alpha and target_modules; the other fields may be left zero/NULL. */
int dorac_peft_config_save(const dorac_peft_config *cfg, const char *dir_or_path);

/* Frees what cfg owns and zeroes it. cfg may be NULL. */
void dorac_peft_config_free(dorac_peft_config *cfg);

/* True when PEFT would put an adapter on module_path: it matches
** target_modules and does not match exclude_modules. For ALL_LINEAR it is
** true for every path except "lm_head" (and paths ending ".lm_head"); the
** caller must only ask about linear layers. A regex match that fails for a
** resource limit counts as no match. */
bool dorac_peft_targets_module(const dorac_peft_config *cfg, const char *module_path);

/* The rank for module_path: the first matching rank_pattern entry, else r. */
int dorac_peft_rank_for(const dorac_peft_config *cfg, const char *module_path);

/* The alpha for module_path: the first matching alpha_pattern entry, else
** lora_alpha. */
double dorac_peft_alpha_for(const dorac_peft_config *cfg, const char *module_path);

/* The adapter's scale s for module_path: alpha / r, or alpha / sqrt(r) with
** use_rslora, using the module's own rank and alpha. */
double dorac_peft_scale_for(const dorac_peft_config *cfg, const char *module_path);

/* ---- adapter_model.safetensors keys ------------------------------------- */

typedef enum dorac_peft_key_kind {
    DORAC_PEFT_KEY_LORA_A = 0,       /* ".lora_A.weight"   (r, in) */
    DORAC_PEFT_KEY_LORA_B,           /* ".lora_B.weight"   (out, r) */
    DORAC_PEFT_KEY_MAGNITUDE,        /* ".lora_magnitude_vector" (out); also read with ".weight" */
    DORAC_PEFT_KEY_EMBEDDING_A,      /* ".lora_embedding_A" (r, vocab) */
    DORAC_PEFT_KEY_EMBEDDING_B       /* ".lora_embedding_B" (dim, r) */
} dorac_peft_key_kind;

/* Writes "base_model.model.<module_path><suffix of kind>" into out.
** DORAC_E_INVALID when it does not fit in cap bytes (with the NUL). */
int dorac_peft_key(char *out, size_t cap, const char *module_path, dorac_peft_key_kind kind);

/* Splits an adapter tensor key into its module path (into module_out, cap
** bytes) and kind. DORAC_E_FORMAT when key lacks the "base_model.model."
** prefix, has no known suffix or an empty module path; DORAC_E_INVALID when
** the module path does not fit. */
int dorac_peft_key_parse(const char *key, char *module_out, size_t cap, dorac_peft_key_kind *kind);

#endif
