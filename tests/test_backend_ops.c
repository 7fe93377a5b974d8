/*
** test_backend_ops.c — every entry of the backend struct on the device
** backend (CUDA) against the fp32 CPU backend, the oracle, as ggml's
** test-backend-ops does.
**
** usage: test_backend_ops [OP...]   (OP: only that op's cases, e.g. gemm;
** the backend-wide checks run regardless)
**
** Each op case names its buffers (role, shape, how they start) and how to
** run the op on a backend. The harness builds the inputs on the host from a
** fixed seed, rounds every value to the type the device tensor will have
** (so both backends see identical inputs), runs the op on the CPU (all
** tensors F32) and on the device, downloads what the op wrote and compares
** by NMSE = sum((dev - cpu)^2) / sum(cpu^2), one line per output buffer:
**
**     op  config  shape  buffer  nmse  threshold  OK|FAIL
**
** Every case runs in two configurations of the device's tensor types:
**   f32   every float tensor F32: the kernels' logic at full precision;
**   prod  the device's own policy (backend.h): activations act_type,
**         frozen weights weight_type, parameters and saved statistics
**         param_type (for CUDA: BF16, BF16, F32).
** prod is skipped for a case whose tensors it would leave all F32.
**
** Beyond the values, each case checks that the op left alone everything it
** was not meant to write: the columns of a strided view outside the view
** (canaries, as in ggml) and every input buffer. Some cases also check the
** zero pattern of dropout exactly and run the op twice on the device for
** bit-identical results (determinism). Transfers, fill and copy are checked
** exactly against host conversions, and some error paths for the status
** they return.
**
** Thresholds (NMSE), from the unit roundoff u of each type (round to
** nearest: relative error <= u per rounding, uniformly spread, so one
** rounding adds an NMSE of at most u^2/3 and typically about half that):
**   fp32  u = 2^-24 ≈ 6e-8,  one rounding ≲ 1.2e-15
**   bf16  u = 2^-8  ≈ 3.9e-3, one rounding ≲ 5.1e-6 (≈ 3e-6 measured on
**         these cases' data). (bf16 keeps 8 significant bits, so u is
**         2^-8, not 2^-9.)
** f32 configuration: the CPU and the device compute the same fp32 formula
** in different orders, so the NMSE is ~1e-14 or less; the limits sit well
** above that (room for fast-math intrinsics and other summation trees) and
** below one bf16 rounding, so a kernel that quietly goes through bf16
** fails:
**   T32_ELEM 1e-7  element-wise ops: a few fp32 roundings per element.
**   T32_RED  1e-6  reductions (norms, sums, cross-entropy) over up to 5e4
**                  terms: relative error <= sqrt(n) u ≈ 1.4e-5 per sum,
**                  NMSE ≲ 2e-10 worst case.
**   T32_GEMM 1e-6  lets a GEMM use TF32 (u = 2^-11; two operand roundings
**                  give NMSE ≈ 7e-8) but not BF16 operands (≈ 4e-6):
**                  backend.h keeps parameter arithmetic at least fp32.
**   T32_ATTN 1e-5  attention: exp/log and two chained products over T keys;
**                  loose enough for a flash kernel that keeps P in TF32.
** prod configuration: inputs are identical, so the error is the device's
** own roundings:
**   TB_F32   2e-5  an F32 output (parameter, saved statistic) computed
**                  from bf16 inputs: no output rounding, room for a few
**                  bf16 intermediates (each ≈ 3e-6).
**   TB_ONE   5e-5  a bf16 output that is one rounding of an fp32 result:
**                  10x the u^2/3 bound.
**   TB_GEMM  1e-4  a GEMM whose F32 operands are converted to bf16 (3e-6
**                  each) and whose output may be bf16 (another 3e-6).
**   TB_ATTN_FWD 2e-4  attention out: P rounded to bf16 for P·V plus the
**                  output rounding (≈ 6e-6), 30x headroom.
**   TB_ATTN_BWD 5e-4  dq/dk/dv: dS = P ⊙ (dP − D) cancels, and P, dS are
**                  rounded before their GEMMs (≈ 1e-5), 50x headroom.
**   exact        0  transfers, copy, fill, embedding lookup (a gather),
**                  dropout's zero pattern.
**
** Without a CUDA device (or a build without CUDA) the test prints
** "skipped: no CUDA device" and returns 77. DORAC_TEST_DEVICE=cpu runs the
** whole harness with a second fp32 CPU backend as the device, which must
** match bit for bit: a check of the harness itself on machines with no GPU.
*/
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "test.h"

/* Every entry of the struct has a case below. If this fires, an entry was
** added to backend.h: add its test case here, then the count. */
_Static_assert((sizeof(dorac_backend) - offsetof(dorac_backend, destroy)) / sizeof(void (*)(void)) == 47,
               "dorac_backend gained or lost an entry: update test_backend_ops.c");

/* ---------------------------------------------------------------------- */
/* thresholds (see the header comment for their derivation)               */
/* ---------------------------------------------------------------------- */

#define T32_ELEM 1e-7
#define T32_RED 1e-6
#define T32_GEMM 1e-6
#define T32_ATTN 1e-5
#define TB_F32 2e-5
#define TB_ONE 5e-5
#define TB_GEMM 1e-4
#define TB_ATTN_FWD 2e-4
#define TB_ATTN_BWD 5e-4

typedef enum op_class { CLS_EXACT, CLS_ELEM, CLS_RED, CLS_GEMM, CLS_ATTN_FWD, CLS_ATTN_BWD } op_class;

/* all_f32: every float tensor of the case is F32 on the device. */
static double threshold(op_class cls, bool all_f32, dorac_dtype out_type) {
    if (cls == CLS_EXACT) return 0.0;
    if (all_f32) {
        switch (cls) {
        case CLS_ELEM: return T32_ELEM;
        case CLS_RED: return T32_RED;
        case CLS_GEMM: return T32_GEMM;
        default: return T32_ATTN;
        }
    }
    if (out_type == DORAC_DTYPE_F32) {
        switch (cls) {
        case CLS_GEMM: return TB_GEMM;
        case CLS_ATTN_BWD: return TB_ATTN_BWD;
        default: return TB_F32;
        }
    }
    switch (cls) {
    case CLS_GEMM: return TB_GEMM;
    case CLS_ATTN_FWD: return TB_ATTN_FWD;
    case CLS_ATTN_BWD: return TB_ATTN_BWD;
    default: return TB_ONE;
    }
}

/* ---------------------------------------------------------------------- */
/* case description                                                       */
/* ---------------------------------------------------------------------- */

/* What a tensor is for, which decides its device type in the prod config. */
typedef enum role { ROLE_ACT, ROLE_WEIGHT, ROLE_PARAM, ROLE_STAT, ROLE_INDEX } role;

typedef enum config { CFG_F32, CFG_PROD } config;
static const char *config_name[] = {"f32", "prod"};

typedef enum init_kind {
    INIT_UNIFORM, /* lo + (hi - lo) * u */
    INIT_NONZERO, /* ±(lo + (hi - lo) * u): never 0 (dropout's zero pattern) */
    INIT_HOST,    /* host[] */
    INIT_INDEX,   /* ids[] (I32) */
    INIT_DERIVED, /* written by the case's prep on the CPU, then shared */
    INIT_ABSENT   /* not allocated: data NULL */
} init_kind;

#define MAX_BUFS 10

typedef struct buf_spec {
    const char *name;
    role role;
    int64_t rows, cols;      /* the allocation; ops get views of it */
    init_kind init;
    double lo, hi;           /* INIT_UNIFORM / INIT_NONZERO range */
    const double *host;      /* INIT_HOST: rows * cols values */
    const int32_t *ids;      /* INIT_INDEX: rows * cols values */
    int64_t out_col0, out_cols; /* columns the op writes, compared; out_cols 0: input */
    bool nan_out;            /* the written columns start as NaN: the op must overwrite them */
    op_class cls;            /* for the threshold */
} buf_spec;

typedef struct op_case op_case;
/* Runs the op on be over t[], the case's buffers as full contiguous tensors
** (views are made inside). */
typedef int (*op_fn)(dorac_backend *be, const dorac_tensor *t, const op_case *c);

struct op_case {
    const char *op;
    char shape[112];
    int n_bufs;
    buf_spec b[MAX_BUFS];
    op_fn prep;         /* optional, run on the CPU: fills INIT_DERIVED buffers */
    op_fn run;
    bool prod_only;     /* the f32 config repeats another case's */
    bool zero_pattern;  /* outputs must be 0 exactly where the CPU's are */
    bool determinism;   /* run twice on the device: outputs bit-identical */
    /* op arguments, as each op needs them */
    int64_t M, N, K, R, C, V, B, T, H, KV, D, past, rank, steps, step0, row0;
    int64_t off;        /* attention: first column of q in the qkv buffer */
    double alpha, beta, p, eps, scale, floor_, lr, wd, gscale;
    bool ta, tb, accumulate, inverse, alias;
};

static uint64_t case_counter;

static op_case new_case(const char *op, op_fn run) {
    op_case c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.run = run;
    return c;
}

/* An input the op only reads, uniform in [lo, hi). */
static buf_spec input(const char *name, role r, int64_t rows, int64_t cols, double lo, double hi) {
    return (buf_spec){.name = name, .role = r, .rows = rows, .cols = cols, .init = INIT_UNIFORM, .lo = lo, .hi = hi};
}

/* A buffer the op writes in columns [col0, col0 + n) of every row. It starts
** uniform in [-1, 1) (for ops that accumulate or scale it), or NaN in those
** columns when overwrite is set (the op must not read them). */
static buf_spec output(const char *name, role r, int64_t rows, int64_t cols, int64_t col0, int64_t n,
                       op_class cls, bool overwrite) {
    return (buf_spec){.name = name, .role = r, .rows = rows, .cols = cols, .init = INIT_UNIFORM, .lo = -1, .hi = 1,
                      .out_col0 = col0, .out_cols = n, .nan_out = overwrite, .cls = cls};
}

static buf_spec index_buf(const char *name, const int32_t *ids, int64_t n) {
    return (buf_spec){.name = name, .role = ROLE_INDEX, .rows = 1, .cols = n, .init = INIT_INDEX, .ids = ids};
}

static buf_spec host_buf(const char *name, role r, int64_t rows, int64_t cols, const double *host) {
    return (buf_spec){.name = name, .role = r, .rows = rows, .cols = cols, .init = INIT_HOST, .host = host};
}

static buf_spec derived(const char *name, role r, int64_t rows, int64_t cols) {
    return (buf_spec){.name = name, .role = r, .rows = rows, .cols = cols, .init = INIT_DERIVED};
}

static buf_spec absent(const char *name, role r) {
    return (buf_spec){.name = name, .role = r, .init = INIT_ABSENT};
}

static void add(op_case *c, buf_spec b) {
    if (c->n_bufs < MAX_BUFS) c->b[c->n_bufs++] = b;
}

/* Columns [col0, col0 + cols) of t, same rows and ld. */
static dorac_tensor cols_of(const dorac_tensor *t, int64_t col0, int64_t cols) {
    dorac_tensor v = *t;
    if (t->data) v.data = (char *)t->data + (size_t)col0 * dorac_dtype_size(t->type);
    v.cols = cols;
    return v;
}

/* ---------------------------------------------------------------------- */
/* the harness                                                            */
/* ---------------------------------------------------------------------- */

static dorac_dtype type_for(const dorac_backend *dev, config cfg, role r) {
    if (r == ROLE_INDEX) return DORAC_DTYPE_I32;
    if (cfg == CFG_F32) return DORAC_DTYPE_F32;
    switch (r) {
    case ROLE_ACT: return dev->act_type;
    case ROLE_WEIGHT: return dev->weight_type;
    default: return dev->param_type;
    }
}

/* x as the device will hold it (and as an exact float for the CPU). */
static float round_to(dorac_dtype type, double x) {
    float f = (float)x;
    if (type == DORAC_DTYPE_BF16) return dorac_bf16_to_f32(dorac_f32_to_bf16(f));
    if (type == DORAC_DTYPE_F16) return dorac_f16_to_f32(dorac_f32_to_f16(f));
    return f;
}

static bool same_value(float a, float b) {
    return a == b || (a != a && b != b);
}

/* NMSE of got against want over columns [col0, col0 + n) of a rows x ld
** array; INFINITY when a NaN or Inf appears in one and not the other. */
static double nmse(const float *got, const float *want, int64_t rows, int64_t ld, int64_t col0, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = col0; j < col0 + n; j++) {
            double a = got[i * ld + j], b = want[i * ld + j];
            if (a == b && isfinite(b)) {
                den += b * b;
                continue;
            }
            if (!isfinite(a) || !isfinite(b)) {
                if (same_value((float)a, (float)b)) continue;
                return INFINITY;
            }
            num += (a - b) * (a - b);
            den += b * b;
        }
    if (num == 0.0) return 0.0;
    return den > 0.0 ? num / den : INFINITY;
}

static int n_lines, n_failed_lines;

static void record(bool ok) {
    test_checks++;
    n_lines++;
    if (!ok) test_failures++, n_failed_lines++;
}

static void print_line(const op_case *c, config cfg, const char *what, double err, double thr, bool ok) {
    printf("%-24s %-4s %-46s %-10s nmse %9.3e  thr %7.1e  %s\n", c->op, config_name[cfg], c->shape, what, err, thr,
           ok ? "OK" : "FAIL");
    fflush(stdout);
    record(ok);
}

static void print_note(const op_case *c, config cfg, const char *what, const char *msg, bool ok) {
    printf("%-24s %-4s %-46s %-10s %s  %s\n", c->op, config_name[cfg], c->shape, what, msg, ok ? "OK" : "FAIL");
    fflush(stdout);
    record(ok);
}

static float *download_f32(dorac_backend *be, const dorac_tensor *t) {
    size_t n = (size_t)(t->rows * t->cols);
    float *h = malloc((n ? n : 1) * sizeof *h);
    int rc = be->download(be, h, DORAC_DTYPE_F32, t);
    if (rc != DORAC_OK) {
        fprintf(stderr, "download %s: %s\n", be->name, dorac_last_error());
        for (size_t i = 0; i < n; i++) h[i] = NAN;
    }
    return h;
}

/* The state of one configuration of one case on both backends. */
typedef struct run_state {
    dorac_tensor cpu[MAX_BUFS], dev[MAX_BUFS];
    dorac_dtype type[MAX_BUFS]; /* the device tensor's type */
    float *init[MAX_BUFS];      /* what both start from, exact in type[i] */
} run_state;

static int upload_init(dorac_backend *be, const dorac_tensor *t, const buf_spec *b, const float *init) {
    if (b->init == INIT_ABSENT) return DORAC_OK;
    if (b->init == INIT_INDEX) return be->upload(be, t, b->ids, DORAC_DTYPE_I32);
    return be->upload(be, t, init, DORAC_DTYPE_F32);
}

static void fill_init(const op_case *c, int i, dorac_dtype type, float *dst) {
    const buf_spec *b = &c->b[i];
    for (int64_t r = 0; r < b->rows; r++)
        for (int64_t j = 0; j < b->cols; j++) {
            size_t k = (size_t)(r * b->cols + j);
            double u = dorac_rng_uniform_f64(case_counter, (uint64_t)i, k), x;
            if (b->init == INIT_HOST) x = b->host[k];
            else if (b->init == INIT_NONZERO)
                x = (dorac_rng_uniform_f64(case_counter, 100 + (uint64_t)i, k) < 0.5 ? -1 : 1) * (b->lo + (b->hi - b->lo) * u);
            else x = b->lo + (b->hi - b->lo) * u;
            if (b->nan_out && j >= b->out_col0 && j < b->out_col0 + b->out_cols) x = NAN;
            dst[k] = round_to(type, x);
        }
}

