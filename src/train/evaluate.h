/*
** evaluate.h — mean next-token loss of a model over a dataset.
*/
#ifndef DORAC_TRAIN_EVALUATE_H
#define DORAC_TRAIN_EVALUATE_H

#include "model/model.h"
#include "train/dataset.h"

/* The token-weighted mean next-token cross-entropy over every example of ds,
** as transformers computes it with labels= (position t predicts
** labels[t+1]; DORAC_IGNORE_INDEX labels are skipped). Examples are batched
** batch_size at a time in file order and right-padded, which changes
** nothing (attention is causal and padding carries no label). An example
** longer than the model's max_position_embeddings is an error naming its
** line. *loss is NAN when no token is counted. */
int dorac_evaluate(dorac_model *m, const dorac_dataset *ds, int64_t batch_size, double *loss, int64_t *tokens);

#endif
