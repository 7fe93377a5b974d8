/*
** schedule.h — learning-rate schedules, as transformers' get_*_schedule_*
** functions compute them, so that a run here and an HF Trainer run with
** the same settings see the same learning rates.
**
** lr(step) = base_lr * factor(step), step = 0 for the first optimizer step
** (HF's scheduler is stepped after each optimizer step, so the first step
** uses factor(0), which is 0 when warmup > 0):
**   warmup:   factor = step / max(1, warmup)                for step < warmup
**   linear:   factor = max(0, (total - step) / max(1, total - warmup))
**   cosine:   p = (step - warmup) / max(1, total - warmup),
**             factor = max(0, 0.5 (1 + cos(pi p)))
**   constant: factor = 1
*/
#ifndef DORAC_TRAIN_SCHEDULE_H
#define DORAC_TRAIN_SCHEDULE_H

#include <stdint.h>

typedef enum dorac_schedule {
    DORAC_SCHEDULE_LINEAR = 0,
    DORAC_SCHEDULE_COSINE = 1,
    DORAC_SCHEDULE_CONSTANT = 2
} dorac_schedule;

/* Parses "linear" | "cosine" | "constant"; -1 if none. */
int dorac_schedule_parse(const char *name);
const char *dorac_schedule_name(dorac_schedule s);

/* The multiplier of the base learning rate at optimizer step `step`. */
double dorac_schedule_factor(dorac_schedule s, int64_t step, int64_t warmup, int64_t total);

#endif
