/*
** model_internal.h — the model struct, shared by model.c (parameters,
** methods, merge), forward.c (forward/backward) and rope.c.
*/
#ifndef DORAC_MODEL_INTERNAL_H
#define DORAC_MODEL_INTERNAL_H

#include "model/model.h"

/* The linears of one block, in forward order. GPT-2 uses QKV, O, UP, DOWN
** (c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj); Llama all but QKV. */
enum { LIN_Q, LIN_K, LIN_V, LIN_QKV, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_PER_BLOCK };

typedef struct block_params {
    dorac_model_param *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* b: GPT-2 only */
    dorac_model_linear *lin[LIN_PER_BLOCK];           /* NULL where absent */
} block_params;

/* Activations of one block, kept for the backward pass. Shapes with N rows. */
typedef struct block_acts {
    dorac_tensor res;              /* (N,C) block input (residual stream) */
    dorac_tensor ln1, ln1_mean, ln1_rstd;
    dorac_tensor qkv;              /* GPT-2 (N,3C) c_attn output */
    dorac_tensor q, k, v;          /* linear outputs (Llama) or views of qkv */
    dorac_tensor qr, kr;           /* Llama: rotated q, k; GPT-2: = q, k */
    dorac_tensor att, lse;         /* (N,H*D), (1,B*H*T) */
    dorac_tensor o;                /* (N,C) attention projection output */
    dorac_tensor res2;             /* (N,C) res + o */
    dorac_tensor ln2, ln2_mean, ln2_rstd;
    dorac_tensor fc1, fc2, act;    /* Llama gate, up, silu(gate)*up; GPT-2 c_fc out, -, gelu */
    dorac_tensor down;             /* (N,C) MLP output */
    dorac_tensor u[LIN_PER_BLOCK]; /* (N,r) adapter input projections */
} block_acts;

typedef struct model_acts {
    int64_t B, T, N;               /* the shape these were allocated for */
    bool train;                    /* every layer kept (true) or one set reused */
    int64_t n_sets;
    block_acts *blocks;
    dorac_tensor ids, pos, targets;/* I32 (1,N) */
    dorac_tensor res_final, lnf, lnf_mean, lnf_rstd, dlnf;
    dorac_tensor logits, dlogits, loss, u_head; /* head chunk scratch */
    /* backward scratch, shared by all blocks */
    dorac_tensor dres, dln, dq, dk, dv, dqkv, datt, dfc1, dfc2, dact, dscratch;
    /* dres, dq, dk, dv, dqkv, dfc1, dfc2 and dscratch have at least r spare
    ** columns for every block adapter (dorac_linear_backward_ex's dz_spare) */
    bool dz_spare;
    /* what the last train forward left for backward */
    bool ready_for_backward;
    uint64_t dropout_seed;
} model_acts;

struct dorac_model {
    dorac_backend *be;
    dorac_model_config cfg;
    dorac_method method;
    dorac_model_param *params;
    size_t n_params;
    dorac_model_linear *linears;
    size_t n_linears;
    block_params *blocks;          /* (L) */
    dorac_model_param *embed, *pos_embed, *final_w, *final_b, *head_w;
    dorac_model_linear *head;
    dorac_tensor rope_cos, rope_sin; /* (max_positions, D/2), Llama family */
    model_acts acts;
    int64_t head_chunk; /* rows per lm_head chunk; 0: the default (model.h) */
};

/* rope.c: fills m->rope_cos / rope_sin from the config. */
int dorac_model_rope_tables(dorac_model *m);

/* forward.c: frees the activations. */
void dorac_model_acts_free(dorac_model *m);

/* forward.c: dorac_linear_prepare of every active LoRA/DoRA linear (the
** copies of A and B in the weight's type, then DoRA's norms), in one batch.
** Run before a forward after any change of the parameters. */
int dorac_model_prepare_adapters(dorac_model *m);

#endif
