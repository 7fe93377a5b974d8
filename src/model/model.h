/*
** model.h — decoder-only transformers (Llama family and GPT-2) written once
** against the backend interface, llm.c style.
**
** A model is an explicit table of named tensors (HF state-dict names), a
** list of linear layers (each a dorac_linear: frozen, full, LoRA or DoRA),
** and activations kept for the backward pass. Forward is a flat list of op
** calls per block; backward is the same list reversed.
**
** Families:
**   LLAMA  llama, mistral, qwen2: token embedding; per block RMSNorm ->
**          q,k,v (qwen2: with bias) -> RoPE -> causal GQA attention -> o ->
**          residual; RMSNorm -> gate, up -> SwiGLU -> down -> residual;
**          final RMSNorm; lm_head (tied to the embedding or not).
**   GPT2   token + learned position embeddings; per block LayerNorm ->
**          c_attn (one (3C, C) linear; q, k, v are column views of its
**          output) -> causal attention -> c_proj -> residual; LayerNorm ->
**          c_fc -> GELU (tanh) -> c_proj -> residual; final LayerNorm;
**          lm_head tied to wte. Conv1D (in, out) weights are transposed once
**          at load into (out, in).
**
** Memory. Training keeps, per layer and per row of the batch (N = B*T):
** the residual input, both norm outputs, q/k/v (and their rotated copies),
** the attention output, the o/down outputs, the MLP's gate/up/act, and for
** each adapted linear its (N, r) input projection: about
** (6C + 2(H+2KV)D + 3I) floats per row per layer, so memory grows as
** B·T·layers. Inference (train = false) keeps one layer's worth, reused.
** The lm_head and cross-entropy run over chunks of rows, so (N, V) logits
** are never held at once: DORAC_MODEL_HEAD_CHUNK rows, or more (a multiple
** of it) while a chunk of logits stays within DORAC_MODEL_HEAD_ELEMS
** elements, so that a small vocabulary gets products of more rows (1280 for
** GPT-2's 50257, 512 for Llama-3's 128256). The count does not depend on
** the backend, so that the head adapter's dropout masks (seeded per chunk)
** are the same on every backend.
*/
#ifndef DORAC_MODEL_H
#define DORAC_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "adapter/linear.h"
#include "backend/backend.h"

#define DORAC_MODEL_HEAD_CHUNK 256
#define DORAC_MODEL_HEAD_ELEMS ((int64_t)64 << 20)

typedef enum dorac_family { DORAC_FAMILY_LLAMA = 0, DORAC_FAMILY_GPT2 = 1 } dorac_family;

typedef enum dorac_model_rope {
    DORAC_MODEL_ROPE_DEFAULT = 0,
    DORAC_MODEL_ROPE_LINEAR = 1,
    DORAC_MODEL_ROPE_LLAMA3 = 2
} dorac_model_rope;

typedef struct dorac_model_config {
    dorac_family family;
    char model_type[32];      /* "llama", "mistral", "qwen2", "gpt2" */
    int64_t vocab_size;       /* V */
    int64_t hidden_size;      /* C */
    int64_t intermediate_size;/* I */
    int64_t n_layers;         /* L */
    int64_t n_heads;          /* H */
    int64_t n_kv_heads;       /* KV, divides H */
    int64_t head_dim;         /* D */
    int64_t max_positions;    /* RoPE table length / GPT-2 wpe rows */
    double norm_eps;
    bool tie_embeddings;
    bool qkv_bias;            /* qwen2; llama with attention_bias (o gets it too) */
    bool o_bias;
    bool mlp_bias;            /* llama mlp_bias */
    int64_t sliding_window;   /* mistral: attend to the last W positions; 0 = unlimited.
                              ** Sequences longer than W are rejected (not implemented). */
    /* RoPE (Llama family) */
    double rope_theta;
    dorac_model_rope rope_type;
    double rope_factor;
    double rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_original_max_positions;
} dorac_model_config;

/* RoPE inverse frequencies (head_dim/2 of them) after the config's scaling,
** as transformers computes them (rope.c). */
void dorac_rope_inv_freq(const dorac_model_config *cfg, double *inv_freq);

