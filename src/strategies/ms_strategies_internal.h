/* ms_strategies_internal.h: constructors of the built-in strategy families (one .c file
 * each) and small shared kernels. Not part of the public API. */
#ifndef MS_STRATEGIES_INTERNAL_H
#define MS_STRATEGIES_INTERNAL_H

#include "medselect/strategy.h"

ms_status ms_random_create(ms_strategy *s, const char *opts);
ms_status ms_kmedoids_create(ms_strategy *s, const char *opts);
ms_status ms_kmeans_create(ms_strategy *s, const char *opts);
ms_status ms_kcenter_create(ms_strategy *s, const char *opts);
ms_status ms_typiclust_create(ms_strategy *s, const char *opts);
ms_status ms_probcover_create(ms_strategy *s, const char *opts);
ms_status ms_herding_create(ms_strategy *s, const char *opts);

#endif
