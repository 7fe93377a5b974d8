/*
** test_layer_fd.c — finite differences in double precision for every
** gradient the linear layer produces (dx, dA, dB, dm, dW, dbias), in every
** method and both DoRA norm modes, on odd shapes, with and without bias and
** dropout. The layer runs on the fp64 CPU backend: the same adapter code
** users run, only in double, so the check is of the code, not of a copy.
**
** The loss is L = sum(R ⊙ y) for a fixed random R, so dL/dy = R. Each
** parameter is perturbed by ±h and the central difference compared with
** the analytic gradient: max|fd - analytic| / max|analytic| < 1e-6.
**
** Detach mode defines the gradient of a function in which n is a constant;
** its finite differences therefore hold n (hence g = m/n up to m) at the
** unperturbed value: y_det = (m / n0) ⊙ z + b, with z read back from the
** layer's own y and g.
*/
#include "layer_fixture.h"
#include "test.h"

static const double FD_STEP = 1e-5;
static const double FD_TOL = 1e-6;

typedef struct fd_state {
    fixture *f;
    double *n0; /* n at the unperturbed parameters (detach mode) */
} fd_state;

static double loss_now(fd_state *s) {
    fixture *f = s->f;
    fixture_upload(f);
    if (fixture_forward(f)) return NAN;
    double *y = fixture_get(f, &f->ty);
    int64_t N = f->c.N, out = f->c.out;
    bool detach = f->c.method == DORAC_METHOD_DORA && f->c.norm_grad == DORAC_NORM_GRAD_DETACH;
    double *n = detach ? fixture_get(f, &f->L.n) : NULL;
    double L = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t o = 0; o < out; o++) {
            double yo = y[i * out + o];
            if (detach) {
                /* y = (m/n) z + b  ->  y_det = (m/n0) z + b = (n/n0)(y - b) + b */
                double b = f->c.bias ? f->bias[o] : 0.0;
                yo = n[o] / s->n0[o] * (yo - b) + b;
            }
            L += f->R[i * out + o] * yo;
        }
    free(y);
    free(n);
    return L;
}

/* Central differences over every element of host array p (n elements),
** compared with the analytic gradient `an`. */
static double fd_error(fd_state *s, double *p, size_t n, const double *an) {
    double *fd = malloc(n * sizeof *fd);
    for (size_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + FD_STEP;
        double lp = loss_now(s);
        p[i] = keep - FD_STEP;
        double lm = loss_now(s);
        p[i] = keep;
        fd[i] = (lp - lm) / (2 * FD_STEP);
    }
    double err = rel_err_f64(an, fd, n, 1e-12);
    free(fd);
    return err;
}

static void check_case(dorac_backend *be, const fixture_case *c) {
    fixture f;
    CHECK_OK(fixture_init(&f, be, c));
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_backward(&f));
    int64_t in = c->in, out = c->out, N = c->N, r = c->rank;
    fd_state s = {&f, f.L.n.data ? fixture_get(&f, &f.L.n) : NULL};
    struct { const char *what; double *host; dorac_tensor *grad; size_t n; } groups[] = {
        {"dx", f.x, &f.tdx, (size_t)(N * in)},
        {"dA", f.A, &f.tdA, (size_t)(r * in)},
        {"dB", f.B, &f.tdB, (size_t)(out * r)},
        {"dm", f.m, &f.tdm, (size_t)out},
        {"dW", f.W, &f.tdW, (size_t)(out * in)},
        {"dbias", f.bias, &f.tdbias, (size_t)out},
    };
    for (size_t k = 0; k < sizeof groups / sizeof groups[0]; k++) {
        if (!groups[k].grad->data) continue;
        double *an = fixture_get(&f, groups[k].grad);
        double err = fd_error(&s, groups[k].host, groups[k].n, an);
        test_checks++;
        if (!(err < FD_TOL)) {
            test_failures++;
            fprintf(stderr, "%s: %s finite-difference relative error %.3g >= %.0e\n", c->name,
                    groups[k].what, err, FD_TOL);
        }
        free(an);
    }
    free(s.n0);
    fixture_free(&f);
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu64_create((dorac_cpu_params){0});
    CHECK(be != NULL);
    const int D = DORAC_NORM_GRAD_DETACH, E = DORAC_NORM_GRAD_EXACT;
    const fixture_case cases[] = {
        /* name                  method              in  out  N  r  bias  norm  drop  rs */
        {"dora detach bias",     DORAC_METHOD_DORA,  13, 7,   5, 3, true,  D, 0.0, false},
        {"dora exact bias",      DORAC_METHOD_DORA,  13, 7,   5, 3, true,  E, 0.0, false},
        {"dora detach nobias",   DORAC_METHOD_DORA,  13, 7,   5, 3, false, D, 0.0, false},
        {"dora exact nobias",    DORAC_METHOD_DORA,  13, 7,   5, 3, false, E, 0.0, false},
        {"dora exact r1",        DORAC_METHOD_DORA,  13, 7,   4, 1, true,  E, 0.0, false},
        {"dora detach r1",       DORAC_METHOD_DORA,  13, 7,   4, 1, false, D, 0.0, false},
        {"dora exact wide",      DORAC_METHOD_DORA,  5,  11,  6, 4, true,  E, 0.0, true},
        {"dora magnitude-only",  DORAC_METHOD_DORA,  13, 7,   5, 0, true,  E, 0.0, false},
        {"dora exact dropout",   DORAC_METHOD_DORA,  6,  5, 300, 2, true,  E, 0.3, false},
        {"dora detach dropout",  DORAC_METHOD_DORA,  6,  5, 300, 2, false, D, 0.3, false},
        {"lora bias",            DORAC_METHOD_LORA,  13, 7,   5, 3, true,  D, 0.0, false},
        {"lora rslora r1",       DORAC_METHOD_LORA,  13, 7,   5, 1, false, D, 0.0, true},
        {"lora dropout",         DORAC_METHOD_LORA,  6,  5, 300, 2, true,  D, 0.2, false},
        {"full bias",            DORAC_METHOD_FULL,  13, 7,   5, 0, true,  D, 0.0, false},
        {"frozen bias",          DORAC_METHOD_FROZEN, 13, 7,  5, 0, true,  D, 0.0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_case(be, &cases[i]);
        if (cases[i].method == DORAC_METHOD_DORA) { /* and with dz written over dy */
            fixture_case in_place = cases[i];
            in_place.dz_in_place = true;
            check_case(be, &in_place);
        }
    }
    dorac_backend_destroy(be);
    return test_report();
}