/* Checks sizes and their products (so later arithmetic cannot overflow);
** DORAC_E_INVALID naming the field otherwise. */
int dorac_model_config_check(const dorac_model_config *cfg);

/* One linear layer of the model and where it sits. */
typedef struct dorac_model_linear {
    char path[96];          /* HF module path, e.g. "model.layers.3.self_attn.q_proj" */
    const char *short_name; /* "q_proj", "c_attn", "lm_head", ... */
    int64_t in, out;
    dorac_linear L;
    bool active;            /* initialised (dorac_linear_init ran) */
    /* owned parameter/gradient storage for the adapter (absent when frozen) */
    dorac_tensor A, B, m, dA, dB, dm;
    /* A and B in the weight's type (dorac_linear_tensors): B_w owned, A_w a
    ** view of the r rows that attaching the adapter added after W's, or
    ** (a_w_owned) a tensor of its own for the head and layers with dropout */
    dorac_tensor A_w, B_w;
    bool a_w_owned;
    dorac_tensor dW, dbias; /* FULL */
} dorac_model_linear;

/* One named parameter tensor of the base model. */
typedef struct dorac_model_param {
    char name[96];          /* HF state-dict name */
    dorac_tensor w;         /* (rows, cols) as dorac holds it ((out,in) for linears) */
    dorac_tensor grad;      /* FULL fine-tuning only; absent otherwise */
    bool transposed_at_load;/* GPT-2 Conv1D: stored (in, out) in the file */
    bool optional;          /* may be absent from a checkpoint (tied lm_head) */
} dorac_model_param;

typedef struct dorac_model dorac_model;

/* Builds the model's parameter table and allocates every tensor (contents
** undefined until loaded or initialised). */
int dorac_model_create(dorac_model **out, dorac_backend *be, const dorac_model_config *cfg);
void dorac_model_free(dorac_model *m);

const dorac_model_config *dorac_model_get_config(const dorac_model *m);
dorac_backend *dorac_model_backend(const dorac_model *m);
size_t dorac_model_n_params(const dorac_model *m);
dorac_model_param *dorac_model_param_at(dorac_model *m, size_t i);
dorac_model_param *dorac_model_find_param(dorac_model *m, const char *name);
size_t dorac_model_n_linears(const dorac_model *m);
dorac_model_linear *dorac_model_linear_at(dorac_model *m, size_t i);
dorac_model_linear *dorac_model_find_linear(dorac_model *m, const char *path);
/* Total elements of the base model's parameters (tied tensors counted once). */
int64_t dorac_model_param_count(const dorac_model *m);

/* ---- loading (load.c) ---- */

struct dorac_hf_config;
/* Maps a parsed config.json onto the model config; DORAC_E_UNSUPPORTED for
** combinations dorac does not build (e.g. llama with a GELU MLP). */
int dorac_model_config_from_hf(dorac_model_config *mc, const struct dorac_hf_config *hc,
                               const char *file);
/* Loads an HF model folder (config.json + model.safetensors or shards). */
int dorac_model_load(dorac_model **out, dorac_backend *be, const char *dir);
/* Reads every parameter from path (a safetensors file, index or folder)
** into an existing model; errors name the file, tensor and both shapes. */
int dorac_model_load_weights(dorac_model *m, const char *path);

/* Writes the model as an HF folder under dir (atomically): src_dir's
** config.json, generation and tokenizer files copied verbatim, weights in
** dtype (F32, BF16 or F16) in transformers' names and layouts, sharded with
** an index when over max_shard_bytes. */
int dorac_model_save(dorac_model *m, const char *dir, dorac_dtype dtype, const char *src_dir,
                     size_t max_shard_bytes);
/* The same files written into an existing folder, not atomically (for
** callers that build a larger folder atomically themselves). src_dir may be
** NULL: weights only. */
int dorac_model_write(dorac_model *m, const char *dir, dorac_dtype dtype, const char *src_dir,
                      size_t max_shard_bytes);

/* ---- PEFT adapters (adapter_io.c) ---- */

