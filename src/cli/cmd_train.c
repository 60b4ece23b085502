/* cmd_train.c: `medselect train`: meta-train the selector (REINFORCE) on a labeled training
 * split with meta-validation on a second split; also the checkpoint-as-strategy loader used
 * by evaluate/analyze and the demo's small training run. */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "medselect/checkpoint.h"
#include "medselect/train.h"

static void help(void) {
    printf("Usage: medselect train --train-pos-csv F --train-norm-csv F --val-pos-csv F\n"
           "                       --val-norm-csv F --out DIR [OPTIONS]\n\n"
           "Meta-trains a selector (--arch; default the paper's bidirectional LSTM over the pool, one\n"
           "logit per item) with REINFORCE: per task the policy draws K items, the reward is the query AUROC\n"
           "of the cosine prototype classifier built from their labels, and the baseline is the AUROC\n"
           "of K random items of the same pool. Adam; the learning rate is multiplied by --lr-decay\n"
           "from epoch --lr-decay-epoch on. Every --val-every iterations the selector is scored on\n"
           "fixed meta-validation tasks (greedy decoding) and the best weights are kept.\n\n"
           "Architectures (--arch NAME; the checkpoint records it, and select, evaluate and\n"
           "analyze load any of them):\n"
           "  bilstm      the paper's BiLSTM, one logit per item (default; hidden 256)\n"
           "  relational  a sequential policy: item i's logit at step t is an MLP of its\n"
           "              rotation-invariant pool-relative features (typicality, k-NN density,\n"
           "              their ranks, distance from the pool mean) minus a learned weight times\n"
           "              its largest centred cosine to the items already picked plus a learned\n"
           "              weight times MaxHerding's coverage gain plus a learned weight times\n"
           "              k-center's distance to the nearest picked item (each weight may\n"
           "              grow or shrink with the step); greedy decoding gives one\n"
           "              ranking whose every prefix is a selection (hidden 16; no --clinical,\n"
           "              without-replacement draws only)\n"
           "  setattn     the same sequential decoding, with each item's score from a set\n"
           "              encoder: two self-attention layers over the pool on those features,\n"
           "              every attention logit biased by a learned weight times the two items'\n"
           "              centred cosine, then an MLP of the item's and the pool's mean encoding\n"
           "              (invariant to rotations of the embedding space and to the pool's order;\n"
           "              hidden 16; no --clinical, without-replacement draws only)\n\n"
           "DIR receives best.safetensors (best validation AUROC), last.safetensors, metrics.csv\n"
           "(iteration, epoch, reward, baseline, advantage, val_auroc, lr, seconds) and\n"
           "state.safetensors (for --resume). Checkpoints use PyTorch's tensor names (LSTM.*,\n"
           "linear.*) and load with load_state_dict of the reference LSTMSelector.\n"
           "DIR is created with any missing parents. Files appear complete or not at all, and\n"
           "a run killed at any moment can be resumed. While a run uses DIR it holds\n"
           "DIR/.medselect.lock (with its pid): a second train into DIR is refused (exit 2).\n"
           "A run that fails before saving anything leaves no folder behind.\n\n"
           "");
    printf("Data:\n"
           "      --train-pos-csv F, --train-norm-csv F   meta-train split (embeddings next to\n"
           "                           the CSVs, or --train-pos-emb F / --train-norm-emb F)\n"
           "      --val-pos-csv F, --val-norm-csv F       meta-validation split (or --val-pos-emb,\n"
           "                           --val-norm-emb)\n"
           "      --uncertain MODE     label -1: positive (default, as the paper), negative, ignore;\n"
           "                           the authors' code counts only 1.0 as positive: use negative\n"
           "                           to match it\n"
           "      --seen A,B           meta-train conditions (default: the paper's six CheXpert names)\n"
           "      --val-conditions A,B meta-validation conditions (default: the --seen list)\n"
           "                           Names: as in the CSV header, case-insensitive, '_' = ' ';\n"
           "                           quote a list with spaces (--seen \"Pleural Effusion,Edema\");\n"
           "                           NIH and CheXpert synonyms are accepted (Effusion = Pleural\n"
           "                           Effusion, Pleural_Thickening = Pleural Other)\n\n");
    printf("Tasks and model (defaults are the reference code's):\n"
           "      --pool N (1000)  --query N (100)  --query-pos-frac F (0.5)\n"
           "      --pos-frac F|LO:HI   positive fraction of each pool (0.5); LO:HI draws each\n"
           "                           task's number of positives uniformly in that range\n"
           "  -k, --k K|LO:HI          labels per task (20); LO:HI trains one ranking for every\n"
           "                           budget: each task draws HI items in order, rewarded (and\n"
           "                           validated) by the mean AUROC of the prefixes LO, 2 LO,\n"
           "                           4 LO, ... and HI\n"
           "      --arch NAME[:OPTS]   selector architecture: bilstm (default), relational or\n"
           "                           setattn; relational:redundancy=A,coverage=B,kcenter=C\n"
           "                           sets the initial weights a (0), b (5), c (0) of its\n"
           "                           sequential terms, redundancy_slope=,coverage_slope=,\n"
           "                           kcenter_slope= their growth over the steps (0),\n"
           "                           static=frozen holds its per-item MLP fixed (its score\n"
           "                           stays 0: only those six weights learn; default free);\n"
           "                           setattn:redundancy=A,coverage=B,tau=C those of setattn\n"
           "                           (8, 1) and of its attention's cosine bias (1)\n"
           "      --augment rotate     multiply every meta-train task's embeddings by a fresh random\n"
           "                           rotation (the width must be a power of two), so that\n"
           "                           absolute embedding directions earn no reward (none: off)\n"
           "      --augment geometry[:noise=N,spread=S,axes=A,dirs=K]\n"
           "                           change every meta-train task's geometry at random, pool\n"
           "                           and query alike (the reward is computed on the changed\n"
           "                           rows; validation tasks are not changed), as another\n"
           "                           hospital's images might look through the same encoder:\n"
           "                           every row pulled towards or pushed from the pool mean by\n"
           "                           a factor in [1/S, S] (2), K random directions of the\n"
           "                           pool's span (4) each scaled by a factor in [1/A, A] (2),\n"
           "                           and Gaussian noise of up to N (0.5) times the pool's RMS\n"
           "                           spread (a level drawn per task); see docs/selectors.md\n");
    printf(
           "      --baseline B         REINFORCE baseline: random (default: the reward of K random\n"
           "                           items of the pool) or greedy (the reward of the current\n"
           "                           policy's greedy decode, self-critical)\n"
           "      --samples S          S ordered draws per task (1), each with the leave-one-out\n"
           "                           baseline: the mean reward of the task's other S - 1 draws\n"
           "                           (replaces --baseline; S times the work per iteration)\n"
           "      --tasks N            fixed meta-train tasks (10000)\n"
           "      --val-tasks N        fixed meta-validation tasks (1000)\n"
           "      --val-every N        iterations between validations (30)\n"
           "      --epochs N           (5)\n"
           "      --batch-size N       tasks per iteration (64)\n"
           "      --lr X               Adam learning rate (1e-4)\n"
           "      --lr-decay X         learning-rate factor (0.1) applied from\n"
           "      --lr-decay-epoch N   this 1-based epoch on (3; 0 = never)\n"
           "      --hidden H           hidden size (bilstm: per direction, 256; relational and\n"
           "                           setattn: 16)\n"
           "      --sampling S         without-replacement (default: K distinct items, exact\n"
           "                           Plackett-Luce log-probability) or multinomial (the\n"
           "                           reference: K draws with replacement)\n"
           "      --clinical           append age, sex and frontal/lateral to the selector input\n"
           "      --impute-clinical    fill missing clinical values with the split's mean\n"
           "      --predictor KIND     reward predictor: cosine (default) or euclidean\n"
           "      --group-by COLUMN    meta-train and meta-validation pools hold at most one\n"
           "                           image per value of this column of both CSVs (e.g.\n"
           "                           PatientID); see 'medselect evaluate --help'\n"
           "      --seed S             seed of every random choice (0)\n"
           "      --threads T          worker threads (default: all cores)\n");
    printf("      --precision P        f32 (default) or bf16: the selector's products take bf16\n"
           "                           operands with fp32 accumulation; weights, Adam state,\n"
           "                           gates and softmax stay fp32 (needs AVX512_BF16)\n"
           "      --resume             continue an interrupted run in DIR (same settings; from\n"
           "                           scratch when no state was saved yet)\n"
           "      --max-iterations N   stop after N iterations of this call (resume later)\n"
           "      --json FILE          write a summary as JSON\n"
           "  -h, --help               this help\n\n"
           "Example:\n"
           "  medselect train --train-pos-csv train_pos.csv --train-norm-csv train_norm.csv \\\n"
           "      --val-pos-csv val_pos.csv --val-norm-csv val_norm.csv --seen Effusion,Infiltration \\\n"
           "      --pool 30 --query 20 -k 10 --hidden 64 --out run1\n");
}

