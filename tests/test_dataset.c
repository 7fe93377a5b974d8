/*
** test_dataset.c — every data format and its masking, the .txt reader,
** malformed-line errors (file:line) and --skip-bad-lines, and the batcher:
** packing, padding, splitting, truncation and the per-epoch shuffle.
*/
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "train/batcher.h"
#include "train/dataset.h"
#include "test.h"

static char dir[64];

static const char *write_file(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

static int32_t *encode(const dorac_tokenizer *tok, const char *s, size_t *n) {
    int32_t *ids;
    CHECK_OK(dorac_tokenizer_encode(tok, s, strlen(s), false, &ids, n));
    return ids;
}

/* ids[at..at+n) == want[0..n) and labels there are `labelled` */
static void expect_span(const dorac_example *e, int64_t at, const int32_t *want, size_t n, bool labelled) {
    CHECK(at + (int64_t)n <= e->n);
    for (size_t i = 0; i < n && at + (int64_t)i < e->n; i++) {
        CHECK(e->ids[at + (int64_t)i] == want[i]);
        CHECK(e->labels[at + (int64_t)i] == (labelled ? want[i] : DORAC_IGNORE_INDEX));
    }
}

static void formats(const dorac_tokenizer *tok) {
    dorac_dataset_options o = {.tok = tok, .vocab_size = 1024, .add_special = true};
    int32_t eos = dorac_tokenizer_eos_id(tok);
    CHECK(eos >= 0);
    dorac_example e;
    size_t np, nc;
    /* text: every token labelled */
    const char *tx = "{\"text\": \"In the beginning\"}";
    CHECK_OK(dorac_example_parse(&e, tx, strlen(tx), &o, "t:1"));
    int32_t *t = encode(tok, "In the beginning", &np);
    CHECK(e.n == (int64_t)np);
    expect_span(&e, 0, t, np, true);
    free(t);
    dorac_example_free(&e);
    /* prompt/completion: loss on the completion and EOS only */
    const char *pc = "{\"prompt\": \"Q: who?\\nA:\", \"completion\": \" Moses\"}";
    CHECK_OK(dorac_example_parse(&e, pc, strlen(pc), &o, "t:2"));
    int32_t *p = encode(tok, "Q: who?\nA:", &np), *c = encode(tok, " Moses", &nc);
    int64_t off = e.n - (int64_t)(np + nc + 1); /* BOS when the tokenizer has one */
    CHECK(off == 0 || off == 1);
    expect_span(&e, off, p, np, false);
    expect_span(&e, off + (int64_t)np, c, nc, true);
    CHECK(e.ids[e.n - 1] == eos && e.labels[e.n - 1] == eos);
    free(p), free(c);
    dorac_example_free(&e);
    /* messages: assistant content (+EOS) labelled, user turn not */
    const char *msg = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Peace\"}]}";
    CHECK_OK(dorac_example_parse(&e, msg, strlen(msg), &o, "t:3"));
    int32_t *a = encode(tok, "Peace", &nc);
    int64_t labelled = 0;
    for (int64_t i = 0; i < e.n; i++) labelled += e.labels[i] != DORAC_IGNORE_INDEX;
    CHECK(labelled == (int64_t)nc + 1);
    bool found = false;
    for (int64_t i = 0; i + (int64_t)nc < e.n && !found; i++)
        if (!memcmp(e.ids + i, a, nc * sizeof *a) && e.labels[i] == a[0]) {
            found = true;
            CHECK(e.ids[i + (int64_t)nc] == eos && e.labels[i + (int64_t)nc] == eos);
        }
    CHECK(found);
    free(a);
    dorac_example_free(&e);
    /* input_ids with labels */
    const char *ii = "{\"input_ids\": [5, 6, 7], \"labels\": [-100, 6, 7]}";
    CHECK_OK(dorac_example_parse(&e, ii, strlen(ii), &o, "t:4"));
    CHECK(e.n == 3 && e.ids[0] == 5 && e.labels[0] == DORAC_IGNORE_INDEX && e.labels[2] == 7);
    dorac_example_free(&e);
    /* errors name the place and the reason */
    struct { const char *line, *needle; } bad[] = {
        {"{\"input_ids\": [1, 2], \"labels\": [1]}", "'labels' has 1 entries"},
        {"{\"input_ids\": [1, 2000]}", "outside the vocabulary"},
        {"{\"input_ids\": [1, -100]}", "outside the vocabulary"},
        {"{\"text\": 7}", "'text' must be a string"},
        {"{\"prompt\": \"x\"}", "'completion' must be a string"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "no assistant turn"},
        {"{\"messages\": []}", "non-empty"},
        {"[1, 2]", "must be a JSON object"},
        {"{\"texts\": \"x\"}", "expected one of"},
        {"{\"text\": \"x\"", "invalid JSON"},
        {"{\"text\": \"\"}", "no tokens"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(dorac_example_parse(&e, bad[i].line, strlen(bad[i].line), &o, "data.jsonl:9"), DORAC_E_FORMAT);
        CHECK(strstr(dorac_last_error(), "data.jsonl:9") && strstr(dorac_last_error(), bad[i].needle));
        if (!strstr(dorac_last_error(), bad[i].needle)) fprintf(stderr, "  got: %s\n", dorac_last_error());
    }
    dorac_dataset_options no_tok = {.vocab_size = 1024};
    CHECK_STATUS(dorac_example_parse(&e, "{\"text\": \"x\"}", 13, &no_tok, "d:1"), DORAC_E_INVALID);
    CHECK(strstr(dorac_last_error(), "tokenizer") != NULL);
}

static void files(const dorac_tokenizer *tok) {
    dorac_dataset_options o = {.tok = tok, .vocab_size = 1024, .add_special = false};
    dorac_dataset ds;
    const char *good = write_file("good.jsonl", "{\"text\": \"a b\"}\n\n{\"input_ids\": [1, 2, 3]}\r\n{\"text\": \"c\"}");
    CHECK_OK(dorac_dataset_load(&ds, good, &o));
    CHECK(ds.n == 3 && ds.ex[1].n == 3 && ds.ex[1].line == 3 && ds.ex[2].line == 4);
    dorac_dataset_free(&ds);
    const char *bad = write_file("bad.jsonl", "{\"text\": \"a\"}\n{\"text\": 1}\n{\"text\": \"b\"}\n");
    CHECK_STATUS(dorac_dataset_load(&ds, bad, &o), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "bad.jsonl:2") != NULL);
    o.skip_bad_lines = true;
    CHECK_OK(dorac_dataset_load(&ds, bad, &o));
    CHECK(ds.n == 2 && ds.n_skipped == 1);
    dorac_dataset_free(&ds);
    const char *all_bad = write_file("allbad.jsonl", "nope\n");
    CHECK_STATUS(dorac_dataset_load(&ds, all_bad, &o), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "no examples") != NULL);
    /* .txt: paragraphs at blank lines */
    const char *txt = write_file("book.txt", "In the beginning\nGod created\n\n\nAnd the earth\n");
    CHECK_OK(dorac_dataset_load(&ds, txt, &o));
    CHECK(ds.n == 2 && ds.ex[0].line == 1 && ds.ex[1].line == 5);
    size_t n;
    int32_t *p = encode(tok, "In the beginning\nGod created", &n);
    CHECK(ds.ex[0].n == (int64_t)n && !memcmp(ds.ex[0].ids, p, n * sizeof *p));
    free(p);
    dorac_dataset_free(&ds);
    CHECK_STATUS(dorac_dataset_load(&ds, "/nonexistent/x.jsonl", &o), DORAC_E_IO);
}

