/*
** test_hf_config.c — config.json parsing against what transformers reads from
** the same files (tests/fixtures/io/configs_expected.json, written by
** tools/ref/make_io_fixtures.py), the old and new RoPE spellings, class
** defaults, and one test per kind of bad config.
*/
#define _POSIX_C_SOURCE 200809L

#include "test.h"
#include "io/hf_config.h"
#include "io_test_util.h"

static char *scratch;

static const char *rope_name(dorac_rope_type t) {
    switch (t) {
    case DORAC_ROPE_NONE: return "none";
    case DORAC_ROPE_DEFAULT: return "default";
    case DORAC_ROPE_LINEAR: return "linear";
    case DORAC_ROPE_LLAMA3: return "llama3";
    default: return "?";
    }
}

static int64_t get_i(const json_t *e, const char *k) { return json_integer_value(json_object_get(e, k)); }
static double get_d(const json_t *e, const char *k) { return json_number_value(json_object_get(e, k)); }

/* Compares one loaded config with transformers' reading of the same file. */
static void check_against(const dorac_hf_config *c, const json_t *e, const char *file) {
    fprintf(stderr, "  %s\n", file);
    CHECK(strcmp(c->model_type, json_string_value(json_object_get(e, "model_type"))) == 0);
    CHECK(strcmp(dorac_arch_name(c->arch), c->model_type) == 0);
    CHECK(c->vocab_size == get_i(e, "vocab_size"));
    CHECK(c->hidden_size == get_i(e, "hidden_size"));
    CHECK(c->intermediate_size == get_i(e, "intermediate_size"));
    CHECK(c->num_hidden_layers == get_i(e, "num_hidden_layers"));
    CHECK(c->num_attention_heads == get_i(e, "num_attention_heads"));
    CHECK(c->num_key_value_heads == get_i(e, "num_key_value_heads"));
    CHECK(c->head_dim == get_i(e, "head_dim"));
    CHECK(c->max_position_embeddings == get_i(e, "max_position_embeddings"));
    CHECK(c->norm_eps == get_d(e, "norm_eps"));
    CHECK(strcmp(c->hidden_act_name, json_string_value(json_object_get(e, "hidden_act"))) == 0);
    CHECK(c->tie_word_embeddings == json_is_true(json_object_get(e, "tie_word_embeddings")));
    if (c->arch == DORAC_ARCH_LLAMA) {
        bool bias = json_is_true(json_object_get(e, "attention_bias"));
        CHECK(c->qkv_bias == bias && c->o_bias == bias);
    }
    const json_t *sw = json_object_get(e, "sliding_window");
    if (c->arch == DORAC_ARCH_MISTRAL) CHECK(c->sliding_window == (json_is_null(sw) ? 0 : json_integer_value(sw)));
    CHECK(strcmp(rope_name(c->rope.type), json_string_value(json_object_get(e, "rope_type"))) == 0);
    if (c->rope.type != DORAC_ROPE_NONE) CHECK(c->rope.theta == get_d(e, "rope_theta"));
    if (c->rope.type == DORAC_ROPE_LINEAR || c->rope.type == DORAC_ROPE_LLAMA3)
        CHECK(c->rope.factor == get_d(e, "rope_factor"));
    if (c->rope.type == DORAC_ROPE_LLAMA3) {
        CHECK(c->rope.low_freq_factor == get_d(e, "rope_low_freq_factor"));
        CHECK(c->rope.high_freq_factor == get_d(e, "rope_high_freq_factor"));
        CHECK(c->rope.original_max_position_embeddings == get_i(e, "rope_original_max_position_embeddings"));
    }
    const json_t *bos = json_object_get(e, "bos_token_id");
    CHECK(c->bos_token_id == (json_is_null(bos) ? -1 : json_integer_value(bos)));
    const json_t *eos = json_object_get(e, "eos_token_ids");
    CHECK(c->n_eos_token_ids == (int)json_array_size(eos));
    CHECK(c->eos_token_id == (json_array_size(eos) ? json_integer_value(json_array_get(eos, 0)) : -1));
    for (size_t i = 0; i < json_array_size(eos) && i < DORAC_HF_MAX_EOS; i++)
        CHECK(c->eos_token_ids[i] == json_integer_value(json_array_get(eos, i)));
    const json_t *dt = json_object_get(e, "dtype");
    if (json_is_string(dt)) {
        CHECK(strcmp(c->dtype_name, json_string_value(dt)) == 0);
        CHECK(c->has_dtype);
    } else {
        CHECK(c->dtype_name[0] == '\0' && !c->has_dtype);
    }
}

static void test_reference_configs(void) {
    json_t *exp = load_json(IO_FIXTURES "/configs_expected.json");
    const char *file;
    json_t *e;
    int n = 0;
    json_object_foreach(exp, file, e) {
        char *path = join(IO_FIXTURES "/configs", file);
        dorac_hf_config c;
        CHECK_OK(dorac_hf_config_load(&c, path));
        check_against(&c, e, file);
        free(path);
        n++;
    }
    CHECK(n >= 17);
    json_decref(exp);
}

