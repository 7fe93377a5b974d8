/*
** inspect.c — `dorac inspect`: the architecture, parameter counts and dtype
** of a model folder, and, with --adapter, the adapter's method, targets,
** ranks and parameter count.
*/
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "io/hf_config.h"

int cli_inspect(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL;
    cli_opt opts[] = {
        {"model", OPT_STRING, &model_dir, "HF model folder", false},
        {"adapter", OPT_STRING, &adapter, "PEFT adapter folder (optional)", false},
    };
    int pr = cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0], "usage: dorac inspect --model DIR [--adapter DIR]");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (!model_dir) return cli_usage_error("inspect needs --model");
    dorac_hf_config hc;
    int rc = dorac_hf_config_load(&hc, model_dir);
    if (rc) return cli_fail(rc);
    cli_session s;
    rc = cli_session_open(&s, model_dir, adapter, 1, "cpu", true);
    if (rc) return cli_fail(rc);
    dorac_model *m = s.model;
    const dorac_model_config *c = dorac_model_get_config(m);
    printf("model      %s (%s)\n", model_dir, hc.architecture[0] ? hc.architecture : c->model_type);
    printf("type       %s, %lld layers, hidden %lld, intermediate %lld, vocab %lld\n", c->model_type,
           (long long)c->n_layers, (long long)c->hidden_size, (long long)c->intermediate_size, (long long)c->vocab_size);
    printf("attention  %lld heads, %lld kv heads, head_dim %lld%s\n", (long long)c->n_heads, (long long)c->n_kv_heads,
           (long long)c->head_dim, c->qkv_bias ? ", qkv bias" : "");
    if (c->family == DORAC_FAMILY_LLAMA)
        printf("rope       theta %g, %s scaling%s\n", c->rope_theta,
               c->rope_type == DORAC_MODEL_ROPE_LLAMA3 ? "llama3" : c->rope_type == DORAC_MODEL_ROPE_LINEAR ? "linear" : "no",
               c->tie_embeddings ? ", tied embeddings" : "");
    printf("params     %lld (%.2f M), stored as %s\n", (long long)dorac_model_param_count(m),
           (double)dorac_model_param_count(m) / 1e6, hc.dtype_name[0] ? hc.dtype_name : "unspecified dtype");
    printf("tokenizer  %s\n", s.tok ? "tokenizer.json" : "none");
    if (adapter) {
        int64_t n_adapter = 0;
        size_t n_targets = 0;
        printf("adapter    %s: %s\n", adapter, dorac_method_name(dorac_model_method(m)));
        for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
            dorac_model_linear *l = dorac_model_linear_at(m, i);
            if (l->L.cfg.method == DORAC_METHOD_FROZEN) continue;
            n_targets++;
            n_adapter += l->L.cfg.rank * (l->in + l->out) + (l->m.data ? l->out : 0);
            printf("  %-48s r=%d alpha=%g scale=%g%s\n", l->path, l->L.cfg.rank, l->L.cfg.alpha, l->L.scale,
                   l->L.cfg.use_rslora ? " rslora" : "");
        }
        printf("adapter    %zu modules, %lld trainable parameters (%.3f%% of the base)\n", n_targets,
               (long long)n_adapter, 100.0 * (double)n_adapter / (double)dorac_model_param_count(m));
    }
    cli_session_close(&s);
    return CLI_EXIT_OK;
}