/* Attaches the adapter of a PEFT folder (adapter_config.json +
** adapter_model.safetensors) to a model with no method set: LoRA or DoRA
** as the config says, on the modules it targets, with their ranks, alphas
** and scales, and the saved A, B and magnitudes. A tensor naming a module
** the model lacks, a targeted module with no tensors, or a shape that does
** not fit is an error naming the tensor and both shapes. */
int dorac_model_load_adapter(dorac_model *m, const char *dir);

/* Writes the model's adapters as a PEFT folder under dir, atomically (the
** folder appears complete or not at all; an existing one is replaced only
** after the new one is written). base_model is recorded as
** base_model_name_or_path (may be NULL). */
int dorac_model_save_adapter(dorac_model *m, const char *dir, const char *base_model);
/* The adapter's two files written into an existing folder, not atomically. */
int dorac_model_write_adapter(dorac_model *m, const char *dir, const char *base_model);

/* Random initialisation for training from scratch: linears and embeddings
** ~ N(0, 0.02), the residual-output projections (o/down, c_proj) scaled by
** 1/sqrt(2L) as GPT-2 does, biases 0, norm weights 1. Deterministic in seed. */
int dorac_model_init_random(dorac_model *m, uint64_t seed);

/* Decides, per linear, whether and how it is adapted: return true and fill
** cfg to adapt `path`, false to leave it frozen. */
typedef bool (*dorac_target_fn)(void *ctx, const char *path, const char *short_name,
                                dorac_adapter_config *cfg);

/* Sets the training method. FULL makes every parameter trainable (select is
** ignored). LORA/DORA call select for every linear and attach adapters with
** PEFT's initialisation (seed), allocating their parameters and gradients.
** Fails if an adapter is already attached. */
int dorac_model_set_method(dorac_model *m, dorac_method method, dorac_target_fn select,
                           void *ctx, uint64_t seed);
dorac_method dorac_model_method(const dorac_model *m);

/* Removes the LoRA/DoRA adapters that dorac_model_set_method or
** dorac_model_load_adapter attached: their tensors are freed and every
** linear is frozen again, as loaded, so that another adapter can be
** attached without reloading the base (dorac analyze walks checkpoints
** this way), also after a load that failed half-way. Full fine-tuning is
** DORAC_E_INVALID, since its weights themselves were trained. */
int dorac_model_clear_adapters(dorac_model *m);

/* A trainable tensor with its gradient, in the order the optimizer walks. */
typedef struct dorac_trainable {
    char name[160];         /* PEFT key for adapters, state-dict name for FULL */
    dorac_tensor *value;
    dorac_tensor *grad;
    bool decay;             /* weight decay applies (not to norms, biases, magnitudes) */
} dorac_trainable;

/* Lists the trainable tensors (fills up to cap, returns the count). */
size_t dorac_model_trainables(dorac_model *m, dorac_trainable *out, size_t cap);
/* Sets every gradient to 0. */
int dorac_model_zero_grad(dorac_model *m);

/* ---- forward / backward ---- */

typedef struct dorac_batch {
    const int32_t *ids;     /* (B*T) token ids, host memory */
    const int32_t *targets; /* (B*T) next-token targets, DORAC_IGNORE_INDEX to skip; or NULL */
    int64_t B, T;
} dorac_batch;

typedef struct dorac_forward_result {
    double loss_sum;        /* sum of per-token cross-entropy over counted targets */
    int64_t n_tokens;       /* counted targets */
} dorac_forward_result;

/* Runs the model. With targets, sums the loss. With train, keeps every
** layer's activations and also runs the lm_head's backward for
** d(grad_scale * loss_sum), so that dorac_model_backward can follow.
** logits_out (B*T, V) fp32 host memory, or NULL. dropout_seed selects the
** dropout masks (adapters with dropout > 0, train only). */
int dorac_model_forward(dorac_model *m, const dorac_batch *batch, bool train, double grad_scale,
                        uint64_t dropout_seed, dorac_forward_result *res, float *logits_out);

/* Rows per lm_head chunk (see Memory above): rows >= 1, or 0 for the
** default. For tests of the chunked head; frees the held activations. */
int dorac_model_set_head_chunk(dorac_model *m, int64_t rows);

/* Backward through every block after a train forward; accumulates into the
** trainable gradients. */
int dorac_model_backward(dorac_model *m);

