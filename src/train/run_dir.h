/*
** run_dir.h — the checkpoints of a training output folder, as `dorac
** analyze` reads them back.
**
** A folder written by dorac_train (trainer.h) holds checkpoint-STEP/
** folders and, when the run finished, the final adapter/ (LoRA, DoRA) or
** model/ (full fine-tuning). Each weight folder's method is read from its
** files:
**   adapter_config.json                 LORA, or DORA when use_dora is true
**   model.safetensors (or its .index)   FULL
** Every folder of one run must agree; a mix is DORAC_E_FORMAT.
**
** Steps. A checkpoint's step is the number in its name. The final folder's
** step is the last step recorded in metrics.jsonl (-1 when there is none);
** when a checkpoint was saved at that same step, it holds the same weights
** and the final folder is left out, so no state is counted twice.
** Names starting with '.' (temporary folders of an interrupted save) and
** names that are not checkpoint-<digits> are ignored; so is merged/.
*/
#ifndef DORAC_TRAIN_RUN_DIR_H
#define DORAC_TRAIN_RUN_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter/linear.h"

typedef struct dorac_run_checkpoint {
    char *path;      /* the weight folder, owned */
    char name[48];   /* "checkpoint-20", "adapter" or "model" */
    int64_t step;    /* optimizer steps done; -1 when unknown (a final folder without metrics) */
    bool final;      /* the run's final adapter/ or model/ */
} dorac_run_checkpoint;

typedef struct dorac_run_dir {
    char *path;                  /* the output folder as given, owned */
    dorac_method method;         /* LORA, DORA or FULL */
    dorac_run_checkpoint *ckpts; /* n_ckpts >= 1, in step order, the final folder last; owned */
    size_t n_ckpts;
} dorac_run_dir;

/* Lists the weight folders of the training output folder dir. *run is zeroed
** first and holds nothing to free on failure. DORAC_E_IO when dir cannot be
** read; DORAC_E_FORMAT when it holds no weight folder, a folder holds
** neither an adapter nor model weights, or the methods disagree. */
int dorac_run_dir_scan(dorac_run_dir *run, const char *dir);

/* Frees what run owns and zeroes it. run may be NULL. */
void dorac_run_dir_free(dorac_run_dir *run);

/* The method of one weight folder, as above. */
int dorac_run_dir_method(const char *weights_dir, dorac_method *method);

#endif
