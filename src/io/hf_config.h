/*
** hf_config.h — a Hugging Face model's config.json, reduced to what dorac's
** models need.
**
** Supported model types: llama, mistral, qwen2 and gpt2. A field missing from
** the file takes the default that transformers' config class gives it
** (LlamaConfig, MistralConfig, Qwen2Config, GPT2Config in transformers 5),
** except the fields that define the network's shape, which are required:
** vocab_size, hidden_size, num_hidden_layers, num_attention_heads and, for
** the llama family, intermediate_size (gpt2 spells them vocab_size, n_embd,
** n_layer, n_head; n_inner defaults to 4 * n_embd).
**
** RoPE is read from either spelling, with transformers' precedence:
**   - "rope_scaling" (older checkpoints) when it is a non-empty object, else
**     "rope_parameters" (transformers 5);
**   - the type is its "rope_type", else its "type", else "default";
**   - theta is its "rope_theta", else the top-level "rope_theta", else 1e4;
**   - llama3's original_max_position_embeddings is the top-level field if
**     present, else the one in the RoPE object, else max_position_embeddings.
** Types default, linear and llama3 are supported; any other is
** DORAC_E_UNSUPPORTED naming it. A partial_rotary_factor other than 1 and
** per-layer RoPE objects are unsupported too.
**
** Limits (so that products such as vocab × hidden fit easily in int64 and
** size_t): vocab ≤ 2^24, hidden ≤ 2^17, intermediate ≤ 2^20, layers ≤ 2^12,
** heads ≤ 2^12, head_dim ≤ 2^12, max positions ≤ 2^27.
**
** Every error is one line naming the file and the field, e.g.
** "x/config.json: missing field 'hidden_size'".
*/
#ifndef DORAC_IO_HF_CONFIG_H
#define DORAC_IO_HF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

typedef enum dorac_arch {
    DORAC_ARCH_LLAMA = 0,
    DORAC_ARCH_MISTRAL,
    DORAC_ARCH_QWEN2,
    DORAC_ARCH_GPT2
} dorac_arch;

typedef enum dorac_act {
    DORAC_ACT_SILU = 0,  /* "silu", "swish" */
    DORAC_ACT_GELU_TANH, /* "gelu_new", "gelu_pytorch_tanh": 0.5x(1+tanh(√(2/π)(x+0.044715x³))) */
    DORAC_ACT_GELU       /* "gelu": exact, 0.5x(1+erf(x/√2)) */
} dorac_act;

typedef enum dorac_rope_type {
    DORAC_ROPE_NONE = 0, /* gpt2: learned absolute positions */
    DORAC_ROPE_DEFAULT,
    DORAC_ROPE_LINEAR,   /* positions divided by factor */
    DORAC_ROPE_LLAMA3    /* llama 3.1 frequency-dependent scaling */
} dorac_rope_type;

#define DORAC_HF_MAX_EOS 8

typedef struct dorac_hf_config {
    dorac_arch arch;
    char model_type[16];            /* "llama", "mistral", "qwen2", "gpt2" */
    char architecture[64];          /* architectures[0], e.g. "LlamaForCausalLM"; "" if absent */
    int64_t vocab_size;
    int64_t hidden_size;            /* gpt2: n_embd */
    int64_t intermediate_size;      /* gpt2: n_inner, or 4 * n_embd */
    int64_t num_hidden_layers;      /* gpt2: n_layer */
    int64_t num_attention_heads;    /* gpt2: n_head */
    int64_t num_key_value_heads;    /* divides num_attention_heads; = heads if absent (mistral: 8) */
    int64_t head_dim;               /* hidden / heads if absent */
    int64_t max_position_embeddings;/* gpt2: n_positions */
    double norm_eps;                /* rms_norm_eps (llama family), layer_norm_epsilon (gpt2) */
    dorac_act hidden_act;
    char hidden_act_name[24];       /* as the file spells it */
    bool tie_word_embeddings;       /* default false for llama/mistral/qwen2, true for gpt2 */
    bool qkv_bias;                  /* llama: attention_bias; qwen2 and gpt2: always true */
    bool o_bias;                    /* llama: attention_bias; gpt2: true; else false */
    bool mlp_bias;                  /* llama: mlp_bias; gpt2: true; else false */
    int64_t sliding_window;         /* mistral's sliding_window, 0 = none */
    struct {
        dorac_rope_type type;
        double theta;
        double factor;              /* linear, llama3; 1 otherwise */
        double low_freq_factor;     /* llama3 */
        double high_freq_factor;    /* llama3 */
        int64_t original_max_position_embeddings; /* llama3 */
    } rope;
    char dtype_name[16];            /* "dtype" or else "torch_dtype", e.g. "bfloat16"; "" if absent */
    bool has_dtype;                 /* dtype_name is float32, float16, bfloat16 or float64 */
    dorac_dtype dtype;              /* valid when has_dtype */
    int64_t bos_token_id;           /* -1 when absent or null */
    int64_t eos_token_id;           /* the first one; -1 when absent or null */
    int n_eos_token_ids;            /* how many the file lists (a list may hold several) */
    int64_t eos_token_ids[DORAC_HF_MAX_EOS]; /* the first min(n, 8) of them */
} dorac_hf_config;

/* Loads path, which is a config.json or a folder holding one, into *cfg.
** DORAC_E_IO when it cannot be read; DORAC_E_FORMAT for bad JSON, a missing
** required field or a value of the wrong type or range; DORAC_E_UNSUPPORTED
** for a model_type, hidden_act, RoPE type or feature dorac does not
** implement. *cfg is zeroed first and is meaningful only on DORAC_OK. */
int dorac_hf_config_load(dorac_hf_config *cfg, const char *path);

/* The same, from n bytes of JSON in memory; name is used in messages. */
int dorac_hf_config_load_string(dorac_hf_config *cfg, const char *json, size_t n, const char *name);

/* "llama", "mistral", "qwen2", "gpt2". */
const char *dorac_arch_name(dorac_arch arch);

#endif
