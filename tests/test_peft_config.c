/*
** test_peft_config.c — adapter_config.json against what PEFT 0.21 writes and
** does: the configs and tensor keys of two adapters PEFT saved, the
** targeting, ranks, alphas and scales PEFT chose for each module, PEFT's
** answers for target and pattern matching on edge cases (all in
** tests/fixtures/io/peft_expected.json, from tools/ref/make_io_fixtures.py),
** byte-identical saving, and one test per kind of bad config.
*/
#define _POSIX_C_SOURCE 200809L

#include <math.h>

#include "test.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "io_test_util.h"

static char *scratch;

static void test_fixture_adapter(const char *name, json_t *exp) {
    char dir[256];
    snprintf(dir, sizeof dir, IO_FIXTURES "/%s", name);
    dorac_peft_config cfg;
    CHECK_OK(dorac_peft_config_load(&cfg, dir));
    json_t *modules = json_object_get(exp, "modules"), *keys = json_object_get(exp, "keys");
    /* PEFT's choices per linear module of the tiny llama */
    const char *path;
    json_t *m;
    int targeted = 0;
    json_object_foreach(modules, path, m) {
        bool want = json_is_true(json_object_get(m, "targeted"));
        test_checks++;
        if (dorac_peft_targets_module(&cfg, path) != want) {
            test_failures++;
            fprintf(stderr, "%s: %s: targets_module = %d, PEFT says %d\n", name, path, !want, want);
        }
        if (!want) continue;
        targeted++;
        CHECK(dorac_peft_rank_for(&cfg, path) == json_integer_value(json_object_get(m, "r")));
        CHECK(dorac_peft_alpha_for(&cfg, path) == json_number_value(json_object_get(m, "alpha")));
        CHECK_NEAR(dorac_peft_scale_for(&cfg, path), json_number_value(json_object_get(m, "scaling")), 1e-15);
    }
    CHECK(targeted >= 4);
    /* the tensor keys PEFT wrote: parse, rebuild, and agree with the ranks */
    dorac_safetensors *st;
    char st_path[300];
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
    CHECK_OK(dorac_safetensors_open(&st, dir)); /* the folder's sole .safetensors */
    CHECK(dorac_safetensors_count(st) == json_object_size(keys));
    const char *key;
    json_t *shape;
    json_object_foreach(keys, key, shape) {
        char module[256], rebuilt[512];
        dorac_peft_key_kind kind;
        CHECK_OK(dorac_peft_key_parse(key, module, sizeof module, &kind));
        CHECK(dorac_peft_targets_module(&cfg, module));
        CHECK_OK(dorac_peft_key(rebuilt, sizeof rebuilt, module, kind));
        CHECK(strcmp(rebuilt, key) == 0);
        int r = dorac_peft_rank_for(&cfg, module);
        const dorac_st_tensor *t = dorac_safetensors_find(st, key);
        CHECK(t && t->dtype == DORAC_DTYPE_F32);
        if (kind == DORAC_PEFT_KEY_LORA_A) CHECK(json_integer_value(json_array_get(shape, 0)) == r);
        if (kind == DORAC_PEFT_KEY_LORA_B) CHECK(json_integer_value(json_array_get(shape, 1)) == r);
        if (kind == DORAC_PEFT_KEY_MAGNITUDE) CHECK(json_array_size(shape) == 1 && cfg.use_dora);
        if (t) CHECK(t->n_dims == (int)json_array_size(shape));
    }
    dorac_safetensors_close(st);

    /* Saving what was loaded gives PEFT's file byte for byte. */
    char *out = join(scratch, name);
    mkdir(out, 0777);
    CHECK_OK(dorac_peft_config_save(&cfg, out));
    char *a = join(dir, "adapter_config.json"), *b = join(out, "adapter_config.json");
    test_checks++;
    if (!files_equal(a, b)) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s differs from PEFT's %s\n", __FILE__, __LINE__, b, a);
    }
    free(a);
    free(b);
    free(out);
    dorac_peft_config_free(&cfg);
    CHECK(cfg.compiled == NULL && cfg.target_modules.names == NULL);
}

