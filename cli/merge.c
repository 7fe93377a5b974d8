/*
** merge.c — `dorac merge`: W' = diag(m/n)(W0 + sBA) (DoRA) or W0 + sBA
** (LoRA) for every adapted linear, written as an HF folder that
** transformers loads as it is. Nothing appears under --out unless the whole
** folder was written (model/save.c builds it under a temporary name).
*/
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"

int cli_merge(int argc, char **argv) {
    const char *device = "auto", *model_dir = NULL, *adapter = NULL, *out = NULL, *dtype_s = "f32";
    int64_t threads = 0, shard_mb = 5000;
    cli_opt opts[] = {
        {"model", OPT_STRING, &model_dir, "base HF model folder", false},
        {"adapter", OPT_STRING, &adapter, "PEFT adapter folder (LoRA or DoRA)", false},
        {"out", OPT_STRING, &out, "output folder (written atomically)", false},
        {"dtype", OPT_STRING, &dtype_s, "f32 | bf16 | f16 (f32)", false},
        {"max-shard-mb", OPT_INT, &shard_mb, "shard size limit in MB (5000)", false},
        {"device", OPT_STRING, &device, "cuda | cuda:N | cpu | auto (auto: cuda when a GPU is present)", false},
        {"threads", OPT_INT, &threads, "CPU threads (all cores)", false},
    };
    int pr = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0],
                       "usage: dorac merge --model DIR --adapter DIR --out DIR [--dtype f32|bf16|f16]");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (!model_dir || !adapter || !out) return cli_usage_error("merge needs --model, --adapter and --out");
    dorac_dtype dtype;
    if (!strcmp(dtype_s, "f32")) dtype = DORAC_DTYPE_F32;
    else if (!strcmp(dtype_s, "bf16")) dtype = DORAC_DTYPE_BF16;
    else if (!strcmp(dtype_s, "f16")) dtype = DORAC_DTYPE_F16;
    else return cli_usage_error("--dtype must be f32, bf16 or f16");
    if (shard_mb < 1) return cli_usage_error("--max-shard-mb must be positive");
    cli_session s;
    int rc = cli_session_open(&s, model_dir, adapter, (int)threads, device, false);
    if (!rc) rc = dorac_model_merge_adapters(s.model);
    if (!rc) rc = dorac_model_save(s.model, out, dtype, model_dir, (size_t)shard_mb * 1000 * 1000);
    if (!rc) fprintf(stderr, "dorac: merged %s into %s (%s)\n", adapter, out, dtype_s);
    cli_session_close(&s);
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
