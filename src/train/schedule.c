/*
** schedule.c — learning-rate schedules (see schedule.h).
*/
#include "train/schedule.h"

#include <math.h>
#include <string.h>

int dorac_schedule_parse(const char *name) {
    if (!strcmp(name, "linear")) return DORAC_SCHEDULE_LINEAR;
    if (!strcmp(name, "cosine")) return DORAC_SCHEDULE_COSINE;
    if (!strcmp(name, "constant")) return DORAC_SCHEDULE_CONSTANT;
    return -1;
}

const char *dorac_schedule_name(dorac_schedule s) {
    switch (s) {
    case DORAC_SCHEDULE_LINEAR: return "linear";
    case DORAC_SCHEDULE_COSINE: return "cosine";
    case DORAC_SCHEDULE_CONSTANT: return "constant";
    default: return "?";
    }
}

double dorac_schedule_factor(dorac_schedule s, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    int64_t span = total - warmup > 1 ? total - warmup : 1;
    switch (s) {
    case DORAC_SCHEDULE_LINEAR: {
        double f = (double)(total - step) / (double)span;
        return f > 0 ? f : 0;
    }
    case DORAC_SCHEDULE_COSINE: {
        double p = (double)(step - warmup) / (double)span;
        double f = 0.5 * (1.0 + cos(3.14159265358979323846 * p));
        return f > 0 ? f : 0;
    }
    default: return 1.0;
    }
}