static void test_fixture_fields(void) {
    dorac_peft_config cfg;
    CHECK_OK(dorac_peft_config_load(&cfg, IO_FIXTURES "/peft_list/adapter_config.json"));
    CHECK(cfg.r == 4 && cfg.lora_alpha == 8 && cfg.use_dora && !cfg.use_rslora && !cfg.fan_in_fan_out);
    CHECK(cfg.lora_dropout == 0.05);
    CHECK(cfg.target_modules.kind == DORAC_PEFT_TARGETS_LIST && cfg.target_modules.n_names == 3);
    CHECK(cfg.exclude_modules.kind == DORAC_PEFT_TARGETS_NONE);
    CHECK(cfg.n_rank_pattern == 2 && cfg.n_alpha_pattern == 1 && cfg.alpha_pattern[0].alpha == 3.5);
    CHECK(cfg.task_type && strcmp(cfg.task_type, "CAUSAL_LM") == 0);
    CHECK(cfg.base_model_name_or_path == NULL);
    dorac_peft_config_free(&cfg);
    CHECK_OK(dorac_peft_config_load(&cfg, IO_FIXTURES "/peft_regex"));
    CHECK(cfg.r == 8 && cfg.lora_alpha == 16 && !cfg.use_dora && cfg.use_rslora);
    CHECK(cfg.target_modules.kind == DORAC_PEFT_TARGETS_REGEX && cfg.target_modules.regex);
    CHECK(cfg.exclude_modules.kind == DORAC_PEFT_TARGETS_LIST && cfg.exclude_modules.n_names == 1);
    dorac_peft_config_free(&cfg);
}

/* Builds a config JSON from a selector or pattern object of the table. */
static char *config_text(const json_t *fields) {
    json_t *o = json_pack("{s:s, s:i, s:i}", "peft_type", "LORA", "r", 8, "lora_alpha", 16);
    json_object_update(o, (json_t *)fields);
    if (!json_object_get(o, "target_modules")) json_object_set_new(o, "target_modules", json_string("q_proj"));
    char *s = json_dumps(o, 0);
    json_decref(o);
    return s;
}

/* PEFT's answers for matching on edge cases. */
static void test_matching_table(json_t *table) {
    json_t *targets = json_object_get(table, "targets"), *patterns = json_object_get(table, "patterns");
    for (size_t i = 0; i < json_array_size(targets); i++) {
        const json_t *row = json_array_get(targets, i);
        char *text = config_text(json_object_get(row, "selector"));
        dorac_peft_config cfg;
        CHECK_OK(dorac_peft_config_load_string(&cfg, text, strlen(text), "table.json"));
        const char *path;
        json_t *want;
        json_object_foreach(json_object_get(row, "matches"), path, want) {
            test_checks++;
            if (dorac_peft_targets_module(&cfg, path) != json_is_true(want)) {
                test_failures++;
                fprintf(stderr, "%s:%d: %s vs %s: PEFT says %d\n", __FILE__, __LINE__, text, path, json_is_true(want));
            }
        }
        /* a hand-built copy (no compiled regexes) answers the same */
        dorac_peft_config hand = cfg;
        hand.compiled = NULL;
        json_object_foreach(json_object_get(row, "matches"), path, want)
            CHECK(dorac_peft_targets_module(&hand, path) == json_is_true(want));
        dorac_peft_config_free(&cfg);
        free(text);
    }
    for (size_t i = 0; i < json_array_size(patterns); i++) {
        const json_t *row = json_array_get(patterns, i);
        json_t *fields = json_pack("{s:O, s:O}", "rank_pattern", json_object_get(row, "rank_pattern"), "r",
                                   json_object_get(row, "r"));
        char *text = config_text(fields);
        json_decref(fields);
        dorac_peft_config cfg;
        CHECK_OK(dorac_peft_config_load_string(&cfg, text, strlen(text), "table.json"));
        const char *path;
        json_t *want;
        json_object_foreach(json_object_get(row, "ranks"), path, want) {
            test_checks++;
            if (dorac_peft_rank_for(&cfg, path) != json_integer_value(want)) {
                test_failures++;
                fprintf(stderr, "%s:%d: %s vs %s: rank %d, PEFT says %lld\n", __FILE__, __LINE__, text, path,
                        dorac_peft_rank_for(&cfg, path), (long long)json_integer_value(want));
            }
            dorac_peft_config hand = cfg;
            hand.compiled = NULL;
            CHECK(dorac_peft_rank_for(&hand, path) == json_integer_value(want));
        }
        dorac_peft_config_free(&cfg);
        free(text);
    }
}

