/*
** test_layer_memory.c — what the DoRA layer allocates, counted by the
** backend: no buffer of out×in elements, ever, in forward, backward (both
** norm modes) or merge's norm; and DoRA's extra memory over LoRA bounded
** by the layer's documented scratch, independent of N and in.
*/
#include "layer_fixture.h"
#include "test.h"

typedef struct usage { size_t peak_extra, largest; } usage;

static usage measure(dorac_backend *be, const fixture_case *c) {
    fixture f;
    usage u = {0, 0};
    CHECK_OK(fixture_init(&f, be, c)); /* the caller's tensors and the DoRA caches */
    be->mem_stats_reset(be);
    dorac_mem_stats before, after;
    be->mem_stats(be, &before);
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_backward(&f));
    CHECK_OK(fixture_forward(&f));
    CHECK_OK(fixture_backward(&f));
    be->mem_stats(be, &after);
    u.peak_extra = after.peak_bytes - before.current_bytes;
    u.largest = after.largest_alloc;
    CHECK(after.current_bytes == before.current_bytes); /* no leak per call */
    fixture_free(&f);
    return u;
}

int main(void) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    const int64_t in = 2048, out = 512, r = 8; /* in >> chunk rows, so a chunk is far below out x in */
    const size_t f32 = sizeof(float), W_bytes = (size_t)(in * out) * f32;
    const size_t chunk = DORAC_LINEAR_CHUNK_ROWS;
    for (int64_t N = 512; N <= 2048; N *= 4) {
        fixture_case lora = {"lora", DORAC_METHOD_LORA, in, out, N, (int)r, true, 0, 0, false};
        fixture_case detach = {"detach", DORAC_METHOD_DORA, in, out, N, (int)r, true, DORAC_NORM_GRAD_DETACH, 0, false};
        fixture_case exact = {"exact", DORAC_METHOD_DORA, in, out, N, (int)r, true, DORAC_NORM_GRAD_EXACT, 0, false};
        usage ul = measure(be, &lora), ud = measure(be, &detach), ue = measure(be, &exact);
        /* never an (out,in) buffer: the largest single allocation (the dz chunk)
        ** is a quarter of it or less at this shape */
        CHECK(ud.largest < W_bytes / 4);
        CHECK(ue.largest < W_bytes / 4);
        /* DoRA's extra over LoRA: the dz chunk (chunk x out), zsum, and in exact
        ** mode w (out), w ⊙ B (out x r), K (r x r); nothing grows with N or in */
        size_t bound = (chunk * (size_t)out + 2 * (size_t)out + (size_t)(out * r + r * r)) * f32;
        fprintf(stderr, "N=%lld: LoRA peak scratch %zu B, DoRA detach %zu B, exact %zu B, bound on extra %zu B\n",
                (long long)N, ul.peak_extra, ud.peak_extra, ue.peak_extra, bound);
        CHECK(ud.peak_extra <= ul.peak_extra + bound);
        CHECK(ue.peak_extra <= ul.peak_extra + bound);
        /* with dz written over dy (how the model calls it) the extra is O(out*r + r^2) */
        detach.dz_in_place = exact.dz_in_place = true;
        usage udi = measure(be, &detach), uei = measure(be, &exact);
        size_t small = (2 * (size_t)out + (size_t)(out * r + r * r)) * f32;
        fprintf(stderr, "  in place: DoRA detach %zu B, exact %zu B, bound on extra %zu B\n",
                udi.peak_extra, uei.peak_extra, small);
        CHECK(udi.peak_extra <= ul.peak_extra + small);
        CHECK(uei.peak_extra <= ul.peak_extra + small);
        CHECK(udi.largest < W_bytes / 16 && uei.largest < W_bytes / 16);
    }
    /* the DoRA caches held between forward and backward (c, n, g, zsum, P, G)
    ** are O(out*r + r^2) */
    fixture f;
    fixture_case c = {"caches", DORAC_METHOD_DORA, in, out, 4, (int)r, false, 0, 0, false};
    be->mem_stats_reset(be);
    dorac_mem_stats s0, s1;
    be->mem_stats(be, &s0);
    CHECK_OK(fixture_init(&f, be, &c));
    be->mem_stats(be, &s1);
    size_t callers = ((size_t)(out * in) + 2 * (size_t)(r * in) + 4 * (size_t)(out * r) + 2 * (size_t)out +
                      (size_t)(4 * (in + out + r) + 4 * out)) * f32;
    size_t caches = (4 * (size_t)out + (size_t)(out * r + r * r)) * f32;
    CHECK(s1.current_bytes - s0.current_bytes <= callers + caches);
    fixture_free(&f);
    dorac_backend_destroy(be);
    return test_report();
}