static void run_config(dorac_backend *cpu, dorac_backend *dev, const op_case *c, config cfg) {
    run_state s;
    memset(&s, 0, sizeof s);
    float *first[MAX_BUFS] = {0}; /* the device's outputs, for the determinism check */
    bool all_f32 = true, setup_ok = true;
    int rc_cpu, rc_dev;
    for (int i = 0; i < c->n_bufs; i++) {
        const buf_spec *b = &c->b[i];
        dorac_dtype t = type_for(dev, cfg, b->role);
        s.type[i] = t;
        if (b->init == INIT_ABSENT) {
            s.cpu[i] = dorac_tensor_none(b->role == ROLE_INDEX ? DORAC_DTYPE_I32 : DORAC_DTYPE_F32);
            s.dev[i] = dorac_tensor_none(t);
            continue;
        }
        if (b->role != ROLE_INDEX && t != DORAC_DTYPE_F32) all_f32 = false;
        dorac_dtype ct = b->role == ROLE_INDEX ? DORAC_DTYPE_I32 : DORAC_DTYPE_F32;
        if (dorac_tensor_alloc(cpu, &s.cpu[i], ct, b->rows, b->cols, b->name) ||
            dorac_tensor_alloc(dev, &s.dev[i], t, b->rows, b->cols, b->name)) {
            fprintf(stderr, "%s: allocating %s: %s\n", c->op, b->name, dorac_last_error());
            setup_ok = false;
            continue;
        }
        size_t n = (size_t)(b->rows * b->cols);
        s.init[i] = malloc((n ? n : 1) * sizeof(float));
        if (b->init != INIT_INDEX) fill_init(c, i, t, s.init[i]);
        if (upload_init(cpu, &s.cpu[i], b, s.init[i]) || upload_init(dev, &s.dev[i], b, s.init[i])) {
            fprintf(stderr, "%s: uploading %s: %s\n", c->op, b->name, dorac_last_error());
            setup_ok = false;
        }
    }
    /* derived inputs: computed once on the CPU, rounded to the device type,
    ** then given to both */
    if (setup_ok && c->prep) {
        int rc = c->prep(cpu, s.cpu, c);
        if (rc != DORAC_OK) {
            fprintf(stderr, "%s: prep: %s\n", c->op, dorac_last_error());
            setup_ok = false;
        }
        for (int i = 0; setup_ok && i < c->n_bufs; i++) {
            if (c->b[i].init != INIT_DERIVED) continue;
            float *h = download_f32(cpu, &s.cpu[i]);
            size_t n = (size_t)(c->b[i].rows * c->b[i].cols);
            for (size_t k = 0; k < n; k++) s.init[i][k] = round_to(s.type[i], h[k]);
            free(h);
            if (upload_init(cpu, &s.cpu[i], &c->b[i], s.init[i]) || upload_init(dev, &s.dev[i], &c->b[i], s.init[i]))
                setup_ok = false;
        }
    }
    if (!setup_ok) {
        print_note(c, cfg, "setup", dorac_last_error(), false);
        goto done;
    }

    rc_cpu = c->run(cpu, s.cpu, c);
    if (rc_cpu != DORAC_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "cpu oracle failed: %s", dorac_last_error());
        print_note(c, cfg, "run", msg, false);
        goto done;
    }
    rc_dev = c->run(dev, s.dev, c);
    if (rc_dev == DORAC_OK && dev->synchronize) rc_dev = dev->synchronize(dev);
    if (rc_dev != DORAC_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s: %s", dorac_status_name(rc_dev), dorac_last_error());
        print_note(c, cfg, "run", msg, false);
        goto done;
    }

    for (int i = 0; i < c->n_bufs; i++) {
        const buf_spec *b = &c->b[i];
        if (b->init == INIT_ABSENT || b->role == ROLE_INDEX) continue;
        float *got = download_f32(dev, &s.dev[i]);
        if (b->out_cols == 0) {
            /* an input: must come back as it went in */
            size_t n = (size_t)(b->rows * b->cols), changed = 0;
            for (size_t k = 0; k < n; k++) changed += !same_value(got[k], s.init[i][k]);
            if (changed) {
                char msg[96];
                snprintf(msg, sizeof msg, "input modified in %zu elements", changed);
                print_note(c, cfg, b->name, msg, false);
            } else {
                test_checks++;
            }
            free(got);
            continue;
        }
        float *want = download_f32(cpu, &s.cpu[i]);
        double err = nmse(got, want, b->rows, b->cols, b->out_col0, b->out_cols);
        double thr = threshold(b->cls, all_f32, s.type[i]);
        print_line(c, cfg, b->name, err, thr, err <= thr);
        /* canaries: the columns outside the written ones are untouched */
        size_t changed = 0;
        for (int64_t r = 0; r < b->rows; r++)
            for (int64_t j = 0; j < b->cols; j++)
                if ((j < b->out_col0 || j >= b->out_col0 + b->out_cols) &&
                    !same_value(got[r * b->cols + j], s.init[i][r * b->cols + j]))
                    changed++;
        if (changed) {
            char msg[96];
            snprintf(msg, sizeof msg, "%zu elements outside the view changed", changed);
            print_note(c, cfg, b->name, msg, false);
        }
        if (c->zero_pattern) {
            size_t mismatched = 0, zeros = 0;
            for (int64_t r = 0; r < b->rows; r++)
                for (int64_t j = b->out_col0; j < b->out_col0 + b->out_cols; j++) {
                    float g = got[r * b->cols + j], w = want[r * b->cols + j];
                    mismatched += (g == 0.0f) != (w == 0.0f);
                    zeros += w == 0.0f;
                }
            char msg[96];
            snprintf(msg, sizeof msg, "zero pattern: %zu of %zu cpu zeros, %zu mismatched", zeros,
                     (size_t)(b->rows * b->out_cols), mismatched);
            print_note(c, cfg, b->name, msg, mismatched == 0);
        }
        free(want);
        first[i] = got;
    }

    if (c->determinism) {
        bool ok = true;
        for (int i = 0; i < c->n_bufs; i++)
            if (upload_init(dev, &s.dev[i], &c->b[i], s.init[i]) != DORAC_OK) ok = false;
        int rc = ok ? c->run(dev, s.dev, c) : DORAC_E_BACKEND;
        if (rc == DORAC_OK && dev->synchronize) rc = dev->synchronize(dev);
        size_t differ = 0;
        for (int i = 0; rc == DORAC_OK && i < c->n_bufs; i++) {
            if (!first[i]) continue;
            float *again = download_f32(dev, &s.dev[i]);
            size_t n = (size_t)(c->b[i].rows * c->b[i].cols);
            for (size_t k = 0; k < n; k++) differ += memcmp(&again[k], &first[i][k], sizeof(float)) != 0;
            free(again);
        }
        char msg[96];
        if (rc != DORAC_OK) snprintf(msg, sizeof msg, "second run failed: %s", dorac_last_error());
        else snprintf(msg, sizeof msg, "second run: %zu elements differ", differ);
        print_note(c, cfg, "determinism", msg, rc == DORAC_OK && differ == 0);
    }

done:
    for (int i = 0; i < c->n_bufs; i++) {
        free(first[i]);
        dorac_tensor_free(cpu, &s.cpu[i]);
        dorac_tensor_free(dev, &s.dev[i]);
        free(s.init[i]);
    }
}

/* Runs c in the f32 and prod configurations (prod only where it changes
** some tensor's type). */
/* Ops named on the command line (all when none): a second run at another
** kernel setting can repeat just the cases it affects. */
static int n_only;
static char **only_ops;

static bool op_selected(const char *op) {
    for (int i = 0; i < n_only; i++)
        if (!strcmp(only_ops[i], op)) return true;
    return n_only == 0;
}

static void run_case(dorac_backend *cpu, dorac_backend *dev, const op_case *c) {
    if (!op_selected(c->op)) return;
    case_counter++;
    if (!c->prod_only) run_config(cpu, dev, c, CFG_F32);
    bool prod_differs = false;
    for (int i = 0; i < c->n_bufs; i++)
        if (c->b[i].init != INIT_ABSENT && type_for(dev, CFG_PROD, c->b[i].role) != type_for(dev, CFG_F32, c->b[i].role))
            prod_differs = true;
    if (prod_differs) run_config(cpu, dev, c, CFG_PROD);
}

/* ---------------------------------------------------------------------- */
/* gemm                                                                   */
/* ---------------------------------------------------------------------- */

/* A (ar, ac + 3) viewed at column 1, B (br, bc + 2) at column 0, C (M, N + 2)
** at column 1: every operand strided, two of them offset. */
static int run_gemm(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    int64_t ac = c->ta ? c->M : c->K, bc = c->tb ? c->K : c->N;
    dorac_tensor A = cols_of(&t[0], 1, ac), B = cols_of(&t[1], 0, bc), C = cols_of(&t[2], 1, c->N);
    return be->gemm(be, &C, &A, c->ta, &B, c->tb, c->alpha, c->beta);
}

static void gemm_case(dorac_backend *cpu, dorac_backend *dev, int64_t M, int64_t N, int64_t K, bool ta, bool tb,
                      double beta, role ra, role rb, role rc, bool prod_only) {
    static const char *role_name[] = {"act", "weight", "param", "stat", "index"};
    op_case c = new_case("gemm", run_gemm);
    c.M = M, c.N = N, c.K = K, c.ta = ta, c.tb = tb, c.alpha = 0.7, c.beta = beta, c.prod_only = prod_only;
    int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    snprintf(c.shape, sizeof c.shape, "M%lld N%lld K%lld %s%s b%g %s.%s>%s", (long long)M, (long long)N, (long long)K,
             ta ? "T" : "N", tb ? "T" : "N", beta, role_name[ra], role_name[rb], role_name[rc]);
    add(&c, input("A", ra, ar, ac + 3, -1, 1));
    add(&c, input("B", rb, br, bc + 2, -1, 1));
    add(&c, output("C", rc, M, N + 2, 1, N, CLS_GEMM, beta == 0.0));
    run_case(cpu, dev, &c);
}

/* gemm with B = A (the same view), transposed: C (r,r) = alpha A A^T + beta C */
static int run_gram(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor A = cols_of(&t[0], 1, c->K), C = cols_of(&t[1], 1, c->M);
    return be->gemm(be, &C, &A, false, &A, true, c->alpha, c->beta);
}

static void gram_case(dorac_backend *cpu, dorac_backend *dev, int64_t r, int64_t K, double beta) {
    op_case c = new_case("gemm", run_gram);
    c.M = c.N = r, c.K = K, c.alpha = 0.7, c.beta = beta, c.determinism = r == 16 && beta == 0.0;
    snprintf(c.shape, sizeof c.shape, "A A^T r%lld K%lld b%g param", (long long)r, (long long)K, beta);
    add(&c, input("A", ROLE_PARAM, r, K + 3, -1, 1));
    add(&c, output("C", ROLE_PARAM, r, r + 2, 1, r, CLS_GEMM, beta == 0.0));
    run_case(cpu, dev, &c);
}

/* P = alpha W0 A^T + beta P at the model's sizes: A (M, K + 4) at column 0
** (rows aligned, as a weight's are), B (n, K + 1) at column 0, C (M, n + 2)
** at column 1. */
static int run_skinny(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor A = cols_of(&t[0], 0, c->K), B = cols_of(&t[1], 0, c->K), C = cols_of(&t[2], 1, c->N);
    return be->gemm(be, &C, &A, false, &B, true, c->alpha, c->beta);
}

static void skinny_case(dorac_backend *cpu, dorac_backend *dev, int64_t M, int64_t n, int64_t K, double beta) {
    op_case c = new_case("gemm", run_skinny);
    c.M = M, c.N = n, c.K = K, c.alpha = 0.7, c.beta = beta, c.prod_only = true;
    c.determinism = n == 16 && beta == 0.0;
    snprintf(c.shape, sizeof c.shape, "W0 A^T M%lld n%lld K%lld b%g weight.param>param", (long long)M, (long long)n,
             (long long)K, beta);
    add(&c, input("A", ROLE_WEIGHT, M, K + 4, -1, 1));
    add(&c, input("B", ROLE_PARAM, n, K + 1, -1, 1));
    add(&c, output("C", ROLE_PARAM, M, n + 2, 1, n, CLS_GEMM, beta == 0.0));
    run_case(cpu, dev, &c);
}

/* A product with K <= 32 into an activation, the adapter's dx += du A: A
** (M, K + 8) and C (M, N + 8) viewed at column 8 (rows 16-byte aligned
** where K and N are multiples of 8), what the device's one-pass
** tensor-core path (cuda_lowrank.cu) needs; B (K, N + 2) or, transposed,
** (N, K + 2) at column 0. */
static int run_lowrank_gemm(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor A = cols_of(&t[0], 8, c->K), B = cols_of(&t[1], 0, c->tb ? c->K : c->N);
    dorac_tensor C = cols_of(&t[2], 8, c->N);
    return be->gemm(be, &C, &A, false, &B, c->tb, c->alpha, c->beta);
}

static void lowrank_gemm_case(dorac_backend *cpu, dorac_backend *dev, int64_t M, int64_t N, int64_t K, bool tb,
                              double beta) {
    op_case c = new_case("gemm", run_lowrank_gemm);
    c.M = M, c.N = N, c.K = K, c.tb = tb, c.alpha = 0.7, c.beta = beta;
    c.determinism = K == 16 && beta == 1.0 && !tb;
    snprintf(c.shape, sizeof c.shape, "low rank M%lld N%lld K%lld N%s b%g act.param>act", (long long)M,
             (long long)N, (long long)K, tb ? "T" : "N", beta);
    add(&c, input("A", ROLE_ACT, M, K + 8, -1, 1));
    add(&c, tb ? input("B", ROLE_PARAM, N, K + 2, -1, 1) : input("B", ROLE_PARAM, K, N + 2, -1, 1));
    add(&c, output("C", ROLE_ACT, M, N + 8, 8, N, CLS_GEMM, beta == 0.0));
    run_case(cpu, dev, &c);
}

static void gemm_cases(dorac_backend *cpu, dorac_backend *dev) {
    /* the type mixes the model uses, as (A, B -> C) roles:
    **   act x weight -> act    y = x W^T, dx = dy W
    **   act x param  -> act    u = x A^T, dx += du A
    **   act x act    -> param  dA += du^T x, dB += dz^T u
    **   weight x param -> param   P = W0 A^T */
    static const role mixes[][3] = {{ROLE_ACT, ROLE_WEIGHT, ROLE_ACT},
                                    {ROLE_ACT, ROLE_PARAM, ROLE_ACT},
                                    {ROLE_ACT, ROLE_ACT, ROLE_PARAM},
                                    {ROLE_WEIGHT, ROLE_PARAM, ROLE_PARAM}};
    static const int64_t shapes[][3] = {{37, 29, 64}, {1, 45, 33}, {64, 96, 128}};
    for (int s = 0; s < 3; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int b = 0; b < 2; b++) {
                    double beta = b ? 0.5 : 0.0;
                    const int64_t *sh = shapes[s];
                    /* first mix in both configs; the others change only prod */
                    for (int mx = 0; mx < (s == 2 ? 1 : 4); mx++)
                        gemm_case(cpu, dev, sh[0], sh[1], sh[2], ta, tb, beta, mixes[mx][0], mixes[mx][1],
                                  mixes[mx][2], mx > 0);
                }
    /* a larger product, where cuBLAS picks other kernels */
    gemm_case(cpu, dev, 256, 192, 320, false, true, 0.0, ROLE_ACT, ROLE_WEIGHT, ROLE_ACT, false);
    gemm_case(cpu, dev, 320, 8, 256, true, false, 1.0, ROLE_ACT, ROLE_ACT, ROLE_PARAM, true);
    /* one size of at least 128 that is not a multiple of 8 (GPT-2's
    ** vocabulary, 50257): the device runs the product as two, a
    ** multiple-of-64 part and the rest (cuda_gemm.cu); N, M, K in turn, then
    ** all three, every transpose, into BF16 and F32 */
    static const int64_t odd[][3] = {{64, 203, 96}, {131, 72, 64}, {72, 64, 1035}, {257, 1001, 771}};
    for (int s = 0; s < 4; s++)
        for (int t = 0; t < 4; t++) {
            bool ta = t & 1, tb = t >> 1;
            gemm_case(cpu, dev, odd[s][0], odd[s][1], odd[s][2], ta, tb, t == 1 || t == 2 ? 0.5 : 0.0, ROLE_ACT,
                      ROLE_WEIGHT, ROLE_ACT, false);
            gemm_case(cpu, dev, odd[s][0], odd[s][1], odd[s][2], ta, tb, t == 0 ? 1.0 : 0.0, ROLE_ACT, ROLE_ACT,
                      ROLE_PARAM, true);
        }
    /* A A^T of one F32 view (DoRA's G) */
    static const int64_t grams[][2] = {{4, 64}, {16, 2048}, {7, 1000}, {32, 300}, {33, 40}};
    for (int g = 0; g < 5; g++)
        for (int b = 0; b < 2; b++) gram_case(cpu, dev, grams[g][0], grams[g][1], b ? 0.5 : 0.0);
    /* W0 A^T with at most 32 rows of A (DoRA's P): ranks 5 to 32, K not a
    ** multiple of 256, short and tall W0 */
    static const int64_t skinny[][3] = {{2048, 16, 2048}, {512, 16, 4096}, {300, 8, 1000}, {100, 32, 700},
                                        {9000, 5, 64}, {67, 24, 2050}};
    for (int k = 0; k < 6; k++)
        for (int b = 0; b < 2; b++) skinny_case(cpu, dev, skinny[k][0], skinny[k][1], skinny[k][2], b ? 0.5 : 0.0);
    /* K <= 32 into BF16 activations: row tails (M not a multiple of 16),
    ** column tails (N not a multiple of 64), r up to 32 with a partial
    ** second 16-wide step, a wide C whose warps loop over more tiles than
    ** their ring holds (2053 x 8192); N or K not a multiple of 8 take the
    ** cuBLAS path */
    static const int64_t lowrank[][3] = {{37, 64, 16}, {300, 130, 4}, {1030, 2056, 16}, {257, 520, 24},
                                         {513, 72, 32}, {100, 200, 8}, {64, 96, 7},  {2053, 8192, 16}};
    for (int k = 0; k < 8; k++)
        for (int v = 0; v < 3; v++)
            lowrank_gemm_case(cpu, dev, lowrank[k][0], lowrank[k][1], lowrank[k][2], v == 1, v == 0 ? 1.0 : v == 1 ? 0.0 : 0.5);
    /* K = 0: C = beta C */
    for (int b = 0; b < 2; b++) gemm_case(cpu, dev, 5, 7, 0, false, false, b ? 0.5 : 0.0, ROLE_ACT, ROLE_ACT, ROLE_ACT, false);
}

