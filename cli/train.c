/*
** train.c — `dorac train`: flags named as PEFT and the HF Trainer name them,
** mapped onto dorac_train_config (train/trainer.h), with a live progress
** line on a terminal and plain periodic lines otherwise (both on stderr).
*/
#define _POSIX_C_SOURCE 200809L /* isatty, fileno */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/error.h"
#include "train/trainer.h"

typedef struct progress_ctx {
    bool tty;
    bool quiet; /* a data-parallel rank other than 0: rank 0 reports */
    int64_t log_every;
    double last_eval;
} progress_ctx;

static void fmt_time(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(fmod(s, 3600) / 60));
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static bool on_step(void *ctx, const dorac_train_progress *p) {
    progress_ctx *pc = ctx;
    if (pc->quiet) return true;
    if (!isnan(p->eval_loss)) pc->last_eval = p->eval_loss;
    char eta[32], ev[32] = "";
    fmt_time(eta, sizeof eta, p->eta_s);
    if (!isnan(pc->last_eval)) snprintf(ev, sizeof ev, "  eval %.4f", pc->last_eval);
    bool last = p->step == p->total_steps;
    if (pc->tty) {
        fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f%s  lr %.2e  %.0f tok/s  eta %s%s", (long long)p->step,
                (long long)p->total_steps, p->loss, ev, p->lr, p->tokens_per_s, eta, p->checkpointed ? "  [saved]" : "");
        if (last) fputc('\n', stderr);
    } else if (p->step % pc->log_every == 0 || last || !isnan(p->eval_loss) || p->checkpointed) {
        fprintf(stderr, "step %lld/%lld  loss %.4f%s  lr %.2e  grad_norm %.3f  %.0f tok/s  eta %s%s\n", (long long)p->step,
                (long long)p->total_steps, p->loss, ev, p->lr, p->grad_norm, p->tokens_per_s, eta,
                p->checkpointed ? "  [checkpoint]" : "");
    }
    return true;
}

static void on_note(void *ctx, const char *msg) {
    progress_ctx *pc = ctx;
    if (pc->quiet) return;
    fprintf(stderr, "%sdorac: %s\n", pc->tty ? "\r\033[K" : "", msg);
}

