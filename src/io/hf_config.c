/*
** hf_config.c — config.json parsing (see hf_config.h for the rules).
**
** Each field is read through one helper that knows the field's name, its
** JSON type, its default and its range, so every message names the file and
** the field. Defaults are transformers 5's, per model type.
*/
#define _POSIX_C_SOURCE 200809L

#include "io/hf_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/fsutil.h"
#include "io/json_util.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)

#define LIMIT_VOCAB ((int64_t)1 << 24)
#define LIMIT_HIDDEN ((int64_t)1 << 17)
#define LIMIT_INTERMEDIATE ((int64_t)1 << 20)
#define LIMIT_LAYERS ((int64_t)1 << 12)
#define LIMIT_HEADS ((int64_t)1 << 12)
#define LIMIT_HEAD_DIM ((int64_t)1 << 12)
#define LIMIT_POSITIONS ((int64_t)1 << 27)

typedef struct cfg_reader {
    const json_t *root; /* the top-level object */
    const char *name;   /* file name for messages */
} cfg_reader;

/* The value of key in obj, with JSON null treated as absent. */
static const json_t *get(const json_t *obj, const char *key) {
    const json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

/* Reads an integer field of obj (field is the name used in messages).
** Absent or null: *out = def, or DORAC_E_FORMAT when required. */
static int read_int(const cfg_reader *r, const json_t *obj, const char *key, const char *field, bool required,
                    int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    const json_t *v = get(obj, key);
    if (!v) {
        if (required) return dorac_error(DORAC_E_FORMAT, "%s: missing field '%s'", r->name, field);
        *out = def;
        return DORAC_OK;
    }
    if (!json_is_integer(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be an integer, found %s", r->name, field,
                           dorac_json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' = %lld is out of range [%lld, %lld]", r->name, field,
                           (long long)x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return DORAC_OK;
}

/* Reads a finite number (integer or real) field; absent or null gives def,
** or DORAC_E_FORMAT when required. */
static int read_num(const cfg_reader *r, const json_t *obj, const char *key, const char *field, bool required,
                    double def, double *out) {
    const json_t *v = get(obj, key);
    if (!v) {
        if (required) return dorac_error(DORAC_E_FORMAT, "%s: missing field '%s'", r->name, field);
        *out = def;
        return DORAC_OK;
    }
    if (!json_is_number(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be a number, found %s", r->name, field,
                           dorac_json_type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x)) return dorac_error(DORAC_E_FORMAT, "%s: field '%s' is not finite", r->name, field);
    *out = x;
    return DORAC_OK;
}

static int read_bool(const cfg_reader *r, const char *key, bool def, bool *out) {
    const json_t *v = get(r->root, key);
    if (!v) {
        *out = def;
        return DORAC_OK;
    }
    if (!json_is_boolean(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be true or false, found %s", r->name, key,
                           dorac_json_type_name(v));
    *out = json_is_true(v);
    return DORAC_OK;
}

/* A string field, NULL when absent or null. */
static int read_str(const cfg_reader *r, const json_t *obj, const char *key, const char *field, const char **out) {
    const json_t *v = get(obj, key);
    *out = NULL;
    if (!v) return DORAC_OK;
    if (!json_is_string(v))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' must be a string, found %s", r->name, field,
                           dorac_json_type_name(v));
    *out = json_string_value(v);
    return DORAC_OK;
}

/* The first key of keys[] present (non-null) in root, for gpt2's aliases
** (n_embd / hidden_size); keys[0] when none is. */
static const char *alias(const cfg_reader *r, const char *const *keys, int n) {
    for (int i = 0; i < n; i++)
        if (get(r->root, keys[i])) return keys[i];
    return keys[0];
}

static int parse_act(const cfg_reader *r, dorac_hf_config *cfg, const char *key, const char *def) {
    const char *s;
    DORAC_TRY(read_str(r, r->root, key, key, &s));
    if (!s) s = def;
    if (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0) cfg->hidden_act = DORAC_ACT_SILU;
    else if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0) cfg->hidden_act = DORAC_ACT_GELU_TANH;
    else if (strcmp(s, "gelu") == 0) cfg->hidden_act = DORAC_ACT_GELU;
    else
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "%s: %s '%.40s' is not supported (silu, swish, gelu_new, gelu_pytorch_tanh, gelu)", r->name,
                           key, s);
    snprintf(cfg->hidden_act_name, sizeof cfg->hidden_act_name, "%s", s);
    return DORAC_OK;
}

static int parse_token_ids(const cfg_reader *r, dorac_hf_config *cfg, int64_t bos_def, int64_t eos_def) {
    cfg->bos_token_id = -1;
    cfg->eos_token_id = -1;
    const json_t *bos = json_object_get(r->root, "bos_token_id");
    if (!bos) {
        cfg->bos_token_id = bos_def;
    } else if (!json_is_null(bos)) {
        if (!json_is_integer(bos))
            return dorac_error(DORAC_E_FORMAT, "%s: field 'bos_token_id' must be an integer, found %s", r->name,
                               dorac_json_type_name(bos));
        cfg->bos_token_id = json_integer_value(bos);
    }
    const json_t *eos = json_object_get(r->root, "eos_token_id");
    if (!eos) {
        cfg->eos_token_id = eos_def;
        cfg->n_eos_token_ids = eos_def >= 0;
        cfg->eos_token_ids[0] = eos_def;
    } else if (json_is_integer(eos)) {
        cfg->eos_token_id = json_integer_value(eos);
        cfg->n_eos_token_ids = 1;
        cfg->eos_token_ids[0] = cfg->eos_token_id;
    } else if (json_is_array(eos)) {
        size_t n = json_array_size(eos);
        if (n > 1u << 20) return dorac_error(DORAC_E_FORMAT, "%s: field 'eos_token_id' lists %zu ids", r->name, n);
        for (size_t i = 0; i < n; i++) {
            const json_t *v = json_array_get(eos, i);
            if (!json_is_integer(v))
                return dorac_error(DORAC_E_FORMAT, "%s: field 'eos_token_id' must list integers, found %s", r->name,
                                   dorac_json_type_name(v));
            if (i < DORAC_HF_MAX_EOS) cfg->eos_token_ids[i] = json_integer_value(v);
        }
        cfg->n_eos_token_ids = (int)n;
        if (n) cfg->eos_token_id = cfg->eos_token_ids[0];
    } else if (!json_is_null(eos)) {
        return dorac_error(DORAC_E_FORMAT, "%s: field 'eos_token_id' must be an integer or a list, found %s",
                           r->name, dorac_json_type_name(eos));
    }
    return DORAC_OK;
}

static int parse_dtype(const cfg_reader *r, dorac_hf_config *cfg) {
    const char *s;
    DORAC_TRY(read_str(r, r->root, "dtype", "dtype", &s));
    if (!s) DORAC_TRY(read_str(r, r->root, "torch_dtype", "torch_dtype", &s));
    if (!s) return DORAC_OK;
    snprintf(cfg->dtype_name, sizeof cfg->dtype_name, "%s", s);
    static const struct {
        const char *name;
        dorac_dtype t;
    } map[] = {{"float32", DORAC_DTYPE_F32}, {"float16", DORAC_DTYPE_F16},
               {"bfloat16", DORAC_DTYPE_BF16}, {"float64", DORAC_DTYPE_F64}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(s, map[i].name) == 0) {
            cfg->has_dtype = true;
            cfg->dtype = map[i].t;
        }
    }
    return DORAC_OK;
}

