/* cmd_select.c: `medselect select`: the labeling worklist. A trained selector (or any
 * strategy) picks K distinct items of an unlabeled pool; the worklist CSV lists them by rank. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
           "probability over the whole pool; empty for baselines).\n\n"
           "Options:\n"
           "      --model CKPT         selector weights (safetensors from 'medselect train', or a\n"
           "                           PyTorch state_dict saved as safetensors)\n"
           "      --strategy NAME      a baseline instead, e.g. kmedoids or probcover:delta=0.4\n"
           "      --pool FILE          the pool CSV\n"
           "      --emb FILE           its embeddings (default: next to the CSV)\n"
           "  -k, --k K                number of images to label\n"
           "      --out FILE           the worklist CSV ('-' for stdout)\n"
           "      --scores FILE        also write every pool item's logit (Path, logit, probability)\n"
           "      --sample             draw from the policy instead of taking the top K\n"
           "      --seed S             seed of --sample and of random baselines (0)\n"
           "      --impute-clinical    fill missing clinical values (selectors trained --clinical)\n"
           "                           with the pool's mean of that feature\n"
           "      --threads T          worker threads (default: all cores)\n"
           "  -h, --help               this help\n\n"
           "Example:\n"
           "  medselect select --model run1/best.safetensors --pool unlabeled.csv -k 20 \\\n"
           "      --out worklist.csv --scores scores.csv\n",
           ms_strategy_names());
}

enum { OPT_STRATEGY = MS_OPT_FIRST_FREE, OPT_POOL, OPT_EMB, OPT_OUT, OPT_SCORES, OPT_SAMPLE, OPT_IMPUTE };

/* Writes Path, logit, probability for items in `order` (n of them). rank column when ranked. */
static ms_status write_list(const char *path, const ms_table *t, const int *order, int n,
                            const float *logits, const double *prob, int ranked) {
    ms_outfile o;
    ms_status st = ms_out_open(&o, path);
    if (st) return st;
    fputs(ranked ? "rank,Path,logit,probability\n" : "Path,logit,probability\n", o.f);
    for (int i = 0; i < n; i++) {
        int r = order ? order[i] : i;
        if (ranked) fprintf(o.f, "%d,", i + 1);
        ms_csv_put(o.f, t->path[r]);
        if (logits) fprintf(o.f, ",%.6g,%.6g\n", logits[r], prob[r]);
        else fputs(",,\n", o.f);
    }
    return ms_out_commit(&o);
}