/* ---------------------------------------------------------------------- */
/* element-wise and reductions                                            */
/* ---------------------------------------------------------------------- */

/* X (R, C + 3) at column 1, out (R, C + 2) at column 1 */
static int run_axpby(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor X = cols_of(&t[0], 1, c->C), out = cols_of(&t[1], 1, c->C);
    return be->axpby(be, &out, &X, c->alpha, c->beta);
}

static void axpby_cases(dorac_backend *cpu, dorac_backend *dev) {
    for (int r = 0; r < 2; r++)
        for (int b = 0; b < 2; b++) {
            role ro = r ? ROLE_PARAM : ROLE_ACT;
            op_case c = new_case("axpby", run_axpby);
            c.R = 37, c.C = 64, c.alpha = 0.7, c.beta = b ? 1.3 : 0.0;
            snprintf(c.shape, sizeof c.shape, "(%lld,%lld) a%g b%g %s", (long long)c.R, (long long)c.C, c.alpha, c.beta,
                     r ? "param" : "act");
            add(&c, input("X", ro, c.R, c.C + 3, -1, 1));
            add(&c, output("out", ro, c.R, c.C + 2, 1, c.C, CLS_ELEM, c.beta == 0.0));
            run_case(cpu, dev, &c);
        }
}

/* W (R, C + 3) at column 0; out (1, R) */
static int run_row_sumsq(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor W = cols_of(&t[0], 0, c->C);
    return be->row_sumsq(be, &t[1], &W);
}

static void row_sumsq_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{96, 1000}, {1, 64}, {300, 7}};
    for (int s = 0; s < 3; s++)
        for (int r = 0; r < 2; r++) {
            op_case c = new_case("row_sumsq", run_row_sumsq);
            c.R = shapes[s][0], c.C = shapes[s][1];
            snprintf(c.shape, sizeof c.shape, "W(%lld,%lld) %s", (long long)c.R, (long long)c.C, r ? "param" : "weight");
            add(&c, input("W", r ? ROLE_PARAM : ROLE_WEIGHT, c.R, c.C + 3, -1, 1));
            add(&c, output("out", ROLE_PARAM, 1, c.R, 0, c.R, CLS_RED, true));
            run_case(cpu, dev, &c);
        }
}

/* X (R, C + 5) at column 2; out (1, C + 2) at column 1 */
static int run_col_sum(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor X = cols_of(&t[0], 2, c->C), out = cols_of(&t[1], 1, c->C);
    return be->col_sum(be, &out, &X, c->alpha, c->beta);
}

static void col_sum_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{300, 96}, {1, 64}, {4096, 33}};
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 2; b++) {
            op_case c = new_case("col_sum", run_col_sum);
            c.R = shapes[s][0], c.C = shapes[s][1], c.alpha = b ? 0.5 : 1.0, c.beta = b ? 1.0 : 0.0;
            c.determinism = s != 1;
            snprintf(c.shape, sizeof c.shape, "X(%lld,%lld) a%g b%g", (long long)c.R, (long long)c.C, c.alpha, c.beta);
            add(&c, input("X", ROLE_ACT, c.R, c.C + 5, -1, 1));
            add(&c, output("out", ROLE_PARAM, 1, c.C + 2, 1, c.C, CLS_RED, c.beta == 0.0));
            run_case(cpu, dev, &c);
        }
}

/* Y (R, C + 3) at column 1, in place; scale, bias (1, C) or absent */
static int run_scale_cols(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor Y = cols_of(&t[0], 1, c->C);
    return be->scale_cols_add_bias(be, &Y, &t[1], &t[2]);
}

static void scale_cols_cases(dorac_backend *cpu, dorac_backend *dev) {
    for (int v = 0; v < 4; v++) {
        bool with_scale = v & 1, with_bias = v & 2;
        op_case c = new_case("scale_cols_add_bias", run_scale_cols);
        c.R = 37, c.C = 96;
        snprintf(c.shape, sizeof c.shape, "Y(%lld,%lld) scale %s bias %s", (long long)c.R, (long long)c.C,
                 with_scale ? "yes" : "no", with_bias ? "yes" : "no");
        add(&c, output("Y", ROLE_ACT, c.R, c.C + 3, 1, c.C, CLS_ELEM, false));
        add(&c, with_scale ? input("scale", ROLE_PARAM, 1, c.C, 0.5, 1.5) : absent("scale", ROLE_PARAM));
        add(&c, with_bias ? input("bias", ROLE_WEIGHT, 1, c.C, -1, 1) : absent("bias", ROLE_WEIGHT));
        run_case(cpu, dev, &c);
    }
}

/* Y (R, C + 8) at column 8 (rows 16-byte aligned) or (R, C + 3) at column
** 1 (not aligned), in place; U (R, rank + 8) at column 8 or 1 (the same;
** the device's tensor-core path, cuda_lowrank.cu, needs both aligned and
** C and the rank multiples of 8); B (C, rank); scale, bias
** (1, C) or absent. Through dorac_lora_up_scale: the CPU runs the slow twin
** (gemm, then scale_cols_add_bias), a backend with the fused op runs it. */
static int run_lora_up_scale(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor Y = cols_of(&t[0], c->off, c->C), U = cols_of(&t[1], c->off, c->rank);
    return dorac_lora_up_scale(be, &Y, &U, &t[2], c->scale, &t[3], &t[4]);
}

static void lora_up_scale_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t ranks[] = {4, 8, 16, 24, 32, 48};
    for (int ri = 0; ri < 6; ri++)
        for (int v = 0; v < 5; v++) {
            bool with_scale = v != 1 && v != 4, with_bias = v >= 2;
            op_case c = new_case("lora_up_scale", run_lora_up_scale);
            c.R = v == 3 ? 300 : v == 2 ? 2053 : 137, c.C = v == 3 ? 777 : v == 2 ? 8200 : 520;
            c.rank = ranks[ri], c.scale = 2.0;
            c.off = v == 3 ? 1 : 8;
            snprintf(c.shape, sizeof c.shape, "Y(%lld,%lld)+%lld r%lld scale %s bias %s", (long long)c.R,
                     (long long)c.C, (long long)c.off, (long long)c.rank, with_scale ? "yes" : "no",
                     with_bias ? "yes" : "no");
            add(&c, output("Y", ROLE_ACT, c.R, c.C + (c.off == 8 ? 8 : 3), c.off, c.C, CLS_GEMM, false));
            add(&c, input("U", ROLE_ACT, c.R, c.rank + 8, -1, 1));
            add(&c, input("B", ROLE_PARAM, c.C, c.rank, -0.2, 0.2));
            add(&c, with_scale ? input("scale", ROLE_PARAM, 1, c.C, 0.5, 1.5) : absent("scale", ROLE_PARAM));
            add(&c, with_bias ? input("bias", ROLE_WEIGHT, 1, c.C, -1, 1) : absent("bias", ROLE_WEIGHT));
            c.determinism = ri == 2 && v == 2;
            run_case(cpu, dev, &c);
        }
}

/* out (R, C + 2) at column 1 and X (R, C + 3) at column 2, or, aliased, X
** is out's view; w (1, R) */
static int run_scale_rows(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor out = cols_of(&t[0], 1, c->C);
    dorac_tensor X = c->alias ? out : cols_of(&t[2], 2, c->C);
    return be->scale_rows(be, &out, &X, &t[1], c->alpha, c->beta);
}

static void scale_rows_cases(dorac_backend *cpu, dorac_backend *dev) {
    for (int v = 0; v < 5; v++) {
        /* v: 0 beta 0 act, 1 beta 1.1 act, 2 alias act, 3 param (dB += s w⊙P), 4 alias weight (merge) */
        op_case c = new_case("scale_rows", run_scale_rows);
        c.R = 96, c.C = 40, c.alpha = 0.7, c.beta = (v == 1 || v == 3) ? 1.1 : 0.0, c.alias = v == 2 || v == 4;
        role ro = v == 3 ? ROLE_PARAM : v == 4 ? ROLE_WEIGHT : ROLE_ACT;
        snprintf(c.shape, sizeof c.shape, "(%lld,%lld) a%g b%g %s%s", (long long)c.R, (long long)c.C, c.alpha, c.beta,
                 v == 3 ? "param" : v == 4 ? "weight" : "act", c.alias ? " alias" : "");
        add(&c, output("out", ro, c.R, c.C + 2, 1, c.C, CLS_ELEM, c.beta == 0.0 && !c.alias));
        add(&c, input("w", ROLE_PARAM, 1, c.R, -2, 2));
        if (!c.alias) add(&c, input("X", ro, c.R, c.C + 3, -1, 1));
        run_case(cpu, dev, &c);
    }
}

/* in (R, C + 1) at column 0 and out (R, C + 2) at column 1, or in place */
static int run_dropout(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor out = cols_of(&t[0], 1, c->C);
    dorac_tensor in = c->alias ? out : cols_of(&t[1], 0, c->C);
    return be->dropout(be, &out, &in, c->p, 1234, 7, c->row0);
}

static void dropout_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const double ps[] = {0.1, 0.5, 0.0};
    for (int k = 0; k < 3; k++)
        for (int a = 0; a < 2; a++) {
            op_case c = new_case("dropout", run_dropout);
            c.R = 300, c.C = 96, c.p = ps[k], c.alias = a, c.row0 = a ? 0 : 517, c.zero_pattern = true;
            snprintf(c.shape, sizeof c.shape, "(%lld,%lld) p%g row0 %lld%s", (long long)c.R, (long long)c.C, c.p,
                     (long long)c.row0, a ? " alias" : "");
            buf_spec out = output("out", ROLE_ACT, c.R, c.C + 2, 1, c.C, CLS_ELEM, !a);
            if (a) out.init = INIT_NONZERO, out.lo = 0.05, out.hi = 1.0;
            add(&c, out);
            if (!a) {
                buf_spec in = input("in", ROLE_ACT, c.R, c.C + 1, 0.05, 1.0);
                in.init = INIT_NONZERO;
                add(&c, in);
            }
            run_case(cpu, dev, &c);
        }
}

/* ---------------------------------------------------------------------- */
/* DoRA                                                                   */
/* ---------------------------------------------------------------------- */

/* dora_norm_many's items, (out, in, r): the batched path's ranks 8, 16, 32
** (several row blocks; in not a multiple of 256; K over 8 slices), rank 5
** and rank 0 (the device runs those one by one), an item without g and m,
** then 18 small rank-8 items, more than one device batch of 16. Packed:
** item i takes columns [o_i, o_i + out) of n, g, c, m, rows [o_i, ...) of
** B and P, rows [a_i, a_i + r) of A and G. */
enum { NORM_MANY_ITEMS = 24 };
static void norm_many_shape(int i, int64_t *out, int64_t *in, int64_t *r) {
    static const int64_t first[6][3] = {{96, 64, 16}, {1001, 300, 8}, {130, 2100, 32}, {77, 50, 5}, {64, 64, 0}, {40, 64, 16}};
    if (i < 6) *out = first[i][0], *in = first[i][1], *r = first[i][2];
    else *out = 8 + i, *in = 16 + i, *r = 8;
}

/* n, g, c, A, B, P, G, m as buffers 0..7, packed as above */
static int run_dora_norm_many(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor v[NORM_MANY_ITEMS][8];
    dorac_dora_norm_item items[NORM_MANY_ITEMS];
    dorac_tensor none = dorac_tensor_none(be->param_type);
    int64_t o = 0, a = 0;
    for (int i = 0; i < NORM_MANY_ITEMS; i++) {
        int64_t out, in, r;
        norm_many_shape(i, &out, &in, &r);
        dorac_tensor *w = v[i];
        w[0] = cols_of(&t[0], o, out), w[1] = cols_of(&t[1], o, out), w[2] = cols_of(&t[2], o, out);
        w[7] = cols_of(&t[7], o, out);
        w[3] = dorac_tensor_rows(&t[3], a, r), w[3].cols = in;
        w[4] = dorac_tensor_rows(&t[4], o, out), w[4].cols = r;
        w[5] = dorac_tensor_rows(&t[5], o, out), w[5].cols = r;
        w[6] = dorac_tensor_rows(&t[6], a, r), w[6].cols = r;
        bool no_g = i == 5;
        items[i] = (dorac_dora_norm_item){&w[0], no_g ? &none : &w[1], &w[2], r ? &w[3] : &none, r ? &w[4] : &none,
                                          r ? &w[5] : &none, r ? &w[6] : &none, no_g ? &none : &w[7],
                                          1.0 + 0.25 * i};
        o += out, a += r;
    }
    /* item by item first, then the batch over the same buffers: the same
    ** bits. Each starts from a sentinel in n, g and G, so that a batch that
    ** skips an item (or writes nothing) fails the comparison. */
    const int outs[3] = {0, 1, 6};
    float *before[3] = {NULL, NULL, NULL};
    int rc = DORAC_OK;
    for (int k = 0; k < 3 && !rc; k++) rc = be->fill(be, &t[outs[k]], 12345.0);
    for (int i = 0; i < NORM_MANY_ITEMS && !rc; i++) {
        const dorac_dora_norm_item *it = &items[i];
        if (it->A->data) rc = be->gemm(be, it->G, it->A, false, it->A, true, 1.0, 0.0);
        if (!rc) rc = be->dora_norm(be, it->n, it->g, it->c, it->B, it->P, it->G, it->m, it->scale, c->floor_);
    }
    for (int k = 0; k < 3 && !rc; k++) {
        const dorac_tensor *x = &t[outs[k]];
        before[k] = malloc((size_t)(x->rows * x->cols) * sizeof(float));
        rc = before[k] ? be->download(be, before[k], DORAC_DTYPE_F32, x) : DORAC_E_NOMEM;
    }
    for (int k = 0; k < 3 && !rc; k++) rc = be->fill(be, &t[outs[k]], 12345.0);
    if (!rc) rc = dorac_dora_norm_many(be, items, NORM_MANY_ITEMS, c->floor_);
    for (int k = 0; k < 3 && !rc; k++) {
        const dorac_tensor *x = &t[outs[k]];
        size_t n = (size_t)(x->rows * x->cols);
        float *after = malloc(n * sizeof(float));
        rc = after ? be->download(be, after, DORAC_DTYPE_F32, x) : DORAC_E_NOMEM;
        if (!rc && memcmp(after, before[k], n * sizeof(float)) != 0)
            rc = dorac_error(DORAC_E_NUMERIC, "dora_norm_many: buffer %d differs from the item-by-item calls", outs[k]);
        free(after);
    }
    for (int k = 0; k < 3; k++) free(before[k]);
    return rc;
}

static void dora_norm_many_case(dorac_backend *cpu, dorac_backend *dev) {
    int64_t sum_out = 0, sum_r = 0, max_in = 0;
    for (int i = 0; i < NORM_MANY_ITEMS; i++) {
        int64_t out, in, r;
        norm_many_shape(i, &out, &in, &r);
        sum_out += out, sum_r += r, max_in = in > max_in ? in : max_in;
    }
    const int64_t R = 32;
    double *A = calloc((size_t)(sum_r * max_in), sizeof(double)), *cv = calloc((size_t)sum_out, sizeof(double));
    double *P = calloc((size_t)(sum_out * R), sizeof(double));
    int64_t o = 0, a = 0;
    for (int i = 0; i < NORM_MANY_ITEMS; i++) {
        int64_t out, in, r;
        norm_many_shape(i, &out, &in, &r);
        /* c and P from a W0 and this A, so that n^2 = ||W0 + sBA||^2 > 0 */
        for (int64_t k = 0; k < r; k++)
            for (int64_t j = 0; j < in; j++)
                A[(a + k) * max_in + j] = (2 * dorac_rng_uniform_f64(92, (uint64_t)i, (uint64_t)(k * in + j)) - 1) / 8;
        for (int64_t q = 0; q < out; q++)
            for (int64_t j = 0; j < in; j++) {
                double w = 2 * dorac_rng_uniform_f64(93, (uint64_t)i, (uint64_t)(q * in + j)) - 1;
                cv[o + q] += w * w;
                for (int64_t k = 0; k < r; k++) P[(o + q) * R + k] += w * A[(a + k) * max_in + j];
            }
        o += out, a += r;
    }
    op_case c = new_case("dora_norm_many", run_dora_norm_many);
    c.floor_ = DORAC_DORA_NORM_SQ_FLOOR, c.determinism = true;
    snprintf(c.shape, sizeof c.shape, "%d items, ranks 0-32, out 8-1001, in 16-2100", NORM_MANY_ITEMS);
    add(&c, output("n", ROLE_PARAM, 1, sum_out, 0, sum_out, CLS_RED, false));
    add(&c, output("g", ROLE_PARAM, 1, sum_out, 0, sum_out, CLS_RED, false));
    add(&c, host_buf("c", ROLE_PARAM, 1, sum_out, cv));
    add(&c, host_buf("A", ROLE_PARAM, sum_r, max_in, A));
    add(&c, input("B", ROLE_PARAM, sum_out, R, -0.5, 0.5));
    add(&c, host_buf("P", ROLE_PARAM, sum_out, R, P));
    add(&c, output("G", ROLE_PARAM, sum_r, R, 0, R, CLS_GEMM, false));
    add(&c, input("m", ROLE_PARAM, 1, sum_out, 0.5, 1.5));
    run_case(cpu, dev, &c);
    free(A), free(cv), free(P);
}