/* Old spelling (rope_theta + rope_scaling with "type" or "rope_type") and the
** transformers-5 spelling (rope_parameters) give the same config. */
static void test_rope_spellings(void) {
    const char *names[] = {"llama3", "llama_linear", "qwen2", "mistral"};
    for (size_t i = 0; i < 4; i++) {
        char file[128];
        dorac_hf_config a, b, c;
        snprintf(file, sizeof file, IO_FIXTURES "/configs/%s.json", names[i]);
        CHECK_OK(dorac_hf_config_load(&a, file));
        snprintf(file, sizeof file, IO_FIXTURES "/configs/%s_old_type.json", names[i]);
        CHECK_OK(dorac_hf_config_load(&b, file));
        snprintf(file, sizeof file, IO_FIXTURES "/configs/%s_old_rope_type.json", names[i]);
        CHECK_OK(dorac_hf_config_load(&c, file));
        CHECK(memcmp(&a.rope, &b.rope, sizeof a.rope) == 0);
        CHECK(memcmp(&a.rope, &c.rope, sizeof a.rope) == 0);
        /* the whole struct too (dtype vs torch_dtype land in the same field) */
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        CHECK(memcmp(&a, &c, sizeof a) == 0);
    }
    /* a folder holding config.json */
    dorac_hf_config d1, d2;
    CHECK_OK(dorac_hf_config_load(&d1, IO_FIXTURES "/tiny_llama_sharded"));
    CHECK_OK(dorac_hf_config_load(&d2, IO_FIXTURES "/tiny_llama_sharded/config.json"));
    CHECK(memcmp(&d1, &d2, sizeof d1) == 0);
    CHECK(d1.arch == DORAC_ARCH_LLAMA && d1.num_key_value_heads * 2 == d1.num_attention_heads);
}

/* ---- bad configs ----------------------------------------------------------- */

/* The llama3 fixture with one edit applied: key set to the JSON value text,
** or removed when value is NULL. Returns the serialised text (malloc'd). */
static char *edited(const char *fixture, const char *key, const char *value) {
    char path[256];
    snprintf(path, sizeof path, IO_FIXTURES "/configs/%s", fixture);
    json_t *j = load_json(path);
    if (value) {
        json_error_t err;
        json_t *v = json_loads(value, JSON_DECODE_ANY, &err);
        if (!v) {
            fprintf(stderr, "bad test value %s\n", value);
            exit(2);
        }
        json_object_set_new(j, key, v);
    } else {
        json_object_del(j, key);
    }
    char *s = json_dumps(j, 0);
    json_decref(j);
    return s;
}

#define CHECK_BAD(fixture, key, value, status, ...)                                          \
    do {                                                                                     \
        char *text_ = edited(fixture, key, value);                                           \
        dorac_hf_config c_;                                                                  \
        CHECK_STATUS(dorac_hf_config_load_string(&c_, text_, strlen(text_), "bad/config.json"), \
                     status);                                                                \
        CHECK_MESSAGE("bad/config.json", __VA_ARGS__);                                       \
        free(text_);                                                                         \
    } while (0)