/* RoPE from either spelling (see hf_config.h for the precedence). */
static int parse_rope(const cfg_reader *r, dorac_hf_config *cfg) {
    const json_t *rs = json_object_get(r->root, "rope_scaling");
    const json_t *rp = json_object_get(r->root, "rope_parameters");
    const json_t *obj = NULL;
    const char *oname = "rope_parameters";
    if (rs && !json_is_null(rs)) {
        if (!json_is_object(rs))
            return dorac_error(DORAC_E_FORMAT, "%s: field 'rope_scaling' must be an object, found %s", r->name,
                               dorac_json_type_name(rs));
        if (json_object_size(rs) > 0) {
            obj = rs;
            oname = "rope_scaling";
        }
    }
    if (!obj && rp && !json_is_null(rp)) {
        if (!json_is_object(rp))
            return dorac_error(DORAC_E_FORMAT, "%s: field 'rope_parameters' must be an object, found %s", r->name,
                               dorac_json_type_name(rp));
        obj = rp;
    }
    /* With no RoPE object, obj stays NULL: jansson's getters return NULL for
    ** it, so every field below takes its default. */
    if (json_is_object(json_object_get(obj, "full_attention")) ||
        json_is_object(json_object_get(obj, "sliding_attention")))
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: per-layer-type '%s' are not supported", r->name, oname);

    char field[64];
    const char *type;
    snprintf(field, sizeof field, "%s.rope_type", oname);
    DORAC_TRY(read_str(r, obj, "rope_type", field, &type));
    if (!type) {
        snprintf(field, sizeof field, "%s.type", oname);
        DORAC_TRY(read_str(r, obj, "type", field, &type));
    }
    if (!type) type = "default";

    /* theta: the RoPE object's, else the top-level field, else 1e4. A null
    ** inside the object is an error in transformers too. */
    snprintf(field, sizeof field, "%s.rope_theta", oname);
    const json_t *inner_theta = json_object_get(obj, "rope_theta");
    if (inner_theta && json_is_null(inner_theta))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' is null", r->name, field);
    if (inner_theta) DORAC_TRY(read_num(r, obj, "rope_theta", field, true, 0, &cfg->rope.theta));
    else DORAC_TRY(read_num(r, r->root, "rope_theta", "rope_theta", false, 10000.0, &cfg->rope.theta));
    if (!(cfg->rope.theta > 0))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'rope_theta' = %g must be positive", r->name, cfg->rope.theta);

    double partial = 1.0;
    snprintf(field, sizeof field, "%s.partial_rotary_factor", oname);
    if (get(obj, "partial_rotary_factor")) DORAC_TRY(read_num(r, obj, "partial_rotary_factor", field, true, 1, &partial));
    else DORAC_TRY(read_num(r, r->root, "partial_rotary_factor", "partial_rotary_factor", false, 1, &partial));
    if (partial != 1.0)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported (only 1)", r->name,
                           partial);

    cfg->rope.factor = 1.0;
    if (strcmp(type, "default") == 0) {
        cfg->rope.type = DORAC_ROPE_DEFAULT;
        return DORAC_OK;
    }
    bool linear = strcmp(type, "linear") == 0, llama3 = strcmp(type, "llama3") == 0;
    if (!linear && !llama3)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: rope type '%.40s' is not supported (default, linear, llama3)",
                           r->name, type);
    cfg->rope.type = linear ? DORAC_ROPE_LINEAR : DORAC_ROPE_LLAMA3;
    snprintf(field, sizeof field, "%s.factor", oname);
    DORAC_TRY(read_num(r, obj, "factor", field, true, 0, &cfg->rope.factor));
    if (!(cfg->rope.factor > 0))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' = %g must be positive", r->name, field, cfg->rope.factor);
    if (linear) return DORAC_OK;

    snprintf(field, sizeof field, "%s.low_freq_factor", oname);
    DORAC_TRY(read_num(r, obj, "low_freq_factor", field, true, 0, &cfg->rope.low_freq_factor));
    if (!(cfg->rope.low_freq_factor > 0))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' = %g must be positive", r->name, field,
                           cfg->rope.low_freq_factor);
    snprintf(field, sizeof field, "%s.high_freq_factor", oname);
    DORAC_TRY(read_num(r, obj, "high_freq_factor", field, true, 0, &cfg->rope.high_freq_factor));
    if (!(cfg->rope.high_freq_factor > cfg->rope.low_freq_factor))
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' = %g must exceed low_freq_factor %g", r->name, field,
                           cfg->rope.high_freq_factor, cfg->rope.low_freq_factor);
    snprintf(field, sizeof field, "%s.original_max_position_embeddings", oname);
    if (get(r->root, "original_max_position_embeddings"))
        DORAC_TRY(read_int(r, r->root, "original_max_position_embeddings", "original_max_position_embeddings", true,
                           0, 1, LIMIT_POSITIONS, &cfg->rope.original_max_position_embeddings));
    else
        DORAC_TRY(read_int(r, obj, "original_max_position_embeddings", field, false, cfg->max_position_embeddings, 1,
                           LIMIT_POSITIONS, &cfg->rope.original_max_position_embeddings));
    return DORAC_OK;
}