/* n, g, c, B, P, G, m as buffers 0..6 */
static int run_dora_norm(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    return be->dora_norm(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], c->scale, c->floor_);
}

static void dora_norm_cases(dorac_backend *cpu, dorac_backend *dev) {
    const int64_t in = 64;
    for (int v = 0; v < 7; v++) {
        /* v: 0 r = 8 with g, 1 r = 0 with g, 2 r = 8 n only (no g, no m),
        ** 3 r = 12 and 4 r = 32 with g (CUDA: the wide path, and the
        ** per-row path's largest rank), 5 r = 16 and 6 r = 4 with g over
        ** 1001 rows (CUDA: several blocks of the per-row path, the last
        ** one part full) */
        static const int64_t ranks[] = {8, 0, 8, 12, 32, 16, 4};
        int64_t r = ranks[v], rmax = r ? r : 1, out = v >= 5 ? 1001 : 96;
        op_case c = new_case("dora_norm", run_dora_norm);
        c.scale = 2.0, c.floor_ = DORAC_DORA_NORM_SQ_FLOOR, c.rank = r;
        snprintf(c.shape, sizeof c.shape, "out %lld r %lld%s", (long long)out, (long long)r, v == 2 ? " n only" : "");
        /* c, P, G consistent with a W0 and an A, so that n^2 = ||W0 + sBA||^2 > 0 */
        double *W0 = malloc((size_t)(out * in) * sizeof(double)), *A = malloc((size_t)(rmax * in) * sizeof(double));
        double *cv = calloc((size_t)out, sizeof(double)), *P = calloc((size_t)(out * rmax), sizeof(double));
        double *G = calloc((size_t)(rmax * rmax), sizeof(double));
        for (int64_t k = 0; k < out * in; k++) W0[k] = 2 * dorac_rng_uniform_f64(91, 0, (uint64_t)k) - 1;
        for (int64_t k = 0; k < rmax * in; k++) A[k] = (2 * dorac_rng_uniform_f64(91, 1, (uint64_t)k) - 1) / 8;
        for (int64_t o = 0; o < out; o++)
            for (int64_t j = 0; j < in; j++) {
                cv[o] += W0[o * in + j] * W0[o * in + j];
                for (int64_t k = 0; k < r; k++) P[o * r + k] += W0[o * in + j] * A[k * in + j];
            }
        for (int64_t k = 0; k < r; k++)
            for (int64_t l = 0; l < r; l++)
                for (int64_t j = 0; j < in; j++) G[k * r + l] += A[k * in + j] * A[l * in + j];
        add(&c, output("n", ROLE_PARAM, 1, out, 0, out, CLS_RED, true));
        add(&c, v == 2 ? absent("g", ROLE_PARAM) : output("g", ROLE_PARAM, 1, out, 0, out, CLS_RED, true));
        add(&c, host_buf("c", ROLE_PARAM, 1, out, cv));
        add(&c, r ? input("B", ROLE_PARAM, out, r, -0.5, 0.5) : absent("B", ROLE_PARAM));
        add(&c, r ? host_buf("P", ROLE_PARAM, out, r, P) : absent("P", ROLE_PARAM));
        add(&c, r ? host_buf("G", ROLE_PARAM, r, r, G) : absent("G", ROLE_PARAM));
        add(&c, v == 2 ? absent("m", ROLE_PARAM) : input("m", ROLE_PARAM, 1, out, 0.5, 1.5));
        run_case(cpu, dev, &c);
        free(W0), free(A), free(cv), free(P), free(G);
    }
}

/* dz, zsum, dy, y, g, bias as buffers 0..5; dz may alias dy */
static int run_dora_scale_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    const dorac_tensor *dz = c->alias ? &t[2] : &t[0];
    return be->dora_scale_backward(be, dz, &t[1], &t[2], &t[3], &t[4], &t[5]);
}

/* (601, 1001) cuts into 10 parts of 61 rows on the GPU (the last 52), runs
** of 8, 5 and 0 rows, a last chunk of one column, and BF16 rows that
** alternate between vector and element access (cuda_dora_colsum.cuh). */
static void dora_scale_backward_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{300, 96}, {601, 1001}};
    for (int sh = 0; sh < 2; sh++) {
        const int64_t N = shapes[sh][0], out = shapes[sh][1];
        double *g = malloc((size_t)out * sizeof(double));
        for (int64_t o = 0; o < out; o++) g[o] = 0.5 + 1.5 * dorac_rng_uniform_f64(92, 0, (uint64_t)o);
        g[3] = 0.0; /* m[o] == 0: z cannot be recovered and contributes 0 */
        for (int v = 0; v < 4; v++) {
            bool with_bias = v & 1;
            op_case c = new_case("dora_scale_backward", run_dora_scale_bwd);
            c.alias = v & 2;
            c.determinism = sh == 1 && v == 3;
            snprintf(c.shape, sizeof c.shape, "(%lld,%lld) bias %s%s", (long long)N, (long long)out,
                     with_bias ? "yes" : "no", c.alias ? " dz=dy" : "");
            add(&c, c.alias ? absent("dz", ROLE_ACT) : output("dz", ROLE_ACT, N, out, 0, out, CLS_ELEM, true));
            add(&c, output("zsum", ROLE_PARAM, 1, out, 0, out, CLS_RED, false));
            add(&c, c.alias ? output("dy=dz", ROLE_ACT, N, out, 0, out, CLS_ELEM, false) : input("dy", ROLE_ACT, N, out, -1, 1));
            add(&c, input("y", ROLE_ACT, N, out, -2, 2));
            add(&c, host_buf("g", ROLE_PARAM, 1, out, g));
            add(&c, with_bias ? input("bias", ROLE_WEIGHT, 1, out, -0.5, 0.5) : absent("bias", ROLE_WEIGHT));
            run_case(cpu, dev, &c);
        }
        free(g);
    }
}

/* dm, w, zsum, m, n as buffers 0..4 */
static int run_dora_mag_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    (void)c;
    return be->dora_magnitude_backward(be, &t[0], &t[1], &t[2], &t[3], &t[4]);
}

static void dora_magnitude_backward_cases(dorac_backend *cpu, dorac_backend *dev) {
    const int64_t out = 96;
    for (int v = 0; v < 2; v++) {
        op_case c = new_case("dora_magnitude_backward", run_dora_mag_bwd);
        snprintf(c.shape, sizeof c.shape, "out %lld w %s", (long long)out, v ? "yes" : "no");
        add(&c, output("dm", ROLE_PARAM, 1, out, 0, out, CLS_ELEM, false));
        add(&c, v ? output("w", ROLE_PARAM, 1, out, 0, out, CLS_ELEM, true) : absent("w", ROLE_PARAM));
        add(&c, input("zsum", ROLE_PARAM, 1, out, -3, 3));
        add(&c, input("m", ROLE_PARAM, 1, out, 0.5, 1.5));
        add(&c, input("n", ROLE_PARAM, 1, out, 0.5, 2.0));
        run_case(cpu, dev, &c);
    }
}

/* ---------------------------------------------------------------------- */
/* optimizer                                                              */
/* ---------------------------------------------------------------------- */

/* X (R, C + 2) at column 1; the host result goes into t[1] (1, 1) */
static int run_sum_squares(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor X = cols_of(&t[0], 1, c->C);
    double s = NAN;
    DORAC_TRY(be->sum_squares(be, &X, &s));
    return be->upload(be, &t[1], &s, DORAC_DTYPE_F64);
}

/* X (R, C + 2) at column 1 split into views: top rows, bottom rows, one
** element, an empty one, then the whole (contiguous) buffer t[0] and its
** first 70 rows one by one (more tensors than one CUDA batch of 64); all
** through sum_squares_many into t[1]. The result must also equal, bit for
** bit, sum_squares of each added in order. */
enum { SUMSQ_ROWS = 70 };
static int run_sum_squares_many(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor X = cols_of(&t[0], 1, c->C);
    dorac_tensor views[5 + SUMSQ_ROWS];
    views[0] = dorac_tensor_rows(&X, 0, c->R / 2), views[1] = dorac_tensor_rows(&X, c->R / 2, c->R - c->R / 2);
    views[2] = dorac_tensor_rows(&X, 0, 1);
    views[2].cols = 1;
    views[3] = dorac_tensor_rows(&X, 3, 0);
    views[4] = t[0];
    for (int i = 0; i < SUMSQ_ROWS; i++) views[5 + i] = dorac_tensor_rows(&X, i, 1);
    const dorac_tensor *list[5 + SUMSQ_ROWS];
    for (int i = 0; i < 5 + SUMSQ_ROWS; i++) list[i] = &views[i];
    double many = NAN, loop = 0;
    DORAC_TRY(dorac_sum_squares_many(be, list, 5 + SUMSQ_ROWS, &many));
    for (int i = 0; i < 5 + SUMSQ_ROWS; i++) {
        double s;
        DORAC_TRY(be->sum_squares(be, list[i], &s));
        loop += s;
    }
    if (many != loop)
        return dorac_error(DORAC_E_NUMERIC, "sum_squares_many: %.17g differs from the per-tensor sum %.17g", many, loop);
    return be->upload(be, &t[1], &many, DORAC_DTYPE_F64);
}

static void sum_squares_cases(dorac_backend *cpu, dorac_backend *dev) {
    {
        op_case c = new_case("sum_squares_many", run_sum_squares_many);
        c.R = 301, c.C = 129;
        snprintf(c.shape, sizeof c.shape, "%d views of (%lld,%lld)", 5 + SUMSQ_ROWS, (long long)c.R, (long long)c.C);
        add(&c, input("X", ROLE_PARAM, c.R, c.C + 2, -1, 1));
        add(&c, output("sum", ROLE_STAT, 1, 1, 0, 1, CLS_RED, true));
        run_case(cpu, dev, &c);
    }
    static const int64_t shapes[][2] = {{37, 65}, {1, 1}, {512, 1000}};
    for (int s = 0; s < 3; s++)
        for (int r = 0; r < 2; r++) {
            op_case c = new_case("sum_squares", run_sum_squares);
            c.R = shapes[s][0], c.C = shapes[s][1];
            snprintf(c.shape, sizeof c.shape, "(%lld,%lld) %s", (long long)c.R, (long long)c.C, r ? "act" : "param");
            add(&c, input("X", r ? ROLE_ACT : ROLE_PARAM, c.R, c.C + 2, -1, 1));
            add(&c, output("sum", ROLE_STAT, 1, 1, 0, 1, CLS_RED, true));
            run_case(cpu, dev, &c);
        }
}

/* param (R, C + 1) at column 1, grad, m, v (R, C); steps from step0 */
static int run_adamw(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor p = cols_of(&t[0], 1, c->C);
    for (int64_t s = 0; s < c->steps; s++)
        DORAC_TRY(be->adamw(be, &p, &t[1], &t[2], &t[3], c->lr * (1.0 - 0.1 * (double)s), 0.9, 0.999, 1e-8, c->wd,
                            c->step0 + s, c->gscale));
    return DORAC_OK;
}

/* Two tensors through dorac_adamw_many (the CPU loops adamw, a backend
** with adamw_many runs it): t[0..3] param (R, C + 1) at column 1, grad, m,
** v; t[4..7] the same for a (3, 11) tensor without weight decay. Exact:
** adamw_many must equal adamw, which equals the CPU bit for bit in F32. */
static int run_adamw_many(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor p0 = cols_of(&t[0], 1, c->C), p1 = cols_of(&t[4], 1, 11);
    dorac_adamw_item items[2] = {{&p0, &t[1], &t[2], &t[3], true}, {&p1, &t[5], &t[6], &t[7], false}};
    for (int64_t s = 0; s < c->steps; s++)
        DORAC_TRY(dorac_adamw_many(be, items, 2, c->lr, 0.9, 0.999, 1e-8, c->wd, c->step0 + s, c->gscale));
    return DORAC_OK;
}

static void adamw_cases(dorac_backend *cpu, dorac_backend *dev) {
    {
        op_case c = new_case("adamw_many", run_adamw_many);
        c.R = 37, c.C = 65, c.steps = 3, c.step0 = 4, c.lr = 1e-2, c.wd = 0.01, c.gscale = 0.7;
        snprintf(c.shape, sizeof c.shape, "(%lld,%lld)+(3,11) %lld steps wd %g on the first", (long long)c.R,
                 (long long)c.C, (long long)c.steps, c.wd);
        for (int k = 0; k < 2; k++) {
            int64_t R = k ? 3 : c.R, C = k ? 11 : c.C;
            add(&c, output("param", ROLE_PARAM, R, C + 1, 1, C, CLS_EXACT, false));
            add(&c, input("grad", ROLE_PARAM, R, C, -1, 1));
            buf_spec m = output("m", ROLE_PARAM, R, C, 0, C, CLS_EXACT, false);
            buf_spec vv = output("v", ROLE_PARAM, R, C, 0, C, CLS_EXACT, false);
            m.lo = -0.1, m.hi = 0.1, vv.lo = 1e-4, vv.hi = 1e-2;
            add(&c, m);
            add(&c, vv);
        }
        run_case(cpu, dev, &c);
    }
    for (int v = 0; v < 2; v++) {
        /* v: 0 from zero moments at step 1, no decay; 1 warm moments at step 7, decay, clipping scale */
        op_case c = new_case("adamw", run_adamw);
        c.R = 37, c.C = 65, c.steps = 5, c.step0 = v ? 7 : 1, c.lr = 1e-2, c.wd = v ? 0.01 : 0.0, c.gscale = v ? 0.6 : 1.0;
        snprintf(c.shape, sizeof c.shape, "(%lld,%lld) %lld steps from %lld wd %g gs %g", (long long)c.R,
                 (long long)c.C, (long long)c.steps, (long long)c.step0, c.wd, c.gscale);
        add(&c, output("param", ROLE_PARAM, c.R, c.C + 1, 1, c.C, CLS_ELEM, false));
        add(&c, input("grad", ROLE_PARAM, c.R, c.C, -1, 1));
        buf_spec m = output("m", ROLE_PARAM, c.R, c.C, 0, c.C, CLS_ELEM, false);
        buf_spec vv = output("v", ROLE_PARAM, c.R, c.C, 0, c.C, CLS_ELEM, false);
        if (v) m.lo = -0.1, m.hi = 0.1, vv.lo = 1e-4, vv.hi = 1e-2;
        else m.lo = m.hi = vv.lo = vv.hi = 0.0;
        add(&c, m);
        add(&c, vv);
        run_case(cpu, dev, &c);
    }
}

/* ---------------------------------------------------------------------- */
/* transformer ops                                                        */
/* ---------------------------------------------------------------------- */

/* random ids in [0, limit) (with repeats) */
static int32_t *random_ids(int64_t n, int64_t limit, uint64_t stream) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)(dorac_rng_uniform_f64(93, stream, (uint64_t)i) * (double)limit);
    return ids;
}

/* out (N, C + 1) at column 1, ids (1, N), table (V, C) */
static int run_emb_fwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor out = cols_of(&t[0], 1, c->C);
    return be->embedding_forward(be, &out, &t[1], &t[2], c->accumulate);
}

/* dtable (V, C + 2) at column 2, dout (N, C), ids (1, N) */
static int run_emb_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor dtable = cols_of(&t[0], 2, c->C);
    return be->embedding_backward(be, &dtable, &t[1], &t[2]);
}

static void embedding_cases(dorac_backend *cpu, dorac_backend *dev) {
    for (int a = 0; a < 2; a++) {
        op_case c = new_case("embedding_forward", run_emb_fwd);
        c.N = 37, c.C = 64, c.V = 1000, c.accumulate = a;
        int32_t *ids = random_ids(c.N, c.V, 1);
        ids[0] = 0, ids[1] = (int32_t)c.V - 1, ids[2] = ids[3];
        snprintf(c.shape, sizeof c.shape, "N%lld C%lld V%lld %s", (long long)c.N, (long long)c.C, (long long)c.V,
                 a ? "accumulate" : "overwrite");
        /* overwriting is a gather: exact in any type */
        add(&c, output("out", ROLE_ACT, c.N, c.C + 1, 1, c.C, a ? CLS_ELEM : CLS_EXACT, !a));
        add(&c, index_buf("ids", ids, c.N));
        add(&c, input("table", ROLE_WEIGHT, c.V, c.C, -1, 1));
        run_case(cpu, dev, &c);
        free(ids);
    }
    static const int64_t shapes[][3] = {{300, 64, 50}, {37, 96, 1000}, {1, 64, 8}};
    for (int s = 0; s < 3; s++) {
        op_case c = new_case("embedding_backward", run_emb_bwd);
        c.N = shapes[s][0], c.C = shapes[s][1], c.V = shapes[s][2], c.determinism = true;
        /* many repeats of few ids: the scatter must sum colliding rows */
        int32_t *ids = random_ids(c.N, c.V < 20 ? c.V : 20, 2);
        snprintf(c.shape, sizeof c.shape, "N%lld C%lld V%lld", (long long)c.N, (long long)c.C, (long long)c.V);
        add(&c, output("dtable", ROLE_PARAM, c.V, c.C + 2, 2, c.C, CLS_RED, false));
        add(&c, input("dout", ROLE_ACT, c.N, c.C, -1, 1));
        add(&c, index_buf("ids", ids, c.N));
        run_case(cpu, dev, &c);
        free(ids);
    }
}

