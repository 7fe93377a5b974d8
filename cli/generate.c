/*
** generate.c — `dorac generate`: continue a prompt with a model (and an
** optional PEFT adapter, applied un-merged), streaming each new token's
** text to stdout as soon as it is complete.
**
** The prompt is encoded as training encodes {"text"} lines: with the
** tokenizer's special tokens (its template's BOS), minus an EOS that the
** template appends (generation continues the text; it does not start after
** its end). It runs through the model once as a batch that fills the KV
** cache (model.h, decode.c); each new token then costs one row. Sampling is
** model/sample.h's: temperature, top-k, top-p, greedy at temperature 0,
** the draws keyed by (seed, position). Generation stops after
** --max-new-tokens or at the tokenizer's EOS (not printed).
**
** stdout gets the generated text only, byte for byte, with special tokens
** skipped (and a final newline when stdout is a terminal); stderr gets one
** summary line with the speed.
*/
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty, fileno */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/error.h"
#include "io/fsutil.h"
#include "model/model.h"
#include "model/sample.h"
#include "tokenizer/text_stream.h"

#define MAX_PROMPT_BYTES ((size_t)64 << 20)
/* prompt ids given to the text stream as context for the first piece */
#define STREAM_CONTEXT 5

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The prompt's ids: encode(text, special tokens) without an EOS that the
** template appends; [BOS] for an empty prompt when there is one. The
** template's additions are found by locating encode(text) inside. */
static int encode_prompt(const dorac_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n) {
    DORAC_TRY(dorac_tokenizer_encode(tok, text, len, true, ids, n));
    int32_t eos = dorac_tokenizer_eos_id(tok), bos = dorac_tokenizer_bos_id(tok);
    if (*n > 0 && eos >= 0 && (*ids)[*n - 1] == eos) {
        int32_t *plain = NULL;
        size_t n_plain = 0;
        DORAC_TRY(dorac_tokenizer_encode(tok, text, len, false, &plain, &n_plain));
        size_t suffix = *n - n_plain; /* the template's tail if the text sits at offset 0 */
        for (size_t off = 0; n_plain <= *n && off <= *n - n_plain; off++)
            if (!n_plain || !memcmp(*ids + off, plain, n_plain * sizeof *plain)) {
                suffix = *n - n_plain - off;
                break;
            }
        if (n_plain <= *n && suffix > 0) (*n)--;
        free(plain);
    }
    if (*n == 0 && bos >= 0) {
        free(*ids);
        *ids = malloc(sizeof **ids);
        if (!*ids) return dorac_error(DORAC_E_NOMEM, "generate: out of memory");
        (*ids)[0] = bos;
        *n = 1;
    }
    if (*n == 0)
        return dorac_error(DORAC_E_INVALID, "generate: the prompt is empty and the tokenizer has no BOS token to start from");
    return DORAC_OK;
}

static int put(const char *piece, size_t len, bool *ends_newline) {
    if (!len) return DORAC_OK;
    if (fwrite(piece, 1, len, stdout) != len || fflush(stdout))
        return dorac_error(DORAC_E_IO, "generate: cannot write to stdout");
    *ends_newline = piece[len - 1] == '\n';
    return DORAC_OK;
}

typedef struct gen_stats {
    int64_t prompt_tokens, new_tokens, decode_steps;
    double prefill_s, decode_s;
    bool stopped_at_eos;
} gen_stats;

/* prefill, then sample / print / decode one token at a time */
static int generate(cli_session *s, const int32_t *prompt, int64_t n_prompt, int64_t max_new,
                    const dorac_sampler_params *sp, bool ignore_eos, gen_stats *st) {
    dorac_model *m = s->model;
    int64_t V = dorac_model_get_config(m)->vocab_size;
    int32_t eos = ignore_eos ? -1 : dorac_tokenizer_eos_id(s->tok);
    dorac_kv_cache *cache = NULL;
    dorac_sampler *sampler = NULL;
    dorac_text_stream ts = {0};
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!logits) return dorac_error(DORAC_E_NOMEM, "generate: out of memory for logits");
    int rc = dorac_kv_cache_create(&cache, m, (dorac_kv_cache_params){.max_len = n_prompt + max_new});
    if (!rc) rc = dorac_sampler_create(&sampler, *sp, V);
    size_t n_context = n_prompt < STREAM_CONTEXT ? (size_t)n_prompt : STREAM_CONTEXT;
    if (!rc) rc = dorac_text_stream_init(&ts, s->tok, prompt + n_prompt - (int64_t)n_context, n_context, true);
    double t0 = now_s();
    if (!rc) rc = dorac_model_prefill(m, cache, prompt, n_prompt, logits);
    double t1 = now_s();
    bool ends_newline = true;
    char *piece = NULL;
    size_t len = 0;
    for (int64_t i = 0; !rc && i < max_new; i++) {
        int32_t id;
        int64_t position = n_prompt + i; /* where the sampled token goes */
        rc = dorac_sampler_sample(sampler, logits, position, &id);
        if (rc) break;
        if (id == eos) {
            st->stopped_at_eos = true;
            break;
        }
        st->new_tokens++;
        rc = dorac_text_stream_push(&ts, id, &piece, &len);
        if (!rc) rc = put(piece, len, &ends_newline);
        free(piece);
        piece = NULL;
        if (!rc && i + 1 < max_new) {
            rc = dorac_model_decode_step(m, cache, id, logits);
            st->decode_steps++;
        }
    }
    if (!rc) rc = dorac_text_stream_finish(&ts, &piece, &len);
    if (!rc) rc = put(piece, len, &ends_newline);
    free(piece);
    if (!rc && !ends_newline && isatty(fileno(stdout))) putchar('\n');
    st->prompt_tokens = n_prompt;
    st->prefill_s = t1 - t0;
    st->decode_s = now_s() - t1;
    dorac_text_stream_free(&ts);
    dorac_sampler_free(sampler);
    dorac_kv_cache_free(cache);
    free(logits);
    return rc;
}