/* Heads, kv heads and head_dim, checked against each other. */
static int check_heads(const cfg_reader *r, dorac_hf_config *cfg, const char *heads_field, bool head_dim_given) {
    if (cfg->num_key_value_heads > cfg->num_attention_heads ||
        cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        return dorac_error(DORAC_E_FORMAT, "%s: field '%s' = %lld is not a multiple of num_key_value_heads = %lld",
                           r->name, heads_field, (long long)cfg->num_attention_heads,
                           (long long)cfg->num_key_value_heads);
    if (!head_dim_given) {
        if (cfg->hidden_size % cfg->num_attention_heads != 0)
            return dorac_error(DORAC_E_FORMAT, "%s: hidden size %lld is not a multiple of %s = %lld", r->name,
                               (long long)cfg->hidden_size, heads_field, (long long)cfg->num_attention_heads);
        cfg->head_dim = cfg->hidden_size / cfg->num_attention_heads;
    }
    if (cfg->head_dim > LIMIT_HEAD_DIM)
        return dorac_error(DORAC_E_FORMAT, "%s: head_dim %lld exceeds %lld", r->name, (long long)cfg->head_dim,
                           (long long)LIMIT_HEAD_DIM);
    return DORAC_OK;
}

static int parse_llama_family(const cfg_reader *r, dorac_hf_config *cfg) {
    const json_t *root = r->root;
    DORAC_TRY(read_int(r, root, "vocab_size", "vocab_size", true, 0, 1, LIMIT_VOCAB, &cfg->vocab_size));
    DORAC_TRY(read_int(r, root, "hidden_size", "hidden_size", true, 0, 1, LIMIT_HIDDEN, &cfg->hidden_size));
    DORAC_TRY(read_int(r, root, "intermediate_size", "intermediate_size", true, 0, 1, LIMIT_INTERMEDIATE,
                       &cfg->intermediate_size));
    DORAC_TRY(read_int(r, root, "num_hidden_layers", "num_hidden_layers", true, 0, 1, LIMIT_LAYERS,
                       &cfg->num_hidden_layers));
    DORAC_TRY(read_int(r, root, "num_attention_heads", "num_attention_heads", true, 0, 1, LIMIT_HEADS,
                       &cfg->num_attention_heads));
    /* num_key_value_heads: null means "= heads" in every class; an absent
    ** field takes the class default, which is 8 for mistral and 32 for qwen2. */
    int64_t kv_absent = cfg->arch == DORAC_ARCH_MISTRAL ? 8
                        : cfg->arch == DORAC_ARCH_QWEN2 ? 32
                                                        : cfg->num_attention_heads;
    int64_t kv_default = json_object_get(root, "num_key_value_heads") ? cfg->num_attention_heads : kv_absent;
    DORAC_TRY(read_int(r, root, "num_key_value_heads", "num_key_value_heads", false, kv_default, 1, LIMIT_HEADS,
                       &cfg->num_key_value_heads));
    bool head_dim_given = get(root, "head_dim") != NULL;
    DORAC_TRY(read_int(r, root, "head_dim", "head_dim", false, 0, 1, LIMIT_HEAD_DIM, &cfg->head_dim));
    DORAC_TRY(check_heads(r, cfg, "num_attention_heads", head_dim_given));
    if (cfg->head_dim % 2 != 0)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: head_dim %lld is odd; RoPE needs an even head_dim", r->name,
                           (long long)cfg->head_dim);
    int64_t max_pos_def = cfg->arch == DORAC_ARCH_MISTRAL ? 131072 : cfg->arch == DORAC_ARCH_QWEN2 ? 32768 : 2048;
    DORAC_TRY(read_int(r, root, "max_position_embeddings", "max_position_embeddings", false, max_pos_def, 1,
                       LIMIT_POSITIONS, &cfg->max_position_embeddings));
    DORAC_TRY(read_num(r, root, "rms_norm_eps", "rms_norm_eps", false, 1e-6, &cfg->norm_eps));
    DORAC_TRY(parse_act(r, cfg, "hidden_act", "silu"));
    DORAC_TRY(read_bool(r, "tie_word_embeddings", false, &cfg->tie_word_embeddings));

    switch (cfg->arch) {
    case DORAC_ARCH_LLAMA: {
        bool attn_bias, mlp_bias;
        DORAC_TRY(read_bool(r, "attention_bias", false, &attn_bias));
        DORAC_TRY(read_bool(r, "mlp_bias", false, &mlp_bias));
        cfg->qkv_bias = cfg->o_bias = attn_bias;
        cfg->mlp_bias = mlp_bias;
        DORAC_TRY(parse_token_ids(r, cfg, 1, 2));
        break;
    }
    case DORAC_ARCH_MISTRAL: {
        /* absent: the class default 4096; null: no window */
        const json_t *sw = json_object_get(root, "sliding_window");
        cfg->sliding_window = 4096;
        if (sw) DORAC_TRY(read_int(r, root, "sliding_window", "sliding_window", false, 0, 1, LIMIT_POSITIONS,
                                   &cfg->sliding_window));
        DORAC_TRY(parse_token_ids(r, cfg, 1, 2));
        break;
    }
    case DORAC_ARCH_QWEN2: {
        cfg->qkv_bias = true; /* Qwen2Attention: q/k/v with bias, o without */
        bool sliding;
        DORAC_TRY(read_bool(r, "use_sliding_window", false, &sliding));
        if (sliding)
            return dorac_error(DORAC_E_UNSUPPORTED, "%s: use_sliding_window true is not supported", r->name);
        const json_t *lt = get(root, "layer_types");
        if (lt) {
            if (!json_is_array(lt))
                return dorac_error(DORAC_E_FORMAT, "%s: field 'layer_types' must be a list", r->name);
            for (size_t i = 0; i < json_array_size(lt); i++) {
                const json_t *v = json_array_get(lt, i);
                if (!json_is_string(v) || strcmp(json_string_value(v), "full_attention") != 0)
                    return dorac_error(DORAC_E_UNSUPPORTED,
                                       "%s: layer_types[%zu] is not \"full_attention\"; only full attention is "
                                       "supported",
                                       r->name, i);
            }
        }
        DORAC_TRY(parse_token_ids(r, cfg, -1, -1));
        break;
    }
    default: break;
    }
    if (!(cfg->norm_eps > 0 && cfg->norm_eps < 1))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'rms_norm_eps' = %g must be in (0, 1)", r->name, cfg->norm_eps);
    return parse_rope(r, cfg);
}