static void test_bad_configs(void) {
    /* a missing field, from a real file on disk: the message names the file */
    char *text = edited("llama3.json", "hidden_size", NULL);
    char *path = join(scratch, "config.json");
    CHECK(write_bytes(path, text, strlen(text)));
    dorac_hf_config c;
    CHECK_STATUS(dorac_hf_config_load(&c, scratch), DORAC_E_FORMAT);
    CHECK_MESSAGE(path, "missing field 'hidden_size'");
    free(text);

    CHECK_BAD("llama3.json", "model_type", "\"falcon\"", DORAC_E_UNSUPPORTED, "unsupported model_type 'falcon'");
    CHECK_BAD("llama3.json", "model_type", NULL, DORAC_E_FORMAT, "missing field 'model_type'");
    CHECK_BAD("llama3.json", "vocab_size", NULL, DORAC_E_FORMAT, "'vocab_size'");
    CHECK_BAD("llama3.json", "intermediate_size", "null", DORAC_E_FORMAT, "'intermediate_size'");
    CHECK_BAD("llama3.json", "num_hidden_layers", "0", DORAC_E_FORMAT, "'num_hidden_layers'", "out of range");
    CHECK_BAD("llama3.json", "hidden_size", "-2048", DORAC_E_FORMAT, "'hidden_size'");
    CHECK_BAD("llama3.json", "hidden_size", "\"2048\"", DORAC_E_FORMAT, "'hidden_size'", "integer");
    CHECK_BAD("llama3.json", "hidden_size", "2048.0", DORAC_E_FORMAT, "'hidden_size'", "integer");
    CHECK_BAD("llama3.json", "vocab_size", "1000000000000", DORAC_E_FORMAT, "'vocab_size'", "out of range");
    CHECK_BAD("llama3.json", "num_key_value_heads", "5", DORAC_E_FORMAT, "num_key_value_heads");
    CHECK_BAD("llama3.json", "num_key_value_heads", "64", DORAC_E_FORMAT, "num_key_value_heads");
    CHECK_BAD("llama3.json", "hidden_act", "\"relu\"", DORAC_E_UNSUPPORTED, "hidden_act", "'relu'");
    CHECK_BAD("llama3.json", "hidden_act", "7", DORAC_E_FORMAT, "hidden_act");
    CHECK_BAD("llama3.json", "tie_word_embeddings", "1", DORAC_E_FORMAT, "tie_word_embeddings");
    CHECK_BAD("llama3.json", "rms_norm_eps", "0", DORAC_E_FORMAT, "rms_norm_eps");
    CHECK_BAD("llama3.json", "head_dim", "63", DORAC_E_UNSUPPORTED, "head_dim");
    CHECK_BAD("llama3.json", "eos_token_id", "[1, \"x\"]", DORAC_E_FORMAT, "eos_token_id");
    CHECK_BAD("llama3.json", "rope_parameters", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", DORAC_E_UNSUPPORTED,
              "rope type 'yarn'");
    CHECK_BAD("llama3.json", "rope_parameters", "{\"rope_type\": \"dynamic\", \"factor\": 4.0}", DORAC_E_UNSUPPORTED,
              "'dynamic'");
    CHECK_BAD("llama3.json", "rope_parameters",
              "{\"rope_type\": \"llama3\", \"rope_theta\": 5e5, \"factor\": 8.0, \"high_freq_factor\": 4.0}",
              DORAC_E_FORMAT, "rope_parameters.low_freq_factor");
    CHECK_BAD("llama3.json", "rope_parameters",
              "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 1}",
              DORAC_E_FORMAT, "high_freq_factor");
    CHECK_BAD("llama3.json", "rope_parameters", "{\"rope_type\": \"linear\"}", DORAC_E_FORMAT,
              "rope_parameters.factor");
    CHECK_BAD("llama3.json", "rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": -1}", DORAC_E_FORMAT,
              "rope_theta");
    CHECK_BAD("llama3.json", "rope_parameters", "{\"rope_type\": \"default\", \"partial_rotary_factor\": 0.5}",
              DORAC_E_UNSUPPORTED, "partial_rotary_factor");
    CHECK_BAD("llama3.json", "rope_parameters", "[1]", DORAC_E_FORMAT, "rope_parameters");
    CHECK_BAD("llama3.json", "rope_parameters", "{\"full_attention\": {\"rope_type\": \"default\"}}",
              DORAC_E_UNSUPPORTED, "per-layer");
    CHECK_BAD("llama3_old_type.json", "rope_scaling", "{\"type\": \"longrope\", \"factor\": 2.0}",
              DORAC_E_UNSUPPORTED, "'longrope'");
    CHECK_BAD("llama3_old_type.json", "rope_scaling", "\"linear\"", DORAC_E_FORMAT, "rope_scaling");
    CHECK_BAD("qwen2.json", "use_sliding_window", "true", DORAC_E_UNSUPPORTED, "use_sliding_window");
    CHECK_BAD("qwen2.json", "layer_types", "[\"sliding_attention\"]", DORAC_E_UNSUPPORTED, "layer_types");
    CHECK_BAD("gpt2.json", "n_embd", NULL, DORAC_E_FORMAT, "missing field 'n_embd'");
    CHECK_BAD("gpt2.json", "n_head", "7", DORAC_E_FORMAT, "n_head");
    CHECK_BAD("gpt2.json", "activation_function", "\"quick_gelu\"", DORAC_E_UNSUPPORTED, "'quick_gelu'");
    CHECK_BAD("gpt2.json", "scale_attn_by_inverse_layer_idx", "true", DORAC_E_UNSUPPORTED,
              "scale_attn_by_inverse_layer_idx");
    CHECK_BAD("gpt2.json", "add_cross_attention", "true", DORAC_E_UNSUPPORTED, "add_cross_attention");

    /* not JSON, not an object, not UTF-8, not there */
    const char *cases[][2] = {{"{\"model_type\": \"llama\",", "invalid JSON"},
                              {"[1, 2]", "JSON object"},
                              {"{\"model_type\": \"ll\xe9\"}", "UTF-8"},
                              {"", "invalid JSON"}};
    for (size_t i = 0; i < 4; i++) {
        CHECK_STATUS(dorac_hf_config_load_string(&c, cases[i][0], strlen(cases[i][0]), "bad/config.json"),
                     DORAC_E_FORMAT);
        CHECK_MESSAGE("bad/config.json", cases[i][1]);
    }
    CHECK_STATUS(dorac_hf_config_load(&c, "tests/fixtures/io/no-such-model"), DORAC_E_IO);
    CHECK_MESSAGE("no-such-model");
    free(path);
}

int main(void) {
    scratch = scratch_dir("cfg");
    test_reference_configs();
    test_rope_spellings();
    test_bad_configs();
    rm_tree(scratch);
    free(scratch);
    return test_report();
}