/* rmsnorm_forward: out (N, C), rstd (1, N), x (N, C + 2) at column 1, w (1, C) */
static int run_rms_fwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor x = cols_of(&t[2], c->off, c->C);
    return be->rmsnorm_forward(be, &t[0], &t[1], &x, &t[3], c->eps);
}

/* rmsnorm_backward: dx, dw (or absent), dout, x, w, rstd (derived), y (prep scratch) */
static int prep_rms_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    return be->rmsnorm_forward(be, &t[6], &t[5], &t[3], &t[4], c->eps);
}
static int run_rms_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    (void)c;
    return be->rmsnorm_backward(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5]);
}

/* x at column 1 of a wider buffer (rows not 16-byte aligned) and at column
** 0 of rows padded by 8 (aligned: the GPU's row-in-registers kernels, which
** the backward's aligned (N, C) buffers take too); C = 2048 and 8192 are
** Llama-1B's and the widest those kernels take, 5000 a wide row whose
** last chunks are partial. */
static void rmsnorm_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{37, 64}, {1, 4096}, {300, 1000}, {64, 2048}, {16, 8192}, {24, 5000}};
    for (int s = 0; s < 6; s++) {
        int64_t N = shapes[s][0], C = shapes[s][1];
        for (int off = 0; off < 2; off++) {
            op_case c = new_case("rmsnorm_forward", run_rms_fwd);
            c.C = C, c.eps = 1e-5, c.off = off;
            snprintf(c.shape, sizeof c.shape, "N%lld C%lld x at column %d", (long long)N, (long long)C, off);
            add(&c, output("out", ROLE_ACT, N, C, 0, C, CLS_RED, true));
            add(&c, output("rstd", ROLE_STAT, 1, N, 0, N, CLS_RED, true));
            add(&c, input("x", ROLE_ACT, N, C + (off ? 2 : 8), -2, 2));
            add(&c, input("w", ROLE_WEIGHT, 1, C, 0.5, 1.5));
            run_case(cpu, dev, &c);
        }
        for (int w = 0; w < 2; w++) {
            op_case b = new_case("rmsnorm_backward", run_rms_bwd);
            b.prep = prep_rms_bwd, b.eps = 1e-5, b.determinism = s == 2 || s == 3;
            snprintf(b.shape, sizeof b.shape, "N%lld C%lld dw %s", (long long)N, (long long)C, w ? "yes" : "no");
            add(&b, output("dx", ROLE_ACT, N, C, 0, C, CLS_RED, false));
            add(&b, w ? output("dw", ROLE_PARAM, 1, C, 0, C, CLS_RED, false) : absent("dw", ROLE_PARAM));
            add(&b, input("dout", ROLE_ACT, N, C, -1, 1));
            add(&b, input("x", ROLE_ACT, N, C, -2, 2));
            add(&b, input("w", ROLE_WEIGHT, 1, C, 0.5, 1.5));
            add(&b, derived("rstd", ROLE_STAT, 1, N));
            add(&b, derived("y", ROLE_ACT, N, C));
            run_case(cpu, dev, &b);
        }
    }
}

/* layernorm_forward: out, mean, rstd, x (N, C + 1) at column 1, w, b (or absent) */
static int run_ln_fwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor x = cols_of(&t[3], 1, c->C);
    return be->layernorm_forward(be, &t[0], &t[1], &t[2], &x, &t[4], &t[5], c->eps);
}

/* layernorm_backward: dx, dw, db, dout, x, w, mean, rstd (derived), y (prep scratch) */
static int prep_ln_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor none = dorac_tensor_none(DORAC_DTYPE_F32);
    /* the bias does not change mean or rstd */
    return be->layernorm_forward(be, &t[8], &t[6], &t[7], &t[4], &t[5], &none, c->eps);
}
static int run_ln_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    (void)c;
    return be->layernorm_backward(be, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
}

static void layernorm_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{37, 64}, {1, 768}, {300, 1000}};
    for (int s = 0; s < 3; s++) {
        int64_t N = shapes[s][0], C = shapes[s][1];
        for (int hb = 0; hb < 2; hb++) {
            op_case c = new_case("layernorm_forward", run_ln_fwd);
            c.C = C, c.eps = 1e-5;
            snprintf(c.shape, sizeof c.shape, "N%lld C%lld b %s", (long long)N, (long long)C, hb ? "yes" : "no");
            add(&c, output("out", ROLE_ACT, N, C, 0, C, CLS_RED, true));
            add(&c, output("mean", ROLE_STAT, 1, N, 0, N, CLS_RED, true));
            add(&c, output("rstd", ROLE_STAT, 1, N, 0, N, CLS_RED, true));
            add(&c, input("x", ROLE_ACT, N, C + 1, -1.5, 2.5)); /* a non-zero mean */
            add(&c, input("w", ROLE_WEIGHT, 1, C, 0.5, 1.5));
            add(&c, hb ? input("b", ROLE_WEIGHT, 1, C, -1, 1) : absent("b", ROLE_WEIGHT));
            run_case(cpu, dev, &c);
        }
        for (int v = 0; v < 3; v++) {
            /* v: 0 dw and db, 1 neither, 2 dw only */
            bool want_w = v != 1, want_b = v == 0;
            op_case b = new_case("layernorm_backward", run_ln_bwd);
            b.prep = prep_ln_bwd, b.eps = 1e-5;
            snprintf(b.shape, sizeof b.shape, "N%lld C%lld dw %s db %s", (long long)N, (long long)C,
                     want_w ? "yes" : "no", want_b ? "yes" : "no");
            add(&b, output("dx", ROLE_ACT, N, C, 0, C, CLS_RED, false));
            add(&b, want_w ? output("dw", ROLE_PARAM, 1, C, 0, C, CLS_RED, false) : absent("dw", ROLE_PARAM));
            add(&b, want_b ? output("db", ROLE_PARAM, 1, C, 0, C, CLS_RED, false) : absent("db", ROLE_PARAM));
            add(&b, input("dout", ROLE_ACT, N, C, -1, 1));
            add(&b, input("x", ROLE_ACT, N, C, -1.5, 2.5));
            add(&b, input("w", ROLE_WEIGHT, 1, C, 0.5, 1.5));
            add(&b, derived("mean", ROLE_STAT, 1, N));
            add(&b, derived("rstd", ROLE_STAT, 1, N));
            add(&b, derived("y", ROLE_ACT, N, C));
            run_case(cpu, dev, &b);
        }
    }
}

/* rope on two column views of one (N, (H + KV) D + 3) buffer: q heads at
** column 0, k heads right after; pos (1, N); cos, sin (P, D/2) */
static int run_rope(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor q = cols_of(&t[0], 0, c->H * c->D), k = cols_of(&t[0], c->H * c->D, c->KV * c->D);
    DORAC_TRY(be->rope(be, &q, &t[1], &t[2], &t[3], c->H, c->D, c->inverse));
    return be->rope(be, &k, &t[1], &t[2], &t[3], c->KV, c->D, c->inverse);
}

/* rope_copy (through dorac_rope_copy): t[0] out, t[1] x, each holding q
** then k in its first (H + KV) D columns */
static int run_rope_copy(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    int64_t HD = c->H * c->D, KVD = c->KV * c->D;
    dorac_tensor q = cols_of(&t[1], 0, HD), k = cols_of(&t[1], HD, KVD);
    dorac_tensor qo = cols_of(&t[0], 0, HD), ko = cols_of(&t[0], HD, KVD);
    DORAC_TRY(dorac_rope_copy(be, &qo, &q, &t[2], &t[3], &t[4], c->H, c->D, c->inverse));
    return dorac_rope_copy(be, &ko, &k, &t[2], &t[3], &t[4], c->KV, c->D, c->inverse);
}

/* Both ropes at D = 64, 16 and 128, forward and inverse, on rows padded by
** 3 columns (one pair a thread on the GPU) and by 8 (BF16 rows read 16
** bytes at a time there). */
static void rope_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t dims[] = {64, 16, 128};
    const int64_t N = 37, P = 128, H = 8, KV = 2;
    for (int d = 0; d < 3; d++) {
        int64_t D = dims[d], half = D / 2;
        double *cs = malloc((size_t)(P * half) * sizeof(double)), *sn = malloc((size_t)(P * half) * sizeof(double));
        for (int64_t p = 0; p < P; p++)
            for (int64_t j = 0; j < half; j++) {
                double ang = (double)p * pow(10000.0, -2.0 * (double)j / (double)D);
                cs[p * half + j] = cos(ang), sn[p * half + j] = sin(ang);
            }
        int32_t *pos = random_ids(N, P, 3);
        pos[0] = 0, pos[1] = (int32_t)P - 1;
        for (int k = 0; k < 8; k++) {
            int inv = k & 1, pad = k & 2 ? 8 : 3;
            bool copy = k & 4;
            int64_t W = (H + KV) * D + pad;
            op_case c = new_case(copy ? "rope_copy" : "rope", copy ? run_rope_copy : run_rope);
            c.H = H, c.KV = KV, c.D = D, c.inverse = inv;
            snprintf(c.shape, sizeof c.shape, "N%lld H%lld+KV%lld D%lld ld%lld %s", (long long)N, (long long)H,
                     (long long)KV, (long long)D, (long long)W, inv ? "inverse" : "forward");
            add(&c, output(copy ? "out" : "qk", ROLE_ACT, N, W, 0, (H + KV) * D, CLS_ELEM, copy));
            if (copy) add(&c, input("x", ROLE_ACT, N, W, -2, 2));
            add(&c, index_buf("pos", pos, N));
            add(&c, host_buf("cos", ROLE_PARAM, P, half, cs));
            add(&c, host_buf("sin", ROLE_PARAM, P, half, sn));
            run_case(cpu, dev, &c);
        }
        free(cs), free(sn), free(pos);
    }
}

/* attention: qkv (N, off + (H + 2KV) D + pad) with q, k, v column views
** of it from column off */
static void qkv_views(const dorac_tensor *qkv, const op_case *c, dorac_tensor *q, dorac_tensor *k, dorac_tensor *v) {
    int64_t HD = c->H * c->D, KVD = c->KV * c->D;
    *q = cols_of(qkv, c->off, HD);
    *k = cols_of(qkv, c->off + HD, KVD);
    *v = cols_of(qkv, c->off + HD + KVD, KVD);
}

/* forward: out (N, HD + 4 + off) at column 2 + off, lse (1, B H T), qkv */
static int run_att_fwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor q, k, v, out = cols_of(&t[0], 2 + c->off, c->H * c->D);
    qkv_views(&t[2], c, &q, &k, &v);
    return be->attention_forward(be, &out, &t[1], &q, &k, &v, c->B, c->T, c->H, c->KV, c->D);
}

/* backward: dqkv (output, views dq dk dv), dout, out (derived), lse (derived), qkv */
static int prep_att_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor q, k, v;
    qkv_views(&t[4], c, &q, &k, &v);
    return be->attention_forward(be, &t[2], &t[3], &q, &k, &v, c->B, c->T, c->H, c->KV, c->D);
}
static int run_att_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor q, k, v, dq, dk, dv;
    qkv_views(&t[4], c, &q, &k, &v);
    qkv_views(&t[0], c, &dq, &dk, &dv);
    return be->attention_backward(be, &dq, &dk, &dv, &t[1], &q, &k, &v, &t[2], &t[3], c->B, c->T, c->H, c->KV,
                                  c->D);
}

/* misaligned: q starts at column 1 of a buffer whose row stride is not a
** multiple of 8 elements, so no view is 16-byte aligned (a device's
** vectorised path cannot be taken; its generic one is tested) */
static void attention_case(dorac_backend *cpu, dorac_backend *dev, int64_t B, int64_t T, int64_t H, int64_t KV,
                           int64_t D, bool determinism, bool misaligned) {
    int64_t N = B * T, HD = H * D, off = misaligned ? 1 : 0, W = off + (H + 2 * KV) * D + (misaligned ? 2 : 0);
    op_case f = new_case("attention_forward", run_att_fwd);
    f.B = B, f.T = T, f.H = H, f.KV = KV, f.D = D, f.off = off;
    snprintf(f.shape, sizeof f.shape, "B%lld T%lld H%lld KV%lld D%lld%s", (long long)B, (long long)T, (long long)H,
             (long long)KV, (long long)D, misaligned ? " misaligned" : "");
    add(&f, output("out", ROLE_ACT, N, HD + 4 + off, 2 + off, HD, CLS_ATTN_FWD, true));
    add(&f, output("lse", ROLE_STAT, 1, B * H * T, 0, B * H * T, CLS_ATTN_FWD, true));
    add(&f, input("qkv", ROLE_ACT, N, W, -1.5, 1.5));
    run_case(cpu, dev, &f);

    op_case b = f;
    b.op = "attention_backward", b.run = run_att_bwd, b.prep = prep_att_bwd, b.determinism = determinism;
    b.n_bufs = 0;
    add(&b, output("dqkv", ROLE_ACT, N, W, off, (H + 2 * KV) * D, CLS_ATTN_BWD, true));
    add(&b, input("dout", ROLE_ACT, N, HD, -1, 1));
    add(&b, derived("out", ROLE_ACT, N, HD));
    add(&b, derived("lse", ROLE_STAT, 1, B * H * T));
    add(&b, input("qkv", ROLE_ACT, N, W, -1.5, 1.5));
    run_case(cpu, dev, &b);
}

static void attention_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t dims[] = {16, 64, 128}, lens[] = {1, 37, 256};
    for (int d = 0; d < 3; d++)
        for (int l = 0; l < 3; l++)
            attention_case(cpu, dev, 2, lens[l], 8, 2, dims[d], lens[l] == 256 && dims[d] == 64, false);
    /* the fixture models' shapes: mistral D 8, llama-tied D 32, gpt2 MHA */
    attention_case(cpu, dev, 2, 24, 8, 2, 8, false, false);
    attention_case(cpu, dev, 2, 24, 4, 2, 32, false, false);
    attention_case(cpu, dev, 2, 24, 4, 4, 16, true, false);
    /* past a multiple of any tile size, partial last tile */
    attention_case(cpu, dev, 1, 300, 8, 2, 64, false, false);
    /* views no vector load can take */
    attention_case(cpu, dev, 2, 37, 8, 2, 64, false, true);
    attention_case(cpu, dev, 2, 37, 8, 2, 16, false, true);
}

/* attention_cached: out (n, HD), q (n, HD + 3) at column 1, kv (cap, 2 KVD)
** with k and v column views of its first past + n rows */
static int run_att_cached(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    int64_t n = c->N, L = c->past + n, KVD = c->KV * c->D;
    dorac_tensor q = cols_of(&t[1], 1, c->H * c->D);
    dorac_tensor rows = dorac_tensor_rows(&t[2], 0, L);
    dorac_tensor k = cols_of(&rows, 0, KVD), v = cols_of(&rows, KVD, KVD);
    return be->attention_cached(be, &t[0], &q, &k, &v, c->past, c->H, c->KV, c->D);
}

static void attention_cached_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t cases[][2] = {{64, 0}, {64, 37}, {64, 300}, {128, 0}, {128, 100}, {16, 5}};
    const int64_t H = 8, KV = 2;
    for (int k = 0; k < 6; k++)
        for (int nn = 0; nn < 2; nn++) {
            op_case c = new_case("attention_cached", run_att_cached);
            c.D = cases[k][0], c.past = cases[k][1], c.N = nn ? 3 : 1, c.H = H, c.KV = KV;
            int64_t HD = H * c.D, cap = c.past + c.N + 5;
            snprintf(c.shape, sizeof c.shape, "n%lld past%lld H%lld KV%lld D%lld", (long long)c.N, (long long)c.past,
                     (long long)H, (long long)KV, (long long)c.D);
            add(&c, output("out", ROLE_ACT, c.N, HD, 0, HD, CLS_ATTN_FWD, true));
            add(&c, input("q", ROLE_ACT, c.N, HD + 3, -1.5, 1.5));
            add(&c, input("kv", ROLE_ACT, cap, 2 * KV * c.D, -1.5, 1.5));
            run_case(cpu, dev, &c);
        }
}

/* swiglu: gate and up are column views of one (N, 2I) buffer */
static int run_swiglu_fwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor out = cols_of(&t[0], c->off, c->C), gate = cols_of(&t[1], 0, c->C), up = cols_of(&t[1], c->C, c->C);
    return be->swiglu_forward(be, &out, &gate, &up);
}
static int run_swiglu_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor dgate = cols_of(&t[0], 0, c->C), dup = cols_of(&t[0], c->C, c->C);
    dorac_tensor gate = cols_of(&t[2], 0, c->C), up = cols_of(&t[2], c->C, c->C);
    return be->swiglu_backward(be, &dgate, &dup, &t[1], &gate, &up);
}