static int parse_gpt2(const cfg_reader *r, dorac_hf_config *cfg) {
    const json_t *root = r->root;
    static const char *const k_embd[] = {"n_embd", "hidden_size"};
    static const char *const k_layer[] = {"n_layer", "num_hidden_layers"};
    static const char *const k_head[] = {"n_head", "num_attention_heads"};
    static const char *const k_pos[] = {"n_positions", "max_position_embeddings"};
    const char *f_embd = alias(r, k_embd, 2), *f_layer = alias(r, k_layer, 2), *f_head = alias(r, k_head, 2),
               *f_pos = alias(r, k_pos, 2);
    DORAC_TRY(read_int(r, root, "vocab_size", "vocab_size", true, 0, 1, LIMIT_VOCAB, &cfg->vocab_size));
    DORAC_TRY(read_int(r, root, f_embd, f_embd, true, 0, 1, LIMIT_HIDDEN, &cfg->hidden_size));
    DORAC_TRY(read_int(r, root, f_layer, f_layer, true, 0, 1, LIMIT_LAYERS, &cfg->num_hidden_layers));
    DORAC_TRY(read_int(r, root, f_head, f_head, true, 0, 1, LIMIT_HEADS, &cfg->num_attention_heads));
    DORAC_TRY(read_int(r, root, f_pos, f_pos, false, 1024, 1, LIMIT_POSITIONS, &cfg->max_position_embeddings));
    /* 4 * n_embd <= 2^19 fits LIMIT_INTERMEDIATE, so the default is in range */
    DORAC_TRY(read_int(r, root, "n_inner", "n_inner", false, 4 * cfg->hidden_size, 1, LIMIT_INTERMEDIATE,
                       &cfg->intermediate_size));
    cfg->num_key_value_heads = cfg->num_attention_heads;
    DORAC_TRY(check_heads(r, cfg, f_head, false));
    DORAC_TRY(read_num(r, root, "layer_norm_epsilon", "layer_norm_epsilon", false, 1e-5, &cfg->norm_eps));
    if (!(cfg->norm_eps > 0 && cfg->norm_eps < 1))
        return dorac_error(DORAC_E_FORMAT, "%s: field 'layer_norm_epsilon' = %g must be in (0, 1)", r->name,
                           cfg->norm_eps);
    DORAC_TRY(parse_act(r, cfg, "activation_function", "gelu_new"));
    DORAC_TRY(read_bool(r, "tie_word_embeddings", true, &cfg->tie_word_embeddings));
    bool by_layer, scale, cross;
    DORAC_TRY(read_bool(r, "scale_attn_by_inverse_layer_idx", false, &by_layer));
    DORAC_TRY(read_bool(r, "scale_attn_weights", true, &scale));
    DORAC_TRY(read_bool(r, "add_cross_attention", false, &cross));
    if (by_layer)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: scale_attn_by_inverse_layer_idx true is not supported", r->name);
    if (!scale) return dorac_error(DORAC_E_UNSUPPORTED, "%s: scale_attn_weights false is not supported", r->name);
    if (cross) return dorac_error(DORAC_E_UNSUPPORTED, "%s: add_cross_attention true is not supported", r->name);
    cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = true; /* Conv1D layers always carry a bias */
    cfg->rope.type = DORAC_ROPE_NONE;
    return parse_token_ids(r, cfg, 50256, 50256);
}