int cli_train(int argc, char **argv) {
    dorac_train_config c;
    dorac_train_config_defaults(&c);
    const char *method = "dora", *norm_grad = "detach", *schedule = "linear", *init = "pretrained", *long_mode = "split";
    const char *save_dtype = "f32";
    int64_t rank = 16, warmup = -1, threads = 0, log_every = 10, seed = 42, nproc = 1, zero = -1;
    double alpha = -1;
    bool no_pack = false;
    cli_opt opts[] = {
        {"model", OPT_STRING, &c.model_dir, "HF model folder to fine-tune", false},
        {"data", OPT_STRING, &c.data_path, "training data: JSONL (text, prompt/completion, messages, input_ids) or .txt", false},
        {"eval-data", OPT_STRING, &c.eval_path, "held-out data, same formats (optional)", false},
        {"out", OPT_STRING, &c.out_dir, "output folder: adapter/, checkpoints, metrics.jsonl", false},
        {"method", OPT_STRING, &method, "dora | lora | full (dora)", false},
        {"rank", OPT_INT, &rank, "adapter rank r (16)", false},
        {"alpha", OPT_DOUBLE, &alpha, "adapter alpha (2 x rank, the DoRA paper's recipe)", false},
        {"rslora", OPT_FLAG, &c.use_rslora, "scale alpha/sqrt(r) instead of alpha/r", false},
        {"targets", OPT_STRING, &c.targets, "comma list of modules (q_proj,v_proj,...) or all-linear (all-linear)", false},
        {"dropout", OPT_DOUBLE, &c.dropout, "dropout on the adapter input (0)", false},
        {"norm-grad", OPT_STRING, &norm_grad, "detach | exact: DoRA norm gradient (detach, as the paper and PEFT)", false},
        {"lr", OPT_DOUBLE, &c.adamw.lr, "peak learning rate (2e-4)", false},
        {"schedule", OPT_STRING, &schedule, "linear | cosine | constant (linear)", false},
        {"warmup", OPT_INT, &warmup, "warmup steps (min(100, 10% of steps))", false},
        {"weight-decay", OPT_DOUBLE, &c.adamw.weight_decay, "decoupled weight decay (0)", false},
        {"max-grad-norm", OPT_DOUBLE, &c.adamw.max_grad_norm, "global gradient-norm clip, 0 = off (1.0)", false},
        {"beta1", OPT_DOUBLE, &c.adamw.beta1, "AdamW beta1 (0.9)", false},
        {"beta2", OPT_DOUBLE, &c.adamw.beta2, "AdamW beta2 (0.999)", false},
        {"eps", OPT_DOUBLE, &c.adamw.eps, "AdamW epsilon (1e-8)", false},
        {"batch-size", OPT_INT, &c.batch_size, "rows per micro-batch (8)", false},
        {"grad-accum", OPT_INT, &c.grad_accum, "micro-batches per optimizer step (1)", false},
        {"seq-len", OPT_INT, &c.seq_len, "tokens per row (512)", false},
        {"epochs", OPT_INT, &c.epochs, "passes over the data (3)", false},
        {"steps", OPT_INT, &c.steps, "optimizer steps, instead of --epochs", false},
        {"seed", OPT_INT, &seed, "seed for adapter init, data order and dropout (42)", false},
        {"device", OPT_STRING, &c.device, "cuda | cuda:N | cpu | auto (auto: cuda when a GPU is present)", false},
        {"threads", OPT_INT, &threads, "CPU threads (all cores)", false},
        {"nproc-per-node", OPT_INT, &nproc, "data parallel: start N processes here, one per GPU (under torchrun or mpirun, the rank comes from the environment instead)", false},
        {"zero", OPT_INT, &zero, "with several processes: 1 shards the AdamW state over them (ZeRO-1), 0 keeps all of it on each (1 for --method full, 0 for adapters)", false},
        {"eval-every", OPT_INT, &c.eval_every, "evaluate every N steps, 0 = only at the end (0)", false},
        {"eval-batch-size", OPT_INT, &c.eval_batch_size, "sequences per eval pass (8)", false},
        {"save-every", OPT_INT, &c.save_every, "checkpoint every N steps, 0 = never (0)", false},
        {"keep", OPT_INT, &c.keep, "checkpoints to keep, 0 = all (2)", false},
        {"resume", OPT_STRING, &c.resume, "auto | a checkpoint folder", false},
        {"merge-at-end", OPT_FLAG, &c.merge_at_end, "also write out/merged/, the adapter merged into the model", false},
        {"save-dtype", OPT_STRING, &save_dtype, "f32 | bf16 | f16: weights of out/model and out/merged (f32)", false},
        {"init", OPT_STRING, &init, "pretrained | random (random: pretraining with --method full --config)", false},
        {"config", OPT_STRING, &c.config_path, "config.json of the model to build with --init random", false},
        {"tokenizer", OPT_STRING, &c.tokenizer_dir, "folder with tokenizer.json (default: --model)", false},
        {"no-pack", OPT_FLAG, &no_pack, "one example per row, right-padded, instead of packing", false},
        {"long", OPT_STRING, &long_mode, "split | truncate examples longer than --seq-len (split)", false},
        {"skip-bad-lines", OPT_FLAG, &c.skip_bad_lines, "skip (and count) malformed data lines", false},
        {"log-every", OPT_INT, &log_every, "progress line every N steps when not on a terminal (10)", false},
    };
    size_t n_opts = sizeof opts / sizeof opts[0];
    int pr = cli_parse(argc, argv, opts, n_opts,
                       "usage: dorac train --model DIR --data FILE.jsonl --out DIR [options]\n\n"
                       "Fine-tunes with DoRA (default), LoRA or full fine-tuning; writes a PEFT adapter to OUT/adapter.");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
#define SEEN(name) cli_opt_seen(opts, n_opts, name)
    if (!strcmp(method, "dora")) c.method = DORAC_METHOD_DORA;
    else if (!strcmp(method, "lora")) c.method = DORAC_METHOD_LORA;
    else if (!strcmp(method, "full")) c.method = DORAC_METHOD_FULL;
    else return cli_usage_error("--method must be dora, lora or full");
    if (!strcmp(norm_grad, "detach")) c.norm_grad = DORAC_NORM_GRAD_DETACH;
    else if (!strcmp(norm_grad, "exact")) c.norm_grad = DORAC_NORM_GRAD_EXACT;
    else return cli_usage_error("--norm-grad must be detach or exact");
    int sch = dorac_schedule_parse(schedule);
    if (sch < 0) return cli_usage_error("--schedule must be linear, cosine or constant");
    c.schedule = (dorac_schedule)sch;
    if (!strcmp(long_mode, "split")) c.truncate = false;
    else if (!strcmp(long_mode, "truncate")) c.truncate = true;
    else return cli_usage_error("--long must be split or truncate");
    if (!strcmp(save_dtype, "f32")) c.save_dtype = DORAC_DTYPE_F32;
    else if (!strcmp(save_dtype, "bf16")) c.save_dtype = DORAC_DTYPE_BF16;
    else if (!strcmp(save_dtype, "f16")) c.save_dtype = DORAC_DTYPE_F16;
    else return cli_usage_error("--save-dtype must be f32, bf16 or f16");
    if (!strcmp(init, "random")) c.init_random = true;
    else if (strcmp(init, "pretrained")) return cli_usage_error("--init must be pretrained or random");
    /* contradictions are errors, never silently resolved */
    if (SEEN("epochs") && SEEN("steps")) return cli_usage_error("give --epochs or --steps, not both");
    if (c.init_random && !c.config_path) return cli_usage_error("--init random needs --config FILE");
    if (!c.init_random && c.config_path) return cli_usage_error("--config is only used with --init random");
    if (c.init_random && SEEN("model")) return cli_usage_error("--init random builds a new model: drop --model");
    if (c.init_random && c.method != DORAC_METHOD_FULL) return cli_usage_error("--init random needs --method full");
    if (c.method == DORAC_METHOD_FULL &&
        (SEEN("rank") || SEEN("alpha") || SEEN("rslora") || SEEN("targets") || SEEN("dropout") || SEEN("norm-grad")))
        return cli_usage_error("--rank, --alpha, --rslora, --targets, --dropout and --norm-grad configure adapters; --method full has none");
    if (c.method == DORAC_METHOD_LORA && SEEN("norm-grad")) return cli_usage_error("--norm-grad applies to --method dora only");
    if (c.merge_at_end && c.method == DORAC_METHOD_FULL) return cli_usage_error("--merge-at-end needs an adapter method");
    if (!c.data_path || !c.out_dir) return cli_usage_error("train needs --data and --out");
    if (!c.init_random && !c.model_dir) return cli_usage_error("train needs --model (or --init random --config FILE)");
    if (rank < 0 || rank > 65536 || threads < 0 || log_every < 1 || seed < 0)
        return cli_usage_error("--rank, --threads, --seed must be >= 0 and --log-every >= 1");
    if (SEEN("zero") && zero != 0 && zero != 1)
        return cli_usage_error("--zero must be 0 or 1 (ZeRO-1: sharded AdamW state); stages 2 and 3 are not implemented");
    c.zero_stage = (int)zero;
    if (SEEN("steps")) c.epochs = 0;
    c.rank = (int)rank;
    c.alpha = alpha >= 0 ? alpha : 2.0 * (double)rank;
    c.warmup = warmup;
    c.seed = (uint64_t)seed;
    c.pack = !no_pack;
#undef SEEN
    dorac_dist_env env;
    int erc = dorac_dist_env_read(&env);
    if (erc) return cli_fail(erc);
    if (nproc < 1 || nproc > 1024) return cli_usage_error("--nproc-per-node must be in [1, 1024]");
    if (nproc > 1) {
        if (env.world > 1)
            return cli_usage_error("--nproc-per-node starts its own processes: drop it under torchrun or mpirun");
        return cli_launch_local(argc, argv, (int)nproc);
    }
    char device[32];
    if (env.world > 1) {
        c.dist = &env;
        /* one GPU per process: the local rank picks it */
        if ((!c.device && dorac_cuda_available()) || (c.device && (!strcmp(c.device, "cuda") ||
                                                                   (!strcmp(c.device, "auto") && dorac_cuda_available())))) {
            snprintf(device, sizeof device, "cuda:%d", env.local_rank);
            c.device = device;
        }
    }
    dorac_set_num_threads((int)threads);
    progress_ctx pc = {.tty = isatty(fileno(stderr)) != 0, .quiet = env.rank != 0, .log_every = log_every,
                       .last_eval = NAN};
    dorac_train_callbacks cb = {&pc, on_step, on_note};
    dorac_train_result res;
    int rc = dorac_train(&c, &cb, &res);
    if (rc) {
        if (pc.tty) fputc('\n', stderr);
        if (env.world > 1) dorac_error_prefix(rc, "rank %d", env.rank);
        return cli_fail(rc);
    }
    if (env.rank != 0) return CLI_EXIT_OK;
    printf("trained %lld steps in %.1f s, %lld tokens; train loss %.4f -> %.4f", (long long)res.steps_done, res.seconds,
           (long long)res.tokens_seen, res.first_loss, res.last_loss);
    if (!isnan(res.eval_loss_after)) printf("; eval loss %.4f -> %.4f", res.eval_loss_before, res.eval_loss_after);
    printf("; device %s, peak memory %.2f GiB\n", res.device ? res.device : "?", (double)res.peak_bytes / (1u << 30));
    return CLI_EXIT_OK;
}
