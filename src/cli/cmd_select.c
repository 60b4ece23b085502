/* cmd_select.c: `medselect select`: the labeling worklist. A trained selector (or any
 * strategy) picks K distinct items of an unlabeled pool; the worklist CSV lists them by rank. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "medselect/checkpoint.h"
#include "medselect/train.h"

static void help(void) {
    printf("Usage: medselect select (--model CKPT | --strategy NAME) --pool POOL.csv -k K\n"
           "                        --out WORKLIST.csv [OPTIONS]\n\n"
           "Chooses which K images of an unlabeled pool to send for labeling. POOL.csv needs a\n"
           "Path column (label columns are not needed); its embeddings are the HDF5 file of the\n"
           "same base name (dataset \"dataset\") or --emb FILE (.hdf5/.h5/.npy).\n\n"
           "With --model, the trained selector scores every item (one logit each) and the K\n"
           "items with the highest logits are chosen (greedy top-K), or with --sample a draw of K\n"
           "distinct items from the selector's policy. With --strategy, a baseline chooses\n"
           "(%s).\n\n"
           "WORKLIST.csv columns: rank, Path, logit, probability (the item's softmax\n"
           "probability over the whole pool; empty for baselines), and the --group-by column.\n"
           "Numbers are written with 9 significant digits, so a float32 logit reads back exactly.\n\n"
           "With --group-by, the selector's ranking is the order of its logits (or of its draw with\n"
           "--sample); a baseline that is a ranking (e.g. kcenter, herding) is asked for the whole\n"
           "order, any other (e.g. kmedoids) for 2K, 4K, ... items until K fit the cap. When the\n"
           "whole pool cannot fill K under the cap (fewer than K / N groups), it is an error.\n\n"
           "Options:\n"
           "      --model CKPT         selector weights (safetensors from 'medselect train', or a\n"
           "                           PyTorch state_dict saved as safetensors)\n"
           "      --strategy NAME      a baseline instead, e.g. kmedoids or probcover:delta=0.4\n"
           "      --pool FILE          the pool CSV\n"
           "      --emb FILE           its embeddings (default: next to the CSV)\n"
           "  -k, --k K                number of images to label\n"
           "      --out FILE           the worklist CSV ('-' for stdout); missing folders are\n"
           "                           created; a second select into the same FILE is refused\n"
           "                           while the first runs (exit 2)\n"
           "      --format F           csv (default), json (an object with the settings and an\n"
           "                           \"items\" list), or labelstudio (Label Studio's task import\n"
           "                           format: a JSON list of {\"data\": {\"image\": ..., ...}})\n"
           "      --image-url PREFIX   labelstudio: prefix for each Path in \"image\" (e.g.\n"
           "                           \"/data/local-files/?d=nih/\" for Label Studio's local file\n"
           "                           serving); default: the Path as it is\n"
           "      --group-by COLUMN    a POOL.csv column that groups images (e.g. PatientID): the\n"
           "                           ranking is kept, but an image whose group already has\n"
           "                           --max-per-group images in the worklist is skipped and the\n"
           "                           next one in the ranking taken. A blank value is a group\n"
           "                           of its own. The worklist gains the column.\n"
           "      --max-per-group N    images per group (default 1; needs --group-by)\n"
           "      --scores FILE        also write every pool item's logit (Path, logit, probability);\n"
           "                           put in place just before the worklist\n"
           "      --sample             draw from the policy instead of taking the top K\n"
           "      --clinical           the selector takes the 3 clinical inputs (needed only for a\n"
           "                           tensors-only checkpoint; D + 3 inputs are taken as clinical)\n"
           "      --seed S             seed of --sample and of random baselines (0)\n"
           "      --impute-clinical    fill missing clinical values (selectors trained --clinical)\n"
           "                           with the pool's mean of that feature\n"
           "      --threads T          worker threads (default: all cores)\n"
           "      --precision P        f32 (default) or bf16 for the selector's products (bf16\n"
           "                           operands, fp32 accumulation; needs AVX512_BF16)\n"
           "  -h, --help               this help\n\n"
           "Example:\n"
           "  medselect select --model run1/best.safetensors --pool unlabeled.csv -k 20 \\\n"
           "      --out worklist.csv --scores scores.csv\n"
           "  medselect select --model run1/best.safetensors --pool unlabeled.csv -k 20 \\\n"
           "      --group-by PatientID --format labelstudio --out tasks.json\n",
           ms_strategy_names());
}

enum {
    OPT_STRATEGY = MS_OPT_FIRST_FREE, OPT_POOL, OPT_EMB, OPT_OUT, OPT_SCORES, OPT_SAMPLE, OPT_IMPUTE, OPT_FORMAT,
    OPT_GROUP_BY, OPT_MAX_PER_GROUP, OPT_IMAGE_URL
};

typedef enum { FMT_CSV, FMT_JSON, FMT_LABELSTUDIO } list_format;

/* The worklist's settings, for the JSON formats. */
typedef struct {
    list_format format;
    const char *chosen_by, *group_col, *image_url;
    char **group; /* (n) the --group-by column's values, or NULL */
    int max_per_group;
} list_info;

