/*
** test_tokenizer_errors.c — what the tokenizer does with bad input: every
** failure has the right status and a message that names the culprit, and
** nothing leaks (the ASan build checks that).
**
**   - missing file, empty file, truncated file, malformed JSON
**   - unsupported components, named in the message
**   - malformed fields (bad merges, ids out of range, bad regexes, ...)
**   - tokenizer_config.json that asks for a BOS it cannot name
**   - invalid UTF-8 input: encoded as its U+FFFD repair, never an error
**   - NULL arguments
**   - several threads encoding with one tokenizer give the one-thread ids
*/
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tokenizer/tokenizer.h"

#define GPT2 "tests/fixtures/tokenizer/gpt2.tokenizer.json"

/* A small valid tokenizer; variants replace one part. */
#define MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<unk>\":3},\"merges\":[\"a b\"]}"

static void expect_fail(const char *json, int status, const char *needle, const char *what) {
    dorac_tokenizer *tok = (dorac_tokenizer *)1;
    int rc = dorac_tokenizer_load_buffer(&tok, json, strlen(json), NULL, 0, "t.json");
    CHECK(rc == status);
    CHECK(tok == NULL);
    const char *msg = dorac_last_error();
    if (rc != status || !strstr(msg, needle)) {
        test_failures += rc == status; /* count a wrong message once */
        fprintf(stderr, "  %s: got %s \"%s\", want %s containing \"%s\"\n", what, dorac_status_name(rc),
                msg, dorac_status_name(status), needle);
    }
    if (rc == DORAC_OK) dorac_tokenizer_free(tok);
}

static char *write_temp(const char *data, size_t len) {
    char *path = strdup("/tmp/dorac_tok_XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, data, len) == (ssize_t)len);
        close(fd);
    }
    return path;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static void test_files(void) {
    dorac_tokenizer *tok = NULL;
    CHECK_STATUS(dorac_tokenizer_load(&tok, "tests/fixtures/tokenizer/no_such.json", NULL), DORAC_E_IO);
    CHECK(strstr(dorac_last_error(), "no_such.json") != NULL);
    CHECK(tok == NULL);

    size_t len;
    char *full = read_file(GPT2, &len);
    CHECK(full != NULL && len > 1000);
    if (!full) return;
    char *trunc = write_temp(full, len / 2);
    CHECK_STATUS(dorac_tokenizer_load(&tok, trunc, NULL), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), trunc) != NULL && strstr(dorac_last_error(), "line") != NULL);
    unlink(trunc);
    free(trunc);

    char *empty = write_temp("", 0);
    CHECK_STATUS(dorac_tokenizer_load(&tok, empty, NULL), DORAC_E_FORMAT);
    /* a config file that is named and present but empty is malformed too */
    CHECK_STATUS(dorac_tokenizer_load(&tok, GPT2, empty), DORAC_E_FORMAT);
    unlink(empty);
    free(empty);

    /* a config path that does not exist is not an error */
    CHECK_OK(dorac_tokenizer_load(&tok, GPT2, "tests/fixtures/tokenizer/no_such_config.json"));
    dorac_tokenizer_free(tok);
    free(full);
}

static void test_malformed(void) {
    expect_fail("{\"version\": \"1.0\", \"model\": ", DORAC_E_FORMAT, "line 1", "truncated JSON");
    expect_fail("[1, 2]", DORAC_E_FORMAT, "top", "not an object");
    expect_fail("{}", DORAC_E_FORMAT, "model: missing", "no model");
    expect_fail("{\"version\":\"2.0\"," MODEL "}", DORAC_E_UNSUPPORTED, "version", "version");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", DORAC_E_FORMAT,
                "model.vocab['a']", "negative id");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", DORAC_E_FORMAT,
                "model.vocab['a']", "string id");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":900000000},\"merges\":[]}}",
                DORAC_E_UNSUPPORTED, "sparse", "sparse ids");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}",
                DORAC_E_FORMAT, "merges[0]: token 'c'", "merge of unknown token");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                DORAC_E_FORMAT, "merged token 'ab'", "merged token missing");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a  b\"]}}",
                DORAC_E_FORMAT, "one space", "merge with two spaces");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",[\"a\",\"b\"]]}}",
                DORAC_E_FORMAT, "mixed", "mixed merge forms");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}", DORAC_E_FORMAT,
                "merges[0]", "merge not a string");
    expect_fail("{\"model\":{\"type\":\"BPE\",\"dropout\":2.0,\"vocab\":{},\"merges\":[]}}", DORAC_E_FORMAT,
                "dropout", "dropout out of range");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\","
                "\"invert\":false}," MODEL "}",
                DORAC_E_FORMAT, "does not compile", "bad regex");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}," MODEL "}",
                DORAC_E_FORMAT, "behavior", "bad behavior");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"}," MODEL "}",
                DORAC_E_FORMAT, "one character", "replacement of two characters");
    expect_fail("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\",\"add_prefix_space\":false}," MODEL "}",
                DORAC_E_FORMAT, "prepend_scheme", "add_prefix_space vs prepend_scheme");
    expect_fail("{\"normalizer\":{\"normalizers\":[]}," MODEL "}", DORAC_E_FORMAT, "normalizer.type", "no type");
    expect_fail("{\"added_tokens\":[{\"id\":5}]," MODEL "}", DORAC_E_FORMAT, "added_tokens[0].content",
                "added token without content");
    expect_fail("{\"added_tokens\":[{\"content\":\"x\",\"special\":true,\"normalized\":true},"
                "{\"content\":\"X\",\"special\":true,\"normalized\":true}],"
                "\"normalizer\":{\"type\":\"Lowercase\"}," MODEL "}",
                DORAC_E_FORMAT, "same text", "two added tokens with one pattern");
    expect_fail("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
                "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":"
                "{\"id\":\"<s>\",\"ids\":[99],\"tokens\":[\"<s>\"]}}}," MODEL "}",
                DORAC_E_FORMAT, "id 99 names no token", "template id outside the vocabulary");
    expect_fail("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"B\","
                "\"type_id\":0}}],\"special_tokens\":{}}," MODEL "}",
                DORAC_E_FORMAT, "$A", "template with $B");
}