/* A config built in C, saved, loaded back: same fields. */
static void test_hand_built_round_trip(void) {
    char *names[] = {"c_attn", "c_proj", "c_fc"};
    dorac_peft_rank_entry ranks[] = {{"h\\.0\\..*", 4}};
    dorac_peft_alpha_entry alphas[] = {{"c_fc", 0.1}, {"c_proj", 7.25}};
    dorac_peft_config cfg = {
        .r = 16, .lora_alpha = 32, .use_dora = true, .fan_in_fan_out = true, .lora_dropout = 0.1,
        .target_modules = {.kind = DORAC_PEFT_TARGETS_LIST, .names = names, .n_names = 3},
        .rank_pattern = ranks, .n_rank_pattern = 1, .alpha_pattern = alphas, .n_alpha_pattern = 2,
        .base_model_name_or_path = "gpt2", .task_type = "CAUSAL_LM"};
    char *dir = join(scratch, "hand");
    mkdir(dir, 0777);
    CHECK_OK(dorac_peft_config_save(&cfg, dir));
    dorac_peft_config back;
    CHECK_OK(dorac_peft_config_load(&back, dir));
    CHECK(back.r == 16 && back.lora_alpha == 32 && back.use_dora && back.fan_in_fan_out && !back.use_rslora);
    CHECK(back.lora_dropout == 0.1);
    CHECK(back.target_modules.kind == DORAC_PEFT_TARGETS_LIST && back.target_modules.n_names == 3);
    for (size_t i = 0; i < 3 && i < back.target_modules.n_names; i++)
        CHECK(strcmp(back.target_modules.names[i], names[i]) == 0);
    CHECK(back.n_rank_pattern == 1 && back.rank_pattern[0].rank == 4);
    CHECK(back.n_alpha_pattern == 2 && back.alpha_pattern[0].alpha == 0.1 && back.alpha_pattern[1].alpha == 7.25);
    CHECK(strcmp(back.base_model_name_or_path, "gpt2") == 0 && strcmp(back.task_type, "CAUSAL_LM") == 0);
    CHECK(dorac_peft_rank_for(&back, "transformer.h.0.attn.c_attn") == 4);
    CHECK(dorac_peft_rank_for(&back, "transformer.h.1.attn.c_attn") == 16);
    CHECK(dorac_peft_alpha_for(&back, "transformer.h.1.mlp.c_fc") == 0.1);
    CHECK(dorac_peft_scale_for(&back, "transformer.h.1.mlp.c_proj") == 7.25 / 16);
    /* the same key set as PEFT's own file */
    json_t *mine = load_json(IO_FIXTURES "/peft_regex/adapter_config.json");
    char *saved = join(dir, "adapter_config.json");
    json_t *ours = load_json(saved);
    CHECK(json_object_size(mine) == json_object_size(ours));
    const char *k;
    json_t *v;
    json_object_foreach(mine, k, v) CHECK(json_object_get(ours, k) != NULL);
    /* short reals, as Python prints them */
    size_t n;
    char *text = (char *)read_bytes(saved, &n);
    CHECK(text && strstr(text, "\"lora_dropout\": 0.1,") && strstr(text, "\"c_fc\": 0.1"));
    free(text);
    json_decref(mine);
    json_decref(ours);
    dorac_peft_config_free(&back);

    /* a regex target and a file path */
    dorac_peft_config rx = {.r = 2, .lora_alpha = 4,
                            .target_modules = {.kind = DORAC_PEFT_TARGETS_REGEX, .regex = ".*\\.(q|v)_proj"}};
    CHECK_OK(dorac_peft_config_save(&rx, saved));
    CHECK_OK(dorac_peft_config_load(&back, saved));
    CHECK(back.target_modules.kind == DORAC_PEFT_TARGETS_REGEX);
    CHECK(dorac_peft_targets_module(&back, "model.layers.3.self_attn.v_proj"));
    CHECK(!dorac_peft_targets_module(&back, "model.layers.3.self_attn.k_proj"));
    dorac_peft_config_free(&back);
    /* r must be valid for PEFT */
    rx.r = 0;
    CHECK_STATUS(dorac_peft_config_save(&rx, saved), DORAC_E_INVALID);
    free(saved);
    free(dir);
}