/* Writes Path, logit, probability for items in `order` (n of them), with a rank column
 * when ranked and the group column when there is one, into an open output (committed by the
 * caller). CSV only (the scores file). */
static ms_status write_list(ms_outfile *o, const ms_table *t, const int *order, int n,
                            const float *logits, const double *prob, int ranked, const list_info *li) {
    fputs(ranked ? "rank,Path,logit,probability" : "Path,logit,probability", o->f);
    if (li->group) {
        fputc(',', o->f);
        ms_csv_put(o->f, li->group_col);
    }
    fputc('\n', o->f);
    for (int i = 0; i < n; i++) {
        int r = order ? order[i] : i;
        if (ranked) fprintf(o->f, "%d,", i + 1);
        ms_csv_put(o->f, t->path[r]);
        /* %.9g: a float32 logit reads back bit for bit */
        if (logits) fprintf(o->f, ",%.9g,%.9g", logits[r], prob[r]);
        else fputs(",,", o->f);
        if (li->group) {
            fputc(',', o->f);
            ms_csv_put(o->f, li->group[r]);
        }
        fputc('\n', o->f);
    }
    return MS_OK;
}

/* The worklist as JSON: {"chosen_by", "k", "pool", "group_by", "max_per_group", "items": [{rank,
 * path, logit, probability, group}]}, or Label Studio's import format: a list of tasks
 * [{"data": {"image": PREFIX + Path, "path", "rank", "logit", "probability", COLUMN: group}}]. */
static ms_status write_json(ms_outfile *o, const ms_table *t, const int *order, int k, const float *logits,
                            const double *prob, const list_info *li) {
    cJSON *items = cJSON_CreateArray();
    for (int i = 0; i < k; i++) {
        int r = order[i];
        cJSON *it = cJSON_CreateObject();
        if (li->format == FMT_LABELSTUDIO) {
            const char *pre = li->image_url ? li->image_url : "";
            size_t len = strlen(pre) + strlen(t->path[r]) + 1;
            char *url = ms_xmalloc(len);
            snprintf(url, len, "%s%s", pre, t->path[r]);
            cJSON_AddStringToObject(it, "image", url);
            free(url);
        }
        cJSON_AddNumberToObject(it, "rank", i + 1);
        cJSON_AddStringToObject(it, "path", t->path[r]);
        if (logits) {
            cJSON_AddNumberToObject(it, "logit", (double)logits[r]);
            cJSON_AddNumberToObject(it, "probability", prob[r]);
        } else {
            cJSON_AddNullToObject(it, "logit");
            cJSON_AddNullToObject(it, "probability");
        }
        if (li->group) cJSON_AddStringToObject(it, li->format == FMT_LABELSTUDIO ? li->group_col : "group", li->group[r]);
        if (li->format == FMT_LABELSTUDIO) {
            cJSON *task = cJSON_CreateObject();
            cJSON_AddItemToObject(task, "data", it);
            it = task;
        }
        cJSON_AddItemToArray(items, it);
    }
    cJSON *root = items;
    if (li->format == FMT_JSON) {
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "chosen_by", li->chosen_by);
        cJSON_AddNumberToObject(root, "k", k);
        cJSON_AddNumberToObject(root, "pool", t->n);
        if (li->group) {
            cJSON_AddStringToObject(root, "group_by", li->group_col);
            cJSON_AddNumberToObject(root, "max_per_group", li->max_per_group);
        } else {
            cJSON_AddNullToObject(root, "group_by");
            cJSON_AddNullToObject(root, "max_per_group");
        }
        cJSON_AddItemToObject(root, "items", items);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    fputs(text, o->f);
    fputc('\n', o->f);
    free(text);
    return MS_OK;
}

