/*
** session.c — what most subcommands start with: a backend, a model loaded
** from an HF folder, optionally a PEFT adapter, and the folder's tokenizer.
*/
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/error.h"
#include "io/fsutil.h"

int cli_session_open(cli_session *s, const char *model_dir, const char *adapter_dir, int threads,
                     const char *device, bool want_tokenizer) {
    memset(s, 0, sizeof *s);
    if (!dorac_is_dir(model_dir))
        return dorac_error(DORAC_E_IO, "%s: model folder does not exist", model_dir);
    dorac_set_num_threads(threads);
    DORAC_TRY(dorac_backend_open(device, &s->be));
    int rc = dorac_model_load(&s->model, s->be, model_dir);
    if (!rc && adapter_dir) {
        if (!dorac_is_dir(adapter_dir)) rc = dorac_error(DORAC_E_IO, "%s: adapter folder does not exist", adapter_dir);
        else rc = dorac_model_load_adapter(s->model, adapter_dir);
    }
    char tj[4096], tc[4096];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", model_dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", model_dir);
    if (!rc && want_tokenizer && dorac_is_file(tj))
        rc = dorac_tokenizer_load(&s->tok, tj, dorac_is_file(tc) ? tc : NULL);
    if (rc) cli_session_close(s);
    return rc;
}

void cli_session_close(cli_session *s) {
    dorac_tokenizer_free(s->tok);
    dorac_model_free(s->model);
    dorac_backend_destroy(s->be);
    memset(s, 0, sizeof *s);
}

int cli_usage_error(const char *msg) {
    fprintf(stderr, "dorac: %s\n", msg);
    return CLI_EXIT_USAGE;
}