enum {
    OPT_TRAIN_POS = MS_OPT_FIRST_FREE, OPT_TRAIN_NORM, OPT_VAL_POS, OPT_VAL_NORM, OPT_TRAIN_POS_EMB,
    OPT_TRAIN_NORM_EMB, OPT_VAL_POS_EMB, OPT_VAL_NORM_EMB, OPT_OUT, OPT_EPOCHS, OPT_VAL_TASKS,
    OPT_VAL_EVERY, OPT_BATCH, OPT_LR, OPT_LR_DECAY, OPT_LR_DECAY_EPOCH, OPT_HIDDEN, OPT_SAMPLING,
    OPT_CLINICAL, OPT_IMPUTE, OPT_RESUME, OPT_MAX_IT, OPT_VAL_COND, OPT_ARCH, OPT_BASELINE, OPT_AUGMENT, OPT_SAMPLES
};

static int resolve_list(const char *cmd, const ms_split *s, const char *list, int **out, int *n) {
    char **names = ms_split_list(list, n);
    *out = ms_xmalloc(sizeof(int) * (size_t)(*n > 0 ? *n : 1));
    ms_status st = *n > 0 ? ms_split_resolve(s, names, *n, *out) : ms_fail(MS_ERR_ARG, "empty condition list");
    ms_strv_free(names, *n);
    return st ? ms_cli_fail(cmd, st == MS_ERR_ARG && *n > 0 ? MS_ERR_DATA : st) : 0;
}