static int parse_root(dorac_hf_config *cfg, const json_t *root, const char *name) {
    cfg_reader r = {root, name};
    if (!json_is_object(root))
        return dorac_error(DORAC_E_FORMAT, "%s: a config must be a JSON object, found %s", name,
                           dorac_json_type_name(root));
    const char *mt;
    DORAC_TRY(read_str(&r, root, "model_type", "model_type", &mt));
    if (!mt) return dorac_error(DORAC_E_FORMAT, "%s: missing field 'model_type'", name);
    static const struct {
        const char *name;
        dorac_arch arch;
    } types[] = {{"llama", DORAC_ARCH_LLAMA}, {"mistral", DORAC_ARCH_MISTRAL},
                 {"qwen2", DORAC_ARCH_QWEN2}, {"gpt2", DORAC_ARCH_GPT2}};
    size_t i = 0;
    while (i < sizeof types / sizeof types[0] && strcmp(types[i].name, mt) != 0) i++;
    if (i == sizeof types / sizeof types[0])
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "%s: unsupported model_type '%.40s' (llama, mistral, qwen2, gpt2 are supported)", name, mt);
    cfg->arch = types[i].arch;
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt);
    const json_t *archs = get(root, "architectures");
    if (json_is_array(archs) && json_is_string(json_array_get(archs, 0)))
        snprintf(cfg->architecture, sizeof cfg->architecture, "%s", json_string_value(json_array_get(archs, 0)));
    DORAC_TRY(parse_dtype(&r, cfg));
    return cfg->arch == DORAC_ARCH_GPT2 ? parse_gpt2(&r, cfg) : parse_llama_family(&r, cfg);
}