/* a dataset of given lengths, ids = 100*example + position, all labelled */
static void make_ds(dorac_dataset *ds, const int64_t *lens, size_t n) {
    memset(ds, 0, sizeof *ds);
    ds->ex = calloc(n, sizeof *ds->ex);
    ds->n = ds->cap = n;
    for (size_t i = 0; i < n; i++) {
        dorac_example *e = &ds->ex[i];
        e->n = lens[i];
        e->ids = malloc((size_t)lens[i] * sizeof(int32_t));
        e->labels = malloc((size_t)lens[i] * sizeof(int32_t));
        for (int64_t t = 0; t < lens[i]; t++) e->ids[t] = e->labels[t] = (int32_t)(100 * i + (size_t)t);
    }
}

static void batcher(void) {
    int64_t lens[] = {5, 9, 3, 12};
    dorac_dataset ds;
    make_ds(&ds, lens, 4);
    int32_t ids[4], tg[4];
    int64_t n, total = 0;
    /* packing: 29 tokens -> rows of 4 cover the 28 predictions exactly once */
    dorac_batcher b;
    CHECK_OK(dorac_batcher_init(&b, &ds, 4, true, false, 7));
    CHECK(b.rows_per_epoch == 7);
    int seen[1300] = {0};
    for (int64_t g = 0; g < b.rows_per_epoch; g++) {
        CHECK_OK(dorac_batcher_row(&b, g, ids, tg, &n));
        total += n;
        for (int t = 0; t < 4; t++) {
            if (tg[t] != DORAC_IGNORE_INDEX) seen[tg[t]]++;
            if (t < 3 && tg[t] != DORAC_IGNORE_INDEX) CHECK(ids[t + 1] == tg[t]); /* next token */
        }
    }
    CHECK(total == 28);
    int once = 0;
    for (int i = 0; i < 1300; i++) {
        once += seen[i] == 1;
        CHECK(seen[i] <= 1);
    }
    CHECK(once == 28);
    /* the same epoch again is identical; the next epoch is shuffled differently */
    int32_t first[4], again[4], next[4];
    CHECK_OK(dorac_batcher_row(&b, 0, first, tg, &n));
    CHECK_OK(dorac_batcher_row(&b, b.rows_per_epoch, next, tg, &n));
    CHECK_OK(dorac_batcher_row(&b, 0, again, tg, &n));
    CHECK(!memcmp(first, again, sizeof first));
    bool differs = false;
    for (int64_t e = 1; e < 6 && !differs; e++) {
        CHECK_OK(dorac_batcher_row(&b, e * b.rows_per_epoch, next, tg, &n));
        differs = memcmp(first, next, sizeof first) != 0;
    }
    CHECK(differs);
    dorac_batcher_free(&b);
    /* no packing, split: example of 12 tokens takes ceil(11/4) = 3 rows, padded */
    CHECK_OK(dorac_batcher_init(&b, &ds, 4, false, false, 7));
    CHECK(b.rows_per_epoch == 1 + 2 + 1 + 3);
    total = 0;
    for (int64_t g = 0; g < b.rows_per_epoch; g++) {
        CHECK_OK(dorac_batcher_row(&b, g, ids, tg, &n));
        total += n;
    }
    CHECK(total == (5 - 1) + (9 - 1) + (3 - 1) + (12 - 1)); /* every prediction inside its example */
    dorac_batcher_free(&b);
    /* truncate: one row per example, at most T predictions each */
    CHECK_OK(dorac_batcher_init(&b, &ds, 4, false, true, 7));
    CHECK(b.rows_per_epoch == 4);
    total = 0;
    for (int64_t g = 0; g < 4; g++) {
        CHECK_OK(dorac_batcher_row(&b, g, ids, tg, &n));
        total += n;
    }
    CHECK(total == 4 + 4 + 2 + 4);
    dorac_batcher_free(&b);
    CHECK_STATUS(dorac_batcher_init(&b, &ds, 0, true, false, 7), DORAC_E_INVALID);
    dorac_dataset_free(&ds);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/dorac-data-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    dorac_tokenizer *tok;
    CHECK_OK(dorac_tokenizer_load(&tok, "tests/fixtures/models/llama-gqa/tokenizer.json",
                                  "tests/fixtures/models/llama-gqa/tokenizer_config.json"));
    formats(tok);
    files(tok);
    batcher();
    dorac_tokenizer_free(tok);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return test_report();
}