int ms_cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    ms_cli_common c;
    ms_cli_common_defaults(&c);
    ms_train_config cfg;
    ms_train_defaults(&cfg);
    const char *tp = NULL, *tn = NULL, *vp = NULL, *vn = NULL, *tpe = NULL, *tne = NULL, *vpe = NULL, *vne = NULL;
    const char *json = NULL, *val_cond = NULL;
    long v;
    static const struct option opts[] = {
        {"train-pos-csv", required_argument, 0, OPT_TRAIN_POS},
        {"train-norm-csv", required_argument, 0, OPT_TRAIN_NORM},
        {"val-pos-csv", required_argument, 0, OPT_VAL_POS},
        {"val-norm-csv", required_argument, 0, OPT_VAL_NORM},
        {"train-pos-emb", required_argument, 0, OPT_TRAIN_POS_EMB},
        {"train-norm-emb", required_argument, 0, OPT_TRAIN_NORM_EMB},
        {"val-pos-emb", required_argument, 0, OPT_VAL_POS_EMB},
        {"val-norm-emb", required_argument, 0, OPT_VAL_NORM_EMB},
        {"uncertain", required_argument, 0, MS_OPT_UNCERTAIN},
        {"seen", required_argument, 0, MS_OPT_SEEN},
        {"val-conditions", required_argument, 0, OPT_VAL_COND},
        {"pool", required_argument, 0, MS_OPT_POOL},
        {"pos-frac", required_argument, 0, MS_OPT_POS_FRAC},
        {"query", required_argument, 0, MS_OPT_QUERY},
        {"query-pos-frac", required_argument, 0, MS_OPT_QUERY_POS_FRAC},
        {"k", required_argument, 0, 'k'},
        {"tasks", required_argument, 0, MS_OPT_TASKS},
        {"seed", required_argument, 0, MS_OPT_SEED},
        {"threads", required_argument, 0, MS_OPT_THREADS},
        {"precision", required_argument, 0, MS_OPT_PRECISION},
        {"predictor", required_argument, 0, MS_OPT_PREDICTOR},
        {"group-by", required_argument, 0, MS_OPT_GROUP_BY},
        {"json", required_argument, 0, MS_OPT_JSON},
        {"out", required_argument, 0, OPT_OUT},
        {"epochs", required_argument, 0, OPT_EPOCHS},
        {"val-tasks", required_argument, 0, OPT_VAL_TASKS},
        {"val-every", required_argument, 0, OPT_VAL_EVERY},
        {"batch-size", required_argument, 0, OPT_BATCH},
        {"lr", required_argument, 0, OPT_LR},
        {"lr-decay", required_argument, 0, OPT_LR_DECAY},
        {"lr-decay-epoch", required_argument, 0, OPT_LR_DECAY_EPOCH},
        {"hidden", required_argument, 0, OPT_HIDDEN},
        {"sampling", required_argument, 0, OPT_SAMPLING},
        {"clinical", no_argument, 0, OPT_CLINICAL},
        {"impute-clinical", no_argument, 0, OPT_IMPUTE},
        {"resume", no_argument, 0, OPT_RESUME},
        {"max-iterations", required_argument, 0, OPT_MAX_IT},
        {"arch", required_argument, 0, OPT_ARCH},
        {"baseline", required_argument, 0, OPT_BASELINE},
        {"samples", required_argument, 0, OPT_SAMPLES},
        {"augment", required_argument, 0, OPT_AUGMENT},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    c.tasks = 10000;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":k:h", opts, NULL)) != -1) {
        if (opt == 'k' || opt == MS_OPT_POS_FRAC) {
            /* a value or a range LO:HI */
            char lo[64], *colon = strchr(optarg, ':');
            snprintf(lo, sizeof lo, "%.*s", colon ? (int)(colon - optarg) : (int)strlen(optarg), optarg);
            const char *hi = colon ? colon + 1 : lo;
            if (opt == 'k') {
                long a, b;
                if (ms_cli_int(cmd, "-k", lo, 1, 1000000, &a) || ms_cli_int(cmd, "-k", hi, 1, 1000000, &b))
                    return MS_EXIT_USAGE;
                if (a > b) return ms_cli_usage_error(cmd, "-k %s: the range's low end is above its high end", optarg);
                cfg.k_min = colon ? (int)a : 0;
                cfg.k = (int)b;
            } else {
                double a, b;
                if (ms_cli_double(cmd, "--pos-frac", lo, 0.0, 1.0, &a) || ms_cli_double(cmd, "--pos-frac", hi, 0.0, 1.0, &b))
                    return MS_EXIT_USAGE;
                if (a > b) return ms_cli_usage_error(cmd, "--pos-frac %s: the range's low end is above its high end", optarg);
                if (a <= 0.0 || b >= 1.0) return ms_cli_usage_error(cmd, "--pos-frac %s: fractions must lie strictly between 0 and 1", optarg);
                c.shape.pos_frac = a;
                cfg.pos_frac_hi = b;
            }
            continue;
        }
        int rc = ms_cli_common_option(cmd, opt, optarg, &c);
        if (rc > 0) return rc;
        if (rc == 0) continue;
        switch (opt) {
        case OPT_TRAIN_POS: tp = optarg; break;
        case OPT_TRAIN_NORM: tn = optarg; break;
        case OPT_VAL_POS: vp = optarg; break;
        case OPT_VAL_NORM: vn = optarg; break;
        case OPT_TRAIN_POS_EMB: tpe = optarg; break;
        case OPT_TRAIN_NORM_EMB: tne = optarg; break;
        case OPT_VAL_POS_EMB: vpe = optarg; break;
        case OPT_VAL_NORM_EMB: vne = optarg; break;
        case OPT_VAL_COND: val_cond = optarg; break;
        case MS_OPT_JSON: json = optarg; break;
        case OPT_OUT: cfg.out_dir = optarg; break;
        case OPT_EPOCHS:
            if (ms_cli_int(cmd, "--epochs", optarg, 1, 100000, &v)) return MS_EXIT_USAGE;
            cfg.epochs = (int)v;
            break;
        case OPT_VAL_TASKS:
            if (ms_cli_int(cmd, "--val-tasks", optarg, 0, 10000000, &v)) return MS_EXIT_USAGE;
            cfg.val_tasks = (int)v;
            break;
        case OPT_VAL_EVERY:
            if (ms_cli_int(cmd, "--val-every", optarg, 1, 10000000, &v)) return MS_EXIT_USAGE;
            cfg.val_every = (int)v;
            break;
        case OPT_BATCH:
            if (ms_cli_int(cmd, "--batch-size", optarg, 1, 100000, &v)) return MS_EXIT_USAGE;
            cfg.batch = (int)v;
            break;
        case OPT_LR:
            if (ms_cli_double(cmd, "--lr", optarg, 0.0, 10.0, &cfg.lr)) return MS_EXIT_USAGE;
            break;
        case OPT_LR_DECAY:
            if (ms_cli_double(cmd, "--lr-decay", optarg, 0.0, 10.0, &cfg.lr_decay)) return MS_EXIT_USAGE;
            break;
        case OPT_LR_DECAY_EPOCH:
            if (ms_cli_int(cmd, "--lr-decay-epoch", optarg, 0, 100000, &v)) return MS_EXIT_USAGE;
            cfg.lr_decay_epoch = (int)v;
            break;
        case OPT_HIDDEN:
            if (ms_cli_int(cmd, "--hidden", optarg, 1, 8192, &v)) return MS_EXIT_USAGE;
            cfg.hidden = (int)v;
            break;
        case OPT_SAMPLING:
            if (ms_sampler_parse(optarg, &cfg.sampler)) return ms_cli_usage_error(cmd, "%s", ms_last_error());
            break;
        case OPT_CLINICAL: cfg.clinical = 1; break;
        case OPT_AUGMENT:
            if (!strcmp(optarg, "rotate")) cfg.augment_rotate = 1, cfg.geometry.on = 0;
            else if (!strcmp(optarg, "none")) cfg.augment_rotate = 0, cfg.geometry.on = 0;
            else if (!strcmp(optarg, "geometry") || !strncmp(optarg, "geometry:", 9)) {
                if (ms_geometry_parse(optarg[8] ? optarg + 9 : NULL, &cfg.geometry))
                    return ms_cli_usage_error(cmd, "--augment %s: %s", optarg, ms_last_error());
                cfg.augment_rotate = 0;
            } else return ms_cli_usage_error(cmd, "--augment %s: expected rotate, geometry[:OPTS] or none", optarg);
            break;
        case OPT_BASELINE:
            if (!strcmp(optarg, "random")) cfg.baseline_greedy = 0;
            else if (!strcmp(optarg, "greedy")) cfg.baseline_greedy = 1;
            else return ms_cli_usage_error(cmd, "--baseline %s: expected random or greedy", optarg);
            break;
        case OPT_SAMPLES:
            if (ms_cli_int(cmd, "--samples", optarg, 1, 4096, &v)) return MS_EXIT_USAGE;
            cfg.samples = (int)v;
            break;
        case OPT_ARCH:
            if (ms_arch_parse_spec(optarg, &cfg.arch, &cfg.arch_opts)) return ms_cli_usage_error(cmd, "%s", ms_last_error());
            break;
        case OPT_IMPUTE: cfg.impute_clinical = 1; break;
        case OPT_RESUME: cfg.resume = 1; break;
        case OPT_MAX_IT:
            if (ms_cli_int(cmd, "--max-iterations", optarg, 1, 100000000, &v)) return MS_EXIT_USAGE;
            cfg.max_iterations = (int)v;
            break;
        case 'h': help(); return MS_EXIT_OK;
        default: return ms_cli_bad_option(cmd, opt, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!tp || !tn || !vp || !vn) return ms_cli_usage_error(cmd, "--train-pos-csv, --train-norm-csv, --val-pos-csv and --val-norm-csv are required");
    if (!cfg.out_dir) return ms_cli_usage_error(cmd, "--out DIR is required");
    if (cfg.k > c.shape.pool) return ms_cli_usage_error(cmd, "K = %d is larger than the pool (%d)", cfg.k, c.shape.pool);
    if (cfg.arch && cfg.arch->sequential && cfg.clinical)
        return ms_cli_usage_error(cmd, "--arch %s does not use clinical features (drop --clinical)", cfg.arch->name);
    if (cfg.arch && cfg.arch->sequential && cfg.sampler != MS_SAMPLER_WOR)
        return ms_cli_usage_error(cmd, "--arch %s draws without replacement only (drop --sampling)", cfg.arch->name);
    cfg.shape = c.shape;
    cfg.tasks = (int)c.tasks;
    cfg.seed = c.seed;
    cfg.pred = c.pred;
    ms_set_threads(c.threads);

    ms_split train, val;
    memset(&train, 0, sizeof train);
    memset(&val, 0, sizeof val);
    int *tc = NULL, *vc = NULL, ntc = 0, nvc = 0;
    ms_status st = ms_split_load(&train, tp, tpe, tn, tne, c.uncertain);
    if (!st) st = ms_split_load(&val, vp, vpe, vn, vne, c.uncertain);
    if (!st && c.group_by) st = ms_split_group_by(&train, c.group_by);
    if (!st && c.group_by) st = ms_split_group_by(&val, c.group_by);
    int rc = st ? ms_cli_fail(cmd, st) : 0;
    const char *seen = c.seen ? c.seen : "Consolidation,Lung Opacity,Pleural Effusion,Pneumothorax,Enlarged Cardiomediastinum,Cardiomegaly";
    if (!rc) rc = resolve_list(cmd, &train, seen, &tc, &ntc);
    if (!rc) rc = resolve_list(cmd, &val, val_cond ? val_cond : seen, &vc, &nvc);
    if (!rc) {
        cfg.train_cond = tc, cfg.n_train_cond = ntc;
        cfg.val_cond = vc, cfg.n_val_cond = nvc;
        ms_train_summary sum;
        char state[4096];
        snprintf(state, sizeof state, "%s/state.safetensors", cfg.out_dir);
        if (cfg.resume && access(state, F_OK) != 0)
            fprintf(stderr, "medselect train: no saved state in %s yet: starting from the beginning\n", cfg.out_dir);
        st = ms_train(&train, &val, &cfg, &sum);
        if (st) rc = ms_cli_fail(cmd, st);
        else {
            printf("medselect train: %d iterations, %.1f tasks/s; best meta-validation AUROC %.4f at iteration %d (random selection %.4f)\n"
                   "weights: %s/best.safetensors\n",
                   sum.iterations, sum.tasks_per_second, sum.best_val, sum.best_iteration, sum.random_val, cfg.out_dir);
            if (json) {
                char buf[1024];
                int n = snprintf(buf, sizeof buf,
                                 "{\"iterations\": %d, \"best_val_auroc\": %.6f, \"best_iteration\": %d, \"random_val_auroc\": %.6f, \"seconds\": %.3f, \"tasks_per_second\": %.3f, \"out\": \"%s/best.safetensors\"}\n",
                                 sum.iterations, sum.best_val, sum.best_iteration, sum.random_val, sum.seconds, sum.tasks_per_second, cfg.out_dir);
                st = ms_write_file_atomic(json, buf, (size_t)n);
                if (st) rc = ms_cli_fail(cmd, st);
            }
        }
    }
    free(tc);
    free(vc);
    ms_split_free(&train);
    ms_split_free(&val);
    return rc;
}

const char ms_cli_model_help[] =
    "      --clinical           the --model selector takes the 3 clinical inputs (needed only\n"
    "                           for a tensors-only checkpoint whose input size is ambiguous;\n"
    "                           one of D + 3 inputs is taken as clinical anyway)\n"
    "      --decode RULE        how the --model selector turns logits into K picks: greedy (the\n"
    "                           K highest logits; default), sample (K distinct items drawn from\n"
    "                           the policy), multinomial (K draws WITH replacement, repeats kept\n"
    "                           and counted twice by the classifier: the reference code's\n"
    "                           evaluate). The rule is printed in the report and the JSON\n";

int ms_cli_model_strategy(const char *cmd, const char *path, const ms_split *s, int force_clinical,
                          ms_decode decode, ms_strategy **out) {
    ms_selector sel;
    memset(&sel, 0, sizeof sel);
    ms_selector_meta meta;
    ms_status st = ms_net_load(path, &sel.net, &meta);
    if (st) return ms_cli_fail(cmd, st);
    st = ms_selector_resolve_clinical(path, &meta, sel.net.D, s->pos_name, s->d, force_clinical, &sel.clinical);
    ms_selector_meta_free(&meta);
    sel.decode = decode;
    if (!st && sel.net.arch->sequential && decode == MS_DECODE_MULTINOMIAL)
        st = ms_fail(MS_ERR_ARG, "%s: a %s selector decodes greedily or draws without replacement (not --decode multinomial)",
                     path, sel.net.arch->name);
    if (st) {
        ms_net_free(&sel.net);
        return ms_cli_fail(cmd, st);
    }
    if (sel.clinical && (!s->clin || s->clin_cols != 7)) {
        ms_net_free(&sel.net);
        ms_fail(MS_ERR_DATA, "%s: the selector uses clinical features but %s lacks Age, Sex or Frontal/Lateral", path, s->pos_name);
        return ms_cli_fail(cmd, MS_ERR_DATA);
    }
    if (sel.clinical) {
        /* every row may enter a pool: a missing value is reported now, naming its line */
        static const char *const what[MS_NCLIN] = {"Age", "Sex", "Frontal/Lateral"};
        for (int r = 0; r < s->n; r++)
            for (int j = 0; j < MS_NCLIN; j++)
                if (isnan(s->clin[(size_t)r * MS_NCLIN + j])) {
                    ms_net_free(&sel.net);
                    ms_fail(MS_ERR_DATA, "%s: line %d: missing %s, which the selector's clinical input needs",
                            r < s->n_pos ? s->pos_name : s->norm_name, (r < s->n_pos ? r : r - s->n_pos) + 2, what[j]);
                    return ms_cli_fail(cmd, MS_ERR_DATA);
                }
    }
    *out = ms_selector_strategy(&sel);
    return MS_EXIT_OK;
}

int ms_cli_demo_train(const char *cmd, const ms_split *train, const ms_split *val,
                      const ms_eval_config *ecfg, uint64_t seed, ms_strategy **out) {
    ms_train_config cfg;
    ms_train_defaults(&cfg);
    cfg.shape = ecfg->shape;
    cfg.k = ecfg->k[0];
    cfg.hidden = 64; /* the default architecture, bilstm */
    cfg.batch = 32;
    cfg.tasks = 3200;
    cfg.epochs = 3;
    cfg.val_tasks = 200;
    cfg.val_every = 25;
    cfg.lr = 1e-3;
    cfg.seed = seed;
    cfg.train_cond = ecfg->group[0].cond;
    cfg.n_train_cond = ecfg->group[0].n_cond;
    cfg.val_cond = ecfg->group[0].cond;
    cfg.n_val_cond = ecfg->group[0].n_cond;
    char dir[] = "/tmp/medselect-demo-XXXXXX";
    if (!mkdtemp(dir)) {
        ms_fail(MS_ERR_IO, "%s: cannot create a temporary directory", dir);
        return ms_cli_fail(cmd, MS_ERR_IO);
    }
    cfg.out_dir = dir;
    fprintf(stderr, "medselect demo: meta-training a selector (hidden %d, pool %d, K %d, %d tasks x %d epochs)...\n",
            cfg.hidden, cfg.shape.pool, cfg.k, cfg.tasks, cfg.epochs);
    ms_train_summary sum;
    ms_status st = ms_train(train, val, &cfg, &sum);
    int rc = 0;
    if (st) rc = ms_cli_fail(cmd, st);
    else {
        fprintf(stderr, "medselect demo: trained in %.1f s (%.0f tasks/s); meta-validation AUROC %.4f at iteration %d (random %.4f)\n",
                sum.seconds, sum.tasks_per_second, sum.best_val, sum.best_iteration, sum.random_val);
        char path[4096];
        snprintf(path, sizeof path, "%s/best.safetensors", dir);
        rc = ms_cli_model_strategy(cmd, path, train, 0, MS_DECODE_GREEDY, out);
    }
    /* the demo keeps nothing on disk */
    const char *files[] = {"best.safetensors", "last.safetensors", "state.safetensors", "metrics.csv"};
    for (int i = 0; i < 4; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        remove(p);
    }
    remove(dir);
    return rc;
}