/* The --group-by column of the pool CSV as one string per row (blank values made unique, so
 * that each is a group of its own). */
static ms_status read_groups(const char *csv, const char *col, int n, char ***out) {
    ms_csv c;
    ms_status st = ms_csv_read(&c, csv);
    if (st) return st;
    int j = ms_csv_col(&c, col);
    if (j < 0) {
        ms_csv_free(&c);
        return ms_fail(MS_ERR_DATA, "%s: no column '%s' for --group-by", csv, col);
    }
    MS_CHECK(c.n_rows == n);
    char **g = ms_xmalloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) {
        const char *v = c.cell[(size_t)i * (size_t)c.n_cols + (size_t)j];
        while (*v == ' ' || *v == '\t') v++;
        if (*v) {
            g[i] = ms_xstrdup(v);
        } else {
            char b[48];
            snprintf(b, sizeof b, "\x01blank %d", i); /* cannot equal a CSV value of the column */
            g[i] = ms_xstrdup(b);
        }
    }
    ms_csv_free(&c);
    *out = g;
    return MS_OK;
}

static const char *const *sort_groups_base;
static int cmp_group(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    int c = strcmp(sort_groups_base[x], sort_groups_base[y]);
    return c ? c : (x > y) - (x < y);
}

/* gid (n): a dense group id per row; returns the number of groups. */
static int group_ids(char **g, int n, int *gid) {
    int *idx = ms_xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_groups_base = (const char *const *)g;
    qsort(idx, (size_t)n, sizeof(int), cmp_group);
    int ng = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || strcmp(g[idx[i]], g[idx[i - 1]])) ng++;
        gid[idx[i]] = ng - 1;
    }
    free(idx);
    return ng;
}

/* Walks `order` (m items) and keeps, in order, the items whose group has fewer than cap kept
 * items, up to k of them into pick; returns how many were kept. */
static int take_capped(const int *order, int m, const int *gid, int ng, int cap, int k, int *pick) {
    int *used = ms_xcalloc((size_t)(ng ? ng : 1), sizeof(int));
    int kept = 0;
    for (int i = 0; i < m && kept < k; i++)
        if (used[gid[order[i]]] < cap) {
            used[gid[order[i]]]++;
            pick[kept++] = order[i];
        }
    free(used);
    return kept;
}

