/*
** env.c — where this process stands in a data-parallel job, read from the
** environment that torchrun or mpirun set (see dist.h).
**
** Precedence: torchrun's RANK / WORLD_SIZE, then Open MPI's
** OMPI_COMM_WORLD_*, then MPICH's PMI_*, else a world of 1. A launcher is
** recognised by either of its rank or size variables; once recognised, both
** must be present. Every value is parsed strictly (the whole string is a
** decimal integer) and range-checked, and a failure names the variable and
** the value it held. *env is written only on success.
*/

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dist/dist.h"

#define DIST_WORLD_MAX 65536
#define DIST_DEFAULT_ADDR "127.0.0.1"
#define DIST_DEFAULT_PORT 29500

/* *out = the decimal integer `value` of variable `name`, within [lo, hi]. */
static int parse_env_int(const char *name, const char *value, long lo, long hi, int *out) {
    if (!value || !*value)
        return dorac_error(DORAC_E_INVALID, "dist: %s is empty, expected an integer", name);
    /* strtol alone would accept leading blanks and a '+' */
    bool digits_only = (value[0] == '-' || isdigit((unsigned char)value[0]));
    errno = 0;
    char *end = NULL;
    long v = strtol(value, &end, 10);
    if (!digits_only || end == value || *end != '\0')
        return dorac_error(DORAC_E_INVALID, "dist: %s='%s' is not an integer", name, value);
    if (errno == ERANGE || v < lo || v > hi)
        return dorac_error(DORAC_E_INVALID, "dist: %s='%s' is outside [%ld, %ld]", name, value,
                           lo, hi);
    *out = (int)v;
    return DORAC_OK;
}

/* Reads the rank and size variables of one launcher into env; `local_names`
** are tried in order for the local rank, which defaults to the rank. */
static int read_launcher(dorac_dist_env *env, const char *rank_name, const char *world_name,
                         const char *const *local_names, size_t n_local_names) {
    const char *rank_s = getenv(rank_name), *world_s = getenv(world_name);
    if (!rank_s)
        return dorac_error(DORAC_E_INVALID, "dist: %s is set but %s is not", world_name, rank_name);
    if (!world_s)
        return dorac_error(DORAC_E_INVALID, "dist: %s is set but %s is not", rank_name, world_name);
    DORAC_TRY(parse_env_int(world_name, world_s, 1, DIST_WORLD_MAX, &env->world));
    DORAC_TRY(parse_env_int(rank_name, rank_s, 0, INT_MAX, &env->rank));
    if (env->rank >= env->world)
        return dorac_error(DORAC_E_INVALID, "dist: %s=%d is not below %s=%d", rank_name, env->rank,
                           world_name, env->world);
    env->local_rank = env->rank;
    for (size_t i = 0; i < n_local_names; i++) {
        const char *s = getenv(local_names[i]);
        if (!s) continue;
        DORAC_TRY(parse_env_int(local_names[i], s, 0, INT_MAX, &env->local_rank));
        if (env->local_rank >= env->world)
            return dorac_error(DORAC_E_INVALID, "dist: %s=%d is not below %s=%d", local_names[i],
                               env->local_rank, world_name, env->world);
        break;
    }
    return DORAC_OK;
}

int dorac_dist_env_read(dorac_dist_env *out) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dist: env is NULL");
    dorac_dist_env env;
    memset(&env, 0, sizeof env);
    env.world = 1;
    env.source = "none";

    if (getenv("RANK") || getenv("WORLD_SIZE")) {
        static const char *const local[] = {"LOCAL_RANK"};
        DORAC_TRY(read_launcher(&env, "RANK", "WORLD_SIZE", local, 1));
        env.source = "torchrun";
    } else if (getenv("OMPI_COMM_WORLD_RANK") || getenv("OMPI_COMM_WORLD_SIZE")) {
        static const char *const local[] = {"OMPI_COMM_WORLD_LOCAL_RANK"};
        DORAC_TRY(read_launcher(&env, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", local, 1));
        env.source = "openmpi";
    } else if (getenv("PMI_RANK") || getenv("PMI_SIZE")) {
        static const char *const local[] = {"PMI_LOCAL_RANK", "MPI_LOCALRANKID"};
        DORAC_TRY(read_launcher(&env, "PMI_RANK", "PMI_SIZE", local, 2));
        env.source = "mpich";
    }

    const char *addr = getenv("MASTER_ADDR");
    if (!addr) addr = DIST_DEFAULT_ADDR;
    if (!*addr) return dorac_error(DORAC_E_INVALID, "dist: MASTER_ADDR is empty");
    if (strlen(addr) >= sizeof env.master_addr)
        return dorac_error(DORAC_E_INVALID, "dist: MASTER_ADDR is %zu bytes long, at most %zu",
                           strlen(addr), sizeof env.master_addr - 1);
    memcpy(env.master_addr, addr, strlen(addr) + 1);

    env.master_port = DIST_DEFAULT_PORT;
    const char *port = getenv("MASTER_PORT");
    if (port) DORAC_TRY(parse_env_int("MASTER_PORT", port, 1, 65535, &env.master_port));

    *out = env;
    return DORAC_OK;
}