static int run_gelu_fwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor out = cols_of(&t[0], c->off, c->C), x = cols_of(&t[1], 0, c->C);
    return be->gelu_forward(be, &out, &x);
}
static int run_gelu_bwd(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor dx = cols_of(&t[0], 2 * c->off, c->C);
    return be->gelu_backward(be, &dx, &t[1], &t[2]);
}

/* Outputs at an odd column (rows not 16-byte aligned: the GPU's general
** kernels), and for (35, 8192) (Llama-1B's width, a partial last group of
** rows) and (64, 3072) (GPT-2's) at column 8 of rows padded by 8, with x
** rows padded by 8 too (aligned: the BF16 kernels that load several rows
** before using any). */
static void activation_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{37, 96}, {300, 1000}, {1, 7}, {35, 8192}, {64, 3072}};
    for (int s = 0; s < 5; s++) {
        int64_t N = shapes[s][0], I = shapes[s][1];
        bool aligned = s >= 3;
        int64_t off = aligned ? 8 : 1; /* output column (gelu_backward's dx: 2 off) */
        op_case f = new_case("swiglu_forward", run_swiglu_fwd);
        f.C = I, f.off = off;
        snprintf(f.shape, sizeof f.shape, "N%lld I%lld%s", (long long)N, (long long)I, aligned ? " aligned" : "");
        add(&f, output("out", ROLE_ACT, N, I + off, off, I, CLS_ELEM, true));
        add(&f, input("gate|up", ROLE_ACT, N, 2 * I, -4, 4));
        run_case(cpu, dev, &f);
        op_case b = f;
        b.op = "swiglu_backward", b.run = run_swiglu_bwd, b.n_bufs = 0;
        add(&b, output("dgate|dup", ROLE_ACT, N, 2 * I, 0, 2 * I, CLS_ELEM, true));
        add(&b, input("dout", ROLE_ACT, N, I, -1, 1));
        add(&b, input("gate|up", ROLE_ACT, N, 2 * I, -4, 4));
        run_case(cpu, dev, &b);

        op_case g = new_case("gelu_forward", run_gelu_fwd);
        g.C = I, g.off = off;
        snprintf(g.shape, sizeof g.shape, "N%lld C%lld%s", (long long)N, (long long)I, aligned ? " aligned" : "");
        add(&g, output("out", ROLE_ACT, N, I + off, off, I, CLS_ELEM, true));
        add(&g, input("x", ROLE_ACT, N, I + (aligned ? 8 : 2), -5, 5));
        run_case(cpu, dev, &g);
        op_case gb = g;
        gb.op = "gelu_backward", gb.run = run_gelu_bwd, gb.n_bufs = 0;
        add(&gb, output("dx", ROLE_ACT, N, I + 2 * off, 2 * off, I, CLS_ELEM, true));
        add(&gb, input("dout", ROLE_ACT, N, I, -1, 1));
        add(&gb, input("x", ROLE_ACT, N, I, -5, 5));
        run_case(cpu, dev, &gb);
    }
}

/* The activation backwards fused with DoRA's element-wise backward, through
** dorac_swiglu_backward_dora / dorac_gelu_backward_dora: the CPU runs the
** slow twin (the plain backward, then dora_scale_backward in place), a
** backend with the fused op runs it. c->off says which sides are DoRA (1
** gate or fc, 2 up) and 4 adds biases. swiglu: dgate|dup (N, 2I), dout,
** gate|up (N, 2I), then zsum, g, bias of gate and of up. */
static dorac_dora_epilogue epilogue_of(const dorac_tensor *t, int at) {
    return (dorac_dora_epilogue){&t[at], &t[at + 1], &t[at + 2]};
}
static int run_swiglu_bwd_dora(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor dgate = cols_of(&t[0], 0, c->C), dup = cols_of(&t[0], c->C, c->C);
    dorac_tensor gate = cols_of(&t[2], 0, c->C), up = cols_of(&t[2], c->C, c->C);
    dorac_dora_epilogue eg = epilogue_of(t, 3), eu = epilogue_of(t, 6);
    return dorac_swiglu_backward_dora(be, &dgate, &dup, &t[1], &gate, &up, c->off & 1 ? &eg : NULL,
                                      c->off & 2 ? &eu : NULL);
}
/* gelu: dx (N, I + 2) at column 2, dout, x, zsum, g, bias */
static int run_gelu_bwd_dora(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    dorac_tensor dx = cols_of(&t[0], 2, c->C);
    dorac_dora_epilogue e = epilogue_of(t, 3);
    return dorac_gelu_backward_dora(be, &dx, &t[1], &t[2], &e);
}

/* zsum, g (one entry 0: m[o] == 0 contributes nothing) and bias (or absent)
** of one DoRA side, or three absent buffers */
static void add_epilogue(op_case *c, bool up, bool dora, bool bias, int64_t I, const double *g) {
    const char *zsum = up ? "zsum up" : "zsum", *gname = up ? "g up" : "g", *bname = up ? "bias up" : "bias";
    add(c, dora ? output(zsum, ROLE_PARAM, 1, I, 0, I, CLS_RED, false) : absent(zsum, ROLE_PARAM));
    add(c, dora ? host_buf(gname, ROLE_PARAM, 1, I, g) : absent(gname, ROLE_PARAM));
    add(c, dora && bias ? input(bname, ROLE_WEIGHT, 1, I, -0.5, 0.5) : absent(bname, ROLE_WEIGHT));
}

/* (601, 1001): many parts, uneven runs, misaligned up and dx views (as for
** dora_scale_backward above). */
static void activation_dora_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{37, 96}, {300, 1000}, {1, 7}, {601, 1001}};
    for (int s = 0; s < 4; s++) {
        int64_t N = shapes[s][0], I = shapes[s][1];
        double *g = malloc((size_t)I * sizeof(double));
        for (int64_t o = 0; o < I; o++) g[o] = 0.5 + 1.5 * dorac_rng_uniform_f64(93, 0, (uint64_t)o);
        g[I / 2] = 0.0;
        for (int v = 0; v < 3; v++) {
            /* v: 0 both sides DoRA, 1 gate only with biases, 2 up only */
            op_case b = new_case("swiglu_backward_dora", run_swiglu_bwd_dora);
            b.C = I, b.off = v == 0 ? 3 : v == 1 ? 1 | 4 : 2;
            b.determinism = s == 1 && v == 0;
            snprintf(b.shape, sizeof b.shape, "N%lld I%lld dora %s%s", (long long)N, (long long)I,
                     v == 0 ? "gate+up" : v == 1 ? "gate" : "up", b.off & 4 ? " bias" : "");
            add(&b, output("dgate|dup", ROLE_ACT, N, 2 * I, 0, 2 * I, CLS_ELEM, true));
            add(&b, input("dout", ROLE_ACT, N, I, -1, 1));
            add(&b, input("gate|up", ROLE_ACT, N, 2 * I, -4, 4));
            add_epilogue(&b, false, b.off & 1, b.off & 4, I, g);
            add_epilogue(&b, true, b.off & 2, b.off & 4, I, g);
            run_case(cpu, dev, &b);
        }
        for (int bias = 0; bias < 2; bias++) {
            op_case gb = new_case("gelu_backward_dora", run_gelu_bwd_dora);
            gb.C = I;
            gb.determinism = s == 1 && bias;
            snprintf(gb.shape, sizeof gb.shape, "N%lld C%lld bias %s", (long long)N, (long long)I,
                     bias ? "yes" : "no");
            add(&gb, output("dx", ROLE_ACT, N, I + 2, 2, I, CLS_ELEM, true));
            add(&gb, input("dout", ROLE_ACT, N, I, -1, 1));
            add(&gb, input("x", ROLE_ACT, N, I, -5, 5));
            add_epilogue(&gb, false, true, bias, I, g);
            run_case(cpu, dev, &gb);
        }
        free(g);
    }
    /* the benchmark shapes, once (prod): Llama-1B's SwiGLU (8192, 8192), both
    ** sides DoRA, and GPT-2's c_fc (8192, 3072): the GPU cuts these into its
    ** widest blocks (1024 and 512 columns), which the small shapes above
    ** never reach */
    static const int64_t big[][2] = {{8192, 8192}, {8192, 3072}};
    for (int s = 0; s < 2; s++) {
        int64_t N = big[s][0], I = big[s][1];
        double *g = malloc((size_t)I * sizeof(double));
        for (int64_t o = 0; o < I; o++) g[o] = 0.5 + 1.5 * dorac_rng_uniform_f64(94, 0, (uint64_t)o);
        if (s == 0) {
            op_case b = new_case("swiglu_backward_dora", run_swiglu_bwd_dora);
            b.C = I, b.off = 3, b.prod_only = true, b.determinism = true;
            snprintf(b.shape, sizeof b.shape, "N%lld I%lld dora gate+up", (long long)N, (long long)I);
            add(&b, output("dgate|dup", ROLE_ACT, N, 2 * I, 0, 2 * I, CLS_ELEM, true));
            add(&b, input("dout", ROLE_ACT, N, I, -1, 1));
            add(&b, input("gate|up", ROLE_ACT, N, 2 * I, -4, 4));
            add_epilogue(&b, false, true, false, I, g);
            add_epilogue(&b, true, true, false, I, g);
            run_case(cpu, dev, &b);
        } else {
            op_case gb = new_case("gelu_backward_dora", run_gelu_bwd_dora);
            gb.C = I, gb.prod_only = true, gb.determinism = true;
            snprintf(gb.shape, sizeof gb.shape, "N%lld C%lld bias yes", (long long)N, (long long)I);
            add(&gb, output("dx", ROLE_ACT, N, I + 2, 2, I, CLS_ELEM, true));
            add(&gb, input("dout", ROLE_ACT, N, I, -1, 1));
            add(&gb, input("x", ROLE_ACT, N, I, -5, 5));
            add_epilogue(&gb, false, true, true, I, g);
            run_case(cpu, dev, &gb);
        }
        free(g);
    }
}

/* cross_entropy: loss (1, N), logits (N, V), targets, dlogits (N, V) or
** absent or (alias) the logits themselves */
static int run_xent(dorac_backend *be, const dorac_tensor *t, const op_case *c) {
    const dorac_tensor *dlogits = c->alias ? &t[1] : &t[3];
    return be->cross_entropy(be, &t[0], dlogits, &t[1], &t[2], c->scale);
}

static void cross_entropy_cases(dorac_backend *cpu, dorac_backend *dev) {
    static const int64_t shapes[][2] = {{6, 50257}, {37, 1000}, {300, 64}};
    for (int s = 0; s < 3; s++) {
        int64_t N = shapes[s][0], V = shapes[s][1];
        int32_t *tg = random_ids(N, V, 4);
        tg[1] = DORAC_IGNORE_INDEX, tg[N - 1] = DORAC_IGNORE_INDEX, tg[0] = (int32_t)V - 1;
        if (N > 4) tg[2] = 0;
        for (int v = 0; v < 3; v++) {
            /* v: 0 no dlogits, 1 separate dlogits, 2 dlogits aliasing logits */
            op_case c = new_case("cross_entropy", run_xent);
            c.scale = 0.25, c.alias = v == 2;
            snprintf(c.shape, sizeof c.shape, "N%lld V%lld dlogits %s", (long long)N, (long long)V,
                     v == 0 ? "absent" : v == 1 ? "separate" : "alias");
            add(&c, output("loss", ROLE_STAT, 1, N, 0, N, CLS_RED, true));
            add(&c, v == 2 ? output("logits=dl", ROLE_ACT, N, V, 0, V, CLS_RED, false) : input("logits", ROLE_ACT, N, V, -4, 4));
            if (v == 2) c.b[1].lo = -4, c.b[1].hi = 4;
            add(&c, index_buf("targets", tg, N));
            add(&c, v == 1 ? output("dlogits", ROLE_ACT, N, V, 0, V, CLS_RED, true) : absent("dlogits", ROLE_ACT));
            run_case(cpu, dev, &c);
        }
        free(tg);
    }
}

/* ---------------------------------------------------------------------- */
/* memory, transfers, copy, fill: exact                                   */
/* ---------------------------------------------------------------------- */

static void note(const char *op, const char *what, const char *msg, bool ok) {
    printf("%-24s %-4s %-46s %-10s %s  %s\n", op, "-", "", what, msg, ok ? "OK" : "FAIL");
    fflush(stdout);
    record(ok);
}

/* Every entry but synchronize (optional) is set. */
static void check_entries(dorac_backend *dev) {
#define ENTRY(e) {#e, dev->e != NULL}
    struct {
        const char *name;
        bool set;
    } entries[] = {
        ENTRY(destroy), ENTRY(alloc), ENTRY(free), ENTRY(mem_stats), ENTRY(mem_stats_reset), ENTRY(upload),
        ENTRY(download), ENTRY(copy), ENTRY(fill), ENTRY(gemm), ENTRY(axpby), ENTRY(row_sumsq), ENTRY(col_sum),
        ENTRY(scale_cols_add_bias), ENTRY(scale_rows), ENTRY(dropout), ENTRY(dora_norm), ENTRY(dora_scale_backward),
        ENTRY(dora_magnitude_backward), ENTRY(sum_squares), ENTRY(adamw), ENTRY(embedding_forward),
        ENTRY(embedding_backward), ENTRY(rmsnorm_forward), ENTRY(rmsnorm_backward), ENTRY(layernorm_forward),
        ENTRY(layernorm_backward), ENTRY(rope), ENTRY(attention_forward), ENTRY(attention_backward),
        ENTRY(swiglu_forward), ENTRY(swiglu_backward), ENTRY(gelu_forward), ENTRY(gelu_backward),
        ENTRY(cross_entropy), ENTRY(attention_cached),
    };
#undef ENTRY
    size_t n = sizeof entries / sizeof entries[0];
    for (size_t i = 0; i < n; i++)
        if (!entries[i].set) note("backend", entries[i].name, "entry is NULL", false);
    char msg[240];
    snprintf(msg, sizeof msg, "%zu entries checked (+ the optional synchronize, gemm_many, fill_many, copy_many, rope_copy, lora_up_scale, sum_squares_many, adamw_many, dora_norm_many, swiglu/gelu_backward_dora)", n);
    note("backend", dev->name, msg, true);
}

static void check_memory(dorac_backend *dev) {
    dorac_mem_stats s0, s1, s2;
    dev->mem_stats_reset(dev);
    dev->mem_stats(dev, &s0);
    bool ok = s0.n_allocs == 0 && s0.peak_bytes == s0.current_bytes && s0.largest_alloc == 0;
    note("mem_stats_reset", "counters", ok ? "reset" : "not reset", ok);
    void *a = dev->alloc(dev, 1000), *b = dev->alloc(dev, 3 << 20);
    ok = a && b && (uintptr_t)a % 64 == 0 && (uintptr_t)b % 64 == 0;
    note("alloc", "alignment", ok ? "64-byte aligned" : "NULL or misaligned", ok);
    dev->mem_stats(dev, &s1);
    ok = s1.n_allocs == 2 && s1.current_bytes >= s0.current_bytes + 1000 + (3 << 20) &&
         s1.peak_bytes >= s1.current_bytes && s1.largest_alloc >= (size_t)(3 << 20);
    char msg[160];
    snprintf(msg, sizeof msg, "n_allocs %zu current +%zu peak %zu largest %zu", s1.n_allocs,
             s1.current_bytes - s0.current_bytes, s1.peak_bytes, s1.largest_alloc);
    note("mem_stats", "after alloc", msg, ok);
    dev->free(dev, b);
    dev->free(dev, a);
    dev->free(dev, NULL);
    dev->mem_stats(dev, &s2);
    ok = s2.current_bytes == s0.current_bytes && s2.peak_bytes == s1.peak_bytes;
    snprintf(msg, sizeof msg, "current %zu (was %zu) peak %zu", s2.current_bytes, s0.current_bytes, s2.peak_bytes);
    note("free", "after free", msg, ok);
    dorac_error_clear();
    void *huge = dev->alloc(dev, (size_t)1 << 52);
    ok = huge == NULL && dorac_last_error()[0] != '\0';
    note("alloc", "4 PiB", ok ? "NULL with a message" : "did not fail cleanly", ok);
    if (huge) dev->free(dev, huge);
    /* a failed allocation leaves no error behind for the next op to report */
    dorac_tensor probe;
    int rc = dorac_tensor_alloc(dev, &probe, dev->act_type, 3, 5, "probe");
    float back[15] = {0};
    if (!rc) rc = dev->fill(dev, &probe, 1.0);
    if (!rc) rc = dev->download(dev, back, DORAC_DTYPE_F32, &probe);
    ok = rc == DORAC_OK && back[0] == 1.0f && back[14] == 1.0f;
    note("alloc", "after failure", ok ? "fill + download work" : dorac_last_error(), ok);
    dorac_tensor_free(dev, &probe);
    if (dev->synchronize) {
        rc = dev->synchronize(dev);
        note("synchronize", "idle", dorac_status_name(rc), rc == DORAC_OK);
    }
}

