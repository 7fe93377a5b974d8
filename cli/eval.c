/*
** eval.c — `dorac eval`: the token-weighted mean next-token cross-entropy
** of a model (optionally with an adapter) over every sequence of a data
** file (train/evaluate.h says exactly what is computed).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cli/cli.h"
#include "core/error.h"
#include "cli/options.h"
#include "model/model.h"
#include "train/dataset.h"
#include "train/evaluate.h"

int cli_eval(int argc, char **argv) {
    const char *device = "auto", *model_dir = NULL, *adapter = NULL, *data = NULL;
    int64_t batch_size = 8, threads = 0, max_len = 0;
    bool json = false, skip_bad = false;
    cli_opt opts[] = {
        {"model", OPT_STRING, &model_dir, "HF model folder (config.json, safetensors, tokenizer.json)", false},
        {"adapter", OPT_STRING, &adapter, "PEFT adapter folder to apply (optional)", false},
        {"data", OPT_STRING, &data, "JSONL: {\"input_ids\"[, \"labels\"]}, {\"text\"}, prompt/completion, messages", false},
        {"batch-size", OPT_INT, &batch_size, "sequences per forward pass (8)", false},
        {"max-len", OPT_INT, &max_len, "cut longer sequences to this many tokens (max_position_embeddings)", false},
        {"device", OPT_STRING, &device, "cuda | cuda:N | cpu | auto (auto: cuda when a GPU is present)", false},
        {"threads", OPT_INT, &threads, "CPU threads (all cores)", false},
        {"skip-bad-lines", OPT_FLAG, &skip_bad, "skip malformed lines (counted) instead of failing", false},
        {"json", OPT_FLAG, &json, "print one JSON object: loss, tokens, ppl, sequences", false},
    };
    int pr = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0],
                       "usage: dorac eval --model DIR [--adapter DIR] --data FILE.jsonl [--batch-size N] [--json]");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (!model_dir || !data) return cli_usage_error("eval needs --model and --data");
    if (batch_size < 1 || batch_size > 4096) return cli_usage_error("--batch-size must be in [1, 4096]");
    if (max_len < 0) return cli_usage_error("--max-len must be positive");

    cli_session s;
    int rc = cli_session_open(&s, model_dir, adapter, (int)threads, device, true);
    if (rc) return cli_fail(rc);
    dorac_dataset ds;
    dorac_dataset_options dopt = {.tok = s.tok, .vocab_size = dorac_model_get_config(s.model)->vocab_size,
                                  .add_special = true, .skip_bad_lines = skip_bad};
    rc = dorac_dataset_load(&ds, data, &dopt);
    if (rc) {
        cli_session_close(&s);
        return cli_fail(rc);
    }
    int64_t limit = dorac_model_get_config(s.model)->max_positions;
    if (max_len > 0 && max_len < limit) limit = max_len;
    size_t cut = dorac_dataset_truncate(&ds, limit);
    if (cut) fprintf(stderr, "dorac: %zu sequences longer than %lld tokens were cut to it\n", cut, (long long)limit);
    double loss;
    int64_t tokens;
    rc = dorac_evaluate(s.model, &ds, batch_size, &loss, &tokens);
    if (!rc) {
        if (json)
            printf("{\"loss\": %.8f, \"tokens\": %lld, \"ppl\": %.6f, \"sequences\": %zu, \"skipped_lines\": %zu, "
                   "\"truncated\": %zu}\n", loss, (long long)tokens, exp(loss), ds.n, ds.n_skipped, cut);
        else
            printf("loss %.6f  ppl %.4f  tokens %lld  sequences %zu%s\n", loss, exp(loss), (long long)tokens, ds.n,
                   ds.n_skipped ? "  (some lines skipped)" : "");
    }
    dorac_dataset_free(&ds);
    cli_session_close(&s);
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