static void test_unsupported(void) {
    static const struct {
        const char *json, *name;
    } cases[] = {
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "'WordPiece'"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "'Unigram'"},
        {"{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}", "dropout"},
        {"{\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}," MODEL "}", "'Precompiled'"},
        {"{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"BertNormalizer\"}]}," MODEL "}",
         "normalizer.normalizers[1]: normalizer 'BertNormalizer'"},
        {"{\"pre_tokenizer\":{\"type\":\"Whitespace\"}," MODEL "}", "'Whitespace'"},
        {"{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"}," MODEL "}", "'BertPreTokenizer'"},
        {"{\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\"}," MODEL "}", "decoder 'WordPiece'"},
        {"{\"decoder\":{\"type\":\"CTC\"}," MODEL "}", "'CTC'"},
        {"{\"post_processor\":{\"type\":\"Fancy\"}," MODEL "}", "post-processor 'Fancy'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_fail(cases[i].json, DORAC_E_UNSUPPORTED, cases[i].name, cases[i].name);
}

static void test_config(void) {
    const char *json = "{\"added_tokens\":[{\"content\":\"<s>\",\"special\":true},{\"content\":\"</s>\",\"special\":true}],"
                       MODEL "}";
    dorac_tokenizer *tok = NULL;
    const char *bad = "{\"add_bos_token\": true}";
    CHECK_STATUS(dorac_tokenizer_load_buffer(&tok, json, strlen(json), bad, strlen(bad), "t.json"), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "bos_token is not set") != NULL);
    const char *bad2 = "{\"add_bos_token\": true, \"bos_token\": \"<nope>\"}";
    CHECK_STATUS(dorac_tokenizer_load_buffer(&tok, json, strlen(json), bad2, strlen(bad2), "t.json"), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "not a token") != NULL);
    const char *bad3 = "{\"add_eos_token\": \"yes\"}";
    CHECK_STATUS(dorac_tokenizer_load_buffer(&tok, json, strlen(json), bad3, strlen(bad3), "t.json"), DORAC_E_FORMAT);
    const char *bad4 = "{\"add_eos_token\": tru";
    CHECK_STATUS(dorac_tokenizer_load_buffer(&tok, json, strlen(json), bad4, strlen(bad4), "t.json"), DORAC_E_FORMAT);
    CHECK(strstr(dorac_last_error(), "tokenizer_config.json") != NULL);

    /* ids 4, 5 for <s>, </s>: the model has 4 strings */
    const char *good = "{\"add_bos_token\": false, \"add_eos_token\": true, "
                       "\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}";
    CHECK_OK(dorac_tokenizer_load_buffer(&tok, json, strlen(json), good, strlen(good), "t.json"));
    if (!tok) return;
    CHECK(dorac_tokenizer_bos_id(tok) == 4);
    CHECK(dorac_tokenizer_eos_id(tok) == 5);
    CHECK(dorac_tokenizer_vocab_size(tok) == 6);
    CHECK(dorac_tokenizer_is_special(tok, 5) && !dorac_tokenizer_is_special(tok, 2));
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(dorac_tokenizer_encode(tok, "ab<s>", 5, true, &ids, &n));
    CHECK(n == 3 && ids[0] == 2 && ids[1] == 4 && ids[2] == 5);
    free(ids);
    dorac_tokenizer_free(tok);
}