/* Called by dorac_model_backward_ex with grads[0..n) (n >= 1): trainable
** gradients (each the grad of an entry of dorac_model_trainables, or a
** struct with the same data and shape) that this backward pass will not
** write again. A non-zero return stops the backward, which returns it.
** On an asynchronous backend (CUDA) the ops producing them are queued, not
** finished: the callback orders its own work after them. */
typedef int (*dorac_grads_ready_fn)(void *ctx, const dorac_tensor *const *grads, size_t n);

/* dorac_model_backward, calling ready(ctx, ...) as gradients become final,
** so that their all-reduce can overlap the rest of the backward:
**   1. first, the lm_head's and final norm's (their backward ran in the
**      forward and at the start of this one), unless tied to the embedding;
**   2. then each block's, from the last block to the first, after that
**      block's backward;
**   3. last, the embeddings' (a tied lm_head's included).
** Over one call every trainable gradient is handed over exactly once
** (stages with none are skipped). The gradients are bit for bit those of
** dorac_model_backward; ready NULL is dorac_model_backward. */
int dorac_model_backward_ex(dorac_model *m, dorac_grads_ready_fn ready, void *ctx);

/* Replaces each adapted linear's frozen weight by its merged weight and
** detaches the adapters (method becomes FROZEN). */
int dorac_model_merge_adapters(dorac_model *m);

/* ---- inference with a KV cache (decode.c) ----
** A separate forward path for generation: the prompt goes through once as a
** batch (prefill), writing every layer's post-RoPE keys and values into the
** cache; each new token then costs one row through the model plus
** attention over the cached rows, O(T) instead of O(T²). The model's
** parameters and linears are used as they are: adapters apply un-merged,
** without dropout. Sampling is in model/sample.h. */

/* Rows per batched forward in prefill: a longer prompt runs in chunks of
** this many rows (same result), so scratch stays (chunk, ·). */
#define DORAC_KV_CACHE_CHUNK 256

typedef struct dorac_kv_cache dorac_kv_cache;

typedef struct dorac_kv_cache_params {
    int64_t max_len;    /* positions held (prompt + new tokens): 1..max_position_embeddings */
    int64_t chunk_rows; /* rows per batched forward; 0 = DORAC_KV_CACHE_CHUNK */
} dorac_kv_cache_params;

/* A cache for m: per layer K and V, (max_len, KV*D) each, plus scratch for
** chunk_rows rows, all on m's backend. Adapter ranks are read now, so
** attach adapters first. DORAC_E_INVALID when max_len exceeds the model's
** max_position_embeddings (the message names both), DORAC_E_UNSUPPORTED
** past a sliding window. *out is NULL on failure. */
int dorac_kv_cache_create(dorac_kv_cache **out, dorac_model *m, dorac_kv_cache_params params);
void dorac_kv_cache_free(dorac_kv_cache *cache); /* NULL is allowed */
/* Forgets every position (length 0); the memory is kept. */
void dorac_kv_cache_reset(dorac_kv_cache *cache);
int64_t dorac_kv_cache_length(const dorac_kv_cache *cache);   /* positions filled */
int64_t dorac_kv_cache_capacity(const dorac_kv_cache *cache); /* max_len */

/* Runs n tokens ids (host memory) through the model at the cache's next
** positions len..len+n-1 (normally on an empty cache: the prompt), B = 1,
** as batched forwards of up to chunk_rows rows, and appends their keys and
** values. logits_last (V) fp32 host memory, or NULL, receives the logits
** of the last of the n tokens: what dorac_model_forward gives at that
** position. len + n beyond the capacity, or an id outside the vocabulary,
** is DORAC_E_INVALID and leaves the cache as it was. The model and its
** adapters must not change while the cache holds positions (reset it). */
int dorac_model_prefill(dorac_model *m, dorac_kv_cache *cache, const int32_t *ids, int64_t n,
                        float *logits_last);

/* One token: dorac_model_prefill with n = 1. logits (V) fp32 host memory. */
int dorac_model_decode_step(dorac_model *m, dorac_kv_cache *cache, int32_t id, float *logits);

#endif