int ms_cmd_select(int argc, char **argv) {
    const char *cmd = "select";
    const char *model = NULL, *strategy = NULL, *pool_csv = NULL, *emb = NULL, *out = NULL, *scores = NULL;
    long k = 0, threads = 0;
    unsigned long long seed = 0;
    int sample = 0, impute = 0, force_clinical = 0;
    long max_per_group = 0;
    list_info li = {.format = FMT_CSV};
    static const struct option opts[] = {
        {"format", required_argument, 0, OPT_FORMAT},
        {"group-by", required_argument, 0, OPT_GROUP_BY},
        {"max-per-group", required_argument, 0, OPT_MAX_PER_GROUP},
        {"image-url", required_argument, 0, OPT_IMAGE_URL},
        {"model", required_argument, 0, MS_OPT_MODEL},
        {"strategy", required_argument, 0, OPT_STRATEGY},
        {"pool", required_argument, 0, OPT_POOL},
        {"emb", required_argument, 0, OPT_EMB},
        {"k", required_argument, 0, 'k'},
        {"out", required_argument, 0, OPT_OUT},
        {"scores", required_argument, 0, OPT_SCORES},
        {"sample", no_argument, 0, OPT_SAMPLE},
        {"clinical", no_argument, 0, MS_OPT_CLINICAL},
        {"seed", required_argument, 0, MS_OPT_SEED},
        {"impute-clinical", no_argument, 0, OPT_IMPUTE},
        {"threads", required_argument, 0, MS_OPT_THREADS},
        {"precision", required_argument, 0, MS_OPT_PRECISION},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":k:h", opts, NULL)) != -1) {
        switch (opt) {
        case MS_OPT_MODEL: model = optarg; break;
        case OPT_STRATEGY: strategy = optarg; break;
        case OPT_POOL: pool_csv = optarg; break;
        case OPT_EMB: emb = optarg; break;
        case 'k':
            if (ms_cli_int(cmd, "-k", optarg, 1, 100000000, &k)) return MS_EXIT_USAGE;
            break;
        case OPT_OUT: out = optarg; break;
        case OPT_SCORES: scores = optarg; break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "csv")) li.format = FMT_CSV;
            else if (!strcmp(optarg, "json")) li.format = FMT_JSON;
            else if (!strcmp(optarg, "labelstudio")) li.format = FMT_LABELSTUDIO;
            else return ms_cli_usage_error(cmd, "--format: '%s' is not csv, json or labelstudio", optarg);
            break;
        case OPT_GROUP_BY: li.group_col = optarg; break;
        case OPT_MAX_PER_GROUP:
            if (ms_cli_int(cmd, "--max-per-group", optarg, 1, 100000000, &max_per_group)) return MS_EXIT_USAGE;
            break;
        case OPT_IMAGE_URL: li.image_url = optarg; break;
        case OPT_SAMPLE: sample = 1; break;
        case MS_OPT_CLINICAL: force_clinical = 1; break;
        case OPT_IMPUTE: impute = 1; break;
        case MS_OPT_SEED: {
            char *end;
            seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end || optarg[0] == '-') return ms_cli_usage_error(cmd, "--seed: '%s' is not a non-negative integer", optarg);
            break;
        }
        case MS_OPT_THREADS:
            if (ms_cli_int(cmd, "--threads", optarg, 0, 1024, &threads)) return MS_EXIT_USAGE;
            break;
        case MS_OPT_PRECISION:
            if (ms_cli_precision(cmd, optarg)) return MS_EXIT_USAGE;
            break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!!model == !!strategy) return ms_cli_usage_error(cmd, "give exactly one of --model and --strategy");
    if (!pool_csv || !out || k <= 0) return ms_cli_usage_error(cmd, "--pool, -k and --out are required");
    if (scores && !model) return ms_cli_usage_error(cmd, "--scores needs --model");
    if (sample && !model) return ms_cli_usage_error(cmd, "--sample needs --model");
    if (force_clinical && !model) return ms_cli_usage_error(cmd, "--clinical needs --model");
    if (max_per_group && !li.group_col) return ms_cli_usage_error(cmd, "--max-per-group needs --group-by");
    if (li.image_url && li.format != FMT_LABELSTUDIO) return ms_cli_usage_error(cmd, "--image-url needs --format labelstudio");
    li.max_per_group = max_per_group ? (int)max_per_group : 1;
    ms_set_threads((int)threads);

    ms_strategy *strat = NULL;
    if (strategy && ms_strategy_create(&strat, strategy)) return ms_cli_usage_error(cmd, "%s", ms_last_error());
    /* one run per worklist: a second select into the same --out is refused (its worklist and
     * scores could otherwise come from different runs) */
    ms_lock lock;
    memset(&lock, 0, sizeof lock);
    lock.fd = -1;
    if (strcmp(out, "-") != 0) {
        ms_status lst = ms_lock_acquire(&lock, out, MS_LOCK_FILE);
        if (lst) {
            ms_strategy_free(strat);
            return ms_cli_fail(cmd, lst);
        }
    }
    ms_table t;
    memset(&t, 0, sizeof t);
    ms_status st = ms_table_load(&t, pool_csv, emb);
    if (st) {
        ms_strategy_free(strat);
        ms_lock_release(&lock);
        return ms_cli_fail(cmd, st);
    }
    int rc = 0;
    if (k > t.n) {
        ms_fail(MS_ERR_DATA, "%s: the pool has %d images, fewer than K = %ld", pool_csv, t.n, k);
        rc = ms_cli_fail(cmd, MS_ERR_DATA);
    }
    int n = t.n, D = t.d;
    int *pick = ms_xmalloc(sizeof(int) * (size_t)k);
    /* --group-by: the whole ranking (or growing selections) in `order`, capped into pick */
    int *gid = NULL, n_groups = 0;
    int *order = NULL;
    if (!rc && li.group_col) {
        st = read_groups(pool_csv, li.group_col, n, &li.group);
        if (st) rc = ms_cli_fail(cmd, st);
        else {
            gid = ms_xmalloc(sizeof(int) * (size_t)n);
            n_groups = group_ids(li.group, n, gid);
            if ((long)n_groups * li.max_per_group < k) {
                ms_fail(MS_ERR_DATA, "%s: %d groups of %s with at most %d image%s each cannot fill K = %ld", pool_csv,
                        n_groups, li.group_col, li.max_per_group, li.max_per_group == 1 ? "" : "s", k);
                rc = ms_cli_fail(cmd, MS_ERR_DATA);
            }
            order = ms_xmalloc(sizeof(int) * (size_t)n);
        }
    }
    float *logits = NULL;
    double *prob = NULL;
    ms_arena ws;
    ms_arena_init(&ws);
    if (!rc && strat) {
        float *unit = ms_xmalloc(sizeof(float) * (size_t)n * D);
        ms_rows_unit(unit, t.emb, (size_t)n, (size_t)D);
        ms_pool pool = {.n = n, .d = D, .x = unit, .raw = t.emb, .clin = t.clin};
        if (!gid) {
            st = strat->select(strat, &pool, (int)k, seed, pick, &ws);
        } else {
            /* a ranking strategy orders the whole pool once; any other selects 2K, 4K, ...
             * items until K of them fit the cap (the selection of a clustering strategy
             * depends on how many items it is asked for) */
            int m = strat->ranking ? n : (int)k, kept = 0;
            for (;;) {
                ms_arena_reset(&ws);
                st = strat->select(strat, &pool, m, seed, order, &ws);
                if (st) break;
                kept = take_capped(order, m, gid, n_groups, li.max_per_group, (int)k, pick);
                if (kept == k || m == n) break;
                m = m > n / 2 ? n : 2 * m;
            }
            if (!st && kept < k) /* unreachable when n_groups * cap >= k, kept for safety */
                st = ms_fail(MS_ERR_DATA, "%s: only %d images fit --max-per-group %d", pool_csv, kept, li.max_per_group);
        }
        if (st) rc = ms_cli_fail(cmd, st);
        free(unit);
    } else if (!rc) {
        /* the trained selector (any architecture) as a strategy: one run gives the K picks
         * in order (greedy, or a draw with --sample) and every item's first-step logit */
        ms_selector sel;
        memset(&sel, 0, sizeof sel);
        ms_selector_meta meta;
        st = ms_net_load(model, &sel.net, &meta);
        if (st) rc = ms_cli_fail(cmd, st);
        else {
            st = ms_selector_resolve_clinical(model, &meta, sel.net.D, pool_csv, D, force_clinical, &sel.clinical);
            sel.decode = sample ? MS_DECODE_SAMPLE : MS_DECODE_GREEDY;
            ms_selector_meta_free(&meta);
            float *clin = NULL;
            if (st) {
                rc = ms_cli_fail(cmd, st);
            } else if (sel.clinical) {
                /* --impute-clinical fills a missing value with the mean of the pool's present
                 * values of that feature, as training does with its split */
                float fill[MS_NCLIN];
                ms_clin_means(t.clin, n, fill);
                clin = ms_xmalloc(sizeof(float) * (size_t)n * MS_NCLIN);
                for (int i = 0; i < n && !rc; i++)
                    for (int j = 0; j < MS_NCLIN; j++) {
                        float v = t.clin ? t.clin[(size_t)i * MS_NCLIN + j] : NAN;
                        if (isnan(v) && !impute) {
                            ms_fail(MS_ERR_DATA, "%s: line %d: missing clinical value (Age, Sex, Frontal/Lateral) needed by the selector (use --impute-clinical)", pool_csv, i + 2);
                            rc = ms_cli_fail(cmd, MS_ERR_DATA);
                            break;
                        }
                        clin[(size_t)i * MS_NCLIN + j] = isnan(v) ? fill[j] : v;
                    }
            }
            ms_strategy *selector = rc ? NULL : ms_selector_strategy(&sel);
            if (selector) {
                ms_pool pool = {.n = n, .d = D, .x = NULL, .raw = t.emb, .clin = clin};
                logits = ms_xmalloc(sizeof(float) * (size_t)n);
                if (!gid) {
                    st = ms_selector_run(selector, &pool, (int)k, seed, pick, logits, &ws);
                } else {
                    /* the whole ranking (greedy: the selector's order; --sample: the draw's
                     * order), then capped per group */
                    st = ms_selector_run(selector, &pool, n, seed, order, logits, &ws);
                    if (!st) take_capped(order, n, gid, n_groups, li.max_per_group, (int)k, pick);
                }
                if (st) rc = ms_cli_fail(cmd, st);
                /* softmax probabilities over the whole pool, in double */
                prob = ms_xmalloc(sizeof(double) * (size_t)n);
                double mx = -INFINITY, z = 0;
                for (int i = 0; i < n; i++) mx = fmax(mx, logits[i]);
                for (int i = 0; i < n; i++) z += prob[i] = exp((double)logits[i] - mx);
                for (int i = 0; i < n; i++) prob[i] /= z;
                ms_strategy_free(selector);
            } else {
                ms_net_free(&sel.net);
            }
            free(clin);
        }
    }
    if (!rc) {
        /* both files are written completely before either is published; the worklist, the
         * product, is published last, so a worklist always has its scores beside it */
        li.chosen_by = strat ? strat->label : "selector";
        ms_outfile os, ow;
        memset(&os, 0, sizeof os);
        memset(&ow, 0, sizeof ow);
        ms_outfile *all[2] = {&os, &ow};
        st = MS_OK;
        if (scores) {
            st = ms_out_open(&os, scores);
            if (!st) st = write_list(&os, &t, NULL, n, logits, prob, 0, &li);
        }
        if (!st) st = ms_out_open(&ow, out);
        if (!st) st = li.format == FMT_CSV ? write_list(&ow, &t, pick, (int)k, logits, prob, 1, &li)
                                           : write_json(&ow, &t, pick, (int)k, logits, prob, &li);
        if (!st) st = scores ? ms_out_commit_all(all, 2) : ms_out_commit(&ow);
        if (st) {
            rc = ms_cli_fail(cmd, st);
            ms_out_abort(&ow);
            ms_out_abort(&os);
        } else {
            fprintf(stderr, "medselect select: %ld of %d images chosen by %s -> %s\n", k, n,
                    strat ? strat->label : "the selector", out);
        }
    }
    ms_arena_free(&ws);
    if (li.group) ms_strv_free(li.group, n);
    free(gid);
    free(order);
    free(pick);
    free(logits);
    free(prob);
    ms_table_free(&t);
    ms_strategy_free(strat);
    ms_lock_release(&lock);
    return rc;
}