/* The float types the device declares, F32 first. */
static int device_float_types(const dorac_backend *dev, dorac_dtype *types) {
    dorac_dtype cand[] = {DORAC_DTYPE_F32, dev->act_type, dev->weight_type, dev->param_type};
    int n = 0;
    for (int i = 0; i < 4; i++) {
        bool seen = false;
        for (int j = 0; j < n; j++) seen |= types[j] == cand[i];
        if (!seen && (cand[i] == DORAC_DTYPE_F32 || cand[i] == DORAC_DTYPE_BF16 || cand[i] == DORAC_DTYPE_F16))
            types[n++] = cand[i];
    }
    return n;
}

/* Values for transfer tests: random floats, then specials (rounding ties,
** signed zero, infinities, NaN, overflow past the bf16 range). */
static float transfer_value(int64_t k) {
    static const float specials[] = {0.0f, -0.0f, 1.0f + 0x1p-8f, 1.0f + 0x3p-8f, -(1.0f + 0x1p-8f), 65504.0f,
                                     3.4e38f, INFINITY, -INFINITY, NAN, 1e-3f, -7.25f};
    if (k < (int64_t)(sizeof specials / sizeof specials[0])) return specials[k];
    return (float)(8 * dorac_rng_uniform_f64(95, 0, (uint64_t)k) - 4);
}

static bool same_bits_or_nan(float a, float b) {
    return (a != a && b != b) || memcmp(&a, &b, sizeof a) == 0;
}

/* upload from F64, F32 and BF16 host arrays into a strided view of each
** device type, download to F32 and F64; every value exact, the padding
** untouched. I32 round trip. */
static void check_transfers(dorac_backend *dev) {
    dorac_dtype types[4];
    int nt = device_float_types(dev, types);
    const int64_t R = 7, C = 13, LD = 16, OFF = 2;
    for (int ti = 0; ti < nt; ti++) {
        dorac_dtype t = types[ti];
        dorac_dtype hosts[] = {DORAC_DTYPE_F64, DORAC_DTYPE_F32, DORAC_DTYPE_BF16};
        for (int hi = 0; hi < 3; hi++) {
            dorac_dtype ht = hosts[hi];
            dorac_tensor buf;
            if (dorac_tensor_alloc(dev, &buf, t, R, LD, "transfer")) {
                note("upload", dorac_dtype_name(t), dorac_last_error(), false);
                continue;
            }
            float canary[7 * 16], src32[7 * 13];
            for (int64_t k = 0; k < R * LD; k++) canary[k] = round_to(t, 100.0 + (double)k);
            for (int64_t k = 0; k < R * C; k++) src32[k] = transfer_value(k);
            /* the host array in its own type */
            double src64[7 * 13];
            uint16_t src16[7 * 13];
            for (int64_t k = 0; k < R * C; k++) src64[k] = src32[k], src16[k] = dorac_f32_to_bf16(src32[k]);
            const void *src = ht == DORAC_DTYPE_F64 ? (const void *)src64 : ht == DORAC_DTYPE_F32 ? (const void *)src32 : (const void *)src16;
            dorac_tensor view = cols_of(&buf, OFF, C);
            int rc = dev->upload(dev, &buf, canary, DORAC_DTYPE_F32);
            if (!rc) rc = dev->upload(dev, &view, src, ht);
            float got[7 * 13], all[7 * 16];
            double got64[7 * 13];
            if (!rc) rc = dev->download(dev, got, DORAC_DTYPE_F32, &view);
            if (!rc) rc = dev->download(dev, got64, DORAC_DTYPE_F64, &view);
            if (!rc) rc = dev->download(dev, all, DORAC_DTYPE_F32, &buf);
            size_t bad = 0, bad64 = 0, pad = 0;
            for (int64_t k = 0; !rc && k < R * C; k++) {
                float host = ht == DORAC_DTYPE_BF16 ? dorac_bf16_to_f32(src16[k]) : src32[k];
                float want = round_to(t, host);
                /* NaN stays NaN; the rest bit-exact, -0 included */
                bad += !same_bits_or_nan(got[k], want);
                bad64 += !same_bits_or_nan((float)got64[k], want) ||
                         (got64[k] == got64[k] && (double)(float)got64[k] != got64[k]);
            }
            for (int64_t r = 0; !rc && r < R; r++)
                for (int64_t j = 0; j < LD; j++)
                    if (j < OFF || j >= OFF + C) pad += !same_bits_or_nan(all[r * LD + j], canary[r * LD + j]);
            char what[32], msg[160];
            snprintf(what, sizeof what, "%s<-%s", dorac_dtype_name(t), dorac_dtype_name(ht));
            if (rc) snprintf(msg, sizeof msg, "%s", dorac_last_error());
            else snprintf(msg, sizeof msg, "view (%lld,%lld) ld %lld: %zu wrong (f32), %zu wrong (f64), %zu padding changed",
                          (long long)R, (long long)C, (long long)LD, bad, bad64, pad);
            note("upload/download", what, msg, !rc && bad == 0 && bad64 == 0 && pad == 0);
            dorac_tensor_free(dev, &buf);
        }
    }
    /* I32 ids: a strided view round trip */
    dorac_tensor ibuf;
    if (dorac_tensor_alloc(dev, &ibuf, DORAC_DTYPE_I32, 3, 9, "ids") == DORAC_OK) {
        int32_t all[27], part[3 * 5], back[3 * 5], whole[27];
        for (int k = 0; k < 27; k++) all[k] = -1000 - k;
        for (int k = 0; k < 15; k++) part[k] = k * 7919 - 3;
        dorac_tensor view = cols_of(&ibuf, 3, 5);
        int rc = dev->upload(dev, &ibuf, all, DORAC_DTYPE_I32);
        if (!rc) rc = dev->upload(dev, &view, part, DORAC_DTYPE_I32);
        if (!rc) rc = dev->download(dev, back, DORAC_DTYPE_I32, &view);
        if (!rc) rc = dev->download(dev, whole, DORAC_DTYPE_I32, &ibuf);
        bool ok = !rc && memcmp(back, part, sizeof part) == 0;
        for (int r = 0; ok && r < 3; r++)
            for (int j = 0; j < 9; j++)
                if ((j < 3 || j >= 8) && whole[r * 9 + j] != all[r * 9 + j]) ok = false;
        note("upload/download", "I32", ok ? "view round trip exact" : rc ? dorac_last_error() : "mismatch", ok);
        dorac_tensor_free(dev, &ibuf);
    }
}

/* copy between every pair of device float types, strided and offset on
** both sides: dst = round(dst type, src), padding untouched. fill: every
** element = round(type, value), padding untouched. */
/* copy_many (through dorac_copy_many: the device's batched op where it has
** one) against one copy per pair, bit for bit: CR pairs (more than one
** launch's batch), (1 + i % 4) x (CC - i % 5) each, between every pair of
** float types. The sources are overlapping views of one buffer (reads may
** share); the destinations are disjoint row blocks of another, at column
** i % 3, whose other elements keep a sentinel (12288, exact in BF16 too:
** a first version's 12345 rounded, and every element then counted as
** written on the GPU); pair 9 has an absent dst
** (skipped). Then a pair of mismatched shapes must fail. */
static void copy_many_case(dorac_backend *dev, const dorac_dtype *types, int nt) {
    enum { CR = 40, CC = 37, DR = 4 * CR };
    for (int ia = 0; ia < nt * nt; ia++) {
        dorac_dtype ts = types[ia / nt], td = types[ia % nt];
        dorac_tensor src, dst[2]; /* dst[0] by copy_many, dst[1] by copy per pair */
        if (dorac_tensor_alloc(dev, &src, ts, CR, CC + 1, "copy_many src")) continue;
        if (dorac_tensor_alloc(dev, &dst[0], td, DR, CC + 2, "copy_many dst")) continue;
        if (dorac_tensor_alloc(dev, &dst[1], td, DR, CC + 2, "copy_many dst")) continue;
        size_t ns = (size_t)CR * (CC + 1), nd = (size_t)DR * (CC + 2);
        float *h = malloc(ns * sizeof *h), *sent = malloc(nd * sizeof *sent);
        float *got[2] = {malloc(nd * sizeof(float)), malloc(nd * sizeof(float))};
        for (size_t k = 0; k < ns; k++) h[k] = (float)(0.37 * sin(1.0 + 0.731 * (double)k) * (1.0 + (double)(k % 7)));
        for (size_t k = 0; k < nd; k++) sent[k] = 12288.0f;
        int rc = dev->upload(dev, &src, h, DORAC_DTYPE_F32);
        for (int w = 0; w < 2 && !rc; w++) rc = dev->upload(dev, &dst[w], sent, DORAC_DTYPE_F32);
        dorac_tensor sv[CR], dv[2][CR], none = dorac_tensor_none(td);
        const dorac_tensor *sl[CR], *dl[CR];
        int64_t row0 = 0;
        size_t want_written = 0;
        for (int i = 0; i < CR; i++) {
            int64_t rows = 1 + i % 4, cols = CC - i % 5;
            sv[i] = dorac_tensor_rows(&src, (int64_t)i % (CR - 4), rows);
            sv[i] = cols_of(&sv[i], (int64_t)(i % 2), cols);
            for (int w = 0; w < 2; w++) {
                dv[w][i] = dorac_tensor_rows(&dst[w], row0, rows);
                dv[w][i] = cols_of(&dv[w][i], (int64_t)(i % 3), cols);
            }
            row0 += rows;
            sl[i] = &sv[i];
            dl[i] = i == 9 ? &none : &dv[0][i];
            if (i != 9) want_written += (size_t)(rows * cols);
        }
        if (!rc) rc = dorac_copy_many(dev, dl, sl, CR);
        for (int i = 0; i < CR && !rc; i++)
            if (i != 9) rc = dev->copy(dev, &dv[1][i], &sv[i]);
        for (int w = 0; w < 2 && !rc; w++) rc = dev->download(dev, got[w], DORAC_DTYPE_F32, &dst[w]);
        size_t bad = 0, written = 0;
        for (size_t k = 0; !rc && k < nd; k++) {
            bad += !same_bits_or_nan(got[0][k], got[1][k]);
            written += got[0][k] != 12288.0f;
        }
        char what[32], msg[160];
        snprintf(what, sizeof what, "%s->%s", dorac_dtype_name(ts), dorac_dtype_name(td));
        if (rc) snprintf(msg, sizeof msg, "%s", dorac_last_error());
        else snprintf(msg, sizeof msg, "%d pairs (one absent): %zu of %zu elements differ from copy, %zu of %zu written",
                      (int)CR, bad, nd, written, want_written);
        note("copy_many", what, msg, !rc && bad == 0 && written == want_written);
        /* a pair whose shapes differ */
        dorac_tensor shorter = sv[1];
        shorter.rows -= 1;
        const dorac_tensor *sbad[1] = {&shorter}, *dbad[1] = {&dv[0][1]};
        int erc = dorac_copy_many(dev, dbad, sbad, 1);
        note("copy_many", what, erc ? "shape mismatch rejected" : "shape mismatch accepted", erc != DORAC_OK);
        dorac_error_clear();
        free(h), free(sent), free(got[0]), free(got[1]);
        dorac_tensor_free(dev, &src), dorac_tensor_free(dev, &dst[0]), dorac_tensor_free(dev, &dst[1]);
    }
}

/* gemm_many (through dorac_gemm_many) against one gemm per product on the
** same device: seven P-shaped products C (M, 16) = A (M, K) B (16, K)^T
** with beta 0.5, three and two of them sharing sizes (batched where the
** device batches), one alone, and one whose A is in param_type (F32 on the
** GPU: gemm's conversion, never batched). Both ways accumulate in fp32; a
** batch may sum in another order, so the check is relative, 1e-5 of the
** largest element. Then a product of mismatched sizes must fail. */
static void gemm_many_case(dorac_backend *dev) {
    enum { NP = 7, R = 16 };
    static const int64_t MK[NP][2] = {{40, 64}, {24, 96}, {40, 64}, {24, 96}, {40, 64}, {72, 64}, {40, 64}};
    dorac_tensor C[2][NP], A[NP], B[NP];
    const dorac_tensor *cl[NP], *al[NP], *bl[NP];
    int rc = DORAC_OK;
    for (int i = 0; i < NP && !rc; i++) {
        int64_t M = MK[i][0], K = MK[i][1];
        dorac_dtype at = i == 6 ? dev->param_type : dev->weight_type;
        rc = dorac_tensor_alloc(dev, &A[i], at, M, K, "gemm_many A");
        if (!rc) rc = dorac_tensor_alloc(dev, &B[i], dev->weight_type, R, K, "gemm_many B");
        for (int w = 0; w < 2 && !rc; w++) rc = dorac_tensor_alloc(dev, &C[w][i], dev->param_type, M, R, "gemm_many C");
        double *h = malloc((size_t)(M * K + R * K + M * R) * sizeof *h);
        for (int64_t k = 0; k < M * K + R * K + M * R; k++) h[k] = sin(0.37 * (double)k + (double)i);
        if (!rc) rc = dev->upload(dev, &A[i], h, DORAC_DTYPE_F64);
        if (!rc) rc = dev->upload(dev, &B[i], h + M * K, DORAC_DTYPE_F64);
        for (int w = 0; w < 2 && !rc; w++) rc = dev->upload(dev, &C[w][i], h + M * K + R * K, DORAC_DTYPE_F64);
        free(h);
        cl[i] = &C[0][i], al[i] = &A[i], bl[i] = &B[i];
    }
    if (!rc) rc = dorac_gemm_many(dev, cl, al, false, bl, true, NP, 0.75, 0.5);
    for (int i = 0; i < NP && !rc; i++) rc = dev->gemm(dev, &C[1][i], &A[i], false, &B[i], true, 0.75, 0.5);
    double worst = 0;
    for (int i = 0; i < NP && !rc; i++) {
        size_t n = (size_t)(C[0][i].rows * R);
        double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        rc = dev->download(dev, x, DORAC_DTYPE_F64, &C[0][i]);
        if (!rc) rc = dev->download(dev, y, DORAC_DTYPE_F64, &C[1][i]);
        double num = 0, den = 1e-30;
        for (size_t k = 0; !rc && k < n; k++) num = test_worst(num, fabs(x[k] - y[k])), den = fmax(den, fabs(y[k]));
        worst = fmax(worst, num / den);
        free(x), free(y);
    }
    char msg[160];
    if (rc) snprintf(msg, sizeof msg, "%s", dorac_last_error());
    else snprintf(msg, sizeof msg, "%d products in 3 shapes: worst relative difference from gemm %.2e", NP, worst);
    note("gemm_many", dorac_dtype_name(dev->weight_type), msg, !rc && worst <= 1e-5);
    /* a product whose C has the wrong rows */
    if (!rc) {
        dorac_tensor shorter = C[0][0];
        shorter.rows -= 1;
        const dorac_tensor *cbad[1] = {&shorter};
        int erc = dorac_gemm_many(dev, cbad, al, false, bl, true, 1, 1.0, 0.0);
        note("gemm_many", "sizes", erc ? "mismatch rejected" : "mismatch accepted", erc != DORAC_OK);
        dorac_error_clear();
    }
    for (int i = 0; i < NP; i++) {
        dorac_tensor_free(dev, &A[i]), dorac_tensor_free(dev, &B[i]);
        dorac_tensor_free(dev, &C[0][i]), dorac_tensor_free(dev, &C[1][i]);
    }
}