int dorac_hf_config_load_string(dorac_hf_config *cfg, const char *json, size_t n, const char *name) {
    if (!cfg || (!json && n)) return dorac_error(DORAC_E_INVALID, "dorac_hf_config_load_string: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    if (!name) name = "config.json";
    json_t *root;
    DORAC_TRY(dorac_json_parse(&root, json ? json : "", n, name, 0));
    int rc = parse_root(cfg, root, name);
    json_decref(root);
    if (rc != DORAC_OK) memset(cfg, 0, sizeof *cfg);
    return rc;
}

int dorac_hf_config_load(dorac_hf_config *cfg, const char *path) {
    if (!cfg || !path) return dorac_error(DORAC_E_INVALID, "dorac_hf_config_load: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    char *file = NULL, *text = NULL;
    size_t n;
    int rc;
    if (dorac_is_dir(path)) {
        DORAC_TRY(dorac_path_join(&file, path, "config.json"));
    } else {
        file = strdup(path);
        if (!file) return dorac_error(DORAC_E_NOMEM, "%s: cannot allocate", path);
    }
    rc = dorac_read_file(file, CONFIG_MAX_BYTES, &text, &n);
    if (rc == DORAC_OK) rc = dorac_hf_config_load_string(cfg, text, n, file);
    free(text);
    free(file);
    return rc;
}

const char *dorac_arch_name(dorac_arch arch) {
    switch (arch) {
    case DORAC_ARCH_LLAMA: return "llama";
    case DORAC_ARCH_MISTRAL: return "mistral";
    case DORAC_ARCH_QWEN2: return "qwen2";
    case DORAC_ARCH_GPT2: return "gpt2";
    default: return "?";
    }
}
