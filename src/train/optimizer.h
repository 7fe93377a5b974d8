/*
** optimizer.h — AdamW over a model's trainable tensors, with global-norm
** gradient clipping, and its state in and out of a checkpoint.
**
** The update is torch.optim.AdamW's (backend.h, adamw), with
** torch.nn.utils.clip_grad_norm_'s clipping: the global L2 norm over every
** gradient, and scale = min(1, max_norm / (norm + 1e-6)) when max_norm > 0.
** State (exp_avg, exp_avg_sq) is kept in the backend's param type (fp32),
** one pair per trainable tensor, zero at step 0.
*/
#ifndef DORAC_TRAIN_OPTIMIZER_H
#define DORAC_TRAIN_OPTIMIZER_H

#include "model/model.h"

typedef struct dorac_adamw_config {
    double lr;            /* base learning rate (the schedule multiplies it) */
    double beta1, beta2, eps;
    double weight_decay;  /* decoupled; applied to tensors marked decay */
    double max_grad_norm; /* <= 0: no clipping */
} dorac_adamw_config;

typedef struct dorac_optimizer {
    dorac_backend *be;
    dorac_trainable *params; /* owned copy of the list */
    size_t n;
    dorac_tensor *m, *v;     /* (n) moment tensors, owned */
    /* the same n tensors as the lists the backend's batched entries take,
    ** built once: grads[i] = params[i].grad; items[i] the AdamW quadruple */
    const dorac_tensor **grads;
    dorac_adamw_item *items;
    int64_t step;            /* optimizer steps taken */
} dorac_optimizer;

int dorac_optimizer_init(dorac_optimizer *o, dorac_backend *be, const dorac_trainable *params, size_t n);
void dorac_optimizer_free(dorac_optimizer *o);

/* The global L2 norm of every gradient (on the host). */
int dorac_optimizer_grad_norm(dorac_optimizer *o, double *norm);

/* One step at learning rate lr, clipping with grad_norm as computed above.
** Increments step. */
int dorac_optimizer_step(dorac_optimizer *o, const dorac_adamw_config *c, double lr, double grad_norm);

/* Writes the state as safetensors: "<name>.exp_avg" and "<name>.exp_avg_sq"
** per trainable (F32), metadata "step". Atomic. */
int dorac_optimizer_save(dorac_optimizer *o, const char *path);
/* Reads what save wrote; every tensor must be present with the right shape. */
int dorac_optimizer_load(dorac_optimizer *o, const char *path);

#endif
