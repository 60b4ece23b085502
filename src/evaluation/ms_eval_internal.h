/* ms_eval_internal.h: pieces of the evaluation reports shared with the analysis reports. */
#ifndef MS_EVAL_INTERNAL_H
#define MS_EVAL_INTERNAL_H

#include <cjson/cJSON.h>

#include "medselect/evaluate.h"

/* Adds a "config" object to root describing the data and task settings (files, pool,
 * query, tasks per group, seed, predictor) and returns it, for the caller to extend. */
cJSON *ms_eval_config_json(cJSON *root, const ms_eval_config *cfg, const ms_split *s);

#endif