static void test_encode_edges(void) {
    dorac_tokenizer *tok = NULL;
    CHECK_OK(dorac_tokenizer_load(&tok, GPT2, NULL));
    if (!tok) return;
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    /* invalid UTF-8 is the same as its U+FFFD repair */
    CHECK_OK(dorac_tokenizer_encode(tok, "x\xff\xe6\x97y\xed\xa0\x80", 8, false, &a, &na));
    CHECK_OK(dorac_tokenizer_encode(tok, "x\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 17,
                                    false, &b, &nb));
    CHECK(na == nb && na > 0 && !memcmp(a, b, na * sizeof *a));
    free(a);
    free(b);
    /* NUL bytes are characters */
    CHECK_OK(dorac_tokenizer_encode(tok, "a\0b", 3, false, &a, &na));
    CHECK(na == 3);
    free(a);
    /* empty text: no ids, and NULL is allowed for it */
    CHECK_OK(dorac_tokenizer_encode(tok, NULL, 0, true, &a, &na));
    CHECK(na == 0 && a == NULL);
    /* NULL arguments are errors, not crashes */
    CHECK_STATUS(dorac_tokenizer_encode(tok, NULL, 3, false, &a, &na), DORAC_E_INVALID);
    CHECK_STATUS(dorac_tokenizer_encode(NULL, "a", 1, false, &a, &na), DORAC_E_INVALID);
    char *text = NULL;
    size_t tl = 0;
    CHECK_STATUS(dorac_tokenizer_decode(tok, NULL, 2, false, &text, &tl), DORAC_E_INVALID);
    /* ids outside the vocabulary decode to nothing, as in tokenizers */
    int32_t odd[] = {-5, 1 << 30, dorac_tokenizer_token_to_id(tok, "a", 1)};
    CHECK(odd[2] >= 0);
    CHECK_OK(dorac_tokenizer_decode(tok, odd, 3, false, &text, &tl));
    CHECK(text != NULL && text[tl] == '\0' && tl == 1 && text[0] == 'a');
    free(text);
    CHECK(dorac_tokenizer_id_to_token(tok, -1, NULL) == NULL);
    CHECK(dorac_tokenizer_token_to_id(tok, "no such token", 13) == -1);
    CHECK(dorac_tokenizer_eos_id(tok) == dorac_tokenizer_token_to_id(tok, "<|endoftext|>", 13));
    dorac_tokenizer_free(tok);
    dorac_tokenizer_free(NULL);
}

/* ---- threads ---------------------------------------------------------------- */

enum { N_THREADS = 4, N_TEXTS = 6 };
static const char *const texts[N_TEXTS] = {
    "In the beginning God created the heaven and the earth.",
    "It's 2024: café, naïve, 日本語, emoji 👨‍👩‍👧 and more!",
    "    indented code\n\tint x = 42;\r\n",
    "The quick brown fox jumps over the lazy dog. The dog sleeps.",
    "hacker jargon: foo, bar, baz, quux; RTFM & YMMV",
    "\xff\xfe invalid \xe6\x97 bytes",
};

typedef struct {
    const dorac_tokenizer *tok;
    int32_t *want[N_TEXTS];
    size_t n_want[N_TEXTS];
    int errors;
} thread_job;

static void *worker(void *arg) {
    thread_job *job = arg;
    for (int rep = 0; rep < 200; rep++)
        for (int t = 0; t < N_TEXTS; t++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (dorac_tokenizer_encode(job->tok, texts[t], strlen(texts[t]), true, &ids, &n) != DORAC_OK ||
                n != job->n_want[t] || (n && memcmp(ids, job->want[t], n * sizeof *ids)))
                __atomic_add_fetch(&job->errors, 1, __ATOMIC_RELAXED);
            free(ids);
        }
    return NULL;
}

static void test_threads(void) {
    dorac_tokenizer *tok = NULL;
    CHECK_OK(dorac_tokenizer_load(&tok, "tests/fixtures/tokenizer/llama3.tokenizer.json", NULL));
    if (!tok) return;
    thread_job job = {.tok = tok};
    for (int t = 0; t < N_TEXTS; t++)
        CHECK_OK(dorac_tokenizer_encode(tok, texts[t], strlen(texts[t]), true, &job.want[t], &job.n_want[t]));
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) CHECK(pthread_create(&th[i], NULL, worker, &job) == 0);
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    CHECK(job.errors == 0);
    for (int t = 0; t < N_TEXTS; t++) free(job.want[t]);
    dorac_tokenizer_free(tok);
}

int main(void) {
    test_files();
    test_malformed();
    test_unsupported();
    test_config();
    test_encode_edges();
    test_threads();
    return test_report();
}