static void check_copy_fill(dorac_backend *dev) {
    dorac_dtype types[4];
    int nt = device_float_types(dev, types);
    const int64_t R = 33, C = 70;
    for (int a = 0; a < nt; a++)
        for (int b = 0; b < nt; b++) {
            dorac_tensor sbuf, dbuf;
            if (dorac_tensor_alloc(dev, &sbuf, types[a], R, C + 3, "copy src") ||
                dorac_tensor_alloc(dev, &dbuf, types[b], R, C + 4, "copy dst")) {
                note("copy", "alloc", dorac_last_error(), false);
                continue;
            }
            float *s = malloc((size_t)(R * (C + 3)) * sizeof *s), *d = malloc((size_t)(R * (C + 4)) * sizeof *d);
            float *got = malloc((size_t)(R * (C + 4)) * sizeof *got);
            for (int64_t k = 0; k < R * (C + 3); k++) s[k] = round_to(types[a], transfer_value(k % 97 == 0 ? k / 97 : k + 20));
            for (int64_t k = 0; k < R * (C + 4); k++) d[k] = round_to(types[b], -50.0 - (double)k);
            dorac_tensor sv = cols_of(&sbuf, 1, C), dv = cols_of(&dbuf, 3, C);
            int rc = dev->upload(dev, &sbuf, s, DORAC_DTYPE_F32);
            if (!rc) rc = dev->upload(dev, &dbuf, d, DORAC_DTYPE_F32);
            if (!rc) rc = dev->copy(dev, &dv, &sv);
            if (!rc) rc = dev->download(dev, got, DORAC_DTYPE_F32, &dbuf);
            size_t bad = 0, pad = 0;
            for (int64_t r = 0; !rc && r < R; r++)
                for (int64_t j = 0; j < C + 4; j++) {
                    float g = got[r * (C + 4) + j];
                    if (j >= 3 && j < 3 + C) bad += !same_bits_or_nan(g, round_to(types[b], s[r * (C + 3) + 1 + j - 3]));
                    else pad += !same_bits_or_nan(g, d[r * (C + 4) + j]);
                }
            char what[32], msg[160];
            snprintf(what, sizeof what, "%s->%s", dorac_dtype_name(types[a]), dorac_dtype_name(types[b]));
            if (rc) snprintf(msg, sizeof msg, "%s", dorac_last_error());
            else snprintf(msg, sizeof msg, "views (%lld,%lld): %zu wrong, %zu padding changed", (long long)R,
                          (long long)C, bad, pad);
            note("copy", what, msg, !rc && bad == 0 && pad == 0);
            free(s), free(d), free(got);
            dorac_tensor_free(dev, &sbuf), dorac_tensor_free(dev, &dbuf);
        }
    static const double values[] = {0.3, -1.5e-3, 0.0};
    for (int a = 0; a < nt; a++)
        for (int v = 0; v < 3; v++) {
            dorac_tensor buf;
            if (dorac_tensor_alloc(dev, &buf, types[a], R, C + 2, "fill")) continue;
            float *d = malloc((size_t)(R * (C + 2)) * sizeof *d), *got = malloc((size_t)(R * (C + 2)) * sizeof *got);
            for (int64_t k = 0; k < R * (C + 2); k++) d[k] = round_to(types[a], 7.0 + (double)k);
            dorac_tensor view = cols_of(&buf, 1, C);
            int rc = dev->upload(dev, &buf, d, DORAC_DTYPE_F32);
            if (!rc) rc = dev->fill(dev, &view, values[v]);
            if (!rc) rc = dev->download(dev, got, DORAC_DTYPE_F32, &buf);
            size_t bad = 0, pad = 0;
            float want = round_to(types[a], values[v]);
            for (int64_t r = 0; !rc && r < R; r++)
                for (int64_t j = 0; j < C + 2; j++) {
                    float g = got[r * (C + 2) + j];
                    if (j >= 1 && j < 1 + C) bad += !same_bits_or_nan(g, want);
                    else pad += !same_bits_or_nan(g, d[r * (C + 2) + j]);
                }
            char what[32], msg[160];
            snprintf(what, sizeof what, "%s %g", dorac_dtype_name(types[a]), values[v]);
            if (rc) snprintf(msg, sizeof msg, "%s", dorac_last_error());
            else snprintf(msg, sizeof msg, "view (%lld,%lld): %zu wrong, %zu padding changed", (long long)R,
                          (long long)C, bad, pad);
            note("fill", what, msg, !rc && bad == 0 && pad == 0);
            free(d), free(got);
            dorac_tensor_free(dev, &buf);
        }    /* fill_many (through dorac_fill_many: the device's batched op where it
    ** has one): each of FR rows but row 5 as its own (1, C) view, more
    ** tensors than one launch's batch, plus an absent tensor in the list */
    enum { FR = 70 };
    for (int a = 0; a < nt; a++) {
        dorac_tensor buf, views[FR], none = dorac_tensor_none(types[a]);
        const dorac_tensor *list[FR + 1];
        if (dorac_tensor_alloc(dev, &buf, types[a], FR, C + 2, "fill_many")) continue;
        float *d = malloc((size_t)(FR * (C + 2)) * sizeof *d), *got = malloc((size_t)(FR * (C + 2)) * sizeof *got);
        for (int64_t k = 0; k < FR * (C + 2); k++) d[k] = round_to(types[a], 7.0 + (double)k);
        size_t n = 0;
        for (int64_t r = FR - 1; r >= 0; r--) {
            if (r == 5) continue;
            dorac_tensor row = dorac_tensor_rows(&buf, r, 1);
            views[r] = cols_of(&row, 1, C);
            list[n++] = &views[r];
            if (r == 40) list[n++] = &none;
        }
        int rc = dev->upload(dev, &buf, d, DORAC_DTYPE_F32);
        if (!rc) rc = dorac_fill_many(dev, list, n, -0.625);
        if (!rc) rc = dev->download(dev, got, DORAC_DTYPE_F32, &buf);
        size_t bad = 0, pad = 0;
        for (int64_t r = 0; !rc && r < FR; r++)
            for (int64_t j = 0; j < C + 2; j++) {
                float g = got[r * (C + 2) + j];
                if (r != 5 && j >= 1 && j < 1 + C) bad += !same_bits_or_nan(g, -0.625f);
                else pad += !same_bits_or_nan(g, d[r * (C + 2) + j]);
            }
        char msg[160];
        if (rc) snprintf(msg, sizeof msg, "%s", dorac_last_error());
        else snprintf(msg, sizeof msg, "%zu row views of (%d,%lld) and an absent one: %zu wrong, %zu others changed",
                      n - 1, (int)FR, (long long)C, bad, pad);
        note("fill_many", dorac_dtype_name(types[a]), msg, !rc && bad == 0 && pad == 0);
        free(d), free(got);
        dorac_tensor_free(dev, &buf);
    }
    copy_many_case(dev, types, nt);
    gemm_many_case(dev);
}

/* ---------------------------------------------------------------------- */
/* error paths                                                            */
/* ---------------------------------------------------------------------- */

static void expect_status(const char *op, const char *what, int rc, int want) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s (want %s): %s", dorac_status_name(rc), dorac_status_name(want),
             rc == DORAC_OK ? "" : dorac_last_error());
    bool ok = rc == want;
    /* backend.h: the message names the op */
    if (ok && rc != DORAC_OK && !strstr(dorac_last_error(), op)) {
        ok = false;
        snprintf(msg, sizeof msg, "message does not name %s: %s", op, dorac_last_error());
    }
    note(op, what, msg, ok);
}

static void check_errors(dorac_backend *dev) {
    dorac_dtype at = dev->act_type, wt = dev->weight_type, pt = dev->param_type;
    dorac_tensor a, b, c, w, ids, table, out, lse, f64, pos, cs, sn, logits, loss, tg;
    int rc = dorac_tensor_alloc(dev, &a, at, 8, 16, "a");
    if (!rc) rc = dorac_tensor_alloc(dev, &b, wt, 12, 16, "b");
    if (!rc) rc = dorac_tensor_alloc(dev, &c, at, 8, 12, "c");
    if (!rc) rc = dorac_tensor_alloc(dev, &w, wt, 1, 15, "w");
    if (!rc) rc = dorac_tensor_alloc(dev, &ids, DORAC_DTYPE_I32, 1, 3, "ids");
    if (!rc) rc = dorac_tensor_alloc(dev, &table, wt, 6, 16, "table");
    if (!rc) rc = dorac_tensor_alloc(dev, &out, at, 3, 16, "out");
    if (!rc) rc = dorac_tensor_alloc(dev, &lse, pt, 1, 64, "lse");
    if (!rc) rc = dorac_tensor_alloc(dev, &f64, DORAC_DTYPE_F64, 8, 16, "f64");
    if (!rc) rc = dorac_tensor_alloc(dev, &pos, DORAC_DTYPE_I32, 1, 8, "pos");
    if (!rc) rc = dorac_tensor_alloc(dev, &cs, pt, 4, 4, "cos");
    if (!rc) rc = dorac_tensor_alloc(dev, &sn, pt, 4, 4, "sin");
    if (!rc) rc = dorac_tensor_alloc(dev, &logits, at, 3, 10, "logits");
    if (!rc) rc = dorac_tensor_alloc(dev, &loss, pt, 1, 3, "loss");
    if (!rc) rc = dorac_tensor_alloc(dev, &tg, DORAC_DTYPE_I32, 1, 3, "targets");
    if (rc) {
        note("errors", "setup", dorac_last_error(), false);
        return;
    }
    float zeros[16 * 16] = {0};
    dev->upload(dev, &a, zeros, DORAC_DTYPE_F32);
    dev->upload(dev, &b, zeros, DORAC_DTYPE_F32);
    dev->upload(dev, &table, zeros, DORAC_DTYPE_F32);
    dev->upload(dev, &cs, zeros, DORAC_DTYPE_F32);
    dev->upload(dev, &sn, zeros, DORAC_DTYPE_F32);
    dev->upload(dev, &logits, zeros, DORAC_DTYPE_F32);

    /* shapes */
    dorac_tensor a15 = cols_of(&a, 0, 15);
    expect_status("gemm", "K mismatch", dev->gemm(dev, &c, &a15, false, &b, true, 1, 0), DORAC_E_INVALID);
    dorac_tensor c11 = cols_of(&c, 0, 11);
    expect_status("gemm", "C shape", dev->gemm(dev, &c11, &a, false, &b, true, 1, 0), DORAC_E_INVALID);
    expect_status("axpby", "shape mismatch", dev->axpby(dev, &c, &a, 1, 0), DORAC_E_INVALID);
    dorac_tensor rstd8 = cols_of(&lse, 0, 8);
    expect_status("rmsnorm_forward", "w length", dev->rmsnorm_forward(dev, &a, &rstd8, &a, &w, 1e-5), DORAC_E_INVALID);
    dorac_tensor q = cols_of(&a, 0, 16), kv = cols_of(&a, 0, 8), o = cols_of(&c, 0, 12), lse16 = cols_of(&lse, 0, 16);
    expect_status("attention_forward", "H % KV", dev->attention_forward(dev, &q, &lse16, &q, &kv, &kv, 1, 8, 3, 2, 4),
                  DORAC_E_INVALID);
    expect_status("attention_forward", "q columns", dev->attention_forward(dev, &o, &lse16, &o, &kv, &kv, 1, 8, 4, 2, 4),
                  DORAC_E_INVALID);
    dorac_tensor k7 = dorac_tensor_rows(&kv, 0, 7), q1 = dorac_tensor_rows(&q, 0, 1), o1 = dorac_tensor_rows(&q, 1, 1);
    expect_status("attention_cached", "k rows", dev->attention_cached(dev, &o1, &q1, &k7, &k7, 7, 4, 2, 4),
                  DORAC_E_INVALID);

    /* index ranges; the output is left as it was */
    int32_t bad_hi[3] = {1, 6, 2}, bad_lo[3] = {0, -1, 2};
    float before[3 * 16], after[3 * 16];
    for (int k = 0; k < 48; k++) before[k] = round_to(at, 0.5 + k);
    dev->upload(dev, &out, before, DORAC_DTYPE_F32);
    dev->upload(dev, &ids, bad_hi, DORAC_DTYPE_I32);
    expect_status("embedding_forward", "id = V", dev->embedding_forward(dev, &out, &ids, &table, false), DORAC_E_INVALID);
    dev->download(dev, after, DORAC_DTYPE_F32, &out);
    note("embedding_forward", "after error", memcmp(before, after, sizeof before) ? "output changed" : "output untouched",
         memcmp(before, after, sizeof before) == 0);
    dev->upload(dev, &ids, bad_lo, DORAC_DTYPE_I32);
    expect_status("embedding_forward", "id = -1", dev->embedding_forward(dev, &out, &ids, &table, true), DORAC_E_INVALID);
    dorac_tensor dtable;
    if (dorac_tensor_alloc(dev, &dtable, pt, 6, 16, "dtable") == DORAC_OK) {
        dev->upload(dev, &ids, bad_hi, DORAC_DTYPE_I32);
        expect_status("embedding_backward", "id = V", dev->embedding_backward(dev, &dtable, &out, &ids), DORAC_E_INVALID);
        dorac_tensor_free(dev, &dtable);
    }
    int32_t t_hi[3] = {1, 10, DORAC_IGNORE_INDEX}, t_neg[3] = {-1, 2, 3};
    dev->upload(dev, &tg, t_hi, DORAC_DTYPE_I32);
    expect_status("cross_entropy", "target = V", dev->cross_entropy(dev, &loss, NULL, &logits, &tg, 1), DORAC_E_INVALID);
    dev->upload(dev, &tg, t_neg, DORAC_DTYPE_I32);
    expect_status("cross_entropy", "target = -1", dev->cross_entropy(dev, &loss, NULL, &logits, &tg, 1), DORAC_E_INVALID);
    int32_t p_bad[8] = {0, 1, 2, 3, 4, 0, 0, 0};
    dev->upload(dev, &pos, p_bad, DORAC_DTYPE_I32);
    expect_status("rope", "pos = max_pos", dev->rope(dev, &q, &pos, &cs, &sn, 2, 8, false), DORAC_E_INVALID);
    int32_t p_ok[8] = {0};
    dev->upload(dev, &pos, p_ok, DORAC_DTYPE_I32);
    expect_status("rope", "odd head_dim", dev->rope(dev, &a15, &pos, &cs, &sn, 3, 5, false), DORAC_E_INVALID);

    /* arguments and types */
    expect_status("dropout", "p = 1", dev->dropout(dev, &a, &a, 1.0, 1, 1, 0), DORAC_E_INVALID);
    dorac_tensor pm;
    if (dorac_tensor_alloc(dev, &pm, pt, 2, 3, "adamw") == DORAC_OK) {
        dev->fill(dev, &pm, 0.0);
        expect_status("adamw", "step 0", dev->adamw(dev, &pm, &pm, &pm, &pm, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1),
                      DORAC_E_INVALID);
        dorac_tensor_free(dev, &pm);
    }
    {
        /* a DoRA norm item with B but no A, and one whose A has the wrong rows */
        dorac_tensor none = dorac_tensor_none(pt), n8 = cols_of(&lse, 0, 8), a2 = dorac_tensor_rows(&b, 0, 2);
        dorac_tensor b8 = dorac_tensor_rows(&b, 0, 8), g3 = dorac_tensor_rows(&c, 0, 3);
        b8.cols = 3, g3.cols = 3;
        dorac_dora_norm_item it = {&n8, &none, &n8, &none, &b8, &b8, &g3, &none, 1.0};
        expect_status("dora_norm_many", "B without A", dorac_dora_norm_many(dev, &it, 1, 1e-12), DORAC_E_INVALID);
        it.A = &a2;
        expect_status("dora_norm_many", "A rows != rank", dorac_dora_norm_many(dev, &it, 1, 1e-12), DORAC_E_INVALID);
    }
    expect_status("fill", "F64 tensor", dev->fill(dev, &f64, 1.0), DORAC_E_UNSUPPORTED);
    expect_status("axpby", "F64 tensor", dev->axpby(dev, &a, &f64, 1, 0), DORAC_E_UNSUPPORTED);

    /* the backend still works after the errors */
    rc = dev->fill(dev, &c, 2.5);
    float back[8 * 12];
    if (!rc) rc = dev->download(dev, back, DORAC_DTYPE_F32, &c);
    bool ok = rc == DORAC_OK;
    for (int k = 0; ok && k < 96; k++) ok = back[k] == 2.5f;
    note("backend", "after errors", ok ? "fill + download work" : dorac_last_error(), ok);

    dorac_tensor *all[] = {&a, &b, &c, &w, &ids, &table, &out, &lse, &f64, &pos, &cs, &sn, &logits, &loss, &tg};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) dorac_tensor_free(dev, all[k]);
}

/* ---------------------------------------------------------------------- */

int main(int argc, char **argv) {
    n_only = argc - 1, only_ops = argv + 1;
    const char *which = getenv("DORAC_TEST_DEVICE");
    bool self_test = which && !strcmp(which, "cpu");
    if (!self_test && !dorac_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 77;
    }
    dorac_backend *cpu = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_backend *dev = self_test ? dorac_backend_cpu_create((dorac_cpu_params){0})
                                   : dorac_backend_cuda_create((dorac_cuda_params){0});
    if (!cpu || !dev) {
        fprintf(stderr, "test_backend_ops: cannot create the backends: %s\n", dorac_last_error());
        dorac_backend_destroy(cpu);
        dorac_backend_destroy(dev);
        return 1;
    }
    printf("device %s: prod = act %s, weight %s, param %s; oracle cpu f32\n", dev->name,
           dorac_dtype_name(dev->act_type), dorac_dtype_name(dev->weight_type), dorac_dtype_name(dev->param_type));

    check_entries(dev);
    check_memory(dev);
    check_transfers(dev);
    check_copy_fill(dev);
    gemm_cases(cpu, dev);
    axpby_cases(cpu, dev);
    row_sumsq_cases(cpu, dev);
    col_sum_cases(cpu, dev);
    scale_cols_cases(cpu, dev);
    lora_up_scale_cases(cpu, dev);
    activation_dora_cases(cpu, dev);
    scale_rows_cases(cpu, dev);
    dropout_cases(cpu, dev);
    dora_norm_cases(cpu, dev);
    dora_norm_many_case(cpu, dev);
    dora_scale_backward_cases(cpu, dev);
    dora_magnitude_backward_cases(cpu, dev);
    sum_squares_cases(cpu, dev);
    adamw_cases(cpu, dev);
    embedding_cases(cpu, dev);
    rmsnorm_cases(cpu, dev);
    layernorm_cases(cpu, dev);
    rope_cases(cpu, dev);
    attention_cases(cpu, dev);
    attention_cached_cases(cpu, dev);
    activation_cases(cpu, dev);
    cross_entropy_cases(cpu, dev);
    check_errors(dev);

    printf("%d lines, %d FAIL\n", n_lines, n_failed_lines);
    dorac_backend_destroy(dev);
    dorac_backend_destroy(cpu);
    return test_report();
}