#define CHECK_BAD(json, status, ...)                                                             \
    do {                                                                                         \
        const char *text_ = json;                                                                \
        dorac_peft_config c_;                                                                    \
        CHECK_STATUS(dorac_peft_config_load_string(&c_, text_, strlen(text_), "bad/adapter_config.json"), \
                     status);                                                                    \
        CHECK(c_.compiled == NULL && c_.target_modules.names == NULL);                           \
        CHECK_MESSAGE("bad/adapter_config.json", __VA_ARGS__);                                   \
    } while (0)

static void test_bad_configs(void) {
    /* a bad peft_type, from a file on disk: the message names the file */
    char *path = join(scratch, "adapter_config.json");
    const char *ia3 = "{\"peft_type\": \"IA3\", \"target_modules\": [\"k_proj\"]}";
    CHECK(write_bytes(path, ia3, strlen(ia3)));
    dorac_peft_config c;
    CHECK_STATUS(dorac_peft_config_load(&c, scratch), DORAC_E_UNSUPPORTED);
    CHECK_MESSAGE(path, "peft_type 'IA3'");
    free(path);

    CHECK_BAD("{\"target_modules\": [\"q_proj\"]}", DORAC_E_FORMAT, "missing field 'peft_type'");
    CHECK_BAD("{\"peft_type\": 3, \"target_modules\": [\"q_proj\"]}", DORAC_E_FORMAT, "peft_type");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"bias\": \"all\", \"target_modules\": [\"q_proj\"]}", DORAC_E_UNSUPPORTED,
              "bias 'all'");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"modules_to_save\": [\"lm_head\"], \"target_modules\": [\"q_proj\"]}",
              DORAC_E_UNSUPPORTED, "modules_to_save");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"lora_bias\": true, \"target_modules\": [\"q_proj\"]}", DORAC_E_UNSUPPORTED,
              "lora_bias");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"layers_to_transform\": [0], \"target_modules\": [\"q_proj\"]}",
              DORAC_E_UNSUPPORTED, "layers_to_transform");
    CHECK_BAD("{\"peft_type\": \"LORA\"}", DORAC_E_UNSUPPORTED, "target_modules");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"target_modules\": 5}", DORAC_E_FORMAT, "target_modules");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"target_modules\": [\"q\", 5]}", DORAC_E_FORMAT, "target_modules");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"target_modules\": \"(q_proj\"}", DORAC_E_FORMAT, "target_modules",
              "(q_proj");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"r\": 0, \"target_modules\": [\"q\"]}", DORAC_E_FORMAT, "'r'");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"r\": 2.5, \"target_modules\": [\"q\"]}", DORAC_E_FORMAT, "'r'");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"lora_alpha\": \"8\", \"target_modules\": [\"q\"]}", DORAC_E_FORMAT,
              "lora_alpha");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"lora_dropout\": 1.5, \"target_modules\": [\"q\"]}", DORAC_E_FORMAT,
              "lora_dropout");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"use_dora\": \"yes\", \"target_modules\": [\"q\"]}", DORAC_E_FORMAT,
              "use_dora");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q\": 2.5}, \"target_modules\": [\"q\"]}",
              DORAC_E_FORMAT, "rank_pattern", "'q'");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"[\": 2}, \"target_modules\": [\"q\"]}", DORAC_E_FORMAT,
              "rank_pattern");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"alpha_pattern\": [1], \"target_modules\": [\"q\"]}", DORAC_E_FORMAT,
              "alpha_pattern");
    CHECK_BAD("{\"peft_type\": \"LORA\", \"base_model_name_or_path\": 1, \"target_modules\": [\"q\"]}",
              DORAC_E_FORMAT, "base_model_name_or_path");
    CHECK_BAD("[\"LORA\"]", DORAC_E_FORMAT, "JSON object");
    CHECK_BAD("{\"peft_type\": \"LO\xffRA\"}", DORAC_E_FORMAT, "UTF-8");
    CHECK_BAD("{\"peft_type\": ", DORAC_E_FORMAT, "invalid JSON");
    CHECK_STATUS(dorac_peft_config_load(&c, "tests/fixtures/io/no-such-adapter"), DORAC_E_IO);
    CHECK_MESSAGE("no-such-adapter");

    /* all-linear is kept as such */
    const char *al = "{\"peft_type\": \"LORA\", \"target_modules\": \"ALL-linear\"}";
    CHECK_OK(dorac_peft_config_load_string(&c, al, strlen(al), "al.json"));
    CHECK(c.target_modules.kind == DORAC_PEFT_TARGETS_ALL_LINEAR);
    CHECK(dorac_peft_targets_module(&c, "model.layers.0.mlp.up_proj"));
    CHECK(!dorac_peft_targets_module(&c, "lm_head"));
    dorac_peft_config_free(&c);
}

