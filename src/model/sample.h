/*
** sample.h — choosing the next token from a row of logits, as Hugging Face
** transformers' generate() does with do_sample: temperature, then top-k,
** then top-p (nucleus), then one draw; greedy (argmax) when temperature is 0.
**
** Randomness comes from core/rng.h's counter-based generator keyed by
** (seed, position): the draw for the token at sequence position p is
** uniform(seed, stream, p). A seed therefore reproduces a generation
** exactly, on any thread count, and the draw for one position does not
** depend on how many draws came before it.
**
** Ties. Tokens are ranked by probability, equal probabilities by lower id,
** so top-k keeps exactly k tokens and top-k = 1 is greedy (argmax, first
** maximum). HF's top-k keeps every token tied with the k-th; the two differ
** only on exact ties.
*/
#ifndef DORAC_MODEL_SAMPLE_H
#define DORAC_MODEL_SAMPLE_H

#include <stdint.h>

typedef struct dorac_sampler_params {
    double temperature; /* >= 0; 0 = greedy, top_k and top_p ignored */
    int64_t top_k;      /* >= 0; 0 = off; keep the k most probable tokens */
    double top_p;       /* (0, 1]; 1 = off; keep the smallest set of most probable tokens
                        ** whose probability sums to >= top_p (at least one) */
    uint64_t seed;      /* keys the draws, with the position */
} dorac_sampler_params;

/* DORAC_E_INVALID naming the field when a value is out of range (a
** temperature that is negative or not finite, top_k < 0, top_p outside (0, 1]). */
int dorac_sampler_params_check(const dorac_sampler_params *p);

typedef struct dorac_sampler dorac_sampler;

/* A sampler for rows of vocab_size logits, with its scratch (O(V)). */
int dorac_sampler_create(dorac_sampler **out, dorac_sampler_params params, int64_t vocab_size);
void dorac_sampler_free(dorac_sampler *s); /* NULL is allowed */

/* *id = the token chosen from logits (V, host fp32) for sequence position
** `position` (the index the token will have). A NaN or +Inf logit is
** DORAC_E_INVALID (the model diverged); -Inf logits are tokens of
** probability 0. */
int dorac_sampler_sample(dorac_sampler *s, const float *logits, int64_t position, int32_t *id);

/* The index of the largest of x[0..n), the first one on ties (n >= 1). */
int32_t dorac_argmax(const float *x, int64_t n);

#endif