int cli_generate(int argc, char **argv) {
    const char *device = "auto", *model_dir = NULL, *adapter = NULL, *prompt = NULL, *prompt_file = NULL;
    int64_t max_new = 128, top_k = 0, seed = 42, threads = 0;
    double temperature = 1.0, top_p = 1.0;
    bool ignore_eos = false;
    cli_opt opts[] = {
        {"model", OPT_STRING, &model_dir, "HF model folder (config.json, safetensors, tokenizer.json)", false},
        {"adapter", OPT_STRING, &adapter, "PEFT adapter folder to apply, un-merged (optional)", false},
        {"prompt", OPT_STRING, &prompt, "the text to continue", false},
        {"prompt-file", OPT_STRING, &prompt_file, "read the prompt from this file (bytes as they are)", false},
        {"max-new-tokens", OPT_INT, &max_new, "tokens to generate at most (128)", false},
        {"temperature", OPT_DOUBLE, &temperature, "softmax temperature; 0 = greedy (1.0)", false},
        {"top-p", OPT_DOUBLE, &top_p, "nucleus: keep the most probable tokens up to this mass, in (0, 1] (1.0 = off)", false},
        {"top-k", OPT_INT, &top_k, "keep the k most probable tokens (0 = off)", false},
        {"seed", OPT_INT, &seed, "seed of the sampling draws (42); a seed reproduces the output", false},
        {"ignore-eos", OPT_FLAG, &ignore_eos, "do not stop at the EOS token (for benchmarks)", false},
        {"device", OPT_STRING, &device, "cuda | cuda:N | cpu | auto (auto: cuda when a GPU is present)", false},
        {"threads", OPT_INT, &threads, "CPU threads (all cores)", false},
    };
    int pr = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0],
                       "usage: dorac generate --model DIR [--adapter DIR] --prompt TEXT | --prompt-file F\n"
                       "                      [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S]");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (!model_dir) return cli_usage_error("generate needs --model");
    if (!prompt == !prompt_file) return cli_usage_error("generate needs exactly one of --prompt and --prompt-file");
    if (max_new < 1 || max_new > (1 << 24)) return cli_usage_error("--max-new-tokens must be in [1, 16777216]");
    if (temperature < 0) return cli_usage_error("--temperature must be >= 0");
    if (!(top_p > 0 && top_p <= 1)) return cli_usage_error("--top-p must be in (0, 1]");
    if (top_k < 0) return cli_usage_error("--top-k must be >= 0");
    if (seed < 0) return cli_usage_error("--seed must be >= 0");
    if (threads < 0 || threads > 4096) return cli_usage_error("--threads must be in [0, 4096]");
    dorac_sampler_params sp = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = (uint64_t)seed};

    char *file_text = NULL;
    size_t prompt_len = prompt ? strlen(prompt) : 0;
    if (prompt_file) {
        int rc = dorac_read_file(prompt_file, MAX_PROMPT_BYTES, &file_text, &prompt_len);
        if (rc) return cli_fail(rc);
        prompt = file_text;
    }
    cli_session s;
    int rc = cli_session_open(&s, model_dir, adapter, (int)threads, device, true);
    if (rc) {
        free(file_text);
        return cli_fail(rc);
    }
    const dorac_model_config *cfg = dorac_model_get_config(s.model);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!s.tok) rc = dorac_error(DORAC_E_INVALID, "%s: no tokenizer.json, which generate needs to read the prompt", model_dir);
    if (!rc) rc = encode_prompt(s.tok, prompt, prompt_len, &ids, &n_ids);
    if (!rc && (int64_t)n_ids + max_new > cfg->max_positions)
        rc = dorac_error(DORAC_E_INVALID,
                         "the prompt (%zu tokens) + --max-new-tokens %lld = %lld positions exceed the model's "
                         "max_position_embeddings %lld",
                         n_ids, (long long)max_new, (long long)((int64_t)n_ids + max_new), (long long)cfg->max_positions);
    gen_stats st = {0};
    if (!rc) rc = generate(&s, ids, (int64_t)n_ids, max_new, &sp, ignore_eos, &st);
    if (!rc) {
        /* end the text with a newline, so the summary on stderr starts a line */
        fputc('\n', stdout);
        fflush(stdout);
        double decode_tps = st.decode_s > 0 ? (double)st.decode_steps / st.decode_s : 0;
        fprintf(stderr, "dorac: %lld prompt tokens in %.3f s (%.1f tokens/s), %lld new tokens at %.1f tokens/s%s\n",
                (long long)st.prompt_tokens, st.prefill_s,
                st.prefill_s > 0 ? (double)st.prompt_tokens / st.prefill_s : 0.0, (long long)st.new_tokens,
                decode_tps, st.stopped_at_eos ? ", stopped at EOS" : "");
    }
    free(ids);
    free(file_text);
    cli_session_close(&s);
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