static void test_keys(void) {
    char buf[128], module[64];
    dorac_peft_key_kind kind;
    CHECK_OK(dorac_peft_key(buf, sizeof buf, "model.layers.0.self_attn.q_proj", DORAC_PEFT_KEY_MAGNITUDE));
    CHECK(strcmp(buf, "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector") == 0);
    CHECK_STATUS(dorac_peft_key(buf, 20, "model.layers.0.self_attn.q_proj", DORAC_PEFT_KEY_LORA_A), DORAC_E_INVALID);
    CHECK_STATUS(dorac_peft_key(buf, sizeof buf, "", DORAC_PEFT_KEY_LORA_A), DORAC_E_INVALID);
    CHECK_OK(dorac_peft_key_parse("base_model.model.h.0.attn.c_attn.lora_magnitude_vector.weight", module,
                                  sizeof module, &kind));
    CHECK(kind == DORAC_PEFT_KEY_MAGNITUDE && strcmp(module, "h.0.attn.c_attn") == 0);
    CHECK_OK(dorac_peft_key_parse("base_model.model.model.embed_tokens.lora_embedding_A", module, sizeof module,
                                  &kind));
    CHECK(kind == DORAC_PEFT_KEY_EMBEDDING_A && strcmp(module, "model.embed_tokens") == 0);
    CHECK_STATUS(dorac_peft_key_parse("model.layers.0.q_proj.lora_A.weight", module, sizeof module, &kind),
                 DORAC_E_FORMAT);
    CHECK_MESSAGE("model.layers.0.q_proj.lora_A.weight");
    CHECK_STATUS(dorac_peft_key_parse("base_model.model.q_proj.weight", module, sizeof module, &kind), DORAC_E_FORMAT);
    CHECK_STATUS(dorac_peft_key_parse("base_model.model..lora_A.weight", module, sizeof module, &kind), DORAC_E_FORMAT);
    CHECK_STATUS(dorac_peft_key_parse("base_model.model.a.b.c.d.e.f.g.lora_B.weight", module, 4, &kind),
                 DORAC_E_INVALID);
}

int main(void) {
    scratch = scratch_dir("peft");
    json_t *exp = load_json(IO_FIXTURES "/peft_expected.json");
    test_fixture_adapter("peft_list", json_object_get(exp, "peft_list"));
    test_fixture_adapter("peft_regex", json_object_get(exp, "peft_regex"));
    test_fixture_fields();
    test_matching_table(json_object_get(exp, "matching"));
    test_hand_built_round_trip();
    test_bad_configs();
    test_keys();
    json_decref(exp);
    rm_tree(scratch);
    free(scratch);
    return test_report();
}