int ms_cmd_select(int argc, char **argv) {
    const char *cmd = "select";
    const char *model = NULL, *strategy = NULL, *pool_csv = NULL, *emb = NULL, *out = NULL, *scores = NULL;
    long k = 0, threads = 0;
    unsigned long long seed = 0;
    int sample = 0, impute = 0;
    static const struct option opts[] = {
        {"model", required_argument, 0, MS_OPT_MODEL},
        {"strategy", required_argument, 0, OPT_STRATEGY},
        {"pool", required_argument, 0, OPT_POOL},
        {"emb", required_argument, 0, OPT_EMB},
        {"k", required_argument, 0, 'k'},
        {"out", required_argument, 0, OPT_OUT},
        {"scores", required_argument, 0, OPT_SCORES},
        {"sample", no_argument, 0, OPT_SAMPLE},
        {"seed", required_argument, 0, MS_OPT_SEED},
        {"impute-clinical", no_argument, 0, OPT_IMPUTE},
        {"threads", required_argument, 0, MS_OPT_THREADS},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "k:h", opts, NULL)) != -1) {
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
        case OPT_SAMPLE: sample = 1; break;
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
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_usage_error(cmd, "unrecognized option");
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!!model == !!strategy) return ms_cli_usage_error(cmd, "give exactly one of --model and --strategy");
    if (!pool_csv || !out || k <= 0) return ms_cli_usage_error(cmd, "--pool, -k and --out are required");
    if (scores && !model) return ms_cli_usage_error(cmd, "--scores needs --model");
    if (sample && !model) return ms_cli_usage_error(cmd, "--sample needs --model");
    ms_set_threads((int)threads);

    ms_strategy *strat = NULL;
    if (strategy && ms_strategy_create(&strat, strategy)) return ms_cli_usage_error(cmd, "%s", ms_last_error());
    ms_table t;
    memset(&t, 0, sizeof t);
    ms_status st = ms_table_load(&t, pool_csv, emb);
    if (st) {
        ms_strategy_free(strat);
        return ms_cli_fail(cmd, st);
    }
    int rc = 0;
    if (k > t.n) {
        ms_fail(MS_ERR_DATA, "%s: the pool has %d images, fewer than K = %ld", pool_csv, t.n, k);
        rc = ms_cli_fail(cmd, MS_ERR_DATA);
    }
    int n = t.n, D = t.d;
    int *pick = ms_xmalloc(sizeof(int) * (size_t)k);
    float *logits = NULL;
    double *prob = NULL;
    ms_arena ws;
    ms_arena_init(&ws);
    if (!rc && strat) {
        float *unit = ms_xmalloc(sizeof(float) * (size_t)n * D);
        ms_rows_unit(unit, t.emb, (size_t)n, (size_t)D);
        ms_pool pool = {.n = n, .d = D, .x = unit, .raw = t.emb, .clin = t.clin};
        st = strat->select(strat, &pool, (int)k, seed, pick, &ws);
        if (st) rc = ms_cli_fail(cmd, st);
        free(unit);
    } else if (!rc) {
        /* the trained selector as a strategy: its score hook gives every item's logit, and
         * select_scored takes the top K (or a draw with --sample) from them */
        ms_selector sel;
        memset(&sel, 0, sizeof sel);
        ms_selector_meta meta;
        st = ms_checkpoint_load(model, &sel.params, &meta);
        if (st) rc = ms_cli_fail(cmd, st);
        else {
            sel.clinical = meta.clinical == 1;
            sel.sample = sample;
            ms_selector_meta_free(&meta);
            int Din = D + (sel.clinical ? MS_NCLIN : 0);
            float *clin = NULL;
            if (sel.params.D != Din) {
                ms_fail(MS_ERR_DATA, "%s: the selector takes %d-dimensional input but %s has %d-dimensional embeddings%s",
                        model, sel.params.D, pool_csv, D, sel.clinical ? " (+3 clinical)" : "");
                rc = ms_cli_fail(cmd, MS_ERR_DATA);
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
                st = selector->score(selector, &pool, 1, logits);
                if (!st) st = selector->select_scored(selector, logits, n, (int)k, seed, pick, &ws);
                if (st) rc = ms_cli_fail(cmd, st);
                /* softmax probabilities over the whole pool, in double */
                prob = ms_xmalloc(sizeof(double) * (size_t)n);
                double mx = -INFINITY, z = 0;
                for (int i = 0; i < n; i++) mx = fmax(mx, logits[i]);
                for (int i = 0; i < n; i++) z += prob[i] = exp((double)logits[i] - mx);
                for (int i = 0; i < n; i++) prob[i] /= z;
                ms_strategy_free(selector);
            } else {
                ms_lstm_params_free(&sel.params);
            }
            free(clin);
        }
    }
    if (!rc) {
        /* the scores file first: the worklist is the product, written last */
        if (scores) st = write_list(scores, &t, NULL, n, logits, prob, 0);
        if (!st) st = write_list(out, &t, pick, (int)k, logits, prob, 1);
        if (st) {
            rc = ms_cli_fail(cmd, st);
            if (scores) remove(scores);
        } else {
            fprintf(stderr, "medselect select: %ld of %d images chosen by %s -> %s\n", k, n,
                    strat ? strat->label : "the selector", out);
        }
    }
    ms_arena_free(&ws);
    free(pick);
    free(logits);
    free(prob);
    ms_table_free(&t);
    ms_strategy_free(strat);
    return rc;
}
